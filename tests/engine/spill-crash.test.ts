// An engine with its blocks on the SSD tier killed mid-run: its spill file is
// left behind, found by `spillway doctor` as stale (its process is gone) and
// deleted on request; the run resumes from its last checkpoint with the same
// losses as a run that was never killed.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

import { startEngineJob } from '../../electron/engine/runner.js';
import { latestCheckpoint } from '../../electron/engine/checkpoint.js';
import type { TrainEvent, TrainOptions } from '../../electron/engine/trainer.js';
import { ROOT } from '../helpers/engine.js';
import { EventLog, waitForCheckpoint } from '../helpers/events.js';
import { makeTinyLlama } from '../helpers/tiny-model.js';
import { demoTrainOptions } from '../helpers/train-options.js';

const run = promisify(execFile);
let work: string;
let model: string;
let spill: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-spillcrash-'));
  spill = join(work, 'spill');
  mkdirSync(spill);
  model = await makeTinyLlama(join(work, 'tiny'));
});

const options = (over: Partial<TrainOptions> = {}): TrainOptions =>
  demoTrainOptions(model, {
    seed: 4,
    offload: 'ssd',
    spillDirs: [spill],
    writeBackEvery: 3,
    ...over,
  });

const losses = (ev: TrainEvent[]) => ev.flatMap((e) => (e.type === 'step' ? [[e.step, e.lossPlus, e.lossMinus]] : []));

describe('an SSD-tier engine killed mid-run', () => {
  it('leaves a spill file that doctor finds and deletes, and resumes from its checkpoint', async () => {
    const ckpts = join(work, 'ckpt');
    const events = new EventLog<TrainEvent>();
    const job = startEngineJob({ type: 'train', options: options({ steps: 100_000, checkpointEvery: 2, checkpointDir: ckpts }) }, (e) => events.push(e as TrainEvent));
    await waitForCheckpoint(events, 4, job);
    job.kill('SIGKILL');
    await job.done.catch(() => undefined);
    const left = readdirSync(spill).filter((n) => n.endsWith('.spill'));
    expect(left).toHaveLength(1);

    const doctor = async (...extra: string[]) =>
      JSON.parse((await run(process.execPath, [join(ROOT, 'bin', 'spillway.js'), 'doctor', '--spill', spill, '--json', ...extra])).stdout) as {
        staleSpillFiles: { path: string; pid: number; bytes: number; deleted: boolean }[];
      };
    const found = await doctor();
    expect(found.staleSpillFiles.map((f) => f.path)).toEqual([join(spill, left[0])]);
    expect(found.staleSpillFiles[0].pid).toBe(job.child.pid);
    expect(found.staleSpillFiles[0].bytes).toBeGreaterThan(0);
    const cleaned = await doctor('--clean-spill');
    expect(cleaned.staleSpillFiles[0].deleted).toBe(true);
    expect(existsSync(join(spill, left[0]))).toBe(false);

    const from = await latestCheckpoint(ckpts);
    const done = Number(/step-(\d+)$/.exec(from as string)?.[1]);
    const resumed: TrainEvent[] = [];
    await startEngineJob({ type: 'train', options: options({ steps: done + 3, resumeFrom: from as string }) }, (e) => resumed.push(e as TrainEvent)).done;
    const whole: TrainEvent[] = [];
    await startEngineJob({ type: 'train', options: options({ steps: done + 3, offload: 'none' }) }, (e) => whole.push(e as TrainEvent)).done;
    expect(losses(resumed)).toEqual(losses(whole).slice(done));
    expect(readdirSync(spill).filter((n) => n.endsWith('.spill'))).toHaveLength(0);
  });
});
