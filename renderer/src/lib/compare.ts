// Comparing runs as tracker users expect: names that tell runs apart, the hyperparameters side by
// side with their differences marked, the curves by step or by time, and the compared data as CSV.

import type { RunOptions } from '../../../electron/common/contract.ts';
import { csvText } from '../../../electron/common/csv.ts';
import type { RunSeries } from './series.ts';

export interface ComparedRun {
  id: string;
  name: string;
  /** When the run started (ms since the epoch): the origin of its time axis. */
  startedAt: number | null;
  options: RunOptions;
  series: RunSeries;
}

export type XAxis = 'step' | 'time';

/** Legend names: the run's name, with its id where another compared run has the same name. */
export function legendNames(runs: readonly Pick<ComparedRun, 'id' | 'name'>[]): string[] {
  const count = new Map<string, number>();
  for (const r of runs) count.set(r.name, (count.get(r.name) ?? 0) + 1);
  return runs.map((r) => ((count.get(r.name) ?? 0) > 1 ? `${r.name} · ${r.id}` : r.name));
}

/** The options in the order people read a run's set-up; any others follow alphabetically. */
const ORDER = [
  'model', 'train', 'eval', 'evalFraction', 'task', 'steps', 'batchSize', 'lr', 'eps', 'weightDecay', 'q', 'noise',
  'schedule', 'warmupSteps', 'seed', 'maxLength', 'evalEvery', 'evalMax', 'zeroShot', 'checkpointEvery', 'masters',
  'offload', 'gpuMem', 'cpuMem', 'ssdMem', 'updateOn', 'spillDir', 'spillDirs', 'writeBackEvery', 'device', 'gemm', 'threads', 'out',
];

const LABELS: Record<string, string> = {
  model: 'model', train: 'training data', eval: 'evaluation data', evalFraction: 'eval fraction', 'task.kind': 'task',
  'task.labelWords': 'label words', 'task.labelMap': 'label map', 'task.prompt': 'prompt', steps: 'steps',
  batchSize: 'batch size', lr: 'learning rate', eps: 'perturbation ε', weightDecay: 'weight decay', q: 'q (perturbations per step)',
  noise: 'noise', schedule: 'schedule', warmupSteps: 'warm-up steps', seed: 'seed', maxLength: 'max tokens',
  evalEvery: 'evaluate every', evalMax: 'eval examples (max)', zeroShot: 'zero-shot evaluation', checkpointEvery: 'checkpoint every',
  masters: 'masters', offload: 'offload', gpuMem: 'GPU budget', cpuMem: 'CPU budget', ssdMem: 'SSD budget', updateOn: 'update on',
  spillDir: 'spill folder', spillDirs: 'spill folders', writeBackEvery: 'write back every', device: 'device asked', gemm: 'GEMM precision',
  threads: 'threads', out: 'output folder',
};

export interface HyperparameterRow {
  key: string;
  label: string;
  /** One per run, as shown ('' where a run does not set it). */
  values: string[];
  differs: boolean;
}

function flatten(o: Record<string, unknown>, prefix = ''): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [k, v] of Object.entries(o)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && key === 'task') {
      for (const [kk, vv] of flatten(v as Record<string, unknown>, key)) out.set(kk, vv);
    } else if (v !== undefined) {
      out.set(key, v);
    }
  }
  return out;
}

const show = (v: unknown): string => (v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v));

/** Every option any compared run has, one row each, marked where the runs differ. */
export function hyperparameterTable(runs: readonly Pick<ComparedRun, 'options'>[]): HyperparameterRow[] {
  const flat = runs.map((r) => flatten(r.options as unknown as Record<string, unknown>));
  const keys = [...new Set(flat.flatMap((f) => [...f.keys()]))];
  const rank = (k: string) => {
    const i = ORDER.indexOf(k.split('.')[0]);
    return i < 0 ? ORDER.length : i;
  };
  keys.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  return keys.map((key) => {
    const values = flat.map((f) => show(f.get(key)));
    return { key, label: LABELS[key] ?? key, values, differs: values.some((v) => v !== values[0]) };
  });
}

/**
 * What the comparison shows, one row per run and step (evaluations on the row of their step):
 * run, step, seconds since the run started when the step ended, loss, smoothed loss, eval loss
 * and accuracy.
 */
export function comparisonCsv(runs: readonly ComparedRun[]): string {
  const rows: unknown[][] = [['run_id', 'run_name', 'step', 'elapsed_s', 'loss', 'smoothed_loss', 'eval_loss', 'eval_accuracy']];
  for (const r of runs) {
    const s = r.series;
    const byStep = new Map<number, unknown[]>();
    const row = (step: number) => {
      let v = byStep.get(step);
      if (!v) byStep.set(step, (v = [r.id, r.name, step, null, null, null, null, null]));
      return v;
    };
    const smoothed = s.smoothedForDisplay();
    s.loss.forEach((p, i) => {
      const v = row(p.x);
      v[3] = r.startedAt === null ? null : s.secondsAt(p.x, r.startedAt);
      v[4] = p.y;
      v[5] = smoothed[i]?.y ?? null;
    });
    for (const p of s.evalLoss) row(p.x)[6] = p.y;
    for (const p of s.evalAccuracy) row(p.x)[7] = p.y;
    rows.push(...[...byStep.values()].sort((a, b) => (a[2] as number) - (b[2] as number)));
  }
  return csvText(rows);
}
