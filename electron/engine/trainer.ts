// The training loop: MeZO steps on the native engine, evaluation, the seed
// log, and saving the fine-tuned model. Runs inside the engine host process
// (see host.ts); it never touches the parent's state.
import { readdir, readFile, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';

import { batchIndices, loadExamples, loadTokenizer, splitRows } from '../data/index.js';
import type { TokenizedExample } from '../data/index.js';
import { TrainOptions, filled } from '../common/options.js';
import type { Masters } from '../common/options.js';
import type { EvalMetric, RunPlan, StepIo, StepMetric } from '../common/contract.js';
import { encodeSafetensors, loadModelInfo } from '../model/index.js';
import type { ModelInfo } from '../model/index.js';
import { packBatch } from './batch.js';
import { findStaleSpillFiles } from './spill-files.js';
import { DiskWriteError, byteLength, diskBytes, formatBytes, freeSpace, writeFolderAtomic } from './safe-write.js';
import type { FolderFile, FreeSpace, WriteFolderOptions } from './safe-write.js';
import { engineThreads, loadNative } from './native.js';
import type { NativeEngine, NativeScoreResult, PhaseTimes, TierInfo, TierPlacement } from './native.js';
import { engineSpec } from './spec.js';
import { TRAINED_FILE, isAdapterRun, mergedTensors, peftFiles, peftLora, restoreTrained, trainSpecOf, trainedFile } from './adapters.js';
import { planFor } from './plan-result.js';
import { meanExampleTokens, trainingMaxLength } from './example-tokens.js';
import { runPlan } from './planner.js';
import type { Plan } from './planner.js';
import { resolveDataDir } from '../services/paths.js';
import { isFile, statOrNull } from '../node/files.js';
import { agreeOnControl, agreeOnStart, dataHash, rankSteps, scoreShared, waitForRankZero, writeAllowanceMs } from './dist-train.js';
import { checkLayout, rankLayout, shardOf } from '../common/ranks.js';
import type { RankLayout } from '../common/ranks.js';
import type { World } from './world.js';

export { TrainOptions };

/** The step's I/O from the tier counters read before and after it; undefined when the engine reports no tiers. */
export function stepIo(before: TierInfo | undefined, after: TierInfo | undefined, times: Pick<PhaseTimes, 'ioMs'>): StepIo | undefined {
  if (!before || !after) return undefined;
  const delta = (k: 'h2dBytes' | 'd2hBytes' | 'ssdReadBytes' | 'ssdWriteBytes') => Math.max(0, (Number(after[k]) || 0) - (Number(before[k]) || 0));
  return {
    h2dBytes: delta('h2dBytes'),
    d2hBytes: delta('d2hBytes'),
    ssdReadBytes: delta('ssdReadBytes'),
    ssdWriteBytes: delta('ssdWriteBytes'),
    waitMs: Math.max(0, Number(times.ioMs) || 0),
  };
}

/** The masters for Engine.load: absent for fp32 (the engine's default). */
const mastersOf = (o: Pick<TrainOptions, 'masters'>) => (o.masters && o.masters !== 'fp32' ? { masters: o.masters } : {});

/** The engine placement for the offload options: blocks on the CPU or the SSD, the rest resident. */
export function placementFor(
  o: Pick<TrainOptions, 'offload' | 'spillDirs' | 'writeBackEvery' | 'updateOn' | 'masters'>,
  units: { kind: string }[],
): TierPlacement | undefined {
  const masters = mastersOf(o);
  if (!o.offload || o.offload === 'none') return masters.masters ? { homes: units.map(() => 'device'), ...masters } : undefined;
  if (o.offload === 'auto') throw new Error("offload 'auto' is placed by the planner (planPlacement)");
  const dirs = o.spillDirs ?? [];
  if (o.offload === 'ssd' && !dirs.length) throw new Error('offload to the SSD needs a spill folder (--spill DIR)');
  const home = o.offload;
  return {
    homes: units.map((u) => (u.kind === 'block' ? home : 'device')),
    spillDirs: dirs,
    writeBackEvery: o.writeBackEvery ?? 1,
    ...(o.updateOn === 'device' ? { deviceUpdate: units.map((u) => u.kind === 'block') } : {}),
    ...masters,
  };
}

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
    spillDirs: o.spillDirs ?? [],
    updateMode: o.updateOn ?? 'auto',
    masters: o.masters ?? 'fp32',
    batchSize: o.batchSize,
    maxLength,
    q: o.q,
    writeBackEvery: o.writeBackEvery,
    dataDir: resolveDataDir(),
    calibrate: 'measure',
    calibrationBytes: 64 * 2 ** 20,
    threads: engineThreads(o.threads),
  });
  if (!plan.feasible) throw new Error(`the plan does not fit: ${plan.shortfalls.join('; ')}`);
  const streamed = plan.count.cpu + plan.count.ssd > 0;
  const placement: TierPlacement | undefined = streamed
    ? {
        homes: plan.homes,
        spillDirs: plan.spillDirs,
        writeBackEvery: o.writeBackEvery ?? 1,
        deviceUpdate: plan.deviceUpdate,
        // The read-ahead the plan budgeted for (lowered when the CPU budget is tight).
        prefetch: plan.prefetch,
        stageSlots: plan.stageSlots,
        ...mastersOf(o),
      }
    : o.masters && o.masters !== 'fp32'
      ? { homes: plan.homes, ...mastersOf(o) }
      : undefined;
  return { placement, plan };
}

