// What each step moved per link, end to end: a real engine process streaming
// the blocks from the SSD tier, its step events recorded by the supervisor and
// served by the contract's operations; the bytes are the deltas of the
// engine's own tier counters across one step, and a planned run keeps its plan.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';

import { packBatch } from '../../../../electron/engine/batch.js';
import { planFor } from '../../../../electron/engine/plan-result.js';
import { batchIndices } from '../../../../electron/data/index.js';
import { loadForTraining, stepIo } from '../../../../electron/engine/trainer.js';
import type { StepEvent, TrainOptions } from '../../../../electron/engine/trainer.js';
import type { RunPlan } from '../../../../electron/common/contract.js';
import { RunSupervisor } from '../../../../electron/services/runs/index.js';
import type { RunEvent } from '../../../../electron/services/runs/index.js';
import { metricsCsv, CSV_HEADER } from '../../../../electron/services/runs/commands.js';
import { runPlanToContract, supervisorOperations } from '../../../../electron/services/runs/operations.js';
import { DEMO_TOKENIZER_DIR, makeTinyLlama } from '../../../helpers/tiny-model.js';
import { demoTrainOptions } from '../../../helpers/train-options.js';

let work: string;
let model: string;
const open: RunSupervisor[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-io-'));
  model = await makeTinyLlama(join(work, 'tiny'));
});

afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

const options = (over: Partial<TrainOptions> = {}): TrainOptions =>
  demoTrainOptions(model, {
    steps: 3,
    seed: 3,
    maxLength: 64,
    ...over,
  });

function supervisor(): RunSupervisor {
  const dataDir = mkdtempSync(join(tmpdir(), 'spw-io-data-'));
  // The engine caches its calibration in the data folder (offload auto).
  const s = RunSupervisor.open(dataDir, { env: { SPILLWAY_DATA_DIR: dataDir } });
  open.push(s);
  return s;
}

async function run(sup: RunSupervisor, o: TrainOptions): Promise<{ id: string; events: RunEvent[] }> {
  const events: RunEvent[] = [];
  sup.subscribe('*', (e) => events.push(e));
  const r = await sup.start({ options: o, saveModel: false });
  const done = await sup.waitFor(r.id);
  expect(done.status, done.error ?? '').toBe('completed');
  return { id: r.id, events: events.filter((e) => e.runId === r.id) };
}

