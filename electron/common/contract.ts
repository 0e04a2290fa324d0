// The one contract between the UI (Electron renderer or a browser tab) and the
// backend: request/response methods and pushed events, as zod schemas with
// the TypeScript types inferred from them. Both transports (Electron IPC and
// WebSocket) validate every message against these schemas at the boundary.
//
// This file runs in the renderer: no Node imports here or anywhere under
// electron/common/.

import { z } from 'zod';

import { isEventName, isMethodName, type EventName, type MethodName } from './channels.js';
import {
  Bytes,
  FilePath,
  flags,
  Gemm,
  Home,
  int,
  JsonValue,
  Masters,
  MAX_LENGTH,
  MAX_THREADS,
  RootKind,
  RunFields,
  RunOptions,
  SamplingOptions,
  TaskTemplate,
  TrainableSet,
  UpdateMode,
} from './options.js';

export * from './channels.js';
export * from './options.js';

// ---------------------------------------------------------------------------
// Shared building blocks

const Step = z.number().int().nonnegative();
/** Milliseconds since the Unix epoch. */
const Timestamp = z.number().nonnegative();
const RunId = z.string().min(1).max(200);

export const Dtype = z.enum(['F32', 'F16', 'BF16']);
export const ArchFamily = z.enum(['opt', 'gpt2', 'llama', 'qwen3', 'phi3', 'gpt_neox', 'olmo2', 'gemma2', 'gemma3']);
export const UnitKind = z.enum(['embed', 'block', 'head']);

// --- models

export const ModelSummary = z.object({
  dir: z.string(),
  name: z.string(),
  architecture: z.string(),
  family: ArchFamily,
  parameterCount: z.number().int().nonnegative(),
  dtypes: z.partialRecord(Dtype, z.number().int().nonnegative()),
  sizeOnDisk: Bytes,
  layers: z.number().int().nonnegative(),
  hidden: z.number().int().nonnegative(),
  vocabSize: z.number().int().nonnegative(),
  tokenizer: z.enum(['tokenizer.json', 'vocab+merges']).nullable(),
});

export const CheckpointFacts = z.object({
  parameterCount: z.number().int().nonnegative(),
  dtypes: z.record(z.string(), z.number().int().nonnegative()),
  sizeOnDisk: Bytes,
  weightFiles: z.number().int().nonnegative(),
});

export const UnsupportedModel = z.object({
  dir: z.string(),
  name: z.string(),
  hfArchitecture: z.string().nullable(),
  reason: z.string(),
  checkpoint: CheckpointFacts.nullable(),
});

export const InspectReport = z.object({
  name: z.string(),
  dir: z.string(),
  architecture: z.string(),
  family: ArchFamily,
  parameterCount: z.number().int().nonnegative(),
  dtypes: z.partialRecord(Dtype, z.number().int().nonnegative()),
  sizeOnDisk: Bytes,
  weightFiles: z.number().int().nonnegative(),
  layers: z.number().int().nonnegative(),
  hidden: z.number().int().nonnegative(),
  heads: z.number().int().nonnegative(),
  kvHeads: z.number().int().nonnegative(),
  headDim: z.number().int().nonnegative(),
  intermediate: z.number().int().nonnegative(),
  vocabSize: z.number().int().nonnegative(),
  maxPositions: z.number().int().nonnegative(),
  norm: z.enum(['layernorm', 'rmsnorm', 'rmsnorm_plus1']),
  activation: z.string(),
  ropeTheta: z.number(),
  ropeScaling: z.string(),
  rotaryDim: z.number().int().nonnegative(),
  ropeLayers: z.number().int().nonnegative(),
  slidingWindow: z.number().int().nonnegative(),
  slidingLayers: z.number().int().nonnegative(),
  tiedEmbeddings: z.boolean(),
  tokenizer: z.enum(['tokenizer.json', 'vocab+merges']).nullable(),
  unusedTensors: z.number().int().nonnegative(),
  units: z.array(
    z.object({
      kind: UnitKind,
      count: z.number().int().nonnegative(),
      tensorsPerUnit: z.number().int().nonnegative(),
      parametersPerUnit: z.number().int().nonnegative(),
    }),
  ),
});

// --- datasets (task templates: options.ts)

export const DatasetFormat = z.enum(['jsonl', 'csv', 'parquet']);

export const DatasetEntry = z.object({
  path: z.string(),
  name: z.string(),
  format: DatasetFormat,
  bytes: Bytes,
  modified: Timestamp,
});


/** A chat row rendered with the model's template: the sequences it is trained as, trained pieces marked, with token counts. */
export const RenderedChat = z.object({
  kind: z.literal('chat'),
  /** The model's own chat template, or Spillway's plain fallback (the model has none). */
  template: z.enum(['model', 'fallback']),
  templateFile: z.string().nullable(),
  messages: z.number().int().nonnegative(),
  /** One, unless the template renders earlier replies differently once later turns follow (each is then trained in its own). */
  sequences: z.array(
    z.object({
      /** The messages (1-based) whose replies this sequence trains. */
      replies: z.array(z.number().int().positive()),
      pieces: z.array(z.object({ text: z.string(), trained: z.boolean(), tokens: z.number().int().nonnegative() })),
      tokens: z.number().int().nonnegative(),
      trainedTokens: z.number().int().nonnegative(),
    }),
  ),
});

export const RenderedExample = z.union([
  z.object({
    kind: z.enum(['classify', 'lm', 'completion']),
    prompt: z.string(),
    candidates: z.array(z.string()),
    label: z.number().int(),
    texts: z.array(z.string()),
  }),
  RenderedChat,
]);

export const DatasetPreview = z.object({
  path: z.string(),
  format: DatasetFormat,
  columns: z.array(z.string()),
  rows: z.array(z.object({ line: z.number().int().nonnegative(), values: z.record(z.string(), JsonValue) })),
  /** Known without a full scan only for Parquet. */
  totalRows: z.number().int().nonnegative().nullable(),
  /** With a template: each previewed row as the model would see it, or why it cannot be rendered. */
  rendered: z
    .array(z.union([z.object({ ok: z.literal(true), example: RenderedExample }), z.object({ ok: z.literal(false), error: z.string() })]))
    .nullable(),
});

// --- devices

/**
 * One CUDA device as the engine's CUDA runtime numbers it (after CUDA_VISIBLE_DEVICES, in
 * CUDA_DEVICE_ORDER); `id` is what --device takes.
 */
