// Damaged checkpoints, each refused before a step with the damaged file named (bench/faults/damage.ts
// lists the variants): bits flipped in the weights, NaN and Inf weights (also with the manifest
// rewritten to match, so that only the finite check can tell), files cut short or deleted, seed-log
// values edited, another run's id, and checkpoints of an older version without a manifest.
import { cpSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { damageCampaign, damageVariants } from '../../bench/faults/damage.js';
import { openCheckpoint } from '../../electron/engine/checkpoint.js';
import { startEngineJob } from '../../electron/engine/runner.js';
import type { TrainEvent, TrainOptions } from '../../electron/engine/trainer.js';
import { makeTinyLlama } from '../helpers/tiny-model.js';
import { demoTrainOptions } from '../helpers/train-options.js';

let work: string;
let options: TrainOptions;
let checkpoint: string;
const RUN = 'the-run';

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-damage-'));
  options = demoTrainOptions(await makeTinyLlama(join(work, 'tiny')), { steps: 7, seed: 2, checkpointEvery: 3, q: 2 });
  const job = startEngineJob({ type: 'train', options: { ...options, runId: RUN, checkpointDir: join(work, 'ckpt') } }, () => {});
  await job.done;
  checkpoint = join(work, 'ckpt', 'step-00000006');
});

describe('damaged checkpoints', () => {
  it('an intact one is verified and resumes', async () => {
    const opened = await openCheckpoint(checkpoint);
    expect(opened.verified).toBe(true);
    expect(opened.state.run_id).toBe(RUN);
    expect(opened.seedLog).toHaveLength(6 * 2);
    const copy = join(work, 'intact', 'step-00000006');
    cpSync(checkpoint, copy, { recursive: true });
    const events: TrainEvent[] = [];
    await startEngineJob({ type: 'train', options: { ...options, runId: RUN, resumeFrom: copy, checkpointDir: join(copy, '..'), steps: 8 } }, (e) => events.push(e as TrainEvent)).done;
    expect(events.filter((e) => e.type === 'step').map((e) => (e as { step: number }).step)).toEqual([7, 8]);
  });

  it(`each of ${damageVariants('x').length} damages is refused before a step, naming the file`, async () => {
    const results = await damageCampaign(checkpoint, RUN, options, join(work, 'damaged'));
    for (const r of results) {
      expect(r.crashed, `${r.name}: ${r.message}`).toBe(false);
      expect(r.detected, `${r.name}: ${r.message}`).toBe(true);
    }
    expect(results.length).toBeGreaterThanOrEqual(20);
    // The checkpoint they were copied from is untouched.
    expect((await openCheckpoint(checkpoint)).verified).toBe(true);
    expect(readFileSync(join(checkpoint, 'seedlog.jsonl'), 'utf8').trim().split('\n')).toHaveLength(12);
  });
});