describe('step I/O', () => {
  it('stepIo: deltas of the cumulative counters, never negative, and the wait', () => {
    const tiers = (h2d: number, d2h: number, r: number, w: number) =>
      ({ h2dBytes: h2d, d2hBytes: d2h, ssdReadBytes: r, ssdWriteBytes: w }) as Parameters<typeof stepIo>[0];
    expect(stepIo(tiers(10, 0, 100, 50), tiers(30, 4, 400, 50), { ioMs: 2.5 })).toEqual({
      h2dBytes: 20, d2hBytes: 4, ssdReadBytes: 300, ssdWriteBytes: 0, waitMs: 2.5,
    });
    expect(stepIo(tiers(10, 0, 100, 50), tiers(0, 0, 0, 0), { ioMs: -1 })).toEqual({ h2dBytes: 0, d2hBytes: 0, ssdReadBytes: 0, ssdWriteBytes: 0, waitMs: 0 });
    expect(stepIo(undefined, tiers(1, 1, 1, 1), { ioMs: 1 })).toBeUndefined();
  });

  it('a run with its blocks on the SSD reports each step\'s bytes per link, as the engine counts them, stored and served', async () => {
    const spill = mkdtempSync(join(work, 'spill-'));
    const o = options({ offload: 'ssd', spillDirs: [spill] });

    // The engine's own counters across one step, in this process, with the trainer's loader and first batch.
    const loaded = await loadForTraining(o, () => {});
    let expected: ReturnType<typeof stepIo>;
    try {
      const before = loaded.engine.info().tiers;
      const idx = batchIndices(o.seed, 0, Math.min(o.batchSize, loaded.train.length), loaded.train.length);
      const r = await loaded.engine.step(packBatch(await loaded.train.get(idx)), { seed: BigInt(o.seed), step: 0, q: o.q, lr: o.lr, eps: o.eps, weightDecay: 0, noise: o.noise });
      const after = loaded.engine.info().tiers;
      expect(after?.ssdReadBytes).toBeGreaterThan(before?.ssdReadBytes ?? 0);
      expected = { h2dBytes: 0, d2hBytes: 0, ssdReadBytes: 0, ssdWriteBytes: 0, waitMs: 0, ...stepIo(before, after, r.times) };
    } finally {
      await loaded.close();
    }

    const sup = supervisor();
    const { id, events } = await run(sup, o);
    const steps = events.filter((e): e is StepEvent & { runId: string } => e.type === 'step');
    expect(steps).toHaveLength(3);
    for (const e of steps) {
      expect(e.io, `step ${e.step}`).toBeDefined();
      // Every block is read from the SSD once a step (one visit for both perturbed passes).
      expect(e.io?.ssdReadBytes).toBe(expected?.ssdReadBytes);
      expect(e.io?.h2dBytes).toBe(expected?.h2dBytes);
      expect(e.io?.ssdReadBytes).toBeGreaterThan(0);
      expect(e.io?.waitMs).toBeGreaterThanOrEqual(0);
      expect(e.io?.waitMs).toBe(e.times.ioMs);
    }
    // Lazy write-back: nothing to write at the first step, every block after an update.
    expect(steps[0].io?.ssdWriteBytes).toBe(expected?.ssdWriteBytes);
    expect(steps[1].io?.ssdWriteBytes).toBe(steps[1].io?.ssdReadBytes);

    // Recorded as the events carried them, and served by the contract's operations.
    const stored = sup.getMetrics(id).steps;
    expect(stored.map((s) => s.io)).toEqual(steps.map((e) => e.io));
    const ops = supervisorOperations(sup);
    const signal = new AbortController().signal;
    const page = await ops.getMetrics({ runId: id, sinceStep: -1, limit: 100 }, { signal });
    expect(page.steps.map((s) => s.io)).toEqual(stored.map((s) => s.io));
    expect((await ops.getRun({ runId: id }, { signal })).plan).toBeNull();

    // The CSV export carries them in its last columns.
    const csv = metricsCsv(stored, []).trim().split('\n').map((l) => l.split(','));
    const col = (name: string) => CSV_HEADER.indexOf(name);
    expect(csv[1][col('ssd_read_bytes')]).toBe(String(steps[0].io?.ssdReadBytes));
    expect(csv[1][col('io_wait_ms')]).toBe(String(steps[0].io?.waitMs));
    expect(csv.every((r) => r.length === CSV_HEADER.length)).toBe(true);
  });

  it('a run placed by the planner keeps its plan, with the bytes per link it predicts beside the measured ones', async () => {
    const spill = mkdtempSync(join(work, 'spill-'));
    const sup = supervisor();
    const ops = supervisorOperations(sup);
    const signal = new AbortController().signal;
    // The demo model: four blocks, so a budget half a block short of all-resident keeps one and spills three.
    const demo = DEMO_TOKENIZER_DIR;
    const { id, events } = await run(sup, options({ model: demo, offload: 'auto', spillDirs: [spill], steps: 2, cpuMem: await budgetForSsd(demo, spill) }));
    const start = events.find((e) => e.type === 'start');
    expect(start?.type === 'start' && start.plan).toBeTruthy();
    const summary = (start as { plan: RunPlan }).plan;
    expect(summary.homes.ssd).toBeGreaterThan(0);
    expect(summary.linkBytes?.ssdRead).toBeGreaterThan(0);
    expect(sup.getRun(id)?.plan).toEqual(summary);

    // The start event's plan is the contract's RunPlan as it is: getRun returns what the engine said.
    const detail = await ops.getRun({ runId: id }, { signal });
    expect(detail.plan).toEqual(summary);
    expect(runPlanToContract(summary as unknown as Record<string, unknown>)).toEqual(summary);
    expect(detail.plan?.homes).toEqual(summary.homes);

    // Measured against planned: the engine reads each SSD block rounded up to its 4 KiB-aligned slot.
    const steps = sup.getMetrics(id).steps;
    for (const s of steps) {
      expect(s.io?.ssdReadBytes).toBeGreaterThanOrEqual(summary.linkBytes?.ssdRead as number);
      expect(s.io?.ssdReadBytes).toBeLessThanOrEqual((summary.linkBytes?.ssdRead as number) + 4096 * summary.homes.ssd);
    }
  });
});

/**
 * A CPU budget half a block under "everything resident": streaming adds a staging slot and an I/O buffer, so blocks go to the SSD.
 * Planned for the runs' own thread count (options(): 1), as a run plans itself.
 */
async function budgetForSsd(model: string, spill: string): Promise<number> {
  const { plan } = await planFor({ model, computeDevice: 'cpu', budgets: {}, spillDirs: [spill], batchSize: 4, maxLength: 64, dataDir: null, calibrate: 'cached', threads: 1 });
  const block = plan.units.find((u) => u.kind === 'block');
  return plan.memory.device + plan.memory.cpu - (block?.bytes ?? 0) / 2;
}
