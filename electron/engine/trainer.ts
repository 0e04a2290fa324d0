// The training loop: MeZO steps on the native engine, evaluation, the seed
// log, and saving the fine-tuned model. Runs inside the engine host process
// (see host.ts); it never touches the parent's state.
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';

import { batchIndices, loadExamples, loadTokenizer, splitRows } from '../data/index.js';
import type { TaskTemplate, TokenizedExample } from '../data/index.js';
import { encodeSafetensors, loadModelInfo } from '../model/index.js';
import type { ModelInfo } from '../model/index.js';
import { packBatch } from './batch.js';
import { findStaleSpillFiles } from './spill-files.js';
import { DiskWriteError, byteLength, diskBytes, formatBytes, freeSpace, writeFolderAtomic } from './safe-write.js';
import type { FolderFile, FreeSpace, WriteFolderOptions } from './safe-write.js';
import { loadNative } from './native.js';
import { HOME } from './native.js';
import type { MasterPrecision, NativeEngine, NativeScoreResult, PhaseTimes, TierInfo, TierPlacement } from './native.js';
import { engineSpec } from './spec.js';
import { planFor } from './plan-result.js';
import { meanExampleTokens } from './example-tokens.js';
import { planSummary } from './planner.js';
import type { Plan } from './planner.js';
import { resolveDataDir } from '../services/paths.js';
import { agreeOnControl, agreeOnStart, checkLayout, dataHash, rankLayout, rankSteps, scoreShared, shardOf, waitForRankZero, writeAllowanceMs } from './dist-train.js';
import type { Parallel, RankLayout, RankStep } from './dist-train.js';
import type { World } from './world.js';

/** Bytes (or ms) per step on each link: host → device, device → host, SSD read, SSD write. */
export interface LinkFigures {
  h2d: number;
  d2h: number;
  ssd_read: number;
  ssd_write: number;
}

/** What the start event says of the plan: the planner's summary, plus its per-link predictions. */
export type PlanSummary = ReturnType<typeof planSummary> & {
  /** Bytes per step per link, as planned. */
  link_bytes: LinkFigures;
  /** Time per step per link, ms; null without a calibration. */
  link_ms: LinkFigures | null;
  /** The predicted step less its compute (what the compute path waits for streamed units), ms; null without a calibration. */
  io_wait_ms: number | null;
};

export function runPlanSummary(p: Plan): PlanSummary {
  const t = p.times;
  const l = p.linkBytesPerStep;
  const hostUpdateMs = t && 'hostUpdateMs' in t ? Number(t.hostUpdateMs) || 0 : 0;
  return {
    ...planSummary(p),
    link_bytes: { h2d: l.hostToDevice, d2h: l.deviceToHost, ssd_read: l.ssdRead, ssd_write: l.ssdWrite },
    link_ms: t ? { h2d: t.hostToDeviceMs, d2h: t.deviceToHostMs, ssd_read: t.ssdReadMs, ssd_write: t.ssdWriteMs } : null,
    io_wait_ms: t && p.predictedStepMs !== null ? Math.max(0, p.predictedStepMs - t.computeMs - hostUpdateMs) : null,
  };
}

/** What one step moved on each link (deltas of the engine's cumulative tier counters) and how long the compute path waited for streamed units. */
export interface StepIo {
  h2d_bytes: number;
  d2h_bytes: number;
  ssd_read_bytes: number;
  ssd_write_bytes: number;
  wait_ms: number;
}

/** The step's I/O from the tier counters read before and after it; undefined when the engine reports no tiers. */
export function stepIo(before: TierInfo | undefined, after: TierInfo | undefined, times: Pick<PhaseTimes, 'ioMs'>): StepIo | undefined {
  if (!before || !after) return undefined;
  const delta = (k: 'h2dBytes' | 'd2hBytes' | 'ssdReadBytes' | 'ssdWriteBytes') => Math.max(0, (Number(after[k]) || 0) - (Number(before[k]) || 0));
  return {
    h2d_bytes: delta('h2dBytes'),
    d2h_bytes: delta('d2hBytes'),
    ssd_read_bytes: delta('ssdReadBytes'),
    ssd_write_bytes: delta('ssdWriteBytes'),
    wait_ms: Math.max(0, Number(times.ioMs) || 0),
  };
}

export type Schedule = 'constant' | 'linear' | 'cosine';
export type NoiseKind = 'gaussian' | 'rademacher';