export const CudaDevice = z.object({
  index: z.number().int().nonnegative(),
  id: z.string().regex(/^cuda:\d+$/),
  name: z.string(),
  totalBytes: Bytes,
  /** NVML's free memory of the device; null where NVML cannot be asked. */
  freeBytes: Bytes.nullable(),
  computeCapability: z.string(),
  multiprocessors: z.number().int().nonnegative(),
  /**
   * "0000:3b:00.0": how this device is found among NVML's (telemetry), which number every GPU of the
   * machine in PCI bus order whatever CUDA_VISIBLE_DEVICES says; null when CUDA could not say.
   */
  pciBusId: z.string().nullable(),
});

/** "0000:3B:00.0" (CUDA) and "00000000:3b:00.0" (NVML) alike: [domain, bus, device, function], or null. */
export function parsePciBusId(id: string | null | undefined): number[] | null {
  const m = /^([0-9a-f]{1,8}):([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])$/i.exec((id ?? '').trim());
  return m ? m.slice(1).map((x) => parseInt(x, 16)) : null;
}

/** Whether two PCI bus ids, in CUDA's or NVML's spelling, name one device. */
export function samePciBus(a: string | null | undefined, b: string | null | undefined): boolean {
  const x = parsePciBusId(a);
  const y = parsePciBusId(b);
  return x !== null && y !== null && x.every((v, i) => v === y[i]);
}

/** What New run's device picker lists, and what `auto` takes. */
export const DeviceList = z.object({
  /** The engine was built with its CUDA backend. */
  cudaCompiled: z.boolean(),
  /** 'ok', 'CUDA not compiled in' or 'no device'; detail says why (no driver, a driver too old...). */
  cudaState: z.string(),
  cudaDetail: z.string(),
  /** cudaDriverGetVersion (e.g. 13000), 0 without a driver; the runtime this build carries. */
  driverVersion: z.number().int().nonnegative(),
  runtimeVersion: z.number().int().nonnegative(),
  devices: z.array(CudaDevice),
  cpu: z.object({ name: z.string(), cores: z.number().int().positive(), memoryBytes: Bytes }),
  /** What `auto` resolves to on this machine, and why, in one sentence. */
  auto: z.string(),
  autoReason: z.string(),
  /** $CUDA_VISIBLE_DEVICES and $CUDA_DEVICE_ORDER as the backend sees them (null: unset). */
  visibleDevices: z.string().nullable(),
  deviceOrder: z.string().nullable(),
});

/** The device a run computed on, as its engine resolved --device (stored with the run). */
export const RunDevice = z.object({
  /** What the run asked for: auto, cpu, cuda, cuda:N. */
  asked: z.string(),
  /** 'cpu' or 'cuda:N'. */
  id: z.string(),
  name: z.string(),
  /** The GEMM precision the backend computes with (fp32 on the CPU). */
  gemm: Gemm,
  /** The engine's own description of its backend ("cuda:0 (NVIDIA H100 80GB HBM3, gemm tf32)"). */
  backend: z.string(),
  /** CUDA devices: their bus id (telemetry finds the GPU by it); null on the CPU. */
  pciBusId: z.string().nullable().optional(),
  /** Which device and why, the run's log line ("device auto: the CPU, because ..."); absent in runs recorded before it was kept. */
  reason: z.string().optional(),
});

// --- plan

/** A plan asks what a run with these options would need: the run options it shares, and the budgets. */
export const PlanRequest = RunFields.pick({ model: true, masters: true, batchSize: true, device: true, gemm: true, trainable: true, rank: true, targets: true, sparseFraction: true, threads: true }).extend({
  /** Memory each tier may use; absent = unlimited (the plan then reports what it would need). */
  budgets: z
    .object({ gpu: Bytes.optional(), cpu: Bytes.optional(), ssd: Bytes.optional() })
    .default({}),
  /** SSD blocks are striped over these folders (absent or empty: the settings' spill folder). */
  spillDirs: RunFields.shape.spillDirs,
  /** Where streamed blocks are updated (default auto: by the cost model). */
  updateOn: UpdateMode.default('auto'),
  /** Tokens per sequence used for the activation estimate. */
  maxLength: int(1, MAX_LENGTH).default(256).register(flags, { flag: 'max-length', arg: 'N', help: 'tokens per sequence the activations are sized for' }),
  /** Measure the machine again instead of using the cached calibration (takes seconds). */
  recalibrate: z.boolean().optional(),
  /** The training dataset and its task: compute is then predicted for the data's mean tokens per example, as a run's own plan is. */
  train: FilePath.optional(),
  task: TaskTemplate.optional(),
});

export const PlanUnit = z.object({
  kind: UnitKind,
  index: z.number().int(),
  parameters: z.number().int().nonnegative(),
  /** As the unit is held at home: float32 on the compute device, the masters' format on the CPU / SSD tiers. */
  bytes: Bytes,
  home: Home,
  /** Where its update runs (resident units: always on the device). */
  updateOn: z.enum(['home', 'device']).optional(),
  /** Predicted time of its update per step, ms; null when not calibrated. */
  updateMs: z.number().nonnegative().nullable().optional(),
  /** Bytes written back device → host per step (streamed units updated on the device; fractional with write-back every K). */
  deviceToHostBytes: z.number().nonnegative().optional(),
  /** SSD units: the spill folder (index into spillDirs) holding it; null otherwise. */
  spillIndex: z.number().int().nonnegative().nullable().optional(),
});

export const TierMemory = z.object({ gpu: Bytes, cpu: Bytes, ssd: Bytes });
/** Bytes per home (the device is the CPU's arena when the CPU computes). */
const PlanTierBytes = z.object({ device: Bytes, cpu: Bytes, ssd: Bytes });

/** One spill folder of a plan: its filesystem, the SSD units striped onto it and its measured rates. */
export const PlanSpillFolder = z.object({
  dir: z.string(),
  /** st_dev of its filesystem; null: unknown. */
  device: z.string().nullable(),
  /** Its filesystem as a person knows it: "/mnt/nvme (/dev/nvme0n1p2, ext4)"; null: unknown. */
  mount: z.string().nullable().optional(),
  units: z.number().int().nonnegative(),
  /** Its spill file's size. */
  bytes: Bytes,
  readBytesPerS: z.number().nonnegative().nullable(),
  writeBytesPerS: z.number().nonnegative().nullable(),
  /** Why the folder could not be measured. */
  unavailable: z.string().optional(),
});

