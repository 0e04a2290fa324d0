// SIGKILL of the engine, of `spillway train` and of `spillway serve` at seeded random moments of
// one run each, for real (bench/faults/kills.ts; `npm run bench:faults` runs ten kills of each):
// after every kill the run continues from a checkpoint of its own, and when it ends every step
// has exactly one row, with the losses of the same run never interrupted, bit for bit.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { killCampaign, referenceRows } from '../../bench/faults/kills.js';
import type { KillTarget } from '../../bench/faults/kills.js';
import type { StepMetric } from '../../electron/services/store/types.js';

const STEPS = 80;
const KILLS = 3;
let work: string;
let reference: StepMetric[];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-kills-'));
  reference = await referenceRows(work, STEPS);
  expect(reference.map((r) => r.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
});

describe.each<[KillTarget, number]>([
  ['engine', 11],
  ['cli', 12],
  ['serve', 13],
])('SIGKILL of the %s', (target, seed) => {
  it(`${KILLS} times at random moments: the run resumes each time and ends with every row, exact`, async () => {
    const r = await killCampaign({ target, kills: KILLS, seed, steps: STEPS, work: join(work, target), reference });
    expect(r.kills).toBe(KILLS);
    expect(r.resumed).toBe(KILLS);
    expect(r.status).toBe('completed');
    expect(r.rowsLost).toBe(0);
    expect(r.rowsWrong).toBe(0);
    expect(r.rowsPresent).toBe(STEPS);
  });
});