export interface TrainOptions {
  model: string;
  train: string;
  /** Held-out file; without it a fraction of the training file is held out. */
  eval?: string;
  evalFraction: number;
  task: TaskTemplate;
  steps: number;
  batchSize: number;
  lr: number;
  eps: number;
  weightDecay: number;
  q: number;
  schedule: Schedule;
  warmupSteps: number;
  noise: NoiseKind;
  seed: number;
  /** Evaluate every N steps (0: only at the start and the end). */
  evalEvery: number;
  /** At most this many held-out examples per evaluation (0: all). */
  evalMax: number;
  threads: number;
  maxLength?: number;
  /** Folder to save the fine-tuned model into (created; must not exist or be empty). */
  out?: string;
  /** Evaluate before the first step. */
  zeroShot: boolean;
  /** Write a checkpoint every N steps into checkpointDir (0: only on request and on stop). */
  checkpointEvery?: number;
  /** Folder receiving checkpoints, one sub-folder per step (the two newest are kept). */
  checkpointDir?: string;
  /** Continue from a checkpoint folder written by a previous run of the same options. */
  resumeFrom?: string;
  /** Where the transformer blocks live between visits to the compute device (default: resident);
   *  'auto': the planner places each block under gpuMem / cpuMem / ssdMem. */
  offload?: 'none' | 'cpu' | 'ssd' | 'auto';
  /** Budgets for offload 'auto', bytes (absent: unlimited; ssdMem defaults to the spill folder's free space). */
  gpuMem?: number;
  cpuMem?: number;
  ssdMem?: number;
  /** Spill folder for offload 'ssd' and 'auto'. */
  spillDir?: string;
  /** Several spill folders (drives): SSD blocks are striped over them; overrides spillDir. */
  spillDirs?: string[];
  /** SSD tier: rewrite a block every K updates (pending updates are replayed on read). */
  writeBackEvery?: number;
  /** Where streamed blocks are updated: by the planner's cost model (auto, default), at home, or on the device with write-back. */
  updateOn?: 'auto' | 'home' | 'device';
  /** Precision of the masters: fp32 (default), or bf16 / fp16 with stochastic rounding of updates. */
  masters?: MasterPrecision;
  /** Engine processes (ranks) sharing each step, started with mpirun (default 1: this process alone). */
  ranks?: number;
  /** How the ranks share a step: data (default), perturbation, or 2d with `groups` perturbation groups. */
  parallel?: Parallel;
  /** --parallel 2d: perturbation groups (each of ranks / groups data-parallel ranks). */
  groups?: number;
  /** Seconds a rank waits for the others at an exchange before it names them and ends the run (default 120). */
  rankTimeout?: number;
  /** Open MPI host file: ranks across machines. */
  hostfile?: string;
}

export const DEFAULT_RANK_TIMEOUT_S = 120;

/** The spill folders of the options: spillDirs when given, else spillDir. */
export function spillFoldersOf(o: Pick<TrainOptions, 'spillDir' | 'spillDirs'>): string[] {
  return o.spillDirs?.length ? o.spillDirs : o.spillDir ? [o.spillDir] : [];
}

/** The engine placement for the offload options: blocks on the CPU or the SSD, the rest resident. */
export function placementFor(
  o: Pick<TrainOptions, 'offload' | 'spillDir' | 'spillDirs' | 'writeBackEvery' | 'updateOn' | 'masters'>,
  units: { kind: string }[],
): TierPlacement | undefined {
  const masters = o.masters && o.masters !== 'fp32' ? { masters: o.masters } : {};
  if (!o.offload || o.offload === 'none') return Object.keys(masters).length ? { homes: units.map(() => HOME.device), ...masters } : undefined;
  if (o.offload === 'auto') throw new Error("offload 'auto' is placed by the planner (planPlacement)");
  const dirs = spillFoldersOf(o);
  if (o.offload === 'ssd' && !dirs.length) throw new Error('offload to the SSD needs a spill folder (--spill DIR)');
  const home = o.offload === 'cpu' ? HOME.cpu : HOME.ssd;
  return {
    homes: units.map((u) => (u.kind === 'block' ? home : HOME.device)),
    spillDir: dirs[0],
    ...(dirs.length > 1 ? { spillDirs: dirs } : {}),
    writeBackEvery: o.writeBackEvery ?? 1,
    ...(o.updateOn === 'device' ? { deviceUpdate: units.map((u) => u.kind === 'block') } : {}),
    ...masters,
  };
}

/**
 * offload 'auto': the planner's placement under the budgets (the engine computes on the CPU here),
 * with the predicted step time from the cached calibration (measured and cached when absent).
 */
export async function planPlacement(
  o: TrainOptions,
  info: ModelInfo,
  maxLength: number,
  /** Mean tokens per training example (all its sequences), when the data is known: the step's compute. */
  meanExampleTokens?: number,
): Promise<{ placement: TierPlacement | undefined; plan: Plan }> {
  const { plan } = await planFor({
    ...(meanExampleTokens ? { tokensPerStep: meanExampleTokens * o.batchSize } : {}),
    model: info,
    computeDevice: 'cpu',
    budgets: { device: o.gpuMem, cpu: o.cpuMem, ssd: o.ssdMem },
    spillDir: spillFoldersOf(o)[0] ?? null,
    spillDirs: spillFoldersOf(o),
    updateMode: o.updateOn ?? 'auto',
    precision: o.masters === 'bf16' ? 'bf16' : o.masters === 'fp16' ? 'fp16' : 'f32',
    batchSize: o.batchSize,
    maxLength,
    q: o.q,
    writeBackEvery: o.writeBackEvery,
    dataDir: resolveDataDir(),
    calibrate: 'measure',
    calibrationBytes: 64 * 2 ** 20,
    threads: o.threads > 0 ? o.threads : defaultThreads(),
  });
  if (!plan.feasible) throw new Error(`the plan does not fit: ${plan.shortfalls.join('; ')}`);
  const streamed = plan.count.cpu + plan.count.ssd > 0;
  const dirs = plan.spillDirs.length ? plan.spillDirs : spillFoldersOf(o);
  const placement: TierPlacement | undefined = streamed
    ? {
        homes: plan.homes,
        spillDir: dirs[0],
        ...(dirs.length > 1 ? { spillDirs: dirs } : {}),
        writeBackEvery: o.writeBackEvery ?? 1,
        deviceUpdate: plan.deviceUpdate,
        // The read-ahead the plan budgeted for (lowered when the CPU budget is tight).
        prefetch: plan.prefetch,
        stageSlots: plan.stageSlots,
        ...(o.masters && o.masters !== 'fp32' ? { masters: o.masters } : {}),
      }
    : o.masters && o.masters !== 'fp32'
      ? { homes: plan.homes, masters: o.masters }
      : undefined;
  return { placement, plan };
}

