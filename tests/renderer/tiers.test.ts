import { describe, expect, it } from 'vitest';

import type { RunPlan, StepIo } from '../../electron/common/contract.ts';
import { RunSeries } from '../../renderer/src/lib/series.ts';
import { addIoSample, formatMB, formatMs, formatRatio, ratio, streamsUnits, tierSummary, trainableRows, unitsByMemory, type IoSample } from '../../renderer/src/lib/tiers.ts';

const io = (ssdRead: number, waitMs = 2, over: Partial<StepIo> = {}): StepIo => ({ h2dBytes: ssdRead, d2hBytes: 0, ssdReadBytes: ssdRead, ssdWriteBytes: ssdRead / 2, waitMs, ...over });
const step = (s: number, stepMs: number, i: StepIo | null | undefined, skipped = false) => ({
  runId: 'r', step: s, loss: 1, lossPlus: 1, lossMinus: 1, projectedGrad: 0, lr: 1e-3, stepMs, tokensPerS: 100, skipped, ...(i === undefined ? {} : { io: i }),
});

const plan: RunPlan = {
  homes: { device: 2, cpu: 0, ssd: 4 },
  predictedStepMs: 20,
  floorMs: 16,
  bound: 'ssd-read',
  linkBytes: { hostToDevice: 3_000_000, deviceToHost: 0, ssdRead: 3_000_000, ssdWrite: 1_500_000 },
  linkMs: null,
  ioWaitMs: 4,
};

describe('plan homes', () => {
  it('counts units homed on the compute device in the memory of the device that computes', () => {
    const units = (['device', 'device', 'cpu', 'ssd', 'ssd', 'device'] as const).map((home, index) => ({ kind: 'block' as const, index, parameters: 1, bytes: 4, home }));
    expect(unitsByMemory({ units, computeDevice: 'gpu' })).toEqual({ gpu: 3, cpu: 1, ssd: 2 });
    // The CPU computes: its device arena is CPU memory.
    expect(unitsByMemory({ units, computeDevice: 'cpu' })).toEqual({ gpu: 0, cpu: 4, ssd: 2 });
  });
});

