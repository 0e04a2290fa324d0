// The planner for N ranks on a synthetic model with fixed rates: each rank's share of the step,
// the bytes on each GPU's links with and without the sliced transfer, the CPU memory of a
// machine, CPU ranks sharing cores, and the layouts it refuses. Every expectation is derived
// here from the inputs and the one-process planner.
import { describe, expect, it } from 'vitest';

import { distPlan } from '../../../electron/engine/dist-plan.js';
import { makePlan } from '../../../electron/engine/planner.js';
import type { PlanInput, PlannerRates } from '../../../electron/engine/planner.js';
import { BLOCK, SYNTHETIC_RATES, syntheticModel } from '../../helpers/planner-model.js';

const LAYERS = 8;
const model = syntheticModel(LAYERS);
const RATES: PlannerRates = { ...SYNTHETIC_RATES, deviceUpdateElemsPerS: 1e11 };
const BATCH = 8;
// A GPU that holds the embeddings, the head and the scratch but no block: every block streams from the CPU.
const input = (over: Partial<PlanInput> = {}): PlanInput => ({
  model,
  computeDevice: 'gpu',
  budgets: { device: makePlan({ model, computeDevice: 'gpu', budgets: { device: 0 }, masters: 'fp32', batchSize: BATCH, maxLength: 16, rates: RATES }).memory.device },
  spillDirs: ['/spill'],
  masters: 'fp32',
  batchSize: BATCH,
  maxLength: 16,
  rates: RATES,
  ...over,
});
const nvlink = { kind: 'nvlink' as const, allGatherBytesPerS: 300e9 };
/** The bytes of the blocks a rank's plan streams from the CPU (a rank's smaller share of the batch may keep more on its GPU). */
const streamedBy = (p: ReturnType<typeof makePlan>) => p.units.filter((u) => u.home === 'cpu').length * 4 * BLOCK;
const pcie = { kind: 'pcie' as const, allGatherBytesPerS: 25e9 };

describe('distPlan', () => {
  it('the one-process plan streams every block from the CPU (what the cases below rest on)', () => {
    const single = makePlan(input());
    expect(single.count.cpu).toBe(LAYERS);
    expect(single.linkBytesPerStep.hostToDevice).toBe(4 * BLOCK * LAYERS);
  });

  it('without slicing every GPU uploads every block it streams, and a machine holds a copy per rank', () => {
    const d = distPlan(input(), { ranks: 4, parallel: 'data', q: 1, batchSize: BATCH, interconnect: nvlink });
    expect(d.sliced).toBe(false);
    expect(streamedBy(d.rank)).toBeGreaterThan(0);
    expect(d.perGpu.h2dBytes).toBe(streamedBy(d.rank));
    expect(d.perGpu.allGatherBytes).toBe(0);
    expect(d.perMachine.cpuBytes).toBe(4 * d.rank.memory.cpu);
    expect(d.perGpu.examples).toBe(2);
  });

  it('sliced over NVLink: 1/N of each block per PCIe link, the rest all-gathered, one copy of the blocks per machine', () => {
    const d = distPlan(input(), { ranks: 4, parallel: 'data', q: 1, batchSize: BATCH, interconnect: nvlink, sliced: true });
    const streamed = streamedBy(d.rank);
    expect(d.sliced).toBe(true);
    expect(streamed).toBeGreaterThan(0);
    expect(d.perGpu.h2dBytes).toBeCloseTo(streamed / 4, 6);
    expect(d.perGpu.allGatherBytes).toBeCloseTo((3 * streamed) / 4, 6);
    // Updated on the device, each rank writing back its slice.
    expect(d.perGpu.d2hBytes).toBeCloseTo(streamed / 4, 6);
    expect(d.perMachine.cpuBytes).toBeCloseTo(4 * d.rank.memory.cpu - 3 * streamed, 6);
    expect(d.perGpu.h2dMs).toBeCloseTo((1000 * streamed) / 4 / RATES.h2dBytesPerS, 9);
    expect(d.perGpu.allGatherMs).toBeCloseTo((1000 * 3 * streamed) / 4 / nvlink.allGatherBytesPerS, 9);
  });

  it('sliced on PCIe only: the all-gather crosses the same links, so a GPU moves no fewer bytes', () => {
    const whole = distPlan(input(), { ranks: 4, parallel: 'data', q: 1, batchSize: BATCH, interconnect: pcie });
    const sliced = distPlan(input(), { ranks: 4, parallel: 'data', q: 1, batchSize: BATCH, interconnect: pcie, sliced: true });
    expect(sliced.perGpu.h2dMs + sliced.perGpu.allGatherMs).toBeGreaterThanOrEqual(whole.perGpu.h2dMs * (1 - 1e-12));
    expect(sliced.notes.join(' ')).toMatch(/same links as the uploads/);
  });

  it('data parallel shares the forwards by tokens; perturbation parallel by perturbations; every rank applies every update', () => {
    // Everything resident (no budget): the updates are all on the device, the same whatever the share.
    const q = 4;
    const resident = input({ q, budgets: {} });
    const one = makePlan(resident);
    const data = distPlan(resident, { ranks: 4, parallel: 'data', q, batchSize: BATCH, interconnect: nvlink });
    const pert = distPlan(resident, { ranks: 4, parallel: 'perturbation', q, batchSize: BATCH, interconnect: nvlink });
    const t = one.times!;
    // The forwards of 2 of the 8 examples, and of 1 of the 4 perturbations; the updates of all 4 on every rank.
    expect(data.perGpu.computeMs).toBeCloseTo(t.forwardMs / 4 + t.deviceUpdateMs, 6);
    expect(pert.perGpu.computeMs).toBeCloseTo(t.forwardMs / 4 + t.deviceUpdateMs, 6);
    expect(pert.perGpu.perturbations).toBe(1);
    expect(data.singleGpuStepMs).toBe(one.predictedStepMs);
    expect(data.speedup).toBeCloseTo(data.singleGpuStepMs / data.stepMs, 12);
  });

  it('CPU ranks of one machine share its cores: no speedup from ranks alone', () => {
    const cpuInput = input({ computeDevice: 'cpu', budgets: {} });
    const d = distPlan(cpuInput, { ranks: 2, parallel: 'data', q: 1, batchSize: BATCH, interconnect: pcie });
    const one = makePlan(cpuInput).times!;
    expect(d.perGpu.computeMs).toBeCloseTo(2 * (one.forwardMs / 2 + one.deviceUpdateMs), 6);
    expect(d.notes.join(' ')).toMatch(/share its cores/);
  });

  it('refuses layouts that cannot share the step, saying what to change', () => {
    expect(() => distPlan(input({ q: 3 }), { ranks: 2, parallel: 'perturbation', q: 3, batchSize: BATCH, interconnect: nvlink })).toThrow(/q \(3\) must be a multiple of the 2/);
    expect(() => distPlan(input(), { ranks: 16, parallel: 'data', q: 1, batchSize: BATCH, interconnect: nvlink })).toThrow(/batch of 8 is smaller than the 16/);
    expect(() => distPlan(input(), { ranks: 6, parallel: '2d', groups: 4, q: 4, batchSize: BATCH, interconnect: nvlink })).toThrow(/cannot form 4 perturbation groups/);
    expect(() => distPlan(input(), { ranks: 6, ranksPerMachine: 4, parallel: 'data', q: 1, batchSize: BATCH, interconnect: nvlink })).toThrow(/do not fill machines of 4/);
  });
});
