// The Live screen's Tiers panel: what each step moved per link (host → device,
// device → host, SSD read, SSD write) and how long compute waited for streamed
// units, latest and mean over the last steps, each beside the plan's
// prediction, and the step time against the predicted step and the floor.

import { formatRunStorage, runStorage } from '../../../electron/common/contract.ts';
import type { Home, PlanResult, RunOptions, RunPlan, RunStorage, StepIo, StepMetric } from '../../../electron/common/contract.ts';

/** Steps the means are taken over. */
export const TIER_WINDOW = 20;
/** Steps kept for the panel (the window, with room to spare). */
export const TIER_KEEP = 200;

export interface IoSample {
  step: number;
  stepMs: number;
  io: StepIo;
}

export type LinkKey = 'h2d' | 'd2h' | 'ssdRead' | 'ssdWrite';

type PlanLinks = NonNullable<RunPlan['linkBytes']>;

export const LINKS: readonly { key: LinkKey; label: string; io: keyof StepIo; plan: keyof PlanLinks }[] = [
  { key: 'h2d', label: 'Host → device', io: 'h2dBytes', plan: 'hostToDevice' },
  { key: 'd2h', label: 'Device → host', io: 'd2hBytes', plan: 'deviceToHost' },
  { key: 'ssdRead', label: 'SSD read', io: 'ssdReadBytes', plan: 'ssdRead' },
  { key: 'ssdWrite', label: 'SSD write', io: 'ssdWriteBytes', plan: 'ssdWrite' },
];

/** One row of the panel: a measured figure (bytes or ms per step) and what the plan predicted. */
export interface TierRow {
  latest: number | null;
  mean: number | null;
  predicted: number | null;
  /** mean / predicted; null when either is unknown or the prediction is 0. */
  ratio: number | null;
}

export interface TierSummary {
  /** Steps the means cover. */
  steps: number;
  links: (TierRow & { key: LinkKey; label: string })[];
  /** Time the compute path waited for streamed units, ms. */
  wait: TierRow;
  /** Step time against the predicted step (ratio) and against the floor (floorRatio). */
  step: TierRow & { floor: number | null; floorRatio: number | null };
}

/** measured / predicted, or null when it means nothing (either unknown, or nothing predicted). */
export function ratio(measured: number | null | undefined, predicted: number | null | undefined): number | null {
  if (measured === null || measured === undefined || predicted === null || predicted === undefined) return null;
  if (!Number.isFinite(measured) || !Number.isFinite(predicted) || predicted <= 0) return null;
  return measured / predicted;
}

function mean(xs: readonly number[]): number | null {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null;
}

/** Appends a step's I/O to the kept samples (idempotent by step, bounded to `keep`). */
export function addIoSample(samples: IoSample[], m: Pick<StepMetric, 'step' | 'stepMs' | 'io'>, keep = TIER_KEEP): boolean {
  if (!m.io) return false;
  if (samples.length && samples[samples.length - 1].step >= m.step) return false;
  samples.push({ step: m.step, stepMs: m.stepMs, io: m.io });
  if (samples.length > keep) samples.splice(0, samples.length - keep);
  return true;
}

/** The panel's figures over the last `window` samples; null before any step reported its I/O. */
export function tierSummary(samples: readonly IoSample[], plan: RunPlan | null | undefined, window = TIER_WINDOW): TierSummary | null {
  const last = samples.slice(-Math.max(1, window));
  const latest = last.at(-1);
  if (!latest) return null;
  const row = (pick: (s: IoSample) => number, predicted: number | null | undefined): TierRow => {
    const m = mean(last.map(pick));
    const p = predicted ?? null;
    return { latest: pick(latest), mean: m, predicted: p, ratio: ratio(m, p) };
  };
  const step = row((s) => s.stepMs, plan?.predictedStepMs);
  const floor = plan?.floorMs ?? null;
  return {
    steps: last.length,
    links: LINKS.map((l) => ({ key: l.key, label: l.label, ...row((s) => s.io[l.io], plan?.linkBytes?.[l.plan]) })),
    wait: row((s) => s.io.waitMs, plan?.ioWaitMs),
    step: { ...step, floor, floorRatio: ratio(step.mean, floor) },
  };
}

/**
 * The memory a unit's home is in: a unit homed on the compute device lives in the GPU's memory, or in
 * the CPU's when the CPU computes (its device arena is CPU memory).
 */
export function memoryOf(home: Home, computeDevice: PlanResult['computeDevice']): 'gpu' | 'cpu' | 'ssd' {
  return home === 'device' ? computeDevice : home;
}