const ComputeSource = z.enum(['measured', 'extrapolated', 'estimated']);

export const PlanResult = z.object({
  model: z.string(),
  /** Where the forward passes run. */
  computeDevice: z.enum(['cpu', 'gpu']),
  /** The device --device resolved to ('cpu', 'cuda:N') with its name, and the GPU budget the plan took when none was given. */
  device: z
    .object({
      id: z.string(),
      name: z.string(),
      gemm: Gemm,
      /** The device budget when none was given: the GPU's free memory less the headroom; null when a budget was given or on the CPU. */
      defaultBudget: z.object({ bytes: Bytes, freeBytes: Bytes.nullable(), totalBytes: Bytes, headroomBytes: Bytes }).nullable(),
      reason: z.string(),
    })
    .optional(),
  /** 'all-resident' when every unit stays on the compute device, 'tiered' when blocks stream. */
  strategy: z.enum(['all-resident', 'tiered']),
  units: z.array(PlanUnit),
  memory: TierMemory,
  breakdown: z.object({
    /** float32 masters of every unit. */
    weights: Bytes,
    /** w+ / w- of the unit being computed (float32). */
    workingCopies: Bytes,
    /** Peak activations of one forward pass (estimate). */
    activations: Bytes,
    /** Device staging slot streamed units pass through (0 when nothing streams). */
    stage: Bytes.optional(),
    /** Host I/O buffer streamed units pass through (0 when nothing streams). */
    ioBuffer: Bytes.optional(),
    /** SSD read-ahead buffers in host memory (prefetch × the largest streamed unit as stored). */
    prefetchBuffers: Bytes.optional(),
    /** The engine process itself (runtime, addon, BLAS, small buffers), counted in CPU memory. */
    runtime: Bytes.optional(),
    /** lora, loldu: the adapters on the compute device with their noise and working copies. */
    adapters: Bytes.optional(),
  }),
  /** What trains and what is frozen, and where each lives (tiers as the plan's units name them: device, cpu, ssd). */
  trainable: z
    .object({
      set: TrainableSet,
      rank: z.number().int().positive().nullable(),
      targets: z.array(z.string()).nullable(),
      fraction: z.number().positive().nullable(),
      /** Elements a step moves (sparse: at most). */
      elements: z.number().int().nonnegative(),
      /** lora, loldu: the base is read only wherever it lives (no update, no write-back, no replay). */
      baseFrozen: z.boolean(),
      /** What holds the trained values: the adapters (device), or the trained masters at their homes. */
      bytes: PlanTierBytes,
      /** The frozen part of the model at its stored precision, at its homes. */
      frozenBytes: PlanTierBytes,
    })
    .optional(),
  /** Bytes moved per step on each link (0 when every unit stays resident on the CPU); fractional with write-back every K. */
  linkBytesPerStep: z.object({ hostToDevice: Bytes, deviceToHost: z.number().nonnegative(), ssdRead: Bytes, ssdWrite: z.number().nonnegative() }),
  /** null until the engine has been calibrated on this machine. */
  predictedStepMs: z.number().nonnegative().nullable(),
  /** The physical floor of one step (full overlap: the largest single term; docs/TIERED-STORE.md); null when not calibrated. */
  floorMs: z.number().nonnegative().nullable().optional(),
  /** The term that sets the floor. */
  bound: z.enum(['compute', 'host-to-device', 'device-to-host', 'ssd-read', 'ssd-write', 'cpu-update']).nullable().optional(),
  /** Per-step time of each term, ms; null when not calibrated. */
  timeTerms: z
    .object({
      computeMs: z.number().nonnegative(),
      hostToDeviceMs: z.number().nonnegative(),
      deviceToHostMs: z.number().nonnegative(),
      ssdReadMs: z.number().nonnegative(),
      ssdWriteMs: z.number().nonnegative(),
      cpuUpdateMs: z.number().nonnegative(),
      /** Both forwards of every unit, q times. */
      forwardMs: z.number().nonnegative().optional(),
      /** Updates on the compute device (resident units and streamed units updated there). */
      deviceUpdateMs: z.number().nonnegative().optional(),
      /** Updates at home of CPU-homed units, after the forwards. */
      hostUpdateMs: z.number().nonnegative().optional(),
      /** Pending updates of SSD units replayed on read. */
      replayMs: z.number().nonnegative().optional(),
    })
    .nullable()
    .optional(),
  /** ISO date of the calibration the times come from. */
  calibratedAt: z.string().nullable().optional(),
  feasible: z.boolean(),
  /** What is short, one sentence per tier, when not feasible. */
  shortfalls: z.array(z.string()),
  notes: z.array(z.string()),
  /** SSD read-ahead depth the engine will use (blocks): the requested one, lowered when the CPU budget cannot hold its buffers. */
  prefetch: z.number().int().nonnegative().optional(),
  /** The read-ahead depth asked for; prefetch < prefetchRequested means it was lowered. */
  prefetchRequested: z.number().int().nonnegative().optional(),
  /** Bytes per stored parameter of a streamed unit: 4 for fp32 masters, 2 for bf16 / fp16. */
  bytesPerParameter: z.number().int().positive().optional(),
  /** The spill folders the plan stripes SSD units over (resolved). */
  spillDirs: z.array(z.string()).optional(),
  /** The spill folders, their devices and the aggregate SSD bandwidth; null without a spill folder. */
  ssd: z
    .object({
      folders: z.array(PlanSpillFolder),
      /** Distinct devices among the folders. */
      devices: z.number().int().nonnegative(),
      /** Bandwidth summed over distinct devices (folders on one device count once); null: unknown. */
      readBytesPerS: z.number().nonnegative().nullable(),
      writeBytesPerS: z.number().nonnegative().nullable(),
      summed: z.boolean(),
    })
    .nullable()
    .optional(),
  /** Where the updates of streamed units run, and what each way costs. */
  update: z
    .object({
      mode: UpdateMode,
      /** Streamed units updated at home / on the device. */
      homeUnits: z.number().int().nonnegative(),
      deviceUnits: z.number().int().nonnegative(),
      /** Predicted step with every streamed unit updated at home / on the device; null: unknown. */
      allHomeStepMs: z.number().nonnegative().nullable(),
      allDeviceStepMs: z.number().nonnegative().nullable(),
      /** Why the plan updates where it does, one sentence. */
      reason: z.string(),
    })
    .optional(),
  /** Per unit: true when a streamed unit is updated on the device (Engine.load's TierPlacement.deviceUpdate). */
  deviceUpdate: z.array(z.boolean()).optional(),
  /** The forwards' figures and where they come from; null without a calibration. */
  compute: z
    .object({
      /** Both forwards of one block at this batch, one perturbation, ms. */
      blockMs: z.number().nonnegative(),
      blockSource: ComputeSource,
      headMs: z.number().nonnegative(),
      headSource: ComputeSource,
      detail: z.string(),
    })
    .nullable()
    .optional(),
  /** The training data the compute was predicted for (tokensPerStep = batch × its mean tokens per example); null: batch × max length. */
  dataTokens: z
    .object({
      meanPerExample: z.number().nonnegative(),
      examples: z.number().int().nonnegative(),
      perStep: z.number().nonnegative(),
    })
    .nullable()
    .optional(),
});

