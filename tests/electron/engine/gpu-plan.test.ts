// The planner fed a recorded GPU calibration (tests/fixtures/gpu: built from what an H100 measured,
// see its README): the plan for that GPU takes its free memory less the headroom as the budget,
// uses the block time measured there, and its device memory is set against the peaks the engine
// reached on that GPU (bench/results/gpu-zo-step.json) — the headroom must cover what the plan
// does not count.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { ratesOf } from '../../../electron/engine/calibration.js';
import type { Calibration } from '../../../electron/engine/calibration.js';
import { defaultGpuBudget, deviceListing, gpuHeadroom, resolveDevice } from '../../../electron/engine/device.js';
import type { NativeCudaReport } from '../../../electron/engine/device.js';
import { makePlan } from '../../../electron/engine/planner.js';
import type { PlannerModel } from '../../../electron/engine/planner.js';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const read = <T>(p: string) => JSON.parse(readFileSync(join(ROOT, p), 'utf8')) as T;
const calibration = read<Calibration & { measured: { stepMs: number } }>('tests/fixtures/gpu/h100-calibration.json');
const h100 = resolveDevice('auto', deviceListing(() => read<NativeCudaReport>('tests/fixtures/gpu/h100-cuda-devices.json'), {})).cuda!;
const bench = read<{ rows: { impl: string; model: string; batch: number; seq: number; precision: string; peakDeviceBytes?: number }[] }>('bench/results/gpu-zo-step.json');

/** An OPT decoder as the engine holds it: embeddings (tokens, positions at offset 2), blocks, the final norm with the tied head. */
function opt(layers: number, C: number, heads: number): PlannerModel {
  const V = 50272;
  return {
    name: `opt-${layers}x${C}`,
    config: { hidden: C, heads, intermediate: 4 * C, vocabSize: V, tiedEmbeddings: true },
    units: [
      { kind: 'embed', index: -1, parameters: V * C + 2050 * C, maxGroupParameters: 0 },
      ...Array.from({ length: layers }, (_, i) => ({ kind: 'block' as const, index: i, parameters: 12 * C * C + 13 * C, maxGroupParameters: 4 * C * C + 4 * C })),
      { kind: 'head', index: -1, parameters: 2 * C, maxGroupParameters: 2 * C + V * C },
    ],
  };
}
const SHAPES = { '1.3b': opt(24, 2048, 32), '6.7b': opt(32, 4096, 32) };

describe('a plan for the recorded H100', () => {
  const budget = defaultGpuBudget(h100);
  const rates = ratesOf(calibration);

  it('takes its free memory less the headroom, and the block time measured on it', () => {
    expect(budget.bytes).toBe(h100.freeBytes! - gpuHeadroom(h100.totalBytes));
    const p = makePlan({ model: SHAPES['1.3b'], computeDevice: 'gpu', budgets: { device: budget.bytes }, masters: 'fp32', batchSize: 1, maxLength: 512, rates });
    expect(p.feasible).toBe(true);
    expect(p.count).toEqual({ device: 26, cpu: 0, ssd: 0 });
    expect(p.compute).toMatchObject({ blockMs: calibration.block!.zoMs, blockSource: 'measured' });
    // The blocks alone, both forwards of each: the step cannot be shorter.
    expect(p.predictedStepMs!).toBeGreaterThan(24 * calibration.block!.zoMs);
    expect(p.bound).toBe('compute');
  });

  it('counts device memory within a quarter of the peaks the engine reached there, and the headroom covers what it misses', () => {
    const rows = bench.rows.filter((r) => r.impl === 'spillway' && r.precision === 'fp32' && r.seq === 512 && r.peakDeviceBytes);
    expect(rows.length).toBe(4);
    for (const r of rows) {
      const p = makePlan({ model: SHAPES[r.model as keyof typeof SHAPES], computeDevice: 'gpu', budgets: { device: budget.bytes }, masters: 'fp32', batchSize: r.batch, maxLength: 512, rates });
      const measured = r.peakDeviceBytes!;
      expect(p.feasible).toBe(true);
      expect(Math.abs(p.memory.device / measured - 1), `${r.model} b${r.batch}: planned ${p.memory.device}, measured ${measured}`).toBeLessThan(0.25);
      expect(measured - p.memory.device).toBeLessThan(budget.headroomBytes);
    }
  });

  it('streams what does not fit a 24 GB card, bound by the host-to-device link at the calibrated rate', () => {
    const card = { ...h100, totalBytes: 24e9, freeBytes: 23.5e9 };
    const small = defaultGpuBudget(card);
    const p = makePlan({ model: SHAPES['6.7b'], computeDevice: 'gpu', budgets: { device: small.bytes }, masters: 'bf16', batchSize: 1, maxLength: 512, rates });
    expect(p.feasible).toBe(true);
    expect(p.memory.device).toBeLessThanOrEqual(small.bytes);
    expect(p.count.cpu).toBeGreaterThan(0);
    expect(p.linkBytesPerStep.hostToDevice).toBeGreaterThan(0);
    expect(p.times!.hostToDeviceMs).toBeCloseTo((1000 * p.linkBytesPerStep.hostToDevice) / calibration.h2dBytesPerS, 6);
  });
});