export const TRAIN_DEFAULTS: Omit<TrainOptions, 'model' | 'train' | 'task'> = {
  evalFraction: 0.1,
  steps: 1000,
  batchSize: 16,
  lr: 1e-6,
  eps: 1e-3,
  weightDecay: 0,
  q: 1,
  schedule: 'constant',
  warmupSteps: 0,
  noise: 'gaussian',
  seed: 0,
  evalEvery: 0,
  evalMax: 0,
  threads: 0,
  zeroShot: true,
};

export interface StartEvent {
  type: 'start';
  model: string;
  architecture: string;
  parameters: number;
  train_examples: number;
  eval_examples: number;
  steps: number;
  batch_size: number;
  threads: number;
  backend: string;
  /** offload 'auto': the planner's summary (homes per tier, predicted step and floor, ms). */
  plan?: PlanSummary;
  /** Several ranks: how they share a step, and where each runs. */
  world?: {
    size: number;
    parallel: Parallel;
    groups: number;
    shards: number;
    library: string;
    timeout_s: number;
    ranks: { rank: number; host: string; pid: number; local_rank: number; threads: number }[];
  };
}
export interface StepEvent {
  type: 'step';
  step: number;
  loss: number;
  loss_plus: number;
  loss_minus: number;
  projected_grad: number;
  lr: number;
  step_ms: number;
  tokens_per_s: number;
  skipped: boolean;
  seed: string;
  /** Engine time per phase of this step (noise, forward, head, update, total), ms. */
  times: PhaseTimes;
  /** Bytes moved per link during this step and the compute path's wait for streamed units; absent when the engine reports no tiers. */
  io?: StepIo;
  /** Several ranks: each rank's share of this step and its timings. */
  ranks?: RankStep[];
}
export interface EvalEvent {
  type: 'eval';
  step: number;
  loss: number;
  accuracy: number | null;
  examples: number;
  eval_ms: number;
}
export interface DoneEvent {
  type: 'done';
  status: 'completed' | 'stopped';
  steps: number;
  final_loss: number | null;
  eval: EvalEvent | null;
  zero_shot: EvalEvent | null;
  skipped_steps: number;
  out: string | null;
  wall_s: number;
}
export interface LogEvent {
  type: 'log';
  message: string;
}
export interface CheckpointEvent {
  type: 'checkpoint';
  step: number;
  path: string;
  bytes: number;
}
export type TrainEvent = StartEvent | StepEvent | EvalEvent | DoneEvent | LogEvent | CheckpointEvent;

/**
 * A run resumes in the precision its checkpoint was trained in (the checkpoint holds that
 * format's values, so loading them is exact): taken from the checkpoint when not given,
 * refused when given differently.
 */
async function resumedMasters(o: TrainOptions): Promise<MasterPrecision> {
  const state = await resumeState(o.resumeFrom as string);
  const saved = (state.options?.masters ?? 'fp32') as MasterPrecision;
  if (o.masters !== undefined && o.masters !== saved) {
    throw new Error(`${o.resumeFrom} was trained with ${saved} masters; resume it with --masters ${saved} (not ${o.masters})`);
  }
  return saved;
}

/** What a checkpoint folder records beside the model, in spillway.json. */
export interface CheckpointState {
  status: 'checkpoint' | 'completed' | 'stopped';
  steps_done: number;
  steps_planned: number;
  base_model: string;
  options: Partial<TrainOptions>;
}

export interface SeedLogEntry {
  step: number;
  seed: string;
  /** lr_t * g / q: the coefficient of z in the update. */
  coef: number;
  projected_grad: number;
  lr: number;
  skipped: boolean;
}

export function scheduledLr(o: Pick<TrainOptions, 'lr' | 'schedule' | 'warmupSteps' | 'steps'>, step: number): number {
  if (o.warmupSteps > 0 && step < o.warmupSteps) return (o.lr * (step + 1)) / o.warmupSteps;
  const T = Math.max(1, o.steps);
  switch (o.schedule) {
    case 'constant':
      return o.lr;
    case 'linear':
      return o.lr * (1 - step / T);
    case 'cosine':
      return o.lr * 0.5 * (1 + Math.cos((Math.PI * step) / T));
  }
}

/** Cooperative stop: set `stopped` and call the engine's cancel. */
export class StopSignal {
  stopped = false;
  /** Set to ask for a checkpoint after the current step. */
  checkpointRequested = false;
  private engine: NativeEngine | null = null;
  attach(e: NativeEngine): void {
    this.engine = e;
  }
  stop(): void {
    this.stopped = true;
    this.engine?.cancel();
  }
}

function isCancelled(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: string }).code === 'ECANCELLED';
}

