// Loads the native addon (Node-API: the same binary serves Node and Electron).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RopeSpec } from '../model/types.js';

import type { Estimator, Gemm, Home, Masters, NoiseKind, TrainableSet } from '../common/options.js';
import { chooseOpenblasCore } from './blas-core.js';

export interface NativeBatch {
  tokens: Int32Array;
  seqStart: Int32Array;
  /** Per scored span (one per sequence unless seqSpans says otherwise). */
  scoreStart: Int32Array;
  scoreEnd: Int32Array;
  /** nseq + 1 offsets into scoreStart/scoreEnd when a sequence has several scored spans (chat); absent: one each. */
  seqSpans?: Int32Array;
  exampleStart: Int32Array;
  exampleKind: Int32Array;
  label: Int32Array;
}

export interface NativeStepParams {
  seed: bigint;
  step: number;
  /** mezo (default) or fzoo: q one-sided probes around the unperturbed loss (docs/ENGINE-SPEC.md, "Estimators"). */
  estimator?: Estimator;
  q: number;
  lr: number;
  eps: number;
  weightDecay: number;
  noise: NoiseKind;
  /**
   * This rank's share of a step of the job's ranks (after distInit): the perturbations of its group
   * (`groups` perturbation groups), its shard of a global batch of `globalExamples` (the batch
   * passed is that shard), the losses exchanged within timeoutMs.
   */
  dist?: { groups: number; globalExamples: number; timeoutMs: number };
}

/** One rank's timings of a shared step, as every rank learns them at the exchange. */
export interface NativeRankTimes {
  /** From the start of its step to its arrival at the exchange. */
  computeMs: number;
  forwardMs: number;
  ioMs: number;
  noiseMs: number;
  headMs: number;
  examples: number;
  tokens: number;
}

export interface PhaseTimes {
  noiseMs: number;
  /** Waiting for streamed units on the compute path (SSD read, replay, upload). */
  ioMs: number;
  forwardMs: number;
  headMs: number;
  updateMs: number;
  totalMs: number;
  /** A shared step: exchanging losses with the other ranks (waiting for the slowest included). */
  exchangeMs: number;
}

export interface NativeStepResult {
  seeds: bigint[];
  /** Per seed. MeZO: L+ and L-; FZOO: the probe's loss and the unperturbed L0. */
  lossPlus: number[];
  lossMinus: number[];
  /** MeZO: (L+ - L-) / (2 eps); FZOO: (L_j - L0) / eps. */
  projectedGrad: number[];
  /** The coefficient of z_j in the update applied (theta -= coef_j z_j): what the seed log records. */
  coef: number[];
  skipped: boolean;
  /** MeZO: the mean of (L+ + L-) / 2; FZOO: L0. */
  loss: number;
  /** FZOO: the standard deviation of the probe losses the step was divided by (0 with MeZO). */
  sigma: number;
  times: PhaseTimes;
  /** A shared step: every rank's timings, in rank order. */
  ranks?: NativeRankTimes[];
}

/** What Engine.load trains (native/src/zo/trainable.h). */
export interface NativeTrainSpec {
  kind: TrainableSet;
  /** lora, loldu */
  rank?: number;
  /** lora: the delta is scaled by alpha / rank */
  alpha?: number;
  /** lora, loldu: block roles, e.g. ['q', 'v'] */
  targets?: string[];
  /** sparse: the share of each block matrix that trains */
  fraction?: number;
  /** lora: A's draw */
  seed?: number | bigint;
  /** tokens: the embedding rows that train (the task's label words' tokens) */
  tokens?: Int32Array;
}

/** A tensor of the adapters (lora, loldu, tokens); frozen ones are rebuilt from the base at load. */
export interface NativeAdapterTensor {
  name: string;
  shape: number[];
  frozen: boolean;
  decay: boolean;
  /** tokens: the embedding rows the delta adds to, in its row order. */
  rows?: number[];
}

export interface NativeScoreResult {
  exampleLoss: number[];
  correct: number[];
  candidateScores: number[];
  scoredTokens: number[];
  /** log p(token) of every scored token, sequence by sequence. */
  tokenLogprobs: Float32Array;
  loss: number;
  times: PhaseTimes;
}

/** Decoding (docs/ENGINE-SPEC.md, "Decoding"): prompts decoded together, one pass over the blocks per step. */
export interface NativeDecodeRequest {
  prompts: Int32Array[];
  maxNewTokens: number;
  /** 0 (default): greedy. */
  temperature?: number;
  /** 0 (default): off. */
  topK?: number;
  /** 1 (default): off. */
  topP?: number;
  /** 1 (default): off. */
  repetitionPenalty?: number;
  /** The draws' key (default 0). */
  seed?: bigint | number;
  /** Token ids that end a sequence. */
  eos?: Int32Array;
  /** Return each step's raw logits (tests). */
  logits?: boolean;
}