// --- runs

export const RunStatus = z.enum(['queued', 'running', 'stopping', 'stopped', 'completed', 'failed', 'interrupted']);

/** What a run keeps its streamed blocks as and where (its masters, update mode and spill folders), as shown beside its placement. */
export const RunStorage = z.object({
  masters: Masters,
  updateOn: UpdateMode,
  spillDirs: z.array(z.string()),
});

/**
 * A run's masters, update mode and spill folders (defaults fp32, auto), or null when the run sets none
 * of them and streams no blocks (`streams`: its plan or offload puts blocks on the CPU or the SSD).
 */
export function runStorage(
  o: Pick<z.input<typeof RunOptions>, 'masters' | 'updateOn' | 'spillDirs'>,
  streams: boolean,
): z.output<typeof RunStorage> | null {
  const spillDirs = [...(o.spillDirs ?? [])];
  if (!streams && o.masters === undefined && o.updateOn === undefined && spillDirs.length === 0) return null;
  return { masters: o.masters ?? 'fp32', updateOn: o.updateOn ?? 'auto', spillDirs };
}

/** One line: "masters bf16 · updates on device · spill /a, /b" (folders through `path`, e.g. to shorten them). */
export function formatRunStorage(s: z.output<typeof RunStorage>, path: (p: string) => string = (p) => p): string {
  const update = s.updateOn === 'auto' ? 'updates auto' : s.updateOn === 'home' ? 'updates at home' : 'updates on device';
  const spill = s.spillDirs.length ? ` · spill ${s.spillDirs.map(path).join(', ')}` : '';
  return `masters ${s.masters} · ${update}${spill}`;
}

export const RunSummary = z.object({
  id: RunId,
  name: z.string(),
  status: RunStatus,
  model: z.string(),
  dataset: z.string(),
  createdAt: Timestamp,
  startedAt: Timestamp.nullable(),
  endedAt: Timestamp.nullable(),
  stepsDone: Step,
  stepsPlanned: Step,
  lastLoss: z.number().nullable(),
  lastAccuracy: z.number().nullable(),
  error: z.string().nullable(),
  /** The checkpoint folder the run last continued from. */
  resumedFrom: z.string().nullable(),
  /** Resume can continue it: it ended without completing and a checkpoint of its own is on disk (a run that failed before its first checkpoint has none). */
  resumable: z.boolean(),
  /** Its masters, update mode and spill folders (runStorage); null when it sets none and streams no blocks. */
  storage: RunStorage.nullable().optional(),
  /** The device its engine computed on (null before its engine started, and for runs recorded before it was kept). */
  device: RunDevice.nullable().optional(),
});

/** What one step moved on each link (deltas of the engine's tier counters) and how long compute waited for streamed units. */
export const StepIo = z.object({
  h2dBytes: Bytes,
  d2hBytes: Bytes,
  ssdReadBytes: Bytes,
  ssdWriteBytes: Bytes,
  waitMs: z.number().nonnegative(),
});

/** Per-link figures of a plan (bytes or ms per step); bytes may be fractional (SSD write-back every K steps). */
const LinkFigures = z.object({
  hostToDevice: z.number().nonnegative(),
  deviceToHost: z.number().nonnegative(),
  ssdRead: z.number().nonnegative(),
  ssdWrite: z.number().nonnegative(),
});

/** The plan a run was placed by (offload auto): what it predicts per step, to set beside the measured figures. */
export const RunPlan = z.object({
  /** Units per home. */
  homes: z.object({ device: z.number().int().nonnegative(), cpu: z.number().int().nonnegative(), ssd: z.number().int().nonnegative() }),
  predictedStepMs: z.number().nonnegative().nullable(),
  floorMs: z.number().nonnegative().nullable(),
  /** The term that sets the floor. */
  bound: z.string().nullable(),
  /** Bytes per step per link; null when the plan did not say (runs recorded before it did). */
  linkBytes: LinkFigures.nullable(),
  /** Time per step per link, ms; null without a calibration. */
  linkMs: LinkFigures.nullable(),
  /** The predicted step less its compute: the predicted wait for streamed units, ms. */
  ioWaitMs: z.number().nonnegative().nullable(),
});

/** One rank's share of a step of a run over several ranks (per-rank telemetry). */
export const RankStep = z.object({
  rank: z.number().int().nonnegative(),
  host: z.string(),
  /** From the start of its step to its arrival at the exchange of losses. */
  computeMs: z.number().nonnegative(),
  forwardMs: z.number().nonnegative(),
  ioMs: z.number().nonnegative(),
  /** How long it waited at the exchange for the slowest rank (estimated from the ranks' compute times). */
  waitMs: z.number().nonnegative(),
  examples: z.number().int().nonnegative(),
  tokens: z.number().int().nonnegative(),
});

export const StepMetric = z.object({
  runId: RunId,
  step: Step,
  /** When the step ended (ms since the epoch): elapsed time, ETA and the time axis. */
  at: Timestamp,
  loss: z.number(),
  lossPlus: z.number(),
  lossMinus: z.number(),
  projectedGrad: z.number(),
  lr: z.number(),
  stepMs: z.number().nonnegative(),
  tokensPerS: z.number().nonnegative(),
  skipped: z.boolean(),
  /** Absent or null when the engine reported no tier counters (and for steps recorded before they were kept). */
  io: StepIo.nullable().optional(),
  /** A run over several ranks: each rank's share of the step, live only (the store keeps the run's figures). */
  ranks: z.array(RankStep).optional(),
});

