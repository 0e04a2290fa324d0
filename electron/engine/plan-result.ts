// The contract's PlanResult from the planner's Plan, and the whole path from a
// plan request to a plan (model info, budgets, cached calibration), shared by
// the service facade, `spillway plan` and training.
import { statfs } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';

import type { Gemm, Masters, PlanResult } from '../common/contract.js';
import { loadModelInfo } from '../model/index.js';
import type { ModelInfo } from '../model/index.js';
import { positionLimit } from '../model/index.js';
import { blockShapeOf, cachedCalibration, calibration, fsDeviceOf, mountOf, ratesOf } from './calibration.js';
import type { Calibration } from './calibration.js';
import { defaultGpuBudget } from './device.js';
import type { ResolvedDevice } from './device.js';
import { formatBytes } from './safe-write.js';
import { engineThreads } from './native.js';
import { makePlan, plannerModel } from './planner.js';
import type { ComputeSource, Plan, PlanInput, PlanTrainable, UpdateMode, UpdateOn } from './planner.js';

export interface PlanOptions {
  model: string | ModelInfo;
  /**
   * The device that will compute, as --device resolved, and its GEMM precision: the plan is made for
   * it (calibrated on it; on a GPU without a device budget, its free memory less the headroom is the
   * budget). Without it: computeDevice and calibrationDevice say.
   */
  device?: { resolved: ResolvedDevice; gemm: Gemm };
  computeDevice?: 'cpu' | 'gpu';
  budgets: { device?: number; cpu?: number; ssd?: number };
  /** Spill folders (several: SSD blocks striped over them). */
  spillDirs?: string[];
  /** Master precision (default fp32). */
  masters?: Masters;
  batchSize: number;
  maxLength: number;
  q?: number;
  writeBackEvery?: number;
  /** Where streamed units are updated (default 'auto': by the cost model). */
  updateMode?: UpdateMode;
  /** SSD read-ahead depth asked for (default DEFAULT_PREFETCH); the plan lowers it when the CPU budget is short. */
  prefetch?: number;
  /** Tokens a step really computes, when known from the data (PlanInput.tokensPerStep). */
  tokensPerStep?: number;
  /** What trains (default every weight). */
  trainable?: PlanTrainable;
  /** Folder of calibration.json (null: nothing cached). */
  dataDir: string | null;
  /** 'cached': use the cache only; 'measure': measure when not cached; 'recalibrate': always measure. */
  calibrate: 'cached' | 'measure' | 'recalibrate';
  /** SSD test file size for a measurement. */
  calibrationBytes?: number;
  threads?: number;
  /** The device calibration measures: 'cpu' (default) or 'cuda[:N]' (the compute device of a GPU plan). */
  calibrationDevice?: string;
  /** The GEMM precision a CUDA calibration runs with (default $SPILLWAY_GEMM, else fp32). */
  gemm?: Gemm;
}

/** The device part of a PlanResult: which device, its GEMMs, and the default budget taken on a GPU. */
export type PlanDevice = NonNullable<PlanResult['device']>;

/** The engine's SSD read-ahead depth (blocks) unless told otherwise: what a plan asks for. */
export const DEFAULT_PREFETCH = 2;