export async function scoreExamples(
  engine: NativeEngine,
  examples: TokenizedExample[],
  chunk: number,
): Promise<{ loss: number; accuracy: number | null; results: NativeScoreResult[] }> {
  let lossSum = 0;
  let correct = 0;
  let classified = 0;
  const results: NativeScoreResult[] = [];
  for (let i = 0; i < examples.length; i += chunk) {
    const r = await engine.score(packBatch(examples.slice(i, i + chunk)));
    results.push(r);
    for (const l of r.exampleLoss) lossSum += l;
    for (const c of r.correct) {
      if (c >= 0) {
        classified++;
        correct += c;
      }
    }
  }
  return {
    loss: examples.length ? lossSum / examples.length : NaN,
    accuracy: classified ? correct / classified : null,
    results,
  };
}

export interface Loaded {
  info: ModelInfo;
  engine: NativeEngine;
  plan?: Plan;
  train: TokenizedExample[];
  eval: TokenizedExample[];
}

export async function loadForTraining(o: TrainOptions, emit: (e: TrainEvent) => void, ranksHere = 1): Promise<Loaded> {
  const info = await loadModelInfo(o.resumeFrom ?? o.model);
  if (!info.tokenizer) throw new Error(`${info.dir} has no tokenizer (tokenizer.json, or vocab.json + merges.txt)`);
  const tokenizer = await loadTokenizer(info.dir);
  const maxLength = Math.min(o.maxLength ?? info.config.maxPositions, info.config.maxPositions);
  const all = await loadExamples(o.train, o.task, tokenizer, { maxLength });
  let train = all;
  let evalSet: TokenizedExample[] = [];
  if (o.eval) {
    evalSet = await loadExamples(o.eval, o.task, tokenizer, { maxLength });
  } else if (o.evalFraction > 0) {
    const split = splitRows(all, { evalFraction: o.evalFraction, seed: o.seed });
    train = split.train;
    evalSet = split.eval;
  }
  if (train.length === 0) throw new Error(`${o.train} has no training examples`);
  if (o.evalMax > 0 && evalSet.length > o.evalMax) evalSet = evalSet.slice(0, o.evalMax);
  for (const ex of [...train, ...evalSet]) {
    for (const s of ex.sequences) {
      for (const t of s.tokens) {
        if (t >= info.config.vocabSize) {
          throw new Error(`${ex.source}: token id ${t} is outside the model's vocabulary (${info.config.vocabSize}); ` +
            'the tokenizer does not belong to this model');
        }
      }
    }
  }
  for (const dir of spillFoldersOf(o)) {
    const stale = await findStaleSpillFiles(dir);
    if (stale.length) {
      const gb = (stale.reduce((n, f) => n + f.bytes, 0) / 1e9).toFixed(2);
      emit({ type: 'log', message: `${dir} holds ${stale.length} spill file(s) (${gb} GB) from engines that ended uncleanly; delete them with spillway doctor --spill ${dir} --clean-spill` });
    }
  }
  const native = loadNative();
  // Ranks on one machine share its cores.
  const threads = o.threads > 0 ? o.threads : Math.max(1, Math.floor(defaultThreads() / ranksHere));
  // --gpu-mem is enforced by the engine too: an allocation beyond it is a clear error, not the device's OOM.
  const engine = new native.Engine({ threads, ...(o.gpuMem !== undefined ? { deviceMemory: o.gpuMem } : {}) });
  emit({ type: 'log', message: `loading ${info.name} (${info.config.hfArchitecture})` });
  if (o.offload === 'auto') {
    const { placement, plan } = await planPlacement(
      o,
      info,
      // Activations for --max-length when given, else for the longest sequence present.
      o.maxLength !== undefined ? maxLength : Math.min(maxLength, Math.max(1, ...[...train, ...evalSet].flatMap((ex) => ex.sequences.map((s) => s.tokens.length)))),
      meanExampleTokens(train),
    );
    emit({ type: 'log', message: `plan: ${plan.count.device} units on the device, ${plan.count.cpu} on the CPU, ${plan.count.ssd} on the SSD` });
    await engine.load(engineSpec(info), placement);
    return { info, engine, train, eval: evalSet, plan };
  }
  await engine.load(engineSpec(info), placementFor(o, info.units));
  return { info, engine, train, eval: evalSet };
}

export function defaultThreads(): number {
  const n = Number(process.env.SPILLWAY_THREADS);
  if (Number.isInteger(n) && n > 0) return n;
  return Math.max(1, availableParallelism());
}

/**
 * Trains in this process, or (world) as one rank of a distributed run: every rank trains its
 * share of each step, rank 0 alone writes (checkpoints, the seed log, the model) and emits.
 */
export async function train(o: TrainOptions, emit: (e: TrainEvent) => void, signal = new StopSignal(), world?: World): Promise<DoneEvent> {
  validateOptions(o);
  if (world && world.size !== (o.ranks ?? 1)) throw new Error(`the run asks for ${o.ranks ?? 1} ranks; ${world.size} were started`);
  if (o.resumeFrom) o = { ...o, masters: await resumedMasters(o) };
  const t0 = Date.now();
  if (!world || world.rank === 0) {
    if (o.out) await checkOutFolder(o.out);
    await preflightDiskSpace(o);
  }
  const loaded = await loadForTraining(o, emit, world?.localSize ?? 1);
  try {
    return await trainLoaded(o, emit, signal, loaded, t0, world);
  } finally {
    // Frees the spill file and device memory now: a host process that exits never garbage-collects.
    loaded.engine.close();
  }
}