describe('Tiers panel', () => {
  it('formats megabytes, milliseconds and ratios', () => {
    expect(formatMB(3_178_496)).toBe('3.18 MB');
    expect(formatMB(31_784_960)).toBe('31.8 MB');
    expect(formatMB(1_530_000_000)).toBe('1530 MB');
    expect(formatMB(0)).toBe('0 MB');
    expect(formatMB(null)).toBe('—');
    expect(formatMs(0.4234)).toBe('0.42 ms');
    expect(formatMs(13.78)).toBe('13.8 ms');
    expect(formatMs(152.4)).toBe('152 ms');
    expect(formatMs(undefined)).toBe('—');
    expect(formatRatio(1.0732)).toBe('1.07×');
    expect(formatRatio(250.4)).toBe('250×');
    expect(formatRatio(null)).toBe('—');
  });

  it('ratio: measured over predicted, none when either is unknown or nothing was predicted', () => {
    expect(ratio(30, 20)).toBe(1.5);
    expect(ratio(0, 20)).toBe(0);
    expect(ratio(5, 0)).toBeNull();
    expect(ratio(5, null)).toBeNull();
    expect(ratio(null, 5)).toBeNull();
    expect(ratio(Number.NaN, 5)).toBeNull();
  });

  it('latest and mean over the last N steps, each beside the plan, and the step against the predicted step and the floor', () => {
    const samples: IoSample[] = [];
    // An early outlier that falls out of a 3-step window.
    addIoSample(samples, step(1, 100, io(9_000_000, 50)));
    addIoSample(samples, step(2, 20, io(3_000_000, 2)));
    addIoSample(samples, step(3, 24, io(3_000_000, 4)));
    addIoSample(samples, step(4, 28, io(3_300_000, 6)));
    const t = tierSummary(samples, plan, 3);
    expect(t?.steps).toBe(3);
    const ssdRead = t?.links.find((l) => l.key === 'ssdRead');
    expect(ssdRead).toMatchObject({ latest: 3_300_000, mean: 3_100_000, predicted: 3_000_000 });
    expect(ssdRead?.ratio).toBeCloseTo(3_100_000 / 3_000_000, 12);
    // Nothing predicted on the link: no ratio.
    expect(t?.links.find((l) => l.key === 'd2h')).toMatchObject({ latest: 0, mean: 0, predicted: 0, ratio: null });
    expect(t?.links.find((l) => l.key === 'ssdWrite')).toMatchObject({ mean: 1_550_000, predicted: 1_500_000 });
    expect(t?.wait).toMatchObject({ latest: 6, mean: 4, predicted: 4, ratio: 1 });
    expect(t?.step).toMatchObject({ latest: 28, mean: 24, predicted: 20, ratio: 1.2, floor: 16, floorRatio: 1.5 });
    expect(t?.links.map((l) => l.label)).toEqual(['Host → device', 'Device → host', 'SSD read', 'SSD write']);
  });

  it('without a plan: measured figures only', () => {
    const samples: IoSample[] = [];
    addIoSample(samples, step(1, 10, io(1000)));
    const t = tierSummary(samples, null);
    expect(t?.links[2]).toMatchObject({ latest: 1000, mean: 1000, predicted: null, ratio: null });
    expect(t?.step).toMatchObject({ predicted: null, ratio: null, floor: null, floorRatio: null });
    expect(tierSummary([], plan)).toBeNull();
  });

  it('keeps a bounded, step-ordered window; steps without I/O are skipped', () => {
    const samples: IoSample[] = [];
    expect(addIoSample(samples, step(1, 10, null))).toBe(false);
    expect(addIoSample(samples, step(1, 10, undefined))).toBe(false);
    for (let s = 1; s <= 12; s++) addIoSample(samples, step(s, 10, io(s)), 5);
    expect(addIoSample(samples, step(12, 10, io(99)), 5)).toBe(false);
    expect(samples.map((x) => x.step)).toEqual([8, 9, 10, 11, 12]);
  });

  it('RunSeries keeps the I/O of every step, skipped ones included', () => {
    const s = new RunSeries(0.6);
    s.addStep(step(1, 10, io(5)));
    s.addStep(step(2, 11, io(6), true));
    s.addStep(step(3, 12, undefined));
    s.addStep(step(2, 99, io(7)));
    expect(s.io.map((x) => [x.step, x.io.ssdReadBytes])).toEqual([[1, 5], [2, 6]]);
  });

  it('shows the panel only for runs that stream units', () => {
    const moved: IoSample[] = [{ step: 1, stepMs: 1, io: io(10) }];
    const still: IoSample[] = [{ step: 1, stepMs: 1, io: io(0, 0) }];
    expect(streamsUnits(plan, 'auto', [])).toBe(true);
    expect(streamsUnits({ ...plan, homes: { device: 6, cpu: 0, ssd: 0 } }, 'auto', still)).toBe(false);
    expect(streamsUnits(null, 'ssd', [])).toBe(true);
    expect(streamsUnits(null, 'cpu', [])).toBe(true);
    expect(streamsUnits(null, undefined, still)).toBe(false);
    expect(streamsUnits(null, 'none', moved)).toBe(true);
  });
});

describe('plan: what trains', () => {
  const trainable = (baseFrozen: boolean) => ({
    set: baseFrozen ? ('lora' as const) : ('full' as const),
    rank: baseFrozen ? 8 : null,
    targets: baseFrozen ? ['q', 'v'] : null,
    fraction: null,
    elements: 1000,
    baseFrozen,
    bytes: baseFrozen ? { device: 5000, cpu: 0, ssd: 0 } : { device: 100, cpu: 200, ssd: 4096 },
    frozenBytes: baseFrozen ? { device: 100, cpu: 200, ssd: 4096 } : { device: 0, cpu: 0, ssd: 0 },
  });
  it('shows trainable and frozen bytes apart with the memories holding them; the device is the one that computes', () => {
    const rows = trainableRows({ trainable: trainable(true), computeDevice: 'gpu' })!;
    expect(rows.map((r) => [r.what, r.bytes])).toEqual([['trainable', 5000], ['frozen', 4396]]);
    expect(rows[0].where).toEqual([{ memory: 'gpu', bytes: 5000 }]);
    expect(rows[1].where).toEqual([{ memory: 'gpu', bytes: 100 }, { memory: 'cpu', bytes: 200 }, { memory: 'ssd', bytes: 4096 }]);
    expect(rows[1].label).toMatch(/read only/);
    // On the CPU the device arena is CPU memory: one CPU entry holds both.
    const cpu = trainableRows({ trainable: trainable(false), computeDevice: 'cpu' })!;
    expect(cpu[0].where).toEqual([{ memory: 'cpu', bytes: 300 }, { memory: 'ssd', bytes: 4096 }]);
    expect(cpu[1].where).toEqual([]);
    expect(trainableRows({ computeDevice: 'cpu' })).toBeNull();
  });
});