export const EvalMetric = z.object({
  runId: RunId,
  step: Step,
  /** When the evaluation ended (ms since the epoch). */
  at: Timestamp,
  loss: z.number(),
  accuracy: z.number().min(0).max(1).nullable(),
  examples: z.number().int().nonnegative(),
  evalMs: z.number().nonnegative(),
  /** Completion tasks: the greedily generated answers' exact match and token F1 (SQuAD's normalisation), 0..1. */
  exactMatch: z.number().min(0).max(1).nullable().optional(),
  f1: z.number().min(0).max(1).nullable().optional(),
});

export const Checkpoint = z.object({ step: Step, path: z.string(), bytes: Bytes, createdAt: Timestamp });

export const RunDetail = RunSummary.extend({
  options: RunOptions,
  checkpoints: z.array(Checkpoint),
  evals: z.array(EvalMetric),
  outDir: z.string().nullable(),
  /** The plan the run was placed by; null when it had none (not offload auto, or not started yet). */
  plan: RunPlan.nullable().optional(),
});

export const RunQuery = z.object({
  status: z.array(RunStatus).optional(),
  /** Matched against the name, model and dataset. */
  search: z.string().max(500).optional(),
  sort: z.enum(['createdAt', 'name', 'status', 'lastLoss']).default('createdAt'),
  order: z.enum(['asc', 'desc']).default('desc'),
  limit: z.number().int().positive().max(1000).default(100),
  offset: z.number().int().nonnegative().default(0),
});

export const MetricsQuery = z.object({
  runId: RunId,
  /** Steps strictly after this one are returned; -1 (default) = from the start. */
  sinceStep: z.number().int().min(-1).default(-1),
  limit: z.number().int().positive().max(100_000).default(10_000),
});

export const MetricsPage = z.object({
  runId: RunId,
  steps: z.array(StepMetric),
  evals: z.array(EvalMetric),
  /** The newest step recorded for the run (-1 if none): more remain when it is past the last returned. */
  latestStep: z.number().int().min(-1),
});

export const ExportKind = z.enum(['model', 'seed-log', 'metrics-csv']);

export const Settings = z.object({
  /** Folders scanned for models (besides the Hugging Face cache). */
  modelRoots: z.array(FilePath).max(64),
  datasetRoots: z.array(FilePath).max(64),
  includeHfCache: z.boolean(),
  /** Where the tiered store spills (SSD tier) and where runs write checkpoints. */
  spillDir: FilePath.nullable(),
  runsDir: FilePath.nullable(),
  budgets: z.object({ gpu: Bytes.nullable(), cpu: Bytes.nullable(), ssd: Bytes.nullable() }),
  /** CPU threads of a run that does not say (0: all cores). */
  threads: int(0, MAX_THREADS),
  /** How often telemetry is sampled while a run is active; read when sampling starts. */
  samplingIntervalMs: z.number().int().min(200).max(10_000),
  /**
   * Read-only: the data folder (run store, run folders) this backend opened, null without one.
   * Chosen at startup (--data-dir, $SPILLWAY_DATA_DIR); updateSettings ignores it.
   */
  dataDir: z.string().nullable(),
});

/** What updateSettings accepts: any settings but the read-only dataDir (a dataDir sent is dropped). */
export const SettingsPatch = Settings.omit({ dataDir: true }).partial();

/** Every row of a dataset tokenised with a model's tokenizer: how many pass, and where the others fail. */
export const DatasetCheck = z.object({
  path: z.string(),
  /** Rows read (bad ones included). */
  rows: z.number().int().nonnegative(),
  /** Rows that tokenise. */
  ok: z.number().int().nonnegative(),
  /** Rows that do not, all of them (errors lists at most the first 100). */
  errorCount: z.number().int().nonnegative(),
  errors: z
    .array(z.object({ line: z.number().int().nonnegative(), field: z.string().nullable(), message: z.string() }))
    .max(100),
  /** False when a problem stopped the read (e.g. a malformed CSV quote): rows after it were not checked. */
  complete: z.boolean(),
  /** Tokens per sequence the rows were checked against. */
  maxLength: z.number().int().positive(),
});

// --- telemetry (the sampler in electron/services/telemetry fills this)

export const TelemetrySample = z.object({
  at: Timestamp,
  cpu: z.object({ utilization: z.number().min(0).max(1) }).nullable(),
  memory: z.object({ usedBytes: Bytes, totalBytes: Bytes }).nullable(),
  /** The spill drive: read/write throughput and the fraction of the interval it had I/O in flight. */
  disk: z
    .object({ readBytesPerS: z.number().nonnegative(), writeBytesPerS: z.number().nonnegative(), busy: z.number().min(0).max(1).optional(), device: z.string().optional() })
    .nullable(),
  gpus: z.array(
    z.object({
      /** NVML's index (PCI bus order, every GPU of the machine): not CUDA's; match a run's device by pciBusId. */
      index: z.number().int().nonnegative(),
      name: z.string(),
      pciBusId: z.string().nullable().optional(),
      utilization: z.number().min(0).max(1).nullable(),
      memoryUsedBytes: Bytes.nullable(),
      memoryTotalBytes: Bytes.nullable(),
      pcieRxBytesPerS: z.number().nonnegative().nullable(),
      pcieTxBytesPerS: z.number().nonnegative().nullable(),
    }),
  ),
  /** Bytes held by each tier for running runs, when an engine reports them. */
  tiers: TierMemory.nullable(),
});

/** A run's telemetry samples as stored with it, oldest first. */
export const TelemetryPage = z.object({
  runId: RunId,
  samples: z.array(TelemetrySample),
  /** More samples were recorded than returned (evenly thinned to `limit`). */
  thinned: z.boolean(),
});

// --- files: the folders the backend may use, a file browser over them, native dialogs


export const FolderEntry = z.object({
  name: z.string(),
  path: z.string(),
  type: z.enum(['folder', 'file']),
  bytes: Bytes.nullable(),
  modified: Timestamp.nullable(),
  /** A symlink whose target lies outside the allowed folders: shown, not followed. */
  outside: z.boolean(),
});