export type FinishReason = 'eos' | 'length' | 'stopped';

export interface NativeDecodeStep {
  /** Per sequence: the token chosen this step, -1 for a sequence finished before it. */
  tokens: Int32Array;
  /** Per sequence after this step: why it finished, or null while it goes on. */
  finish: (FinishReason | null)[];
  /** With request.logits: [nseq * V], rows of finished sequences 0. */
  logits?: Float32Array;
  times: PhaseTimes;
}

export interface TierPlacement {
  /** Where each unit's master lives between visits to the compute device; the embeddings and the head stay on the device. */
  homes: Home[];
  /** Spill folders when any unit lives on the SSD (a spill file each; several drives: SSD units are striped over them in unit order). */
  spillDirs?: string[];
  /**
   * Per unit: true applies a streamed unit's update on the compute device at its next visit and
   * writes it back home (ZO2's way); false (default) updates it at home on host threads. Same values.
   */
  deviceUpdate?: boolean[];
  /** Device staging slots (2 overlaps the next upload with compute; default 2 on a GPU, 1 on the CPU). */
  stageSlots?: number;
  /**
   * Precision of the masters: fp32 (default), or bf16 / fp16 with stochastic rounding of every
   * update. Streamed units are stored and moved in that format (half the bytes).
   */
  masters?: Masters;
  /** Rewrite an SSD unit every K updates; pending updates are replayed on read in between. */
  writeBackEvery?: number;
  /** SSD units read ahead of the one computing (default 2; 0 reads on demand). */
  prefetch?: number;
  /**
   * A rank of a run over several (after distInit): DistZO2's sliced transfer among the ranks of
   * this machine. CPU-homed blocks live once in their shared memory; each rank uploads its 1/n
   * of a block, the rest comes from the others (MPI on the CPU backend, NCCL between GPUs); the
   * block is updated on the device and each rank writes back its slice. timeoutMs bounds the
   * waits for the others while loading.
   */
  sliced?: { timeoutMs: number };
}

export interface TierInfo {
  deviceWeightBytes: number;
  deviceStageBytes: number;
  cpuBytes: number;
  ssdBytes: number;
  h2dBytes: number;
  ssdReadBytes: number;
  ssdWriteBytes: number;
  spillFile: string;
  /** Every spill file, in stripe order. */
  spillFiles: string[];
  /** Bytes written back from the device to CPU or SSD homes (device-side updates). */
  d2hBytes: number;
  /** z and the perturbed working copy on the device (allocated at the first step). */
  scratchBytes: number;
  /** LoRA / LoLDU adapters on the device, with their noise and working copies. */
  adapterBytes: number;
  /** The device memory budget the engine enforces (0: none), what its allocations hold now and at most. */
  deviceMemoryBudget: number;
  deviceMemoryInUse: number;
  deviceMemoryPeak: number;
  stageSlots: number;
  masters: Masters;
  /** 'io_uring' (deep queue of 1 MiB requests) or 'pread' (fallback; SPILLWAY_IO=pread forces it). */
  ioPath: string;
  /** The sliced transfer: ranks sharing each CPU-homed block (0: none), and what carries the slices. */
  sliceRanks?: number;
  sliceTransport?: string;
}

export interface NativeEngineInfo {
  backend?: string;
  device?: string;
  tiers?: TierInfo;
  threads?: number;
  parameters?: number;
  tensors?: number;
  units?: number;
  /** Elements a step may move, and the seconds the trainable set took to build at load (loldu: its decompositions). */
  trainable?: { elements: number; setupSeconds: number };
}

export interface NativeEngine {
  load(spec: unknown, placement?: TierPlacement, train?: NativeTrainSpec): Promise<NativeEngineInfo>;
  step(batch: NativeBatch, params: NativeStepParams): Promise<NativeStepResult>;
  score(batch: NativeBatch): Promise<NativeScoreResult>;
  /** Runs the prompts as one pass (filling the KV cache) and chooses each one's first token. */
  decodeBegin(request: NativeDecodeRequest): Promise<NativeDecodeStep>;
  /** One more token of every unfinished sequence, after finishing those in `stop` (the caller's stop strings). */
  decodeNext(stop?: number[]): Promise<NativeDecodeStep>;
  /** Frees the KV cache now (a step, or the next decodeBegin, also ends a decode). */
  decodeEnd(): void;
  cancel(): void;
  /** decay: whether weight decay applies (not to biases and norms). */
  tensorNames(): { name: string; shape: number[]; decay: boolean }[];
  /** A model tensor's current values, or an adapter tensor's. */
  getTensor(name: string): Float32Array;
  /** The adapters' tensors (lora, loldu; none otherwise). */
  trainableTensors(): NativeAdapterTensor[];
  /** Sets an adapter tensor's values (resuming an adapter run). */
  setTensor(name: string, values: Float32Array): void;
  info(): NativeEngineInfo;
  /** Frees the model, device memory and the spill file now. */
  close(): void;
}