/** Free bytes of the spill folder's filesystem, or undefined. */
async function freeBytes(dir: string): Promise<number | undefined> {
  try {
    const s = await statfs(dir);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

export async function planFor(
  o: PlanOptions,
): Promise<{ plan: Plan; info: ModelInfo; calibration: Calibration | null; prefetchRequested: number; device: PlanDevice | null; input: PlanInput }> {
  const info = typeof o.model === 'string' ? await loadModelInfo(o.model) : o.model;
  const dirs = (o.spillDirs ?? []).map((d) => resolve(d));
  const maxLength = Math.min(o.maxLength, positionLimit(info.config));
  const model = plannerModel(info);
  const block = blockShapeOf(model.config, o.batchSize, maxLength);
  const cuda = o.device?.resolved.cuda ?? null;
  const computeDevice = o.device ? (cuda ? 'gpu' : 'cpu') : (o.computeDevice ?? 'cpu');
  const calibrationDevice = o.device ? o.device.resolved.id : (o.calibrationDevice ?? 'cpu');
  const gemm = o.device?.gemm ?? o.gemm;
  let cal: Calibration | null = null;
  if (o.calibrate === 'cached') {
    cal = o.dataDir ? await cachedCalibration(o.dataDir, dirs, calibrationDevice, { threads: o.threads, block, gemm }) : null;
  } else {
    cal = await calibration({
      dataDir: o.dataDir,
      spillDirs: dirs,
      device: calibrationDevice,
      gemm,
      bytes: o.calibrationBytes,
      threads: o.threads,
      block,
      recalibrate: o.calibrate === 'recalibrate',
    });
  }
  const budgets = { ...o.budgets };
  // A GPU plan without a device budget: what the GPU has free, less the headroom.
  const defaultBudget = cuda && budgets.device === undefined ? defaultGpuBudget(cuda) : null;
  if (defaultBudget) budgets.device = defaultBudget.bytes;
  // One folder: its free space is the SSD budget; several: each filesystem's free space bounds its folders' files.
  if (budgets.ssd === undefined && dirs.length === 1) budgets.ssd = await freeBytes(dirs[0]);
  const spillInfo = await Promise.all(dirs.map(async (d) => ({ device: await fsDeviceOf(d), freeBytes: await freeBytes(d), mount: await mountOf(d) })));
  const input: PlanInput = {
    model,
    computeDevice,
    budgets,
    spillDirs: dirs,
    spillInfo,
    masters: o.masters ?? 'fp32',
    batchSize: o.batchSize,
    maxLength,
    ...(o.tokensPerStep ? { tokensPerStep: o.tokensPerStep } : {}),
    q: o.q,
    writeBackEvery: o.writeBackEvery,
    updateMode: o.updateMode,
    ...(o.trainable ? { trainable: o.trainable } : {}),
    prefetch: o.prefetch ?? DEFAULT_PREFETCH,
    // As the engine runs them: at most the cores present (binding.cpp).
    threads: Math.min(engineThreads(o.threads), Math.max(1, availableParallelism())),
    rates: cal ? ratesOf(cal) : null,
  };
  const plan = makePlan(input);
  if (cal?.block?.source === 'failed') plan.notes.push(`The block forward could not be measured (${cal.block.detail}); compute is estimated from FLOPs.`);
  if (cal && plan.computeDevice === 'gpu' && cal.backend === 'cpu') {
    plan.notes.push('The rates are those of the CPU backend (no CUDA device was calibrated): copies, compute and updates on the GPU will differ.');
  }
  if (defaultBudget && cuda) {
    plan.notes.push(
      `The device budget is ${cuda.id}'s ${defaultBudget.freeBytes === null ? 'memory' : 'free memory'} (${formatBytes(defaultBudget.freeBytes ?? defaultBudget.totalBytes)}) ` +
        `less ${formatBytes(defaultBudget.headroomBytes)} of headroom (the CUDA context and cuBLAS' workspace, the allocator, other processes): ${formatBytes(defaultBudget.bytes)}; --gpu-mem sets another.`,
    );
  }
  const device: PlanDevice | null = o.device
    ? { id: o.device.resolved.id, name: o.device.resolved.name, gemm: o.device.gemm, defaultBudget, reason: o.device.resolved.reason }
    : null;
  return { plan, info, calibration: cal, prefetchRequested: o.prefetch ?? DEFAULT_PREFETCH, device, input };
}

/** What the plan says beyond the contract's PlanResult (the CLI's JSON carries it; the contract strips it). */
export interface PlanExtras {
  units: (PlanResult['units'][number] & { updateOn: UpdateOn; updateMs: number | null; deviceToHostBytes: number; spillIndex: number | null })[];
  spillDirs: string[];
  ssd: Plan['ssd'];
  updateMode: UpdateMode;
  update: Plan['update'];
  /** Per unit, for Engine.load's TierPlacement.deviceUpdate. */
  deviceUpdate: boolean[];
  compute: Plan['compute'];
  /** Where each compute figure comes from. */
  computeSource: { block: ComputeSource; head: ComputeSource } | null;
  prefetch: number;
  prefetchRequested: number;
  bytesPerParameter: number;
}

/**
 * The contract's form: on the CPU backend the device arena is CPU memory, so its memory counts as the CPU's.
 * `prefetchRequested`: the read-ahead depth the plan was asked for (planFor's result says it).
 */
export function toPlanResult(plan: Plan, modelDir: string, prefetchRequested = DEFAULT_PREFETCH, device: PlanDevice | null = null): PlanResult & PlanExtras {
  const onCpu = plan.computeDevice === 'cpu';
  const t = plan.times;
  const finite = t && Object.values(t).every((x) => Number.isFinite(x));
  return {
    model: modelDir,
    computeDevice: plan.computeDevice,
    ...(device ? { device } : {}),
    strategy: plan.count.cpu + plan.count.ssd === 0 ? 'all-resident' : 'tiered',
    units: plan.units.map((u) => ({
      kind: u.kind,
      index: u.index,
      parameters: u.parameters,
      bytes: u.bytes,
      home: u.home,
      updateOn: u.updateOn,
      updateMs: u.updateMs,
      deviceToHostBytes: u.deviceToHostBytes,
      spillIndex: u.spillIndex,
    })),
    memory: onCpu ? { gpu: 0, cpu: plan.memory.device + plan.memory.cpu, ssd: plan.memory.ssd } : { gpu: plan.memory.device, cpu: plan.memory.cpu, ssd: plan.memory.ssd },
    breakdown: plan.breakdown,
    trainable: plan.trainable,
    linkBytesPerStep: plan.linkBytesPerStep,
    predictedStepMs: plan.predictedStepMs,
    floorMs: plan.floorMs,
    bound: plan.bound,
    timeTerms: finite ? t : null,
    calibratedAt: plan.calibratedAt,
    feasible: plan.feasible,
    shortfalls: plan.shortfalls,
    notes: plan.notes,
    spillDirs: plan.spillDirs,
    ssd: plan.ssd,
    updateMode: plan.update.mode,
    update: plan.update,
    deviceUpdate: plan.deviceUpdate,
    compute: plan.compute,
    computeSource: plan.compute ? { block: plan.compute.blockSource, head: plan.compute.headSource } : null,
    prefetch: plan.prefetch,
    prefetchRequested,
    bytesPerParameter: plan.bytesPerParameter,
  };
}