async function trainLoaded(
  o: TrainOptions,
  emit: (e: TrainEvent) => void,
  signal: StopSignal,
  loaded: Awaited<ReturnType<typeof loadForTraining>>,
  t0: number,
  world?: World,
): Promise<DoneEvent> {
  const { info, engine, train: trainSet, eval: evalSet, plan } = loaded;
  // A rank never cancels a step midway (the others would wait for its losses): stops are taken
  // by every rank at the same step boundary (agreeOnControl).
  if (!world) signal.attach(engine);
  const einfo = engine.info();
  const layout: RankLayout | null = world ? rankLayout(world.size, o.parallel ?? 'data', o.groups) : null;
  const timeoutMs = (o.rankTimeout ?? DEFAULT_RANK_TIMEOUT_S) * 1000;
  // The others wait for rank 0's writes: the rank timeout plus the model's bytes at 50 MB/s.
  const writeWaitMs = writeAllowanceMs(timeoutMs, info.parameterCount * 4);
  let worldStart: StartEvent['world'];
  if (world && layout) {
    checkLayout(layout, o.q, Math.min(o.batchSize, trainSet.length));
    const starts = await agreeOnStart(world, {
      threads: einfo.threads ?? 1,
      trainExamples: trainSet.length,
      evalExamples: evalSet.length,
      parameters: info.parameterCount,
      dataHash: dataHash(trainSet),
    });
    worldStart = {
      size: world.size,
      parallel: o.parallel ?? 'data',
      groups: layout.groups,
      shards: layout.shards,
      library: world.info.library,
      timeout_s: timeoutMs / 1000,
      ranks: world.info.ranks.map((r) => ({ rank: r.rank, host: r.host, pid: r.pid, local_rank: r.localRank, threads: starts[r.rank].threads })),
    };
  }
  emit({
    type: 'start',
    model: info.name,
    architecture: info.config.hfArchitecture,
    parameters: info.parameterCount,
    train_examples: trainSet.length,
    eval_examples: evalSet.length,
    steps: o.steps,
    batch_size: o.batchSize,
    threads: einfo.threads ?? 1,
    backend: einfo.backend ?? 'cpu',
    ...(plan ? { plan: runPlanSummary(plan) } : {}),
    ...(worldStart ? { world: worldStart } : {}),
  });

  const evalChunk = Math.max(8, o.batchSize * 2);
  const evaluate = async (step: number): Promise<EvalEvent | null> => {
    if (evalSet.length === 0) return null;
    const te = Date.now();
    const r = world ? await scoreShared(world, engine, evalSet, evalChunk) : await scoreExamples(engine, evalSet, evalChunk);
    const ev: EvalEvent = { type: 'eval', step, loss: r.loss, accuracy: r.accuracy, examples: evalSet.length, eval_ms: Date.now() - te };
    emit(ev);
    return ev;
  };

  let seedLog: SeedLogEntry[] = [];
  let zeroShot: EvalEvent | null = null;
  let lastEval: EvalEvent | null = null;
  let lastLoss: number | null = null;
  let skipped = 0;
  let step = 0;
  let status: DoneEvent['status'] = 'completed';
  const runSeed = BigInt(o.seed);
  const baseModel = o.resumeFrom ? await resumeState(o.resumeFrom).then((r) => r.base_model) : info.dir;
  const side = await readSideFiles(info.dir);
  if (o.resumeFrom) {
    const state = await resumeState(o.resumeFrom);
    step = state.steps_done;
    seedLog = await readSeedLog(o.resumeFrom);
    if (seedLog.length !== step * o.q) {
      throw new Error(`${o.resumeFrom}: the seed log has ${seedLog.length} entries for ${step} steps; the checkpoint is damaged`);
    }
    emit({ type: 'log', message: `resuming from step ${step} (${o.resumeFrom})` });
  }
  // The newest complete checkpoint of this run: what a failed write leaves to resume from.
  let lastCheckpoint: { step: number; path: string } | null = o.resumeFrom ? { step, path: o.resumeFrom } : null;
  const intactNote = async (which: string): Promise<string> =>
    lastCheckpoint && (await isCompleteCheckpoint(lastCheckpoint.path))
      ? `the ${which} checkpoint (step ${lastCheckpoint.step}) is intact at ${lastCheckpoint.path}`
      : 'no earlier checkpoint of this run exists';
  const checkpoint = async (stepsDone: number): Promise<void> => {
    if (!o.checkpointDir) return;
    if (world && world.rank !== 0) {
      await waitForRankZero(world, `rank 0 writing the checkpoint of step ${stepsDone}`, writeWaitMs);
      return;
    }
    const dir = o.checkpointDir;
    const path = join(dir, `step-${String(stepsDone).padStart(8, '0')}`);
    const keep = () => [o.resumeFrom, lastCheckpoint?.path].filter((p): p is string => !!p);
    const { weightsBytes } = await saveFineTuned(
      engine,
      side,
      path,
      { status: 'checkpoint', steps_done: stepsDone, steps_planned: o.steps, base_model: baseModel, options: { ...o, out: undefined, resumeFrom: undefined } },
      seedLog,
      {
        what: 'checkpoint not written',
        note: () => intactNote('previous'),
        // Short of room: drop all but the newest checkpoint first (the two newest are kept otherwise).
        makeRoom: async () => (await pruneCheckpoints(dir, 1, keep())) > 0,
      },
    );
    lastCheckpoint = { step: stepsDone, path };
    emit({ type: 'checkpoint', step: stepsDone, path, bytes: weightsBytes });
    await pruneCheckpoints(dir, 2, keep());
    if (world) await waitForRankZero(world, `rank 0 writing the checkpoint of step ${stepsDone}`, writeWaitMs);
  };
  try {
    if (o.zeroShot && !o.resumeFrom) zeroShot = lastEval = await evaluate(0);
    while (step < o.steps) {
      // Several ranks: rank 0's requests, taken by every rank at this step.
      const control = world
        ? await agreeOnControl(world, signal.stopped, signal.checkpointRequested)
        : { stop: signal.stopped, checkpoint: signal.checkpointRequested };
      if (control.checkpoint) {
        signal.checkpointRequested = false;
        await checkpoint(step);
      }
      if (control.stop) {
        status = 'stopped';
        break;
      }
      const idx = batchIndices(o.seed, step, Math.min(o.batchSize, trainSet.length), trainSet.length);
      // Several ranks: this rank's shard of the global batch; the engine exchanges the losses.
      const mine = world && layout ? idx.slice(...shardOf(layout, world.rank, idx.length)) : idx;
      const batch = packBatch(mine.map((i) => trainSet[i]));
      const lr = scheduledLr(o, step);
      const tiersBefore = engine.info().tiers;
      const r = await engine.step(batch, {
        seed: runSeed,
        step,
        q: o.q,
        lr,
        eps: o.eps,
        weightDecay: o.weightDecay,
        noise: o.noise,
        ...(world && layout ? { dist: { groups: layout.groups, globalExamples: idx.length, timeoutMs } } : {}),
      });
      if (r.skipped) skipped++;
      r.seeds.forEach((s, j) => {
        seedLog.push({
          step,
          seed: s.toString(),
          coef: r.skipped ? 0 : (lr * r.projectedGrad[j]) / o.q,
          projected_grad: r.projectedGrad[j],
          lr,
          skipped: r.skipped,
        });
      });
      // The update is applied: the step counts as done whatever stops the run from here on (a stop
      // during the evaluation or the checkpoint below), so a checkpoint on stop holds as many
      // steps as its seed log and its weights have.
      step++;
      if (r.skipped) {
        emit({ type: 'log', message: `step ${step}: non-finite loss or projected gradient, update skipped` });
      }
      lastLoss = r.loss;
      const io = stepIo(tiersBefore, engine.info().tiers, r.times);
      // Every group of ranks covers the whole batch once.
      const tokens = r.ranks && layout ? r.ranks.reduce((n, t) => n + t.tokens, 0) / layout.groups : batch.tokens.length;
      emit({
        type: 'step',
        step,
        loss: r.loss,
        loss_plus: mean(r.lossPlus),
        loss_minus: mean(r.lossMinus),
        projected_grad: mean(r.projectedGrad),
        lr,
        step_ms: r.times.totalMs,
        tokens_per_s: (tokens / r.times.totalMs) * 1000,
        skipped: r.skipped,
        seed: r.seeds[0].toString(),
        times: r.times,
        ...(io ? { io } : {}),
        ...(world && r.ranks ? { ranks: rankSteps(world, r.ranks) } : {}),
      });
      if (o.evalEvery > 0 && step % o.evalEvery === 0 && step < o.steps) lastEval = await evaluate(step);
      if (o.checkpointEvery && step % o.checkpointEvery === 0 && step < o.steps) await checkpoint(step);
    }
  } catch (e) {
    if (!isCancelled(e)) throw e;
    status = 'stopped';
  }
  if (status === 'stopped') await checkpoint(step);
  if (status === 'completed' && o.steps > 0) lastEval = await evaluate(step);

  let out: string | null = null;
  if (o.out && world && world.rank !== 0) {
    out = resolve(o.out);
    await waitForRankZero(world, 'rank 0 saving the model', writeWaitMs);
  } else if (o.out) {
    out = resolve(o.out);
    await saveFineTuned(engine, side, out, {
      status,
      steps_done: step,
      steps_planned: o.steps,
      base_model: baseModel,
      options: { ...o, out: undefined, resumeFrom: undefined },
      eval: lastEval,
      zero_shot: zeroShot,
    }, seedLog, { what: 'model not saved', note: () => intactNote('last') });
    emit({ type: 'log', message: `saved ${status === 'completed' ? 'fine-tuned model' : `partial model (stopped at step ${step} of ${o.steps})`} to ${out}` });
    if (world) await waitForRankZero(world, 'rank 0 saving the model', writeWaitMs);
  }
  const done: DoneEvent = {
    type: 'done',
    status,
    steps: step,
    final_loss: lastLoss,
    eval: lastEval,
    zero_shot: zeroShot,
    skipped_steps: skipped,
    out,
    wall_s: (Date.now() - t0) / 1000,
  };
  emit(done);
  return done;
}