/** One row of the plan's "What trains": its bytes and the memories holding them (the device named as the one that computes). */
export interface TrainableRow {
  what: 'trainable' | 'frozen';
  label: string;
  bytes: number;
  where: { memory: 'gpu' | 'cpu' | 'ssd'; bytes: number }[];
}

/** The plan's trainable and frozen bytes apart, each with where it lives; null for a plan without them. */
export function trainableRows(plan: Pick<PlanResult, 'trainable' | 'computeDevice'>): TrainableRow[] | null {
  const t = plan.trainable;
  if (!t) return null;
  const rows = (what: TrainableRow['what'], label: string, b: { device: number; cpu: number; ssd: number }): TrainableRow => {
    const where = new Map<'gpu' | 'cpu' | 'ssd', number>();
    for (const home of ['device', 'cpu', 'ssd'] as const) {
      if (b[home] > 0) where.set(memoryOf(home, plan.computeDevice), (where.get(memoryOf(home, plan.computeDevice)) ?? 0) + b[home]);
    }
    return { what, label, bytes: b.device + b.cpu + b.ssd, where: [...where].map(([memory, bytes]) => ({ memory, bytes })) };
  };
  const trained = t.baseFrozen ? 'Adapters (with their noise and working copies)' : t.set === 'sparse' ? 'Block matrices (their smallest weights train)' : 'Every weight';
  return [
    rows('trainable', trained, t.bytes),
    rows('frozen', t.baseFrozen ? 'Base (read only: never updated or written back)' : 'Frozen weights', t.frozenBytes),
  ];
}

/** Units per memory a plan homes them in. */
export function unitsByMemory(plan: Pick<PlanResult, 'units' | 'computeDevice'>): { gpu: number; cpu: number; ssd: number } {
  const n = { gpu: 0, cpu: 0, ssd: 0 };
  for (const u of plan.units) n[memoryOf(u.home, plan.computeDevice)]++;
  return n;
}

/**
 * Whether the run streams units through the compute device, so the panel is worth showing: its plan
 * homes some units on the CPU or the SSD, its options put the blocks there, or a step moved bytes.
 */
export function streamsUnits(plan: RunPlan | null | undefined, offload: RunOptions['offload'] | undefined, samples: readonly IoSample[]): boolean {
  if (plan && plan.homes.cpu + plan.homes.ssd > 0) return true;
  if (offload === 'cpu' || offload === 'ssd') return true;
  return samples.some((s) => s.io.h2dBytes + s.io.d2hBytes + s.io.ssdReadBytes + s.io.ssdWriteBytes > 0);
}

/** Bytes as decimal megabytes: "0 MB", "0.52 MB", "12.3 MB", "1530 MB". */
export function formatMB(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '—';
  const mb = bytes / 1e6;
  if (mb === 0) return '0 MB';
  const a = Math.abs(mb);
  return `${mb.toFixed(a < 10 ? 2 : a < 100 ? 1 : 0)} MB`;
}

/** Milliseconds with a precision that suits them: "0.42 ms", "8.3 ms", "152 ms". */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const a = Math.abs(ms);
  return `${ms.toFixed(a < 10 ? 2 : a < 100 ? 1 : 0)} ms`;
}

/** A measured / predicted ratio: "1.07×"; "—" when there is none. */
export function formatRatio(r: number | null | undefined): string {
  if (r === null || r === undefined || !Number.isFinite(r)) return '—';
  return `${r.toFixed(r >= 100 ? 0 : 2)}×`;
}

/** The last two parts of a path: "/mnt/nvme0/spill" → "nvme0/spill". */
export function shortPath(p: string): string {
  return p.split(/[\\/]/).filter(Boolean).slice(-2).join('/') || p;
}

/**
 * A run's masters, update mode and spill folders in one line ("masters bf16 · updates on device · spill a/s, b/s"),
 * or null when the run sets none of them and streams no blocks.
 */
export function storageLine(
  options: Pick<RunOptions, 'masters' | 'updateOn' | 'spillDirs' | 'offload'> | null | undefined,
  plan: RunPlan | null | undefined,
  samples: readonly IoSample[] = [],
): string | null {
  if (!options) return null;
  return formatStorage(runStorage(options, streamsUnits(plan, options.offload, samples)));
}

/** A run summary's storage (RunSummary.storage) in one line with short folder names; null when it has none. */
export function formatStorage(s: RunStorage | null | undefined): string | null {
  return s ? formatRunStorage(s, shortPath) : null;
}