export const FolderListing = z.object({
  /** The folder listed (resolved); null for the top level, which lists the allowed folders. */
  path: z.string().nullable(),
  /** The folder above, or null at the top or where the folder above is not allowed. */
  parent: z.string().nullable(),
  /** The allowed folders of the kind asked for (every kind when none was), with where each comes from. */
  roots: z.array(z.object({ path: z.string(), kind: RootKind, source: z.string() })),
  entries: z.array(FolderEntry),
  /** More entries than the listing holds (it keeps the first, folders first). */
  truncated: z.boolean(),
});

/** A native dialog (desktop app only): open a file or folder, or choose where to save. */
export const PickRequest = z.object({
  kind: RootKind,
  mode: z.enum(['file', 'folder', 'save']),
  title: z.string().max(200).optional(),
  defaultPath: FilePath.optional(),
  /** File types offered, e.g. [{ name: 'Datasets', extensions: ['jsonl', 'csv', 'parquet'] }]. */
  filters: z.array(z.object({ name: z.string().max(100), extensions: z.array(z.string().max(20)).max(20) })).max(10).optional(),
});

// --- generation (the Playground)

/** Whose weights a generation runs on: a model folder, or a run's latest (its final model, else its newest checkpoint). */
export const GenerationSource = z.union([z.object({ model: FilePath }).strict(), z.object({ runId: RunId }).strict()]);

export const ChatTurn = z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string().max(1 << 20) });

export const GenerateRequest = z
  .object({
    /** Chosen by the caller: the streamed `generation` events carry it, and stopGeneration names it. */
    generationId: z.string().min(1).max(100),
    source: GenerationSource,
    /** A conversation, rendered with the model's chat template (or the plain fallback) and a generation prompt. */
    messages: z.array(ChatTurn).min(1).max(1000).optional(),
    /** Or raw text to continue. */
    prompt: z.string().min(1).max(1 << 20).optional(),
    sampling: SamplingOptions.prefault({}),
    /** More chat template variables, e.g. {"enable_thinking": false}. */
    templateVariables: z.record(z.string(), JsonValue).optional(),
  })
  .refine((r) => (r.messages === undefined) !== (r.prompt === undefined), { message: 'give either messages or prompt' });

/** The weights a generation ran on. */
export const GenerationWeights = z.object({
  dir: z.string(),
  name: z.string(),
  /** A model folder, a run's final model, or a run's checkpoint (at `step`). */
  kind: z.enum(['model', 'final', 'checkpoint']),
  step: Step.nullable(),
});

export const GenerateResult = z.object({
  generationId: z.string(),
  text: z.string(),
  /** eos: the model ended; length: max new tokens (or the model's positions); stop: a stop string; stopped: asked to stop. */
  finishReason: z.enum(['eos', 'length', 'stop', 'stopped']),
  promptTokens: z.number().int().nonnegative(),
  newTokens: z.number().int().nonnegative(),
  prefillMs: z.number().nonnegative(),
  decodeMs: z.number().nonnegative(),
  tokensPerS: z.number().nonnegative(),
  weights: GenerationWeights,
  /** How the conversation was rendered (null for a raw prompt). */
  template: z.enum(['model', 'fallback']).nullable(),
  /** The sampling in effect, the model's generation_config.json filled in. */
  sampling: z
    .object({
      maxNewTokens: z.number().int(),
      temperature: z.number(),
      topK: z.number().int(),
      topP: z.number(),
      repetitionPenalty: z.number(),
      seed: z.number().int(),
      stop: z.array(z.string()),
      ignoreEos: z.boolean(),
    })
    .nullable(),
});

/** What the backend said when it started (a damaged database moved aside, rows that could not be read). */
export const Notice = z.object({ level: z.enum(['info', 'warn', 'error']), message: z.string(), at: Timestamp });

// ---------------------------------------------------------------------------
// Methods

const Empty = z.object({}).strict().default({});

interface MethodSpec {
  params: z.ZodType;
  result: z.ZodType;
}

function method<P extends z.ZodType, R extends z.ZodType>(params: P, result: R) {
  return { params, result };
}

export const methods = {
  listModels: method(z.object({ roots: z.array(FilePath).max(64).optional() }).default({}), z.object({ models: z.array(ModelSummary), unsupported: z.array(UnsupportedModel) })),
  inspectModel: method(z.object({ path: FilePath }), InspectReport),
  listDatasets: method(z.object({ roots: z.array(FilePath).max(64).optional() }).default({}), z.object({ datasets: z.array(DatasetEntry) })),
  previewDataset: method(
    z.object({
      path: FilePath,
      rows: z.number().int().positive().max(200).default(5),
      format: DatasetFormat.optional(),
      template: TaskTemplate.optional(),
      /** The model whose chat template and tokenizer render chat rows (with token counts); other tasks need none. */
      model: FilePath.optional(),
    }),
    DatasetPreview,
  ),
  checkDataset: method(
    z.object({
      path: FilePath,
      /** The model folder whose tokenizer (and position limit) the rows are checked with. */
      model: FilePath,
      template: TaskTemplate,
      /** Default, and at most: the model's position limit. */
      maxLength: z.number().int().min(2).max(1 << 20).optional(),
      format: DatasetFormat.optional(),
    }),
    DatasetCheck,
  ),
  // Unknown fields are refused, not dropped: a misspelt option must not silently take its default.
  plan: method(PlanRequest.strict(), PlanResult),
  startRun: method(z.object({ name: z.string().max(200).optional(), options: RunOptions.strict() }), RunSummary),
  stopRun: method(z.object({ runId: RunId, checkpoint: z.boolean().default(true) }), RunSummary),
  /** Continues a run from its newest checkpoint; `device` moves it (losses are then not bit-comparable across devices). */
  resumeRun: method(z.object({ runId: RunId, device: RunFields.shape.device.unwrap().optional() }), RunSummary),
  checkpointRun: method(z.object({ runId: RunId }), z.object({ requested: z.literal(true) })),
  listRuns: method(RunQuery.prefault({}), z.object({ runs: z.array(RunSummary), total: z.number().int().nonnegative() })),
  getRun: method(z.object({ runId: RunId }), RunDetail),
  getMetrics: method(MetricsQuery, MetricsPage),
  deleteRun: method(z.object({ runId: RunId }), z.object({ deleted: z.literal(true) })),
  exportRun: method(
    /** An existing destination is replaced only with overwrite (the GUI asks first); without it the call answers CONFLICT. */
    z.object({ runId: RunId, kind: ExportKind, dest: FilePath, overwrite: z.boolean().default(false) }),
    z.object({ path: z.string(), bytes: Bytes }),
  ),
  getSettings: method(Empty, Settings),
  updateSettings: method(SettingsPatch, Settings),
  /** A folder's entries, limited to the allowed folders; without a path, the allowed folders themselves. */
  listFolder: method(z.object({ path: FilePath.optional(), kind: RootKind.optional(), showHidden: z.boolean().default(false) }).default({ showHidden: false }), FolderListing),
  /** Desktop app: a native open/save dialog; the path picked is allowed for its kind from then on. UNAVAILABLE in a browser. */
  pickPath: method(PickRequest, z.object({ path: z.string().nullable() })),
  getNotices: method(Empty, z.object({ notices: z.array(Notice) })),
  /** The compute devices: the CPU and each CUDA device with its name and free / total memory, and what `auto` takes. */
  listDevices: method(Empty, DeviceList),
  /** The telemetry samples kept with a run (at most `limit`, evenly thinned). */
  getTelemetry: method(z.object({ runId: RunId, limit: z.number().int().positive().max(100_000).default(5000) }), TelemetryPage),
  /** Text from a model or a run's weights; its text streams as `generation` events; cancelling the call stops it. */
  generate: method(GenerateRequest, GenerateResult),
  /** Ends a generation now: its call answers with the text so far (finish 'stopped'). */
  stopGeneration: method(z.object({ generationId: z.string().min(1).max(100) }), z.object({ stopped: z.boolean() })),
} satisfies Record<MethodName, MethodSpec>;