function mean(v: number[]): number {
  return v.reduce((a, b) => a + b, 0) / Math.max(1, v.length);
}

export function validateOptions(o: TrainOptions): void {
  const positiveInt = (name: string, v: number, min = 1) => {
    if (!Number.isInteger(v) || v < min) throw new Error(`${name} must be an integer >= ${min}, got ${v}`);
  };
  positiveInt('steps', o.steps, 0);
  positiveInt('batch size', o.batchSize);
  positiveInt('q', o.q);
  positiveInt('eval every', o.evalEvery, 0);
  positiveInt('seed', o.seed, 0);
  if (!(o.lr >= 0) || !Number.isFinite(o.lr)) throw new Error(`lr must be a finite number >= 0, got ${o.lr}`);
  if (!(o.eps > 0) || !Number.isFinite(o.eps)) throw new Error(`eps must be a positive number, got ${o.eps}`);
  if (!(o.weightDecay >= 0)) throw new Error(`weight decay must be >= 0, got ${o.weightDecay}`);
  if (!(o.evalFraction >= 0 && o.evalFraction < 1)) throw new Error(`eval fraction must be in [0, 1), got ${o.evalFraction}`);
  if (!['constant', 'linear', 'cosine'].includes(o.schedule)) throw new Error(`unknown schedule ${o.schedule} (constant, linear, cosine)`);
  if (!['gaussian', 'rademacher'].includes(o.noise)) throw new Error(`unknown noise ${o.noise} (gaussian, rademacher)`);
  if (o.offload !== undefined && !['none', 'cpu', 'ssd', 'auto'].includes(o.offload)) throw new Error(`unknown offload ${o.offload} (none, cpu, ssd, auto)`);
  for (const [name, v] of [['gpu-mem', o.gpuMem], ['cpu-mem', o.cpuMem], ['ssd-mem', o.ssdMem]] as const) {
    if (v !== undefined && !(Number.isFinite(v) && v >= 0)) throw new Error(`${name} must be a byte count >= 0, got ${v}`);
  }
  if (o.writeBackEvery !== undefined) positiveInt('write-back-every', o.writeBackEvery);
  if (o.updateOn !== undefined && !['auto', 'home', 'device'].includes(o.updateOn)) throw new Error(`unknown update mode ${o.updateOn} (auto, home, device)`);
  if (o.masters !== undefined && !['fp32', 'bf16', 'fp16'].includes(o.masters)) throw new Error(`unknown master precision ${o.masters} (fp32, bf16, fp16)`);
  if (o.ranks !== undefined) positiveInt('ranks', o.ranks);
  if (o.parallel !== undefined && !['data', 'perturbation', '2d'].includes(o.parallel)) throw new Error(`unknown parallelism ${o.parallel} (data, perturbation, 2d)`);
  if (o.rankTimeout !== undefined && !(o.rankTimeout > 0 && Number.isFinite(o.rankTimeout))) throw new Error(`rank timeout must be a positive number of seconds, got ${o.rankTimeout}`);
  if ((o.ranks ?? 1) > 1) {
    const l = rankLayout(o.ranks as number, o.parallel ?? 'data', o.groups);
    checkLayout(l, o.q, o.batchSize);
  }
}