export interface StartEvent {
  type: 'start';
  model: string;
  architecture: string;
  parameters: number;
  trainExamples: number;
  evalExamples: number;
  steps: number;
  batchSize: number;
  threads: number;
  backend: string;
  /** offload 'auto': the plan the run was placed by (homes per tier, predicted step, floor and links). */
  plan?: RunPlan;
  /** Several ranks: how they share a step, and where each runs. */
  world?: {
    size: number;
    parallel: TrainOptions['parallel'];
    groups: number;
    shards: number;
    library: string;
    timeoutS: number;
    ranks: { rank: number; host: string; pid: number; localRank: number; threads: number }[];
  };
}
/** A step as the contract's StepMetric has it (less the run id), with its seed and the engine's time per phase. */
export type StepEvent = { type: 'step' } & Omit<StepMetric, 'runId' | 'io'> & {
  seed: string;
  /** Engine time per phase of this step (noise, forward, head, update, total), ms. */
  times: PhaseTimes;
  /** Bytes moved per link during this step and the compute path's wait for streamed units; absent when the engine reports no tiers. */
  io?: StepIo;
};
export type EvalEvent = { type: 'eval' } & Omit<EvalMetric, 'runId'>;
export interface DoneEvent {
  type: 'done';
  status: 'completed' | 'stopped';
  steps: number;
  finalLoss: number | null;
  eval: EvalEvent | null;
  zeroShot: EvalEvent | null;
  skippedSteps: number;
  out: string | null;
  wallS: number;
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
async function resumedMasters(o: TrainOptions): Promise<Masters> {
  const state = await resumeState(o.resumeFrom as string);
  const saved = (state.options?.masters ?? 'fp32') as Masters;
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

/** The model folder a run loads: its checkpoint's weights when resuming, except for an adapter run (its base, frozen). */
async function modelFolder(o: TrainOptions): Promise<string> {
  if (!o.resumeFrom) return o.model;
  return isAdapterRun(o) ? (await resumeState(o.resumeFrom)).base_model : o.resumeFrom;
}

/** Loads the model and the data; as a rank of a run (world), with the placement rank 0 planned and its share of the cores. */
export async function loadForTraining(o: TrainOptions, emit: (e: TrainEvent) => void, world?: World): Promise<Loaded> {
  const ranksHere = world?.localSize ?? 1;
  const info = await loadModelInfo(await modelFolder(o));
  if (!info.tokenizer) throw new Error(`${info.dir} has no tokenizer (tokenizer.json, or vocab.json + merges.txt)`);
  const tokenizer = await loadTokenizer(info.dir);
  const maxLength = trainingMaxLength(info, o.maxLength);
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
  for (const dir of o.spillDirs ?? []) {
    const stale = await findStaleSpillFiles(dir);
    if (stale.length) {
      const gb = (stale.reduce((n, f) => n + f.bytes, 0) / 1e9).toFixed(2);
      emit({ type: 'log', message: `${dir} holds ${stale.length} spill file(s) (${gb} GB) from engines that ended uncleanly; delete them with spillway doctor --spill ${dir} --clean-spill` });
    }
  }
  const native = loadNative();
  // The ranks on one machine share its cores.
  const threads = o.threads > 0 ? o.threads : Math.max(1, Math.floor(engineThreads() / ranksHere));
  const cores = availableParallelism();
  if (threads > cores) emit({ type: 'log', message: `${threads} threads asked for; this machine has ${cores} cores: the engine runs ${cores}` });
  // --gpu-mem is enforced by the engine too: an allocation beyond it is a clear error, not the device's OOM.
  const engine = new native.Engine({ threads, ...(o.gpuMem !== undefined ? { deviceMemory: o.gpuMem } : {}) });
  emit({ type: 'log', message: `loading ${info.name} (${info.config.hfArchitecture})` });
  if (o.offload === 'auto') {
    // Several ranks: rank 0 plans (and calibrates) alone, and every rank places its blocks as it
    // did (the sliced transfer needs the same homes everywhere).
    let planned: Awaited<ReturnType<typeof planPlacement>> | null = null;
    if (!world || world.rank === 0) {
      planned = await planPlacement(
        o,
        info,
        // Activations for --max-length when given, else for the longest sequence present.
        o.maxLength !== undefined ? maxLength : Math.min(maxLength, Math.max(1, ...[...train, ...evalSet].flatMap((ex) => ex.sequences.map((s) => s.tokens.length)))),
        meanExampleTokens(train),
      );
      const { plan } = planned;
      emit({ type: 'log', message: `plan: ${plan.count.device} units on the device, ${plan.count.cpu} on the CPU, ${plan.count.ssd} on the SSD` });
    }
    const placement = world
      ? (JSON.parse(await world.broadcastText(JSON.stringify(planned?.placement ?? null), "rank 0's placement")) as TierPlacement | null) ?? undefined
      : planned?.placement;
    await loadTrainable(engine, info, slicedPlacement(o, placement, emit, world), o, emit);
    return { info, engine, train, eval: evalSet, ...(planned ? { plan: planned.plan } : {}) };
  }
  await loadTrainable(engine, info, slicedPlacement(o, placementFor(o, info.units), emit, world), o, emit);
  return { info, engine, train, eval: evalSet };
}

/** --sliced on a rank: the placement with the sliced transfer among the machine's ranks, when any block lives on the CPU. */
function slicedPlacement(o: TrainOptions, placement: TierPlacement | undefined, emit: (e: TrainEvent) => void, world?: World): TierPlacement | undefined {
  if (!world || !o.sliced) return placement;
  if (!placement?.homes.includes('cpu')) {
    emit({ type: 'log', message: 'no block lives on the CPU: --sliced has nothing to slice' });
    return placement;
  }
  if (world.localSize < 2) emit({ type: 'log', message: 'one rank on this machine: --sliced has no other rank to share blocks with' });
  return { ...placement, sliced: { timeoutMs: o.rankTimeout * 1000 } };
}

/** Loads the model with its trainable set, and an adapter run's trained tensors when it resumes. */
async function loadTrainable(engine: NativeEngine, info: ModelInfo, placement: TierPlacement | undefined, o: TrainOptions, emit: (e: TrainEvent) => void) {
  const loaded = await engine.load(engineSpec(info), placement, trainSpecOf(o));
  const t = loaded.trainable;
  if (t && o.trainable !== 'full') {
    const setup = t.setupSeconds >= 0.01 ? ` (set up in ${t.setupSeconds.toFixed(2)} s)` : '';
    emit({ type: 'log', message: `training ${t.elements.toLocaleString('en-US')} of ${info.parameterCount.toLocaleString('en-US')} parameters (${o.trainable})${setup}` });
  }
  if (o.resumeFrom && isAdapterRun(o)) await restoreTrained(engine, join(o.resumeFrom, TRAINED_FILE));
}

/**
 * Trains with options checked against the run options' schema (the engine host's boundary): defaults
 * filled, bounds enforced. In this process, or (world) as one rank of a run over several: every rank
 * trains its share of each step; rank 0 alone writes (checkpoints, the seed log, the model) and emits.
 */
export async function train(options: TrainOptions, emit: (e: TrainEvent) => void, signal = new StopSignal(), world?: World): Promise<DoneEvent> {
  let o = parseTrainOptions(options);
  checkTrainOptions(o);
  if (world && world.size !== o.ranks) throw new Error(`the run asks for ${o.ranks} ranks; ${world.size} were started`);
  if (o.resumeFrom) o = { ...o, masters: await resumedMasters(o) };
  const t0 = Date.now();
  if (!world || world.rank === 0) {
    if (o.out) await checkOutFolder(o.out);
    await preflightDiskSpace(o);
  }
  const loaded = await loadForTraining(o, emit, world);
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
  const layout: RankLayout | null = world ? rankLayout(world.size, o.parallel, o.groups) : null;
  const timeoutMs = o.rankTimeout * 1000;
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
      parallel: o.parallel,
      groups: layout.groups,
      shards: layout.shards,
      library: world.info.library,
      timeoutS: o.rankTimeout,
      ranks: world.info.ranks.map((r) => ({ rank: r.rank, host: r.host, pid: r.pid, localRank: r.localRank, threads: starts[r.rank].threads })),
    };
  }
  emit({
    type: 'start',
    model: info.name,
    architecture: info.config.hfArchitecture,
    parameters: info.parameterCount,
    trainExamples: trainSet.length,
    evalExamples: evalSet.length,
    steps: o.steps,
    batchSize: o.batchSize,
    threads: einfo.threads ?? 1,
    backend: einfo.backend ?? 'cpu',
    ...(plan ? { plan: runPlan(plan) } : {}),
    ...(worldStart ? { world: worldStart } : {}),
  });