export interface ProbeResult {
  ok: boolean;
  detail: string;
}

export interface CudaReport {
  /** 'ok', 'CUDA not compiled in' or 'no device'. */
  state: string;
  [key: string]: unknown;
}

/** One transformer block as the engine runs it, for calibrate({block}). */
export interface NativeBlockShape {
  hidden: number;
  intermediate: number;
  heads: number;
  /** Grouped-query heads (default: heads). */
  kvHeads?: number;
  /** Default: hidden / heads. */
  headDim?: number;
  /** gate/up/down MLP (llama family) instead of fc1/fc2. */
  gated?: boolean;
  norm?: 'layernorm' | 'rmsnorm';
  /** Rotary positions on q and k. */
  rope?: boolean;
  /** Biases on projections and norms (OPT, GPT-2; default true). */
  bias?: boolean;
  activation?: 'relu' | 'gelu' | 'gelu_new' | 'silu';
  /** Packed sequences of seqLen tokens each. */
  sequences: number;
  seqLen: number;
  noise?: NoiseKind;
}

/** Both forwards of one block per perturbation, as a ZO step runs them, on the compute device. */
export interface NativeBlockTiming {
  /**
   * 'measured': the block ran at this shape; 'extrapolated': a smaller block of the same kind ran and was
   * scaled (see detail); 'failed': it could not run (detail says why; the planner then estimates from FLOPs).
   */
  source: 'measured' | 'extrapolated' | 'failed';
  parameters: number;
  tokens: number;
  /** One forward of the block (one activation stream). */
  forwardMs: number;
  /** z for the block's parameters and the two perturbed working copies. */
  perturbMs: number;
  /** perturbMs + 2 × forwardMs: one block's share of one perturbation of a step. */
  zoMs: number;
  reps: number;
  /** Extrapolated: the GEMM rate the projections were scaled with. */
  gemmFlopsPerS?: number;
  /** Extrapolated: the smaller block that ran. */
  proxy?: { hidden: number; intermediate: number; heads: number; kvHeads: number; headDim: number; sequences: number; seqLen: number };
  detail: string;
}

export type NativeSsdCalibration =
  | {
      available: true;
      /** O_DIRECT was granted on the spill folder (otherwise the page cache may flatter reads). */
      direct: boolean;
      fileBytes: number;
      readBytesPerS: number;
      writeBytesPerS: number;
      byRequest: { requestBytes: number; readBytesPerS: number; writeBytesPerS: number }[];
    }
  | { available: false; reason: string };

export interface NativeCalibration {
  /** What was measured: 'machine' (copies, GEMM, updates), 'ssd', 'block'; the other figures are 0. */
  parts?: ('machine' | 'ssd' | 'block')[];
  /** Backend name of the compute device measured ('cpu' or 'cuda'). */
  backend: string;
  /** Copies went through pinned host memory (alloc_host on CUDA); on the CPU backend they are memcpy. */
  pinned: boolean;
  copyBytes: number;
  h2dBytesPerS: number;
  d2hBytesPerS: number;
  /** Backend::linear (sgemm) on the compute device, FLOP/s. */
  gemmFlopsPerS: number;
  /** zo_update on the host backend (the engine's thread count), one term, float32 elements/s. */
  cpuUpdateElemsPerS: number;
  /** zo_update on the compute device, one term, floats/s (on the CPU backend the device is the host: the same figure). */
  deviceUpdateElemsPerS?: number;
  /** Floats of the buffer the updates were timed on. */
  updateElems?: number;
  hostThreads: number;
  ssd: NativeSsdCalibration;
  /** With calibrate({block}). */
  block?: NativeBlockTiming;
  seconds: number;
}