async function checkOutFolder(out: string): Promise<void> {
  const { readdir } = await import('node:fs/promises');
  try {
    const entries = await readdir(out);
    if (entries.length > 0) throw new Error(`output folder ${out} is not empty; choose a new folder`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** The small files a saved model carries beside its weights, read once from the source folder. */
export interface ModelSideFiles {
  dir: string;
  config: Record<string, unknown>;
  files: Map<string, Buffer>;
}

const SIDE_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.json', 'merges.txt', 'generation_config.json'];

export async function readSideFiles(dir: string): Promise<ModelSideFiles> {
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const files = new Map<string, Buffer>();
  for (const f of SIDE_FILES) {
    try {
      files.set(f, await readFile(join(dir, f)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  return { dir, config, files };
}

export interface SaveOptions {
  /** The start of the error message when the folder cannot be written (default "model not saved"). */
  what?: string;
  /** Appended to that message (what is left intact). */
  note?: WriteFolderOptions['note'];
  /** Called when the free space is short before writing; returns whether it freed some. */
  makeRoom?: WriteFolderOptions['makeRoom'];
}

/**
 * Writes the model as a Hugging Face folder (float32 safetensors + config +
 * tokenizer files) plus spillway.json and the seed log. The folder appears
 * whole or not at all (see writeFolderAtomic): every file is written and
 * fsynced in a temporary sibling that is then renamed over `out`. The free
 * space is checked first; a full disk or any other write error throws a
 * DiskWriteError naming `out`, the bytes needed and the bytes free, after
 * removing the temporary, so that `out` and the checkpoints beside it stay
 * as they were. The side files come from memory, so the source folder may be
 * gone by now (a checkpoint that was resumed from and then pruned).
 */
export async function saveFineTuned(
  engine: NativeEngine,
  side: ModelSideFiles,
  out: string,
  meta: Record<string, unknown>,
  seedLog: SeedLogEntry[],
  so: SaveOptions = {},
): Promise<{ bytes: number; weightsBytes: number }> {
  const tensors = engine.tensorNames().map(({ name, shape }) => {
    const data = engine.getTensor(name);
    return { name, dtype: 'F32' as const, shape, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  });
  const weights = encodeSafetensors(tensors, { format: 'pt' }, join(out, 'model.safetensors'));
  const files: FolderFile[] = [
    { name: 'model.safetensors', data: weights },
    { name: 'config.json', data: JSON.stringify({ ...side.config, torch_dtype: 'float32' }, null, 2) + '\n' },
    ...[...side.files].map(([name, data]) => ({ name, data })),
    { name: 'seedlog.jsonl', data: seedLog.map((e) => JSON.stringify(e)).join('\n') + (seedLog.length ? '\n' : '') },
    { name: 'spillway.json', data: JSON.stringify({ base_model: side.dir, ...meta }, null, 2) + '\n' },
  ];
  const bytes = await writeFolderAtomic(out, files, { what: so.what ?? 'model not saved', note: so.note, makeRoom: so.makeRoom });
  return { bytes, weightsBytes: byteLength(weights) };
}

/** Bytes of one seed log line, generously (step, a 64-bit seed, three doubles). */
const SEED_LOG_LINE_BYTES = 192;

/**
 * The sizes of the files a checkpoint or saved model of this model holds,
 * estimated before loading it: float32 weights for every parameter, the
 * safetensors header, the side files, spillway.json and a seed log of
 * `logEntries` lines.
 */
async function estimatedSaveSizes(info: ModelInfo, o: TrainOptions, logEntries: number): Promise<number[]> {
  const header = 8 + 64 + info.tensors.reduce((n, t) => n + t.name.length + 80 + 12 * t.shape.length, 0);
  const sizes = [header + info.parameterCount * 4, JSON.stringify({ ...o }).length + 4096, logEntries * SEED_LOG_LINE_BYTES];
  for (const f of ['config.json', ...SIDE_FILES]) {
    const st = await stat(join(info.dir, f)).catch(() => null);
    if (st) sizes.push(st.size + (f === 'config.json' ? 256 : 0));
  }
  return sizes;
}

/**
 * Refuses to start a run whose checkpoint folder and output folder cannot
 * hold one checkpoint and the fine-tuned model (estimated from the model's
 * parameters), before the engine loads and before any step. Folders on the
 * same filesystem add up.
 */
export async function preflightDiskSpace(o: TrainOptions): Promise<void> {
  const targets: { dir: string; what: string; logEntries: number }[] = [];
  if (o.checkpointDir) targets.push({ dir: o.checkpointDir, what: 'one checkpoint', logEntries: Math.min(o.steps, o.checkpointEvery || o.steps) * o.q });
  if (o.out) targets.push({ dir: o.out, what: 'the fine-tuned model', logEntries: o.steps * o.q });
  if (targets.length === 0) return;
  const info = await loadModelInfo(o.resumeFrom ?? o.model);
  const groups = new Map<number, { fs: FreeSpace; dirs: string[]; whats: string[]; needed: number }>();
  for (const t of targets) {
    const fs = await freeSpace(t.dir);
    if (!fs) continue;
    const g = groups.get(fs.dev) ?? { fs, dirs: [], whats: [], needed: 0 };
    groups.set(fs.dev, g);
    if (!g.dirs.includes(t.dir)) g.dirs.push(t.dir);
    g.whats.push(t.what);
    g.needed += diskBytes(await estimatedSaveSizes(info, o, t.logEntries), fs.blockSize);
  }
  for (const g of groups.values()) {
    if (g.fs.free >= g.needed) continue;
    const where = g.dirs.join(' and ');
    throw new DiskWriteError(
      `cannot start training: not enough disk space at ${where} for ${g.whats.join(' and ')} ` +
        `(needs ${formatBytes(g.needed)}, ${formatBytes(g.fs.free)} free); free some space or choose another folder`,
      'ENOSPC',
      g.dirs[0],
      g.needed,
      g.fs.free,
      true,
    );
  }
}

/** Whether dir holds a complete checkpoint (its weights and spillway.json). */
async function isCompleteCheckpoint(dir: string): Promise<boolean> {
  const ok = async (f: string) => (await stat(join(dir, f)).catch(() => null))?.isFile() === true;
  return (await ok('spillway.json')) && (await ok('model.safetensors'));
}

export async function resumeState(dir: string): Promise<CheckpointState> {
  let raw: string;
  try {
    raw = await readFile(join(dir, 'spillway.json'), 'utf8');
  } catch {
    throw new Error(`${dir} is not a Spillway checkpoint (spillway.json is missing)`);
  }
  const state = JSON.parse(raw) as Partial<CheckpointState>;
  if (typeof state.steps_done !== 'number' || typeof state.base_model !== 'string') {
    throw new Error(`${join(dir, 'spillway.json')} does not describe a checkpoint (steps_done, base_model)`);
  }
  return state as CheckpointState;
}

export async function readSeedLog(dir: string): Promise<SeedLogEntry[]> {
  const text = await readFile(join(dir, 'seedlog.jsonl'), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as SeedLogEntry);
}

/** The newest complete checkpoint folder under dir, or null. */
export async function latestCheckpoint(dir: string): Promise<string | null> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => /^step-\d+$/.test(n)).sort();
  for (let i = names.length - 1; i >= 0; i--) {
    if (await isCompleteCheckpoint(join(dir, names[i]))) return join(dir, names[i]);
  }
  return null;
}

/**
 * Keeps the `keep` newest checkpoints, and never deletes the protected ones
 * (the one this run resumed from, its newest complete one). Returns how many it removed.
 */
async function pruneCheckpoints(dir: string, keep: number, protect: readonly string[] = []): Promise<number> {
  const names = (await readdir(dir)).filter((n) => /^step-\d+$/.test(n)).sort();
  const kept = new Set(protect.map((p) => resolve(p)));
  let removed = 0;
  for (const n of names.slice(0, Math.max(0, names.length - keep))) {
    if (kept.has(resolve(join(dir, n)))) continue;
    await rm(join(dir, n), { recursive: true, force: true });
    removed++;
  }
  return removed;
}
