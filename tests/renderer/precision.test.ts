import { describe, expect, it } from 'vitest';

import type { PlanResult } from '../../electron/common/contract.ts';
import { formatDelta, formatStep, precisionComparison, readAheadSummary } from '../../renderer/src/lib/precision.ts';

const MiB = 2 ** 20;

/** A tiered plan of four 3 MiB blocks (fp32) on the SSD; bf16/fp16 halve what streams. */
function plan(bytesPerParameter: 4 | 2, over: Partial<PlanResult> = {}): PlanResult {
  const half = bytesPerParameter === 2;
  const block = half ? 1.5 * MiB : 3 * MiB;
  return {
    model: '/m',
    computeDevice: 'cpu',
    strategy: 'tiered',
    units: [
      { kind: 'embed', index: -1, parameters: 100, bytes: 400, home: 'device' },
      ...[0, 1, 2, 3].map((index) => ({ kind: 'block' as const, index, parameters: (3 * MiB) / 4, bytes: block, home: 'ssd' as const })),
    ],
    memory: { gpu: 0, cpu: 150 * MiB, ssd: 4 * block },
    breakdown: { weights: 12 * MiB, workingCopies: 6 * MiB, activations: 14 * MiB, prefetchBuffers: 2 * block, runtime: 128 * MiB },
    linkBytesPerStep: { hostToDevice: 4 * block, deviceToHost: 0, ssdRead: 4 * block, ssdWrite: 4 * block },
    predictedStepMs: half ? 24.5 : 31.25,
    feasible: true,
    shortfalls: [],
    notes: [],
    prefetch: 2,
    prefetchRequested: 2,
    bytesPerParameter,
    ...over,
  };
}

describe('masters comparison', () => {

  it('formats changes against the chosen precision', () => {
    expect(formatDelta(50, 100)).toBe('−50%');
    expect(formatDelta(200, 100)).toBe('+100%');
    expect(formatDelta(100.2, 100)).toBe('same');
    expect(formatDelta(0, 0)).toBe('same');
    expect(formatDelta(5, 0)).toBe('');
    expect(formatDelta(null, 100)).toBe('');
    expect(formatDelta(100, null)).toBe('');
  });

  it('formats step times, and says when they are not known', () => {
    expect(formatStep(24.5)).toBe('24.5 ms');
    expect(formatStep(0.42)).toBe('0.42 ms');
    expect(formatStep(152.4)).toBe('152 ms');
    expect(formatStep(12_400)).toBe('12 s');
    expect(formatStep(null)).toBe('—');
  });

  it('sets fp32 beside bf16 and fp16: memory, SSD, host → device bytes and the step, each against the chosen one', () => {
    const c = precisionComparison({ fp32: plan(4), bf16: plan(2), fp16: plan(2) }, 'fp32');
    expect(c.chosen).toBe('fp32');
    expect(c.fits).toEqual({ fp32: true, bf16: true, fp16: true });
    expect(c).toMatchObject({ allResident: false, uncalibrated: false });
    const row = (k: string) => c.rows.find((r) => r.key === k)!;
    expect(c.rows.map((r) => r.label)).toEqual(['CPU memory', 'SSD (spill files)', 'Host → device per step', 'Predicted step']);
    expect(row('h2d').cells).toEqual([
      { masters: 'fp32', value: 12 * MiB, text: '12.0 MiB', delta: '' },
      { masters: 'bf16', value: 6 * MiB, text: '6.00 MiB', delta: '−50%' },
      { masters: 'fp16', value: 6 * MiB, text: '6.00 MiB', delta: '−50%' },
    ]);
    expect(row('ssd').cells.map((x) => [x.text, x.delta])).toEqual([['12.0 MiB', ''], ['6.00 MiB', '−50%'], ['6.00 MiB', '−50%']]);
    expect(row('cpu').cells.map((x) => x.delta)).toEqual(['', 'same', 'same']);
    expect(row('step').cells.map((x) => [x.text, x.delta])).toEqual([['31.3 ms', ''], ['24.5 ms', '−22%'], ['24.5 ms', '−22%']]);

    // Chosen bf16: fp32 reads as twice the bytes.
    const b = precisionComparison({ fp32: plan(4), bf16: plan(2), fp16: plan(2) }, 'bf16');
    expect(b.rows.find((r) => r.key === 'h2d')!.cells.map((x) => x.delta)).toEqual(['+100%', '', 'same']);
  });

  it('shows a missing or failed plan as a dash, an unfitting one as not fitting, an uncalibrated step as such', () => {
    const c = precisionComparison({ fp32: plan(4, { feasible: false, predictedStepMs: null }), bf16: plan(2, { predictedStepMs: null }), fp16: null }, 'bf16');
    expect(c.fits).toEqual({ fp32: false, bf16: true, fp16: null });
    const h2d = c.rows.find((r) => r.key === 'h2d')!.cells;
    expect(h2d.map((x) => x.text)).toEqual(['12.0 MiB', '6.00 MiB', '—']);
    expect(h2d.map((x) => x.delta)).toEqual(['+100%', '', '']);
    const step = c.rows.find((r) => r.key === 'step')!.cells;
    expect(step.map((x) => [x.value, x.text, x.delta])).toEqual([[null, '—', ''], [null, '—', ''], [null, '—', '']]);
    expect(c.uncalibrated).toBe(true);
    expect(c.allResident).toBe(false);
    const resident = (p: PlanResult): PlanResult => ({ ...p, strategy: 'all-resident' });
    expect(precisionComparison({ fp32: resident(plan(4)), bf16: resident(plan(2)), fp16: null }, 'fp32').allResident).toBe(true);
  });

  it('says the read-ahead depth, and why it was lowered', () => {
    expect(readAheadSummary(plan(2))).toEqual({ depth: 2, lowered: false, text: 'SSD read-ahead 2 blocks (3.00 MiB of CPU memory).' });
    expect(readAheadSummary(plan(4, { prefetch: 1, breakdown: { ...plan(4).breakdown, prefetchBuffers: 3 * MiB } }))).toEqual({
      depth: 1,
      lowered: true,
      text: 'SSD read-ahead 1 block (3.00 MiB of CPU memory): lowered from 2 because the CPU budget cannot hold more read-ahead buffers.',
    });
    const resident = plan(4, { units: [{ kind: 'block', index: 0, parameters: 1, bytes: 4, home: 'device' }] });
    expect(readAheadSummary(resident)).toMatchObject({ lowered: false, text: 'No blocks on the SSD: nothing is read ahead.' });
    const old = plan(4);
    delete old.prefetch;
    expect(readAheadSummary(old)).toBeNull();
  });
});
