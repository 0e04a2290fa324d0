// The contract's PlanResult from the planner's Plan, and the whole path from a
// plan request to a plan (model info, budgets, cached calibration), shared by
// the service facade, `spillway plan` and training.
import { statfs } from 'node:fs/promises';

import type { PlanResult } from '../common/contract.js';
import { loadModelInfo } from '../model/index.js';
import type { ModelInfo } from '../model/index.js';
import { cachedCalibration, calibration, ratesOf } from './calibration.js';
import type { Calibration } from './calibration.js';
import { makePlan, plannerModel } from './planner.js';
import type { Plan, Precision } from './planner.js';

export interface PlanOptions {
  model: string | ModelInfo;
  computeDevice?: 'cpu' | 'gpu';
  budgets: { device?: number; cpu?: number; ssd?: number };
  spillDir?: string | null;
  precision?: Precision;
  batchSize: number;
  maxLength: number;
  q?: number;
  writeBackEvery?: number;
  /** Folder of calibration.json (null: nothing cached). */
  dataDir: string | null;
  /** 'cached': use the cache only; 'measure': measure when not cached; 'recalibrate': always measure. */
  calibrate: 'cached' | 'measure' | 'recalibrate';
  /** SSD test file size for a measurement. */
  calibrationBytes?: number;
  threads?: number;
}

/** Free bytes of the spill folder's filesystem, or undefined. */
async function freeBytes(dir: string): Promise<number | undefined> {
  try {
    const s = await statfs(dir);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

export async function planFor(o: PlanOptions): Promise<{ plan: Plan; info: ModelInfo; calibration: Calibration | null }> {
  const info = typeof o.model === 'string' ? await loadModelInfo(o.model) : o.model;
  const spillDir = o.spillDir ?? null;
  let cal: Calibration | null = null;
  if (o.calibrate === 'cached') {
    cal = o.dataDir ? await cachedCalibration(o.dataDir, spillDir) : null;
  } else {
    cal = await calibration({ dataDir: o.dataDir, spillDir, bytes: o.calibrationBytes, threads: o.threads, recalibrate: o.calibrate === 'recalibrate' });
  }
  const budgets = { ...o.budgets };
  if (budgets.ssd === undefined && spillDir) budgets.ssd = await freeBytes(spillDir);
  const maxLength = Math.min(o.maxLength, info.config.maxPositions || o.maxLength);
  const plan = makePlan({
    model: plannerModel(info),
    computeDevice: o.computeDevice ?? 'cpu',
    budgets,
    spillDir,
    precision: o.precision ?? 'f32',
    batchSize: o.batchSize,
    maxLength,
    q: o.q,
    writeBackEvery: o.writeBackEvery,
    rates: cal ? ratesOf(cal) : null,
  });
  return { plan, info, calibration: cal };
}

/** The contract's form: on the CPU backend the device arena is CPU memory, so device homes read 'cpu'. */
export function toPlanResult(plan: Plan, modelDir: string): PlanResult {
  const onCpu = plan.computeDevice === 'cpu';
  const tier = (h: Plan['units'][number]['home']) => (h === 'device' ? (onCpu ? 'cpu' : 'gpu') : h);
  const t = plan.times;
  const finite = t && Object.values(t).every((x) => Number.isFinite(x));
  return {
    model: modelDir,
    computeDevice: plan.computeDevice,
    strategy: plan.count.cpu + plan.count.ssd === 0 ? 'all-resident' : 'tiered',
    units: plan.units.map((u) => ({ kind: u.kind, index: u.index, parameters: u.parameters, bytes: u.bytes, home: tier(u.home) })),
    memory: onCpu ? { gpu: 0, cpu: plan.memory.device + plan.memory.cpu, ssd: plan.memory.ssd } : { gpu: plan.memory.device, cpu: plan.memory.cpu, ssd: plan.memory.ssd },
    breakdown: plan.breakdown,
    linkBytesPerStep: plan.linkBytesPerStep,
    predictedStepMs: plan.predictedStepMs,
    floorMs: plan.floorMs,
    bound: plan.bound,
    timeTerms: finite ? t : null,
    calibratedAt: plan.calibratedAt,
    feasible: plan.feasible,
    shortfalls: plan.shortfalls,
    notes: plan.notes,
  };
}
