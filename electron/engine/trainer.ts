// The training loop: MeZO steps on the native engine, evaluation, the seed
// log, checkpoints, and saving the fine-tuned model. Runs inside the engine
// host process (see host.ts); it never touches the parent's state.
//
// A run is checked whole before it is reported ready (and so recorded): its
// options, its folders, the checkpoint it resumes (verified, its run's, its
// trajectory), the model, every row of the data and the plan. What can still
// fail after that is the engine itself.
import { constants } from 'node:fs';
import { access, mkdir, readdir, readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';

import { batchIndices, loadTokenizer } from '../data/index.js';
import type { SpillwayTokenizer } from '../data/tokenizer.js';
import type { ExampleSet, TokenizedExample } from '../data/index.js';
import { TrainOptions, filled, trajectoryChanges } from '../common/options.js';
import type { Gemm, Masters } from '../common/options.js';
import type { EvalMetric, RunDevice, RunPlan, StepIo, StepMetric } from '../common/contract.js';
import { encodeSafetensors, loadModelInfo } from '../model/index.js';
import type { ModelInfo } from '../model/index.js';
import { packBatch } from './batch.js';
import { evaluateAnswers, generationConfigFor, generationDefaults } from './generate.js';
import { CheckpointError, isCompleteCheckpoint, openCheckpoint, otherRunsIn, pruneCheckpoints, STATE_FILE, TRAINED_FILE, withManifest } from './checkpoint.js';
import { adapterName, isAdapterRun, labelTokenIds, mergedTensors, mergedTokenTensors, peftFiles, peftLora, peftTokenFiles, peftTokens, restoreTrained, trainSpecOf, trainedFile } from './adapters.js';
import type { CheckpointState, OpenedCheckpoint, OptionChange, SeedLogEntry } from './checkpoint.js';
import { findStaleSpillFiles } from './spill-files.js';
import { DiskWriteError, byteLength, diskBytes, formatBytes, freeSpace, writeFolderAtomic } from './safe-write.js';
import type { FolderFile, FreeSpace, WriteFolderOptions } from './safe-write.js';
import { engineThreads, loadNative } from './native.js';
import type { NativeEngine, NativeScoreResult, PhaseTimes, TierInfo, TierPlacement } from './native.js';
import { engineSpec } from './spec.js';
import { planFor } from './plan-result.js';
import { trainingMaxLength } from './example-tokens.js';
import { runPlan } from './planner.js';
import type { Plan } from './planner.js';
import { prepareTrainingData } from './training-data.js';
import type { TrainingData } from './training-data.js';
import { resolveDataDir } from '../services/paths.js';
import { statOrNull } from '../node/files.js';
import { deviceListing, effectiveGemm, resolveDevice, runDevice } from './device.js';
import type { ResolvedDevice } from './device.js';
import { deviceFailure, resumeDeviceNote } from './device-errors.js';
import { agreeOnControl, agreeOnStart, dataHash, rankSteps, scoreShared, waitForRankZero, writeAllowanceMs } from './dist-train.js';
import { checkLayout, rankLayout, shardOf } from '../common/ranks.js';
import type { RankLayout } from '../common/ranks.js';
import type { World } from './world.js';

export { TrainOptions };
export type { CheckpointState, SeedLogEntry };

/**
 * Consecutive skipped steps (a non-finite loss or projected gradient: no update) after which a run
 * stops as failed. One such step is a glitch the run steps over; ten in a row mean the weights,
 * the learning rate or the data give NaN or Inf, and every further step would be skipped too.
 */
export const MAX_CONSECUTIVE_SKIPPED = 10;

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
  /** The device that will compute (default the CPU) and its GEMM precision: calibrated there, its free memory the default budget. */
  device?: PickedDevice,
): Promise<{ placement: TierPlacement | undefined; plan: Plan }> {
  const { plan } = await planFor({
    ...(meanExampleTokens ? { tokensPerStep: meanExampleTokens * o.batchSize } : {}),
    model: info,
    ...(device ? { device } : { computeDevice: 'cpu' as const }),
    budgets: { device: o.gpuMem, cpu: o.cpuMem, ssd: o.ssdMem },
    spillDirs: o.spillDirs ?? [],
    updateMode: o.updateOn ?? 'auto',
    trainable: { set: o.trainable, rank: o.rank, targets: o.targets, fraction: o.sparseFraction },
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
  /** The device --device resolved to, the GEMM precision it computes with, and the engine's name for it. */
  device: RunDevice;
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
/** The run is checked (options, folders, checkpoint, model, data, plan) and about to load the engine: it can start, so it is recorded. */
export interface ReadyEvent {
  type: 'ready';
}
export type TrainEvent = ReadyEvent | StartEvent | StepEvent | EvalEvent | DoneEvent | LogEvent | CheckpointEvent;

/** What the run checked before it starts: its options as it runs them, the model, the data and where the units go. */
export interface Prepared {
  o: TrainOptions;
  info: ModelInfo;
  data: TrainingData;
  /** The checkpoint it resumes, verified. */
  resume: OpenedCheckpoint | null;
  /** The options the resume changed on purpose (with those of earlier resumes). */
  optionChanges: OptionChange[];
  placement: TierPlacement | undefined;
  plan?: Plan;
  side: ModelSideFiles;
  /** The device --device resolved to, and the GEMM precision it computes with. */
  device: PickedDevice;
  /** The model's tokenizer, as the data was encoded with it. */
  tokenizer: SpillwayTokenizer;
}

/** A device --device resolved to (against the CUDA runtime's list) and the GEMM precision it runs. */
export interface PickedDevice {
  resolved: ResolvedDevice;
  gemm: Gemm;
}

/** Resolves --device and --gemm, saying in the log which device was taken and why. */
export function pickDevice(o: Pick<TrainOptions, 'device' | 'gemm'>, log: (message: string) => void): PickedDevice {
  const resolved = resolveDevice(o.device, deviceListing());
  log(resolved.reason);
  const { gemm, note } = effectiveGemm(o.gemm, resolved);
  if (note) log(note);
  return { resolved, gemm };
}

/**
 * Checks everything a run needs before it starts, in the order a person would fix them: options,
 * the checkpoint to resume, output folders, the model, the data (every row), the plan; then says
 * `ready`. Nothing here runs a step, so a mistake leaves no run behind.
 */
export async function prepareTraining(options: unknown, emit: (e: TrainEvent) => void, world?: World): Promise<Prepared> {
  let o = parseTrainOptions(options);
  checkTrainOptions(o);
  if (world && world.size !== o.ranks) throw new Error(`the run asks for ${o.ranks} ranks; ${world.size} were started`);
  const rankZero = !world || world.rank === 0;
  let resume: OpenedCheckpoint | null = null;
  let optionChanges: OptionChange[] = [];
  if (o.resumeFrom) {
    resume = await openCheckpoint(o.resumeFrom);
    ({ o, changes: optionChanges } = resumedOptions(o, resume, emit));
  }
  if (rankZero) {
    await checkOutputFolders(o);
    await preflightDiskSpace(o);
  }
  // An adapter run resumes over its frozen base; its checkpoint holds the adapters only.
  const info = await loadModelInfo(resume && isAdapterRun(o) ? resume.state.base_model : (o.resumeFrom ?? o.model));
  if (!info.tokenizer) throw new Error(`${info.dir} has no tokenizer (tokenizer.json, or vocab.json + merges.txt)`);
  const tokenizer = await loadTokenizer(info.dir);
  const maxLength = trainingMaxLength(info, o.maxLength);
  const log = (message: string) => emit({ type: 'log', message });
  const device = pickDevice(o, log);
  // On a GPU the planner places the blocks unless told otherwise: a model larger than the GPU streams.
  const offload = o.offload ?? (device.resolved.kind === 'cuda' ? 'auto' : 'none');
  const data = await prepareTrainingData({ ...o, maxLength }, info, tokenizer, log);
  try {
    for (const dir of o.spillDirs ?? []) {
      if (offload === 'ssd' || offload === 'auto') await checkSpillFolder(dir);
      const stale = await findStaleSpillFiles(dir);
      if (stale.length) {
        const gb = (stale.reduce((n, f) => n + f.bytes, 0) / 1e9).toFixed(2);
        log(`${dir} holds ${stale.length} spill file(s) (${gb} GB) from engines that ended uncleanly; delete them with spillway doctor --spill ${dir} --clean-spill`);
      }
    }
    let placement: TierPlacement | undefined;
    let plan: Plan | undefined;
    if (offload === 'auto') {
      // Several ranks: rank 0 plans (and calibrates) alone, and every rank places its blocks as it
      // did (the sliced transfer needs the same homes everywhere).
      if (rankZero) {
        // Activations for --max-length when given, else for the longest sequence seen.
        ({ placement, plan } = await planPlacement(o, info, o.maxLength !== undefined ? maxLength : Math.min(maxLength, data.maxTokens), data.meanTokens, device));
        log(`plan: ${plan.count.device} units on the device, ${plan.count.cpu} on the CPU, ${plan.count.ssd} on the SSD`);
      }
      if (world) placement = (JSON.parse(await world.broadcastText(JSON.stringify(placement ?? null), "rank 0's placement")) as TierPlacement | null) ?? undefined;
    } else {
      placement = placementFor({ ...o, offload }, info.units);
    }
    placement = slicedPlacement(o, placement, emit, world);
    const side = await readSideFiles(info.dir);
    emit({ type: 'ready' });
    return { o, info, data, resume, optionChanges, placement, plan, side, device, tokenizer };
  } catch (e) {
    await data.close();
    throw e;
  }
}

/**
 * The options a resume runs with, checked against the checkpoint: the run it names, the precision it
 * holds, and the options that shape the trajectory (refused when changed, unless the resume allows
 * it; then the change is logged and kept with the checkpoints that follow).
 */
function resumedOptions(o: TrainOptions, ck: OpenedCheckpoint, emit: (e: TrainEvent) => void): { o: TrainOptions; changes: OptionChange[] } {
  const { state, dir } = ck;
  if (o.runId && state.run_id && state.run_id !== o.runId) {
    throw new CheckpointError(dir, `was written by run ${state.run_id}, not by run ${o.runId}; a run resumes from its own checkpoints only`);
  }
  const saved = (state.options.masters ?? 'fp32') as Masters;
  if (o.masters !== undefined && o.masters !== saved) {
    throw new Error(`${dir} was trained with ${saved} masters; resume it with --masters ${saved} (not ${o.masters})`);
  }
  const resumed = { ...o, masters: saved };
  const diffs = trajectoryChanges(state.options, resumed);
  const shown = (v: unknown) => (v === undefined ? '(not set)' : typeof v === 'string' ? v : JSON.stringify(v));
  const list = diffs.map((d) => `${d.option} ${shown(d.from)} → ${shown(d.to)}`).join(', ');
  if (diffs.length && !o.allowOptionChanges) {
    throw new Error(
      `${dir} was trained with other options than this resume asks for (${list}); they change the run's trajectory. ` +
        'Resume with the run\'s options, or add --allow-option-changes to take them (the change is recorded with the run)',
    );
  }
  const changes = [...(state.option_changes ?? []), ...diffs.map((d) => ({ step: state.steps_done, ...d }))];
  if (diffs.length) emit({ type: 'log', message: `options changed on resume at step ${state.steps_done}: ${list}` });
  if (!ck.verified) emit({ type: 'log', message: `${dir} has no manifest of checksums (written by an earlier version): its files were checked for shape and finite values only` });
  return { o: resumed, changes };
}

/** An engine with the model's weights loaded in their homes, on the device --device resolves to; `threads` and `gpuMem` as the options say. */
export interface OpenedEngine {
  engine: NativeEngine;
  /** The device it computes on, as the run records it (the GEMM precision the backend really runs). */
  device: RunDevice;
  /** The CUDA device's memory when the engine opened (free, total): what an out-of-memory message quotes. */
  cuda: ResolvedDevice['cuda'];
}

/** How openEngine places and opens the model where the options alone do not say. */
export interface OpenEngineOptions {
  /** Each unit's home; none: every unit on the device. */
  placement?: TierPlacement;
  /** Ranks on this machine, which share its cores (1). */
  ranksHere?: number;
  /** The device already picked for the run; none: picked here from the options. */
  picked?: PickedDevice;
  /** The run's plan, which a failure while loading quotes. */
  plan?: Plan | null;
  /** The model's tokenizer when already loaded (--train tokens encodes the label words with it). */
  tokenizer?: SpillwayTokenizer;
}

export async function openEngine(
  info: ModelInfo,
  o: Pick<TrainOptions, 'threads' | 'gpuMem' | 'device' | 'gemm'> & Partial<TrainOptions>,
  emit: (e: TrainEvent) => void,
  { placement, ranksHere = 1, picked = pickDevice(o, (message) => emit({ type: 'log', message })), plan = null, tokenizer }: OpenEngineOptions = {},
): Promise<OpenedEngine> {
  const native = loadNative();
  // The ranks on one machine share its cores.
  const threads = o.threads > 0 ? engineThreads(o.threads) : Math.max(1, Math.floor(engineThreads() / ranksHere));
  const cores = availableParallelism();
  if (threads > cores) emit({ type: 'log', message: `${threads} threads asked for; this machine has ${cores} cores: the engine runs ${cores}` });
  const { resolved, gemm } = picked;
  // --gpu-mem is enforced by the engine too: an allocation beyond it is a clear error, not the device's OOM.
  const engine = new native.Engine({ threads, device: resolved.id, gemm, ...(o.gpuMem !== undefined ? { deviceMemory: o.gpuMem } : {}) });
  emit({ type: 'log', message: `loading ${info.name} (${info.config.hfArchitecture})` });
  try {
    const tokens = o.trainable === 'tokens' ? labelTokenIds((o as TrainOptions).task, tokenizer ?? (await loadTokenizer(info.dir))) : undefined;
    const loaded = await engine.load(engineSpec(info), placement, o.trainable ? trainSpecOf(o as TrainOptions, tokens) : undefined);
    const t = loaded.trainable;
    if (t && o.trainable && o.trainable !== 'full') {
      const setup = t.setupSeconds >= 0.01 ? ` (set up in ${t.setupSeconds.toFixed(2)} s)` : '';
      emit({ type: 'log', message: `training ${t.elements.toLocaleString('en-US')} of ${info.parameterCount.toLocaleString('en-US')} parameters (${o.trainable})${setup}` });
    }
    // An adapter run's resume: the adapters as its checkpoint holds them.
    if (o.resumeFrom && o.trainable && isAdapterRun(o as TrainOptions)) await restoreTrained(engine, join(o.resumeFrom, TRAINED_FILE));
  } catch (e) {
    engine.close();
    throw deviceFailure(e, { device: runDevice(resolved, gemm, resolved.id), cuda: resolved.cuda, gpuMem: o.gpuMem, plan, checkpoint: null, when: 'loading the model' });
  }
  // The backend exists once loaded: its name says the GEMM precision it really runs.
  const backend = engine.info().backend ?? resolved.id;
  return { engine, device: runDevice(resolved, gemmOfBackend(backend, gemm), backend), cuda: resolved.cuda };
}

/** The GEMM precision the backend reports in its name ("cuda:0 (…, gemm tf32)"): a mode the device cannot run falls back, and the run records what ran. */
function gemmOfBackend(backend: string | undefined, asked: Gemm): Gemm {
  const m = / gemm (fp32|tf32|bf16)\b/.exec(backend ?? '');
  return m ? (m[1] as Gemm) : asked;
}

const loadEngine = (p: Prepared, emit: (e: TrainEvent) => void, world?: World) =>
  openEngine(p.info, p.o, emit, { placement: p.placement, ranksHere: world?.localSize ?? 1, picked: p.device, plan: p.plan ?? null, tokenizer: p.tokenizer });

export interface Loaded extends OpenedEngine {
  info: ModelInfo;
  plan?: Plan;
  train: ExampleSet;
  eval: ExampleSet;
  close(): Promise<void>;
}

/** A prepared run with its engine loaded (for scoring and tests); close() frees both. */
export async function loadForTraining(o: unknown, emit: (e: TrainEvent) => void): Promise<Loaded> {
  const p = await prepareTraining(o, emit);
  const opened = await loadEngine(p, emit).catch(async (e: unknown) => {
    await p.data.close();
    throw e;
  });
  const { engine } = opened;
  return {
    ...opened,
    info: p.info,
    plan: p.plan,
    train: p.data.train,
    eval: p.data.eval,
    close: async () => {
      engine.close();
      await p.data.close();
    },
  };
}

/**
 * Trains with options checked against the run options' schema (the engine host's boundary): defaults
 * filled, bounds enforced. In this process, or (world) as one rank of a run over several: every rank
 * trains its share of each step; rank 0 alone writes (checkpoints, the seed log, the model) and emits.
 */
export async function train(options: unknown, emit: (e: TrainEvent) => void, signal = new StopSignal(), world?: World): Promise<DoneEvent> {
  const t0 = Date.now();
  const p = await prepareTraining(options, emit, world);
  try {
    const opened = await loadEngine(p, emit, world);
    try {
      return await trainLoaded(p, opened, emit, signal, t0, world);
    } finally {
      // Frees the spill file and device memory now: a host process that exits never garbage-collects.
      opened.engine.close();
    }
  } finally {
    await p.data.close();
  }
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

/** Loss and accuracy of a model over a set of examples, scored a chunk at a time. */
export async function scoreExamples(
  engine: NativeEngine,
  chunks: AsyncIterable<TokenizedExample[]>,
  onChunk?: (examples: TokenizedExample[], r: NativeScoreResult) => void,
): Promise<{ loss: number; accuracy: number | null; examples: number }> {
  let lossSum = 0;
  let correct = 0;
  let classified = 0;
  let n = 0;
  for await (const examples of chunks) {
    const r = await engine.score(packBatch(examples));
    onChunk?.(examples, r);
    n += examples.length;
    for (const l of r.exampleLoss) lossSum += l;
    for (const c of r.correct) {
      if (c >= 0) {
        classified++;
        correct += c;
      }
    }
  }
  return { loss: n ? lossSum / n : NaN, accuracy: classified ? correct / classified : null, examples: n };
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

async function trainLoaded(p: Prepared, opened: OpenedEngine, emit: (e: TrainEvent) => void, signal: StopSignal, t0: number, world?: World): Promise<DoneEvent> {
  const { o, info, data, plan, side } = p;
  const { engine, device } = opened;
  const trainSet = data.train;
  const evalSet = data.eval;
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
      // The data is read as it goes: its first examples (with the counts) tell whether every rank reads the same.
      dataHash: dataHash(await trainSet.get(Array.from({ length: Math.min(256, trainSet.length) }, (_, i) => i))),
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
    device,
    ...(plan ? { plan: runPlan(plan) } : {}),
    ...(worldStart ? { world: worldStart } : {}),
  });

  const evalChunk = Math.max(8, o.batchSize * 2);
  // What the engine is doing, for a device failure's message.
  let doing = 'starting';
  // Prompt/answer data: the generated answers are scored too (exact match, token F1). In one
  // process: decoding passes are not part of the ranks' lock-step exchanges.
  const scoreAnswers = o.generationEval && o.task.kind === 'completion' && evalSet.length > 0;
  if (scoreAnswers && world && world.rank === 0) emit({ type: 'log', message: 'generated answers (exact match, F1) are scored in single-process runs; this run of several ranks reports the loss' });
  const answers = scoreAnswers && !world ? { tokenizer: await loadTokenizer(info.dir), eos: (await generationDefaults(info.dir)).eos } : null;
  const evaluate = async (step: number): Promise<EvalEvent | null> => {
    if (evalSet.length === 0) return null;
    doing = step === 0 ? 'evaluating before the first step' : `evaluating after step ${step}`;
    const te = Date.now();
    const r = world ? await scoreShared(world, engine, await evalSet.get(Array.from({ length: evalSet.length }, (_, i) => i)), evalChunk) : await scoreExamples(engine, evalSet.chunks(evalChunk));
    const gen = answers ? await evaluateAnswers(engine, answers.tokenizer, evalSet.chunks(evalChunk), { maxNewTokens: o.evalMaxNewTokens, eos: answers.eos }) : null;
    const at = Date.now();
    const ev: EvalEvent = { type: 'eval', step, at, loss: r.loss, accuracy: r.accuracy, examples: evalSet.length, evalMs: at - te, ...(gen ?? {}) };
    emit(ev);
    return ev;
  };

  let zeroShot: EvalEvent | null = null;
  let lastEval: EvalEvent | null = null;
  let lastLoss: number | null = null;
  let skipped = 0;
  let skippedInRow = 0;
  let stepsRun = 0;
  let status: DoneEvent['status'] = 'completed';
  const runSeed = BigInt(o.seed);
  const baseModel = p.resume ? p.resume.state.base_model : info.dir;
  const seedLog: SeedLogEntry[] = p.resume ? p.resume.seedLog : [];
  let step = p.resume ? p.resume.state.steps_done : 0;
  if (p.resume) {
    emit({ type: 'log', message: `resuming from step ${step} (${o.resumeFrom})` });
    const moved = resumeDeviceNote(p.resume.state.device, device);
    if (moved) emit({ type: 'log', message: moved });
  }
  const savedOptions = { ...o, out: undefined, resumeFrom: undefined, allowOptionChanges: undefined, runId: undefined };
  const stateOf = (status: CheckpointState['status'], stepsDone: number) => ({
    status,
    steps_done: stepsDone,
    steps_planned: o.steps,
    base_model: baseModel,
    ...(o.runId ? { run_id: o.runId } : {}),
    options: savedOptions,
    device,
    ...(p.optionChanges.length ? { option_changes: p.optionChanges } : {}),
  });
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
    const { weightsBytes } = await saveRun(engine, side, path, stateOf('checkpoint', stepsDone), seedLog, { ...o, merge: false }, {
      what: 'checkpoint not written',
      note: () => intactNote('previous'),
      // Short of room: drop all but the newest checkpoint first (the two newest are kept otherwise).
      makeRoom: async () => (await pruneCheckpoints(dir, 1, keep(), o.runId)) > 0,
    });
    lastCheckpoint = { step: stepsDone, path };
    emit({ type: 'checkpoint', step: stepsDone, path, bytes: weightsBytes });
    await pruneCheckpoints(dir, 2, keep(), o.runId);
    if (world) await waitForRankZero(world, `rank 0 writing the checkpoint of step ${stepsDone}`, writeWaitMs);
  };
  const nothingTrains = async (from: number, to: number) =>
    new Error(
      `steps ${from}–${to} were all skipped: their loss or projected gradient was not finite (NaN or Inf), so no update was made. ` +
        `The weights, the learning rate (lr ${o.lr}), eps or the data give non-finite values; the run stops rather than step on (${await intactNote('last')})`,
    );
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
      const batch = packBatch(await trainSet.get(mine));
      const lr = scheduledLr(o, step);
      doing = `running step ${step + 1}`;
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
      const at = Date.now();
      if (r.skipped) skipped++;
      r.seeds.forEach((s, j) => {
        seedLog.push({
          step,
          seed: s.toString(),
          coef: r.skipped ? 0 : r.coef[j],
          projected_grad: r.projectedGrad[j],
          lr,
          skipped: r.skipped,
          loss: r.loss,
          loss_plus: r.lossPlus[j],
          loss_minus: r.lossMinus[j],
          at,
          step_ms: r.times.totalMs,
          tokens: batch.tokens.length,
        });
      });
      // The update is applied: the step counts as done whatever stops the run from here on (a stop
      // during the evaluation or the checkpoint below), so a checkpoint on stop holds as many
      // steps as its seed log and its weights have.
      step++;
      stepsRun++;
      skippedInRow = r.skipped ? skippedInRow + 1 : 0;
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
        at,
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
      if (skippedInRow >= MAX_CONSECUTIVE_SKIPPED) throw await nothingTrains(step - skippedInRow + 1, step);
      if (o.evalEvery > 0 && step % o.evalEvery === 0 && step < o.steps) lastEval = await evaluate(step);
      if (o.checkpointEvery && step % o.checkpointEvery === 0 && step < o.steps) await checkpoint(step);
    }
  } catch (e) {
    if (!isCancelled(e)) {
      throw deviceFailure(e, { device, cuda: opened.cuda, gpuMem: o.gpuMem, plan: plan ?? null, checkpoint: await intactNote('last'), when: doing });
    }
    status = 'stopped';
  }
  if (status === 'stopped') await checkpoint(step);
  // A run too short to reach the bound still must not end "completed" having trained nothing.
  if (status === 'completed' && stepsRun > 0 && skippedInRow === stepsRun) throw await nothingTrains(step - stepsRun + 1, step);
  if (status === 'completed' && o.steps > 0) lastEval = await evaluate(step);

  let out: string | null = null;
  if (o.out && world && world.rank !== 0) {
    out = resolve(o.out);
    await waitForRankZero(world, 'rank 0 saving the model', writeWaitMs);
  } else if (o.out) {
    out = resolve(o.out);
    await saveRun(engine, side, out, { ...stateOf(status, step), eval: lastEval, zero_shot: zeroShot }, seedLog, o, { what: 'model not saved', note: () => intactNote('last') });
    const what = isAdapterRun(o) ? `${adapterName(o.trainable)} adapter (peft)${o.merge ? ' and the merged model in merged/' : ''}` : 'fine-tuned model';
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

/** The options as the schema reads them; a value out of its bounds is an error naming the option. */
export function parseTrainOptions(o: unknown): TrainOptions {
  const r = TrainOptions.safeParse(o);
  if (!r.success) throw new Error(r.error.issues.map((i) => `${i.path.join('.') || 'options'}: ${i.message}`).join('; '));
  const parsed = filled(r.data);
  // Several ranks: the layout must share the step (q among the perturbation groups, the batch among the shards).
  if (parsed.ranks > 1) checkLayout(rankLayout(parsed.ranks, parsed.parallel, parsed.groups), parsed.q, parsed.batchSize);
  return parsed;
}

/** What the schema leaves to the trainer (checkCombined in common/options.ts has the rest): a run from the app always has an output folder. */
export function checkTrainOptions(o: TrainOptions): void {
  if (o.merge && !o.out) throw new Error('--merge needs --out (the merged model goes to --out/merged)');
}

/**
 * The folders a run writes, checked before anything runs: the checkpoint folder is a folder (made
 * now) that holds no other run's checkpoints; the output folder is a folder, and empty or this
 * run's own saved model (a stopped run's partial model, which its resume replaces).
 */
async function checkOutputFolders(o: TrainOptions): Promise<void> {
  if (o.checkpointDir) {
    const dir = o.checkpointDir;
    const st = await statOrNull(dir);
    if (st && !st.isDirectory()) throw new Error(`the checkpoint folder ${dir} is a file; choose a folder (--checkpoint-dir)`);
    if (!st) {
      await mkdir(dir, { recursive: true }).catch((e: NodeJS.ErrnoException) => {
        throw new Error(`cannot make the checkpoint folder ${dir}: ${e.code === 'EEXIST' || e.code === 'ENOTDIR' ? 'a file is in the way' : e.message}`);
      });
    }
    if (o.runId) {
      const others = await otherRunsIn(dir, o.runId);
      if (others.length) {
        const which = others.map((r) => `run ${r.runId} (step${r.steps.length > 1 ? 's' : ''} ${r.steps.join(', ')})`).join(', ');
        throw new Error(`the checkpoint folder ${dir} holds the checkpoints of ${which}; a folder keeps one run's checkpoints: choose another --checkpoint-dir, or resume that run`);
      }
    }
  }
  if (o.out) await checkOutFolder(resolve(o.out), o.runId);
}

/** A spill folder the engine will write its spill file in: an existing, writable folder (checked before the run is recorded). */
async function checkSpillFolder(dir: string): Promise<void> {
  const st = await statOrNull(dir);
  if (!st) throw new Error(`spill folder ${dir} does not exist; make it, or give another with --spill`);
  if (!st.isDirectory()) throw new Error(`spill folder ${dir} is a file; give a folder with --spill`);
  await access(dir, constants.W_OK | constants.X_OK).catch(() => {
    throw new Error(`spill folder ${dir} is not writable by this user; give another with --spill`);
  });
}

async function checkOutFolder(out: string, runId: string | undefined): Promise<void> {
  const st = await statOrNull(out);
  if (!st) return;
  if (!st.isDirectory()) throw new Error(`the output folder ${out} is a file; choose a folder (--out)`);
  const entries = await readdir(out);
  if (entries.length === 0) return;
  const owner = await savedModelOwner(out);
  if (owner !== undefined && runId !== undefined && (owner.runId === runId || (owner.runId === null && owner.status === 'stopped'))) return;
  const whose = owner?.runId ? ` (the model of run ${owner.runId})` : '';
  throw new Error(`output folder ${out} is not empty${whose}; choose a new folder`);
}

/** The run and status a saved model's spillway.json names; undefined when the folder is not a Spillway model. */
async function savedModelOwner(dir: string): Promise<{ runId: string | null; status: unknown } | undefined> {
  try {
    const s = JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8')) as { run_id?: unknown; status?: unknown };
    return { runId: typeof s.run_id === 'string' ? s.run_id : null, status: s.status };
  } catch {
    return undefined;
  }
}

/** The small files a saved model carries beside its weights, read once from the source folder. */
export interface ModelSideFiles {
  dir: string;
  config: Record<string, unknown>;
  /** config.json as written: saved again with only its dtype changed. */
  configText: string;
  files: Map<string, Buffer>;
}

/** What a saved model carries beside its weights: tokenizer, chat template and decoding settings (what llama.cpp's converter and transformers read). */
const SIDE_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'vocab.json',
  'merges.txt',
  'tokenizer.model',
  'added_tokens.json',
  'chat_template.jinja',
  'generation_config.json',
];

export async function readSideFiles(dir: string): Promise<ModelSideFiles> {
  const configText = await readFile(join(dir, 'config.json'), 'utf8');
  const config = JSON.parse(configText) as Record<string, unknown>;
  const files = new Map<string, Buffer>();
  for (const f of SIDE_FILES) {
    try {
      files.set(f, await readFile(join(dir, f)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  return { dir, config, configText, files };
}

/**
 * config.json for float32 weights: the source's text with every dtype (torch_dtype, transformers
 * 5's dtype, a sub-config's) set to float32, and torch_dtype added when it is absent. Edited as
 * text, not re-serialised: JSON.stringify writes 5.0 as 5, which transformers' typed configs
 * refuse for float fields (Gemma 2's final_logit_softcapping).
 */
export function float32Config(side: Pick<ModelSideFiles, 'config' | 'configText'>): string {
  const text = side.configText.replace(/("(?:torch_)?dtype"\s*:\s*)(?:"[^"\\]*"|null)/g, '$1"float32"');
  if ('torch_dtype' in side.config) return text;
  return Object.keys(side.config).length === 0
    ? '{ "torch_dtype": "float32" }\n'
    : text.replace('{', '{\n  "torch_dtype": "float32",');
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
 * tokenizer files) plus spillway.json, the seed log and the manifest of their
 * checksums (checkpoint.ts). The folder appears
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
  const bytes = await writeFolderAtomic(out, withManifest(files), { what: so.what ?? 'model not saved', note: so.note, makeRoom: so.makeRoom });
  return { bytes, weightsBytes: byteLength(files[0].data) };
}

/** The seed log and spillway.json every saved run folder carries. */
function runFiles(side: ModelSideFiles, meta: Record<string, unknown>, seedLog: SeedLogEntry[]): FolderFile[] {
  return [
    { name: 'seedlog.jsonl', data: seedLog.map((e) => JSON.stringify(e)).join('\n') + (seedLog.length ? '\n' : '') },
    { name: 'spillway.json', data: JSON.stringify({ base_model: side.dir, ...meta }, null, 2) + '\n' },
  ];
}

/** A source without generation_config.json gets the decoding settings transformers would derive from its config (none when it has none). */
function generationConfigFile(side: ModelSideFiles, prefix: string): FolderFile[] {
  const data = side.files.has('generation_config.json') ? null : generationConfigFor(side.config);
  return data ? [{ name: `${prefix}generation_config.json`, data }] : [];
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
    { name: `${prefix}config.json`, data: float32Config(side) },
    ...[...side.files].map(([name, data]) => ({ name: `${prefix}${name}`, data })),
    ...generationConfigFile(side, prefix),
  ];
}

/**
 * Writes a run's result: the model as saveFineTuned writes it, or for an adapter run its folder:
 * the peft adapter (adapter_config.json, adapter_model.safetensors), the trained tensors by the
 * engine's names (trainable.safetensors: what a resume puts back), the tokenizer files, the seed
 * log and spillway.json, with their manifest; with `merge`, the base with the adapter merged in as
 * a Hugging Face folder in merged/ (beside the adapter, transformers would read the folder as a
 * peft one).
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
  let adapter: FolderFile[];
  let merged: () => { name: string; shape: number[]; data: Float32Array }[];
  if (o.trainable === 'tokens') {
    const rows = peftTokens(engine);
    // One delta: the head is tied to the embedding (the engine makes one for an untied head), and
    // peft keeps the rows under lm_head too.
    adapter = peftTokenFiles(rows, side.dir, rows.rows.length === 1 ? 'lm_head' : null);
    merged = () => mergedTokenTensors(engine, rows);
  } else {
    const lora = peftLora(engine, o);
    adapter = peftFiles(lora, side.dir);
    merged = () => mergedTensors(engine, lora);
  }
  const files = [
    ...adapter,
    trainedFile(engine),
    ...[...side.files].map(([name, data]) => ({ name, data })),
    ...runFiles(side, meta, seedLog),
    ...(o.merge ? modelFiles(merged(), side, out, 'merged/') : []),
  ];
  const bytes = await writeFolderAtomic(out, withManifest(files), { what: so.what ?? 'adapter not saved', note: so.note, makeRoom: so.makeRoom });
  return { bytes, weightsBytes: byteLength(adapter[1].data) };
}

/** Bytes of one seed log line, generously (step, a 64-bit seed, the update's three doubles, the step's metrics). */
const SEED_LOG_LINE_BYTES = 384;
/** The manifest: a name, a size and a SHA-256 per file. */
const MANIFEST_BYTES = 2048;

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
  const sizes = [weights, JSON.stringify({ ...o }).length + 4096, logEntries * SEED_LOG_LINE_BYTES, MANIFEST_BYTES];
  for (const f of ['config.json', ...SIDE_FILES]) {
    const st = await statOrNull(join(info.dir, f));
    if (st) sizes.push(st.size + (f === 'config.json' ? 256 : 0));
  }
  return sizes;
}

/** An adapter's float32 bytes, generously (LoLDU keeps fewer: z and s, but saves B and A as a LoRA). */
function adapterBytes(info: ModelInfo, o: Pick<TrainOptions, 'targets' | 'rank' | 'trainable'>): number {
  // Trainable tokens: a few rows of the embedding (and of the head), generously 64 of them.
  if (o.trainable === 'tokens') return 4 * 64 * 2 * 2 * info.config.hidden + 4096;
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
  // An adapter run's checkpoint holds no model: its base is the run's model.
  const info = await loadModelInfo(isAdapterRun(o) ? o.model : (o.resumeFrom ?? o.model));
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

