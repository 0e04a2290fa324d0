// New run's comparison of master precisions: the same placement request
// planned with fp32, bf16 and fp16 masters, side by side (CPU memory, SSD
// bytes, host → device bytes per step, predicted step time), each figure
// beside the chosen precision's.

import type { Masters, PlanResult, UpdateMode } from '../../../electron/common/contract.ts';
import { formatBytes, formatDuration } from './format.ts';
import { formatMs } from './tiers.ts';

export const MASTERS: readonly Masters[] = ['fp32', 'bf16', 'fp16'];

export const MASTERS_LABEL: Record<Masters, string> = {
  fp32: 'fp32 (4 bytes per parameter)',
  bf16: 'bf16 (2 bytes, stochastic rounding)',
  fp16: 'fp16 (2 bytes, stochastic rounding)',
};

export const UPDATE_LABEL: Record<UpdateMode, string> = {
  auto: "auto (the plan's choice)",
  home: 'at home (host threads)',
  device: 'on the device (write-back)',
};

export type CompareKey = 'cpu' | 'ssd' | 'h2d' | 'step';

export interface CompareCell {
  masters: Masters;
  /** Bytes or ms; null when unknown (no plan, not calibrated). */
  value: number | null;
  text: string;
  /** Against the chosen precision's figure ('' for the chosen one itself or when either is unknown). */
  delta: string;
}

export interface CompareRow {
  key: CompareKey;
  label: string;
  cells: CompareCell[];
}

export interface Comparison {
  chosen: Masters;
  /** Per precision: whether its plan fits (null: no plan). */
  fits: Record<Masters, boolean | null>;
  rows: CompareRow[];
  /** Every plan keeps all units resident: the precision changes no figure (nothing streams). */
  allResident: boolean;
  /** Some plan has no predicted step (not calibrated yet). */
  uncalibrated: boolean;
}

const ROWS: { key: CompareKey; label: string; of: (p: PlanResult) => number | null; format: (v: number | null) => string }[] = [
  { key: 'cpu', label: 'CPU memory', of: (p) => p.memory.cpu, format: formatBytes },
  { key: 'ssd', label: 'SSD (spill files)', of: (p) => p.memory.ssd, format: formatBytes },
  { key: 'h2d', label: 'Host → device per step', of: (p) => p.linkBytesPerStep.hostToDevice, format: formatBytes },
  { key: 'step', label: 'Predicted step', of: (p) => p.predictedStepMs, format: formatStep },
];

/** A step time: "8.30 ms", "152 ms" under a second, "12 s", "2 m 5 s" above; "—" when unknown. */
export function formatStep(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return '—';
  return ms < 1000 ? formatMs(ms) : formatDuration(ms);
}

/** "−50%", "+12%", "same"; '' when either figure is unknown. A change under 0.5% reads "same". */
export function formatDelta(value: number | null, base: number | null): string {
  if (value === null || base === null || !Number.isFinite(value) || !Number.isFinite(base)) return '';
  if (base === 0) return value === 0 ? 'same' : '';
  const pct = ((value - base) / base) * 100;
  if (Math.abs(pct) < 0.5) return 'same';
  return `${pct < 0 ? '−' : '+'}${Math.round(Math.abs(pct))}%`;
}

/** The comparison table for the plans of each precision (absent or null: not planned, or the plan failed). */
export function precisionComparison(plans: Partial<Record<Masters, PlanResult | null>>, chosen: Masters): Comparison {
  const fits = Object.fromEntries(MASTERS.map((m) => [m, plans[m] ? plans[m].feasible : null])) as Record<Masters, boolean | null>;
  const rows = ROWS.map(({ key, label, of, format }) => {
    const valueOf = (m: Masters) => {
      const p = plans[m];
      if (!p) return null;
      const v = of(p);
      return v === null || !Number.isFinite(v) ? null : v;
    };
    const base = valueOf(chosen);
    return {
      key,
      label,
      cells: MASTERS.map((m) => {
        const value = valueOf(m);
        return { masters: m, value, text: plans[m] ? format(value) : '—', delta: m === chosen ? '' : formatDelta(value, base) };
      }),
    };
  });
  const planned = MASTERS.map((m) => plans[m]).filter((p): p is PlanResult => !!p);
  return {
    chosen,
    fits,
    rows,
    allResident: planned.length > 0 && planned.every((p) => p.strategy === 'all-resident'),
    uncalibrated: planned.some((p) => p.predictedStepMs === null),
  };
}

/** The plan's read-ahead, in words: the depth, and why it is lower than asked when it is. */
export function readAheadSummary(plan: PlanResult): { depth: number; lowered: boolean; text: string } | null {
  if (plan.prefetch === undefined) return null;
  const onSsd = plan.units.some((u) => u.home === 'ssd');
  const depth = plan.prefetch;
  const requested = plan.prefetchRequested ?? depth;
  const lowered = onSsd && depth < requested;
  const blocks = (n: number) => `${n} block${n === 1 ? '' : 's'}`;
  if (!onSsd) return { depth, lowered: false, text: 'No blocks on the SSD: nothing is read ahead.' };
  const buffers = plan.breakdown.prefetchBuffers ? ` (${formatBytes(plan.breakdown.prefetchBuffers)} of CPU memory)` : '';
  return {
    depth,
    lowered,
    text: lowered
      ? `SSD read-ahead ${blocks(depth)}${buffers}: lowered from ${requested} because the CPU budget cannot hold more read-ahead buffers.`
      : `SSD read-ahead ${blocks(depth)}${buffers}.`,
  };
}

/** What the plan's compute (and so its step time) was predicted for: the training data's mean length, or batch × max length. */
export function dataTokensLine(t: PlanResult['dataTokens']): string {
  if (!t) return 'Step time for batch × max length tokens (choose a training dataset to plan for its mean length).';
  const mean = t.meanPerExample.toFixed(t.meanPerExample < 100 ? 1 : 0);
  return `Step time for the dataset's mean length: ${mean} tokens per example, ${Math.round(t.perStep)} per step (${t.examples} examples).`;
}