export interface NativeAddon {
  /**
   * Measures copy, GEMM, update and SSD rates, and one block's forward, with the engine's own paths
   * (native thread). parts (default: machine and ssd, plus block when a block shape is given) picks
   * what is measured.
   */
  calibrate(o: {
    spillDir?: string;
    bytes?: number;
    device?: string;
    /** CUDA: the GEMM precision the block and GEMM rate are measured with ($SPILLWAY_GEMM overrides). */
    gemm?: Gemm;
    threads?: number;
    parts?: ('machine' | 'ssd' | 'block')[];
    block?: NativeBlockShape;
  }): Promise<NativeCalibration>;
  /**
   * device: 'cpu' (default), 'cuda' or 'cuda:N'. deviceMemory: the device memory budget in bytes the engine
   * enforces (on the CPU backend: its arena). gemm: a CUDA backend's GEMM precision ($SPILLWAY_GEMM overrides;
   * the CPU backend computes in fp32).
   */
  Engine: new (options: { threads: number; device?: string; deviceMemory?: number; gemm?: Gemm }) => NativeEngine;
  cudaDevices(): CudaReport;
  /** NVML readings of every GPU (runs on a native thread); 'absent' where there is no driver. */
  nvmlSample(): Promise<{ state: 'ok' | 'absent' | 'unavailable'; reason?: string; devices: unknown[] }>;
  /** Machine capabilities for `spillway doctor`; spillDir adds an O_DIRECT probe there. */
  probe(spillDir?: string): {
    cublas: ProbeResult;
    nvml: ProbeResult;
    ioUring: ProbeResult;
    directIo?: ProbeResult;
    blas: string;
  };
  /**
   * Noise values element by element, with `bulk` through the CPU backend's generator, or with
   * `isa` on that one of its generators (one of noiseIsas()).
   */
  noise(o: { seed: bigint | number; id: number; start: number; count: number; kind: string; bulk?: boolean; isa?: string }): Float32Array;
  /** The CPU backend's bulk noise generators this CPU can run ('scalar', 'avx2', 'avx512'). */
  noiseIsas(): string[];
  fnv1a32(name: string): number;
  stepSeed(runSeed: bigint | number, step: number, j: number): bigint;
  philox(words: Uint32Array): Uint32Array;
  /** The RoPE frequencies and cos/sin scale of a pass of seqLen tokens (native/src/arch/rope.h). */
  ropeTable(rope: RopeSpec, maxPositions: number, seqLen: number): { invFreq: Float32Array; attentionScale: number };
  cudaCompiled: boolean;
  /** Whether Open MPI (libmpi.so.40) and NCCL (libnccl.so.2) can be loaded, and whether this process was started as a rank. */
  distLibraries(): { mpi: ProbeResult; nccl: ProbeResult; launchedAsRank: boolean };
  /** MPI_Init and the rendezvous of a process started by mpirun (world.ts wraps these). */
  distInit(timeoutMs: number): Promise<NativeWorld>;
  /** Every rank's values, concatenated in rank order; rejects with code EDIST naming the ranks that did not take part. */
  distExchange(values: Float64Array, timeoutMs: number, what: string): Promise<Float64Array>;
  /** Rank 0's bytes on every rank (the others pass null). */
  distBroadcast(data: Uint8Array | null, timeoutMs: number, what: string): Promise<Uint8Array>;
  /** Ends every rank of the job (MPI_Abort). */
  distAbort(code: number): never;
  distFinalize(): void;
}

export interface NativeWorld {
  rank: number;
  size: number;
  localRank: number;
  localSize: number;
  /** The MPI library's version line, e.g. "Open MPI v4.1.4". */
  library: string;
  ranks: { rank: number; pid: number; host: string; localRank: number }[];
}

/**
 * The threads an engine is asked for: `asked` when given, else $SPILLWAY_THREADS, else every core.
 * The engine itself runs at most the cores present (binding.cpp).
 */
export function engineThreads(asked = 0): number {
  if (asked > 0) return asked;
  const n = Number(process.env.SPILLWAY_THREADS);
  return Number.isInteger(n) && n > 0 ? n : Math.max(1, availableParallelism());
}

/** The package root: the nearest folder above this file holding package.json. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'native'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the Spillway package root');
    dir = up;
  }
}

let cached: NativeAddon | null = null;

export function loadNative(): NativeAddon {
  if (cached) return cached;
  const file = process.env.SPILLWAY_ADDON ?? join(packageRoot(), 'native', 'build', 'Release', 'spillway.node');
  if (!existsSync(file)) {
    throw new Error(`the native engine is not built (${file} is missing): run \`npm run build:native\``);
  }
  // Before OpenBLAS loads with the addon: it reads its kernels' choice then (blas-core.ts).
  chooseOpenblasCore();
  cached = createRequire(import.meta.url)(file) as NativeAddon;
  return cached;
}