  const evalChunk = Math.max(8, o.batchSize * 2);
  const evaluate = async (step: number): Promise<EvalEvent | null> => {
    if (evalSet.length === 0) return null;
    const te = Date.now();
    const r = world ? await scoreShared(world, engine, evalSet, evalChunk) : await scoreExamples(engine, evalSet, evalChunk);
    const at = Date.now();
    const ev: EvalEvent = { type: 'eval', step, at, loss: r.loss, accuracy: r.accuracy, examples: evalSet.length, evalMs: at - te };
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
    const { weightsBytes } = await saveRun(
      engine,
      side,
      path,
      { status: 'checkpoint', steps_done: stepsDone, steps_planned: o.steps, base_model: baseModel, options: { ...o, out: undefined, resumeFrom: undefined } },
      seedLog,
      { ...o, merge: false },
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
        estimator: o.estimator,
        ...(world && layout ? { dist: { groups: layout.groups, globalExamples: idx.length, timeoutMs } } : {}),
      });
      if (r.skipped) skipped++;
      r.seeds.forEach((s, j) => {
        seedLog.push({
          step,
          seed: s.toString(),
          coef: r.skipped ? 0 : r.coef[j],
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
        const why = o.estimator === 'fzoo' && r.sigma === 0 ? 'every probe gave the same loss (nothing to normalise by)' : 'non-finite loss or projected gradient';
        emit({ type: 'log', message: `step ${step}: ${why}, update skipped` });
      }
      lastLoss = r.loss;
      const io = stepIo(tiersBefore, engine.info().tiers, r.times);
      // Every group of ranks covers the whole batch once.
      const tokens = r.ranks && layout ? r.ranks.reduce((n, t) => n + t.tokens, 0) / layout.groups : batch.tokens.length;
      emit({
        type: 'step',
        step,
        at: Date.now(),
        loss: r.loss,
        lossPlus: mean(r.lossPlus),
        lossMinus: mean(r.lossMinus),
        projectedGrad: mean(r.projectedGrad),
        lr,
        stepMs: r.times.totalMs,
        tokensPerS: (tokens / r.times.totalMs) * 1000,
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
    await saveRun(engine, side, out, {
      status,
      steps_done: step,
      steps_planned: o.steps,
      base_model: baseModel,
      options: { ...o, out: undefined, resumeFrom: undefined },
      eval: lastEval,
      zero_shot: zeroShot,
    }, seedLog, o, { what: 'model not saved', note: () => intactNote('last') });
    const what = isAdapterRun(o) ? `${o.trainable === 'lora' ? 'LoRA' : 'LoLDU'} adapter (peft)${o.merge ? ' and the merged model in merged/' : ''}` : 'fine-tuned model';
    emit({ type: 'log', message: `saved ${status === 'completed' ? what : `partial ${what} (stopped at step ${step} of ${o.steps})`} to ${out}` });
    if (world) await waitForRankZero(world, 'rank 0 saving the model', writeWaitMs);
  }
  const done: DoneEvent = {
    type: 'done',
    status,
    steps: step,
    finalLoss: lastLoss,
    eval: lastEval,
    zeroShot,
    skippedSteps: skipped,
    out,
    wallS: (Date.now() - t0) / 1000,
  };
  emit(done);
  return done;
}

function mean(v: number[]): number {
  return v.reduce((a, b) => a + b, 0) / Math.max(1, v.length);
}

/** What the schema leaves to the trainer (checkCombined in common/options.ts has the rest): a run from the app always has an output folder. */
export function checkTrainOptions(o: TrainOptions): void {
  if (o.merge && !o.out) throw new Error('--merge needs --out (the merged model goes to --out/merged)');
}

/** The options as the schema reads them; a value out of its bounds is an error naming the option. */
export function parseTrainOptions(o: unknown): TrainOptions {
  const r = TrainOptions.safeParse(o);
  if (!r.success) throw new Error(r.error.issues.map((i) => `${i.path.join('.') || 'options'}: ${i.message}`).join('; '));
  const parsed = filled(r.data);
  // Several ranks: the layout must share the step (q among the perturbation groups, the batch among the shards).
  if (parsed.ranks > 1) checkLayout(rankLayout(parsed.ranks, parsed.parallel, parsed.groups), parsed.q, parsed.batchSize);
  return parsed;
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

/** The seed log and spillway.json every saved run folder carries. */
function runFiles(side: ModelSideFiles, meta: Record<string, unknown>, seedLog: SeedLogEntry[]): FolderFile[] {
  return [
    { name: 'seedlog.jsonl', data: seedLog.map((e) => JSON.stringify(e)).join('\n') + (seedLog.length ? '\n' : '') },
    { name: 'spillway.json', data: JSON.stringify({ base_model: side.dir, ...meta }, null, 2) + '\n' },
  ];
}

/** A whole model as a Hugging Face folder's files (float32 safetensors, config, tokenizer files), under `prefix`. */
function modelFiles(tensors: { name: string; shape: number[]; data: Float32Array }[], side: ModelSideFiles, out: string, prefix = ''): FolderFile[] {
  const weights = encodeSafetensors(
    tensors.map(({ name, shape, data }) => ({ name, dtype: 'F32' as const, shape, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) })),
    { format: 'pt' },
    join(out, prefix, 'model.safetensors'),
  );
  return [
    { name: `${prefix}model.safetensors`, data: weights },
    { name: `${prefix}config.json`, data: JSON.stringify({ ...side.config, torch_dtype: 'float32' }, null, 2) + '\n' },
    ...[...side.files].map(([name, data]) => ({ name: `${prefix}${name}`, data })),
  ];
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
  const tensors = engine.tensorNames().map(({ name, shape }) => ({ name, shape, data: engine.getTensor(name) }));
  const files = [...modelFiles(tensors, side, out), ...runFiles(side, meta, seedLog)];
  const bytes = await writeFolderAtomic(out, files, { what: so.what ?? 'model not saved', note: so.note, makeRoom: so.makeRoom });
  return { bytes, weightsBytes: byteLength(files[0].data) };
}

/**
 * Writes a run's result: the model as saveFineTuned writes it, or for an adapter run its folder:
 * the peft adapter (adapter_config.json, adapter_model.safetensors), the trained tensors by the
 * engine's names (trainable.safetensors: what a resume puts back), the tokenizer files, the seed
 * log and spillway.json; with `merge`, the base with the adapter merged in as a Hugging Face
 * folder in merged/ (beside the adapter, transformers would read the folder as a peft one).
 */
export async function saveRun(
  engine: NativeEngine,
  side: ModelSideFiles,
  out: string,
  meta: Record<string, unknown>,
  seedLog: SeedLogEntry[],
  o: Pick<TrainOptions, 'trainable' | 'rank' | 'loraAlpha' | 'merge'>,
  so: SaveOptions = {},
): Promise<{ bytes: number; weightsBytes: number }> {
  if (!isAdapterRun(o)) return saveFineTuned(engine, side, out, meta, seedLog, so);
  const lora = peftLora(engine, o);
  const adapter = peftFiles(lora, side.dir);
  const files = [
    ...adapter,
    trainedFile(engine),
    ...[...side.files].map(([name, data]) => ({ name, data })),
    ...runFiles(side, meta, seedLog),
    ...(o.merge ? modelFiles(mergedTensors(engine, lora), side, out, 'merged/') : []),
  ];
  const bytes = await writeFolderAtomic(out, files, { what: so.what ?? 'adapter not saved', note: so.note, makeRoom: so.makeRoom });
  return { bytes, weightsBytes: byteLength(adapter[1].data) };
}

/** Bytes of one seed log line, generously (step, a 64-bit seed, three doubles). */
const SEED_LOG_LINE_BYTES = 192;

/**
 * The sizes of the files a checkpoint or saved model of this model holds,
 * estimated before loading it: float32 weights for every parameter, the
 * safetensors header, the side files, spillway.json and a seed log of
 * `logEntries` lines.
 */
async function estimatedSaveSizes(info: ModelInfo, o: TrainOptions, logEntries: number, merged: boolean): Promise<number[]> {
  const header = 8 + 64 + info.tensors.reduce((n, t) => n + t.name.length + 80 + 12 * t.shape.length, 0);
  const model = header + info.parameterCount * 4;
  // An adapter run saves its adapter twice (peft's file and the trained tensors), and the merged model with --merge.
  const weights = isAdapterRun(o) ? 2 * adapterBytes(info, o) + (merged ? model : 0) : model;
  const sizes = [weights, JSON.stringify({ ...o }).length + 4096, logEntries * SEED_LOG_LINE_BYTES];
  for (const f of ['config.json', ...SIDE_FILES]) {
    const st = await statOrNull(join(info.dir, f));
    if (st) sizes.push(st.size + (f === 'config.json' ? 256 : 0));
  }
  return sizes;
}

/** An adapter's float32 bytes, generously (LoLDU keeps fewer: z and s, but saves B and A as a LoRA). */
function adapterBytes(info: ModelInfo, o: Pick<TrainOptions, 'targets' | 'rank'>): number {
  let floats = 0;
  for (const u of info.units) {
    if (u.kind !== 'block') continue;
    for (const t of o.targets) {
      const w = u.tensors[`${t}_w`];
      if (w && w.shape.length === 2) floats += o.rank * (w.shape[0] + w.shape[1]);
    }
  }
  return 4 * floats + 4096;
}

/**
 * Refuses to start a run whose checkpoint folder and output folder cannot
 * hold one checkpoint and the fine-tuned model (estimated from the model's
 * parameters), before the engine loads and before any step. Folders on the
 * same filesystem add up.
 */
export async function preflightDiskSpace(o: TrainOptions): Promise<void> {
  const targets: { dir: string; what: string; logEntries: number; merged: boolean }[] = [];
  if (o.checkpointDir) targets.push({ dir: o.checkpointDir, what: 'one checkpoint', logEntries: Math.min(o.steps, o.checkpointEvery || o.steps) * o.q, merged: false });
  if (o.out) targets.push({ dir: o.out, what: 'the fine-tuned model', logEntries: o.steps * o.q, merged: o.merge });
  if (targets.length === 0) return;
  const info = await loadModelInfo(await modelFolder(o));
  const groups = new Map<number, { fs: FreeSpace; dirs: string[]; whats: string[]; needed: number }>();
  for (const t of targets) {
    const fs = await freeSpace(t.dir);
    if (!fs) continue;
    const g = groups.get(fs.dev) ?? { fs, dirs: [], whats: [], needed: 0 };
    groups.set(fs.dev, g);
    if (!g.dirs.includes(t.dir)) g.dirs.push(t.dir);
    g.whats.push(t.what);
    g.needed += diskBytes(await estimatedSaveSizes(info, o, t.logEntries, t.merged), fs.blockSize);
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
  return (await isFile(join(dir, 'spillway.json'))) && ((await isFile(join(dir, 'model.safetensors'))) || (await isFile(join(dir, TRAINED_FILE))));
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