export type Methods = typeof methods;
/** What a caller may send (defaults not yet applied). */
export type MethodParamsInput<M extends MethodName> = z.input<Methods[M]['params']>;
/** What a handler receives (validated, defaults applied). */
export type MethodParams<M extends MethodName> = z.output<Methods[M]['params']>;
export type MethodResult<M extends MethodName> = z.output<Methods[M]['result']>;

// ---------------------------------------------------------------------------
// Events (pushed from the backend to every connected UI)

export const events = {
  runStatus: z.object({
    runId: RunId,
    status: RunStatus,
    stepsDone: Step,
    error: z.string().nullable(),
    at: Timestamp,
  }),
  stepMetrics: StepMetric,
  evalMetrics: EvalMetric,
  telemetry: TelemetrySample,
  log: z.object({
    runId: RunId.nullable(),
    level: z.enum(['info', 'warn', 'error']),
    message: z.string(),
    at: Timestamp,
  }),
  /** A generation's newly final text (in order); `tokens`: generated so far. */
  generation: z.object({ generationId: z.string(), text: z.string(), tokens: z.number().int().nonnegative(), at: Timestamp }),
} satisfies Record<EventName, z.ZodType>;

export type Events = typeof events;
export type EventPayload<E extends EventName> = z.output<Events[E]>;

/** An event as it travels: its name and payload, kept together so the pair type-checks. */
export type AnyEvent = { [E in EventName]: { event: E; payload: EventPayload<E> } }[EventName];

// ---------------------------------------------------------------------------
// Inferred data types

export type ModelSummary = z.output<typeof ModelSummary>;
export type UnsupportedModel = z.output<typeof UnsupportedModel>;
export type InspectReport = z.output<typeof InspectReport>;
export type DatasetEntry = z.output<typeof DatasetEntry>;
export type DatasetPreview = z.output<typeof DatasetPreview>;
export type RenderedExample = z.output<typeof RenderedExample>;
export type PlanRequest = z.output<typeof PlanRequest>;
export type PlanResult = z.output<typeof PlanResult>;
export type PlanUnit = z.output<typeof PlanUnit>;
export type RunStatus = z.output<typeof RunStatus>;
export type RunSummary = z.output<typeof RunSummary>;
export type RunStorage = z.output<typeof RunStorage>;
export type RunDetail = z.output<typeof RunDetail>;
export type RunQuery = z.output<typeof RunQuery>;
export type MetricsQuery = z.output<typeof MetricsQuery>;
export type MetricsPage = z.output<typeof MetricsPage>;
export type StepMetric = z.output<typeof StepMetric>;
export type StepIo = z.output<typeof StepIo>;
export type RankStep = z.output<typeof RankStep>;
export type RunPlan = z.output<typeof RunPlan>;
export type EvalMetric = z.output<typeof EvalMetric>;
export type Checkpoint = z.output<typeof Checkpoint>;
export type ExportKind = z.output<typeof ExportKind>;
export type Settings = z.output<typeof Settings>;
export type SettingsPatch = z.output<typeof SettingsPatch>;
export type DatasetCheck = z.output<typeof DatasetCheck>;
export type TelemetrySample = z.output<typeof TelemetrySample>;
export type TelemetryPage = z.output<typeof TelemetryPage>;
export type CudaDevice = z.output<typeof CudaDevice>;
export type DeviceList = z.output<typeof DeviceList>;
export type RunDevice = z.output<typeof RunDevice>;
export type FolderEntry = z.output<typeof FolderEntry>;
export type FolderListing = z.output<typeof FolderListing>;
export type PickRequest = z.output<typeof PickRequest>;
export type Notice = z.output<typeof Notice>;
export type GenerateRequest = z.output<typeof GenerateRequest>;
export type GenerateResult = z.output<typeof GenerateResult>;
export type GenerationSource = z.output<typeof GenerationSource>;
export type GenerationWeights = z.output<typeof GenerationWeights>;
export type ChatTurn = z.output<typeof ChatTurn>;

// ---------------------------------------------------------------------------
// Errors: they cross every boundary as plain data, {name, message, stack} plus a code.

export const ErrorCode = z.enum([
  /** Params failed validation; `issues` says where. */
  'BAD_REQUEST',
  'UNKNOWN_METHOD',
  /** A frame that is not JSON, not a known shape, or too large. */
  'BAD_FRAME',
  'NOT_FOUND',
  /** The request is valid but the state forbids it (e.g. resume a running run). */
  'CONFLICT',
  /** The backend produced a result that breaks the contract (a bug on our side). */
  'BAD_RESULT',
  'CANCELLED',
  /** The sender is not allowed to call (unknown frame, wrong origin). */
  'FORBIDDEN',
  /** The backend piece is not there (e.g. the run supervisor is not wired in). */
  'UNAVAILABLE',
  /** The transport closed before the answer came. */
  'DISCONNECTED',
  /** Anything else thrown by a service: the message says what. */
  'INTERNAL',
]);
export type ErrorCode = z.output<typeof ErrorCode>;

