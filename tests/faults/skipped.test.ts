// A run whose every step is skipped (issue 14: a NaN weight made every step "skipped" and the run
// still ended "completed" with exit 0). The fault is injected for real: one NaN in the final norm's
// weight reaches every logit, so every loss is NaN and no update is ever made.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MAX_CONSECUTIVE_SKIPPED } from '../../electron/engine/trainer.js';
import { readSafetensorsHeader } from '../../electron/model/index.js';
import { RunSupervisor } from '../../electron/services/runs/index.js';
import { jsonLines, runSpillway } from '../helpers/cli.js';
import { makeTinyLlama } from '../helpers/tiny-model.js';
import { DEMO_TRAIN } from '../helpers/train-options.js';

let work: string;
let model: string;
const open: RunSupervisor[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-faults-skipped-'));
  model = await makeTinyLlama(join(work, 'nan-model'));
  const file = join(model, 'model.safetensors');
  const norm = (await readSafetensorsHeader(file)).tensors.find((t) => t.name === 'model.norm.weight');
  if (!norm) throw new Error(`${file} has no model.norm.weight`);
  const bytes = readFileSync(file);
  bytes.writeFloatLE(Number.NaN, norm.offset);
  writeFileSync(file, bytes);
});

afterAll(async () => {
  for (const s of open.splice(0)) await s.close();
});

async function trainNaN(steps: number) {
  const dataDir = mkdtempSync(join(work, 'data-'));
  const r = await runSpillway(['train', '--model', model, '--data', DEMO_TRAIN, '--steps', String(steps), '--batch-size', '4', '--no-zero-shot', '--eval-fraction', '0', '--json'], dataDir);
  const events = jsonLines(r.stdout);
  const runId = (events.find((e) => e.type === 'start') as { runId: string }).runId;
  const sup = RunSupervisor.open(dataDir);
  open.push(sup);
  return { ...r, events, run: sup.getRun(runId) };
}

describe('a run whose steps are all skipped', () => {
  it(`stops as failed after ${MAX_CONSECUTIVE_SKIPPED} in a row, with the reason, exit 1`, async () => {
    const r = await trainNaN(40);
    expect(r.code).toBe(1);
    const steps = r.events.filter((e) => e.type === 'step');
    expect(steps).toHaveLength(MAX_CONSECUTIVE_SKIPPED);
    expect(steps.every((e) => e.skipped === true)).toBe(true);
    expect(r.events.some((e) => e.type === 'done')).toBe(false);
    const reason = `steps 1–${MAX_CONSECUTIVE_SKIPPED} were all skipped: their loss or projected gradient was not finite`;
    expect(r.stderr + r.stdout).toContain(reason);
    expect(r.run).toMatchObject({ status: 'failed', stepsDone: MAX_CONSECUTIVE_SKIPPED });
    expect(r.run?.error).toContain(reason);
  });

  it('shorter than the bound, still does not end "completed"', async () => {
    const r = await trainNaN(3);
    expect(r.code).toBe(1);
    expect(r.events.filter((e) => e.type === 'step')).toHaveLength(3);
    expect(r.stderr + r.stdout).toContain('steps 1–3 were all skipped');
    expect(r.run?.status).toBe('failed');
  });
});