export const WireError = z.object({
  name: z.string(),
  message: z.string(),
  code: ErrorCode,
  stack: z.string().optional(),
  issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
});
export type WireError = z.output<typeof WireError>;

/** The error every call rejects with, whichever side raised it. Services throw it to pick a code. */
export class SpillwayError extends Error {
  override name = 'SpillwayError';
  readonly code: ErrorCode;
  readonly issues: { path: string; message: string }[] | undefined;
  /** The stack of the side that raised it, when it came over a transport. */
  readonly remoteStack: string | undefined;

  constructor(code: ErrorCode, message: string, opts: { issues?: { path: string; message: string }[]; remoteStack?: string; name?: string } = {}) {
    super(message);
    this.code = code;
    this.issues = opts.issues;
    this.remoteStack = opts.remoteStack;
    if (opts.name) this.name = opts.name;
  }

  static fromWire(w: WireError): SpillwayError {
    return new SpillwayError(w.code, w.message, { issues: w.issues, remoteStack: w.stack, name: w.name });
  }
}

/** Any thrown value as a WireError; errors that are not SpillwayErrors become INTERNAL, keeping their name. */
export function toWireError(e: unknown, includeStack = true): WireError {
  if (e instanceof SpillwayError) {
    return {
      name: e.name,
      message: e.message,
      code: e.code,
      ...(includeStack && e.stack ? { stack: e.stack } : {}),
      ...(e.issues ? { issues: e.issues } : {}),
    };
  }
  if (e instanceof Error) {
    const code: ErrorCode = e.name === 'AbortError' ? 'CANCELLED' : 'INTERNAL';
    return { name: e.name, message: e.message, code, ...(includeStack && e.stack ? { stack: e.stack } : {}) };
  }
  return { name: 'Error', message: String(e), code: 'INTERNAL' };
}

export function issuesOf(err: z.ZodError): { path: string; message: string }[] {
  return err.issues.map((i) => ({ path: i.path.map(String).join('.') || '(root)', message: i.message }));
}

function describeIssues(issues: { path: string; message: string }[]): string {
  return issues
    .slice(0, 5)
    .map((i) => `${i.path}: ${i.message}`)
    .join('; ');
}

/** Validates `raw` as params of `method`; throws SpillwayError BAD_REQUEST / UNKNOWN_METHOD. */
export function parseParams<M extends MethodName>(method: M, raw: unknown): MethodParams<M>;
export function parseParams(method: unknown, raw: unknown): unknown;
export function parseParams(method: unknown, raw: unknown): unknown {
  if (!isMethodName(method)) {
    throw new SpillwayError('UNKNOWN_METHOD', `unknown method ${JSON.stringify(String(method)).slice(0, 120)}`);
  }
  const r = methods[method].params.safeParse(raw ?? undefined);
  if (!r.success) {
    const issues = issuesOf(r.error);
    throw new SpillwayError('BAD_REQUEST', `invalid params for ${method}: ${describeIssues(issues)}`, { issues });
  }
  return r.data;
}

/** Validates a result before it leaves the backend (or when it arrives at the UI). */
export function parseResult<M extends MethodName>(method: M, raw: unknown): MethodResult<M> {
  const r = methods[method].result.safeParse(raw);
  if (!r.success) {
    const issues = issuesOf(r.error);
    throw new SpillwayError('BAD_RESULT', `result of ${method} breaks the contract: ${describeIssues(issues)}`, { issues });
  }
  return r.data as MethodResult<M>;
}

/** Validates an event payload; null when it does not match (the caller logs and drops it). */
export function parseEvent(event: unknown, payload: unknown): AnyEvent | null {
  if (!isEventName(event)) return null;
  const r = events[event].safeParse(payload);
  return r.success ? ({ event, payload: r.data } as AnyEvent) : null;
}

// ---------------------------------------------------------------------------
// Electron IPC (channel names: channels.ts)

/** What an IPC call carries: the call id (for cancel) and the params. */
export const IpcRequest = z.object({ id: z.string().min(1).max(100), params: z.unknown().optional() });
export type IpcRequest = z.output<typeof IpcRequest>;

/** Calls answer with an envelope instead of throwing, so the error keeps its shape across IPC. */
export type CallOutcome<R = unknown> = { ok: true; result: R } | { ok: false; error: WireError };

/** What the preload exposes as `window.spillway` (contextBridge). */
export interface SpillwayBridge {
  /** Resolves with an outcome, never rejects; `callId` lets `cancel` abort it. */
  call(method: string, params: unknown, callId?: string): Promise<CallOutcome>;
  cancel(callId: string): void;
  /** Listens to one pushed event; returns the unsubscribe function. Unknown events throw. */
  on(event: string, listener: (payload: unknown) => void): () => void;
}
export const CallOutcome = z.union([
  z.object({ ok: z.literal(true), result: z.unknown().optional() }),
  z.object({ ok: z.literal(false), error: WireError }),
]);

// ---------------------------------------------------------------------------
// WebSocket frames (JSON text, one message per frame)

/** Frames larger than this are refused (BAD_FRAME) without being parsed. */
export const MAX_FRAME_BYTES = 1 << 20;
export const WS_PATH = '/ws';
export const TOKEN_PARAM = 'token';

const CallId = z.union([z.string().min(1).max(100), z.number().int().nonnegative()]);

export const ClientFrame = z.discriminatedUnion('type', [
  z.object({ type: z.literal('call'), id: CallId, method: z.string().max(100), params: z.unknown().optional() }),
  z.object({ type: z.literal('cancel'), id: CallId }),
]);
export type ClientFrame = z.output<typeof ClientFrame>;

export const ServerFrame = z.union([
  z.object({ type: z.literal('result'), id: CallId, ok: z.literal(true), result: z.unknown().optional() }),
  z.object({ type: z.literal('result'), id: CallId, ok: z.literal(false), error: WireError }),
  z.object({ type: z.literal('event'), event: z.string(), payload: z.unknown().optional() }),
  /** A frame that could not be answered by id (not JSON, too large, no id). */
  z.object({ type: z.literal('error'), id: CallId.nullable(), error: WireError }),
]);
export type ServerFrame = z.output<typeof ServerFrame>;
