// The calibrated planner (docs/TIERED-STORE.md, "The plan"): chooses the home of every
// unit under the budgets, stripes SSD units over the spill folders, chooses
// where each streamed unit's update runs (at home or on the compute device),
// and predicts memory per tier, bytes per step per link, the step time and the
// physical floor of one step. Pure: the inputs are the model's shape, the
// budgets and the calibrated rates (calibration.ts).
import type { Home, Masters, RunPlan, UpdateMode } from '../common/contract.js';
import { freezesBase, type TrainableSet } from '../common/options.js';
import { formatDuration } from '../common/format.js';
import type { ModelInfo } from '../model/index.js';
import type { ArchFamily, NormKind } from '../model/types.js';

export type { Home, UpdateMode };
export type Bound = 'compute' | 'host-to-device' | 'device-to-host' | 'ssd-read' | 'ssd-write' | 'cpu-update';
/** Where a unit's update runs: by host threads where its master lives, or on the compute device (then written back home). */
export type UpdateOn = Exclude<UpdateMode, 'auto'>;
/** Where a compute figure comes from: the block ran at this shape, a smaller one ran and was scaled, or FLOPs at the GEMM rate. */
export type ComputeSource = 'measured' | 'extrapolated' | 'estimated';

export interface PlannerUnit {
  kind: 'embed' | 'block' | 'head';
  index: number;
  parameters: number;
  /** The engine's slot: every tensor padded to 16 floats (default parameters × 4). */
  slotBytes?: number;
  /**
   * Parameters of the largest group of tensors one kernel call reads (a weight and its bias; the
   * head's norm and lm_head, the embedding when tied): the engine perturbs one group at a time,
   * so its working copies are this size (default: the whole unit).
   */
  maxGroupParameters?: number;
  /**
   * The head: its group without lm_head, and lm_head's width E. The CPU backend perturbs lm_head a
   * vocabulary chunk at a time into a scratch of its own (Backend::head_chunk_floats), so its
   * working copies hold the rest of the group alone.
   */
  chunkedHead?: { groupParameters: number; rows: number; width: number };
  /** A block's 2-D weights by role stem (q, v, down, ...): what lora and loldu adapt and sparse masks. */
  matrices?: { stem: string; out: number; in: number; groupFloats: number }[];
}

/** What a run trains, as far as the plan is concerned (docs/ENGINE-SPEC.md, "Trainable sets"). */
export interface PlanTrainable {
  set: TrainableSet;
  /** lora, loldu (default 8). */
  rank?: number;
  /** lora, loldu: block role stems (default q, v). */
  targets?: string[];
  /** sparse: the share of each block matrix that trains (default 0.25). */
  fraction?: number;
  /** tokens: the rows that train (default 2: a pair of one-token label words). */
  tokens?: number;
}

export type TierBytes = { device: number; cpu: number; ssd: number };

export interface PlannerModel {
  name: string;
  config: {
    hidden: number;
    heads: number;
    intermediate: number;
    vocabSize: number;
    tiedEmbeddings: boolean;
    /** What the block calibration runs (defaults: OPT-like). */
    family?: ArchFamily;
    kvHeads?: number;
    headDim?: number;
    norm?: NormKind;
    activation?: 'relu' | 'gelu' | 'gelu_new' | 'silu';
  };
  units: PlannerUnit[];
}

/** One spill folder's measured rates (null: unknown or unusable). */
export interface SpillRates {
  readBytesPerS: number | null;
  writeBytesPerS: number | null;
  /** Why the folder could not be measured. */
  unavailable?: string;
  /** st_dev of its filesystem (folders on one device share its bandwidth). */
  device?: string | null;
}

/** Measured (or assumed) rates; null fields are unknown. */
export interface PlannerRates {
  h2dBytesPerS: number;
  d2hBytesPerS: number;
  /** The (first) spill folder's SSD rates; `spill` gives them per folder. */
  ssdReadBytesPerS: number | null;
  ssdWriteBytesPerS: number | null;
  /** Why the SSD could not be measured, when it could not. */
  ssdUnavailable?: string;
  /** Per spill folder, in the order of PlanInput.spillDirs. */
  spill?: SpillRates[];
  gemmFlopsPerS: number;
  /** zo_update by the host threads (the engine's thread count), floats/s per term. */
  cpuUpdateElemsPerS: number;
  /** zo_update on the compute device, floats/s per term (on the CPU backend: cpuUpdateElemsPerS). */
  deviceUpdateElemsPerS?: number;
  /** Threads cpuUpdateElemsPerS was measured with (the SSD replay runs on one). */
  hostThreads?: number;
  /** Time of both forwards of one block at this batch shape, z and perturbed copies included; overrides the FLOP estimate. */
  blockForwardMs?: number;
  /** The part of blockForwardMs that does not scale with tokens: z and the perturbed copies. */
  blockPerturbMs?: number;
  /** Where blockForwardMs comes from (default 'measured'). */
  blockSource?: 'measured' | 'extrapolated';
  /** How it was obtained, for the plan's notes. */
  blockDetail?: string;
  /** ISO date of the measurement, or a label for assumed figures. */
  date?: string;
}

export interface PlanInput {
  model: PlannerModel;
  /** Where the forwards run: on 'cpu' the device arena is CPU memory and shares the CPU budget. */
  computeDevice: 'cpu' | 'gpu';
  /** Bytes each tier may use; absent = unlimited. ssd: all spill files together. */
  budgets: { device?: number; cpu?: number; ssd?: number };
  /** Spill folders: SSD units are striped over them round-robin in unit order. */
  spillDirs?: string[];
  /** Per spill folder (same order): its filesystem (st_dev) and free bytes, when known. */
  spillInfo?: { device?: string | null; freeBytes?: number; mount?: string | null }[];
  masters: Masters;
  batchSize: number;
  maxLength: number;
  /**
   * Tokens one step actually computes (every sequence of a batch, packed without padding), when
   * known from the data: compute time scales with it; memory stays sized for batchSize × maxLength.
   */
  tokensPerStep?: number;
  /** Perturbations per step (default 1). */
  q?: number;
  /** SSD lazy write-back: a unit is rewritten every K updates (default 1). */
  writeBackEvery?: number;
  /** Where streamed units are updated: chosen per unit by the cost model (default), or forced. */
  updateMode?: UpdateMode;
  /** What trains (default every weight): lora and loldu freeze the base, which is then read and never written. */
  trainable?: PlanTrainable;
  /** SSD read-ahead buffers in host memory (the engine's default 2). */
  prefetch?: number;
  /** The engine's threads (default 1): on the CPU each perturbs its own chunks of the head. */
  threads?: number;
  /** Device staging slots (the engine's default: 2 on a GPU, 1 on the CPU). */
  stageSlots?: number;
  rates: PlannerRates | null;
}

export interface PlannedUnit {
  kind: PlannerUnit['kind'];
  index: number;
  parameters: number;
  bytes: number;
  home: Home;
  /** Where its update runs; units resident on the device are always updated there. */
  updateOn: UpdateOn;
  /** Predicted time of its update per step (on the host threads, the SSD replay thread or the device); null: not calibrated. */
  updateMs: number | null;
  /** Bytes written back device → host per step (device-side updates of streamed units). */
  deviceToHostBytes: number;
  /** SSD units: index of the spill folder (in spillDirs) holding it; null otherwise. */
  spillIndex: number | null;
}

export interface TimeTerms {
  /** The compute device's busy time: the forwards and the updates that run on it (the floor's compute term). */
  computeMs: number;
  hostToDeviceMs: number;
  deviceToHostMs: number;
  ssdReadMs: number;
  ssdWriteMs: number;
  /** Host CPU update time: updates at home after the forwards plus the SSD replays. */
  cpuUpdateMs: number;
  /** Both forwards of every unit, q times (z and perturbed copies included). */
  forwardMs: number;
  /** Updates on the compute device: resident units and streamed units updated there. */
  deviceUpdateMs: number;
  /** Updates at home of CPU-homed units, after the forwards (on the step's critical path). */
  hostUpdateMs: number;
  /** Pending updates of SSD units replayed on read (SSD prefetch thread). */
  replayMs: number;
}

export interface SsdFolderPlan {
  dir: string;
  /** st_dev of its filesystem; null: unknown. */
  device: string | null;
  /** Its filesystem as a person knows it: the mount point, the device and the type; null: unknown. */
  mount: string | null;
  /** SSD units striped onto it, and its spill file's size. */
  units: number;
  bytes: number;
  readBytesPerS: number | null;
  writeBytesPerS: number | null;
  unavailable?: string;
}

export interface Plan {
  model: string;
  computeDevice: 'cpu' | 'gpu';
  units: PlannedUnit[];
  /** The home of every unit, for Engine.load. */
  homes: Home[];
  /** Spill folders for Engine.load (TierPlacement.spillDirs): SSD unit j is in folder j mod length. */
  spillDirs: string[];
  /** Per unit, for Engine.load (TierPlacement.deviceUpdate): true when a streamed unit is updated on the device. */
  deviceUpdate: boolean[];
  /** Per unit: where its update runs. */
  updateOn: UpdateOn[];
  count: Record<Home, number>;
  /** Bytes per tier: device arena, CPU tier (masters of CPU-homed units + I/O and read-ahead buffers), spill files. */
  memory: { device: number; cpu: number; ssd: number };
  breakdown: {
    weights: number;
    workingCopies: number;
    activations: number;
    stage: number;
    ioBuffer: number;
    /** SSD read-ahead buffers in host memory (prefetch × the largest streamed unit as stored). */
    prefetchBuffers: number;
    /** The engine process itself (runtime, addon, BLAS, small buffers). */
    runtime: number;
    /** lora, loldu: the adapters on the compute device with their noise and working copies. */
    adapters: number;
  };
  /**
   * What trains and what is frozen, and where each lives. Bytes as the engine holds them: blocks in
   * the masters' format wherever they live, the embeddings and the head float32, SSD units as their
   * 4 KiB-aligned slots.
   */
  trainable: {
    set: TrainableSet;
    rank: number | null;
    targets: string[] | null;
    fraction: number | null;
    /** Elements a step moves (sparse: at most; ties at the threshold train fewer). */
    elements: number;
    /** lora, loldu: the base is read-only wherever it lives (no update, no write-back, no replay). */
    baseFrozen: boolean;
    /** What holds the trained values: the adapters (on the device), or the masters of the trained tensors at their homes. */
    bytes: TierBytes;
    /** The frozen part of the model at its stored precision, at its homes. */
    frozenBytes: TierBytes;
  };
  /** SSD read-ahead depth the engine should use: the requested one, lowered when the CPU budget cannot hold its buffers. */
  prefetch: number;
  /** Device staging slots the engine should use: 2 (uploads overlap compute), or 1 when the device cannot hold two. */
  stageSlots: number;
  /** Bytes per stored parameter of a streamed unit (4 for fp32 masters, 2 for bf16/fp16). */
  bytesPerParameter: number;
  linkBytesPerStep: { hostToDevice: number; deviceToHost: number; ssdRead: number; ssdWrite: number };
  /** The spill folders, their devices and the aggregate SSD bandwidth; null without a spill folder. */
  ssd: {
    folders: SsdFolderPlan[];
    /** Distinct devices among the folders. */
    devices: number;
    /** Bandwidth summed over distinct devices (folders on one device count once). */
    readBytesPerS: number | null;
    writeBytesPerS: number | null;
    summed: boolean;
  } | null;
  /** Where the updates run, and what each way costs. */
  update: {
    mode: UpdateMode;
    /** Streamed units updated at home / on the device. */
    homeUnits: number;
    deviceUnits: number;
    /** Predicted step time with every streamed unit updated at home / on the device (null: unknown). */
    allHomeStepMs: number | null;
    allDeviceStepMs: number | null;
    reason: string;
  };
  /** The forwards' figures and where they come from; null without a calibration. */
  compute: {
    /** Both forwards of one block at this batch, one perturbation. */
    blockMs: number;
    blockSource: ComputeSource;
    headMs: number;
    headSource: ComputeSource;
    detail: string;
  } | null;
  times: TimeTerms | null;
  predictedStepMs: number | null;
  floorMs: number | null;
  bound: Bound | null;
  calibratedAt: string | null;
  feasible: boolean;
  shortfalls: string[];
  notes: string[];
}

const F32 = 4;
const SPILL_ALIGN = 4096;
/** The CPU backend's vocabulary chunk (native/src/cpu/backend_cpu.cpp kVocabChunk). */
const HEAD_CHUNK_ROWS = 1024;
/** The engine process's own memory beyond the buffers the plan counts (measured: 75–96 MiB, bench/results/big-model-cpu.md). */
export const ENGINE_RUNTIME_BYTES = 128 * 2 ** 20;
const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;

/**
 * The largest group of tensors one of the unit's kernels reads, in floats padded to 16 (the working
 * copies hold one; native/src/arch/block.cpp WorkingCopies::largest_group): a block's weight and
 * its bias (roles <stem>_w and <stem>_b), the head's norm with lm_head (the embedding when tied).
 */
function largestGroup(info: ModelInfo, u: ModelInfo['units'][number]): number {
  const floats = (t: { shape: number[] } | undefined) => (t ? roundUp(t.shape.reduce((a, b) => a * b, 1), 16) : 0);
  if (u.kind === 'embed') return 0;
  if (u.kind === 'head') return headGroup(info, u) + floats(lmHeadOf(info, u));
  const groups = new Map<string, number>();
  for (const [role, t] of Object.entries(u.tensors)) {
    const stem = role.replace(/_[wb]$/, '');
    groups.set(stem, (groups.get(stem) ?? 0) + floats(t));
  }
  return Math.max(0, ...groups.values());
}

const lmHeadOf = (info: ModelInfo, u: ModelInfo['units'][number]) =>
  u.tensors.lm_head ?? (info.config.tiedEmbeddings ? info.units.find((x) => x.kind === 'embed')?.tensors.tok : undefined);

/** The head's group without lm_head: its norm and project_out (OPT-350m), padded to 16 floats each. */
function headGroup(info: ModelInfo, u: ModelInfo['units'][number]): number {
  return [u.tensors.norm_w, u.tensors.norm_b, u.tensors.proj].reduce((n, t) => n + (t ? roundUp(t.shape.reduce((a, b) => a * b, 1), 16) : 0), 0);
}

/** A block's 2-D weights (roles <stem>_w) with the floats of their group (the weight and its bias, padded to 16). */
function matricesOf(u: ModelInfo['units'][number]): NonNullable<PlannerUnit['matrices']> {
  return Object.entries(u.tensors)
    .filter(([role, t]) => role.endsWith('_w') && t.shape.length === 2)
    .map(([role, t]) => {
      const stem = role.slice(0, -2);
      const bias = u.tensors[`${stem}_b`];
      return { stem, out: t.shape[0], in: t.shape[1], groupFloats: roundUp(t.shape[0] * t.shape[1], 16) + (bias ? roundUp(bias.shape.reduce((a, b) => a * b, 1), 16) : 0) };
    });
}

/**
 * What a trainable set costs (native/src/zo/trainable.cpp): the elements a step moves, the adapters'
 * device bytes with their noise and working copies (Trainable::device_bytes), the largest block group
 * holding an adapted weight (its working copy), in floats, and per unit the parameters of its block
 * matrices (what sparse trains).
 */
export function trainableOf(
  m: PlannerModel,
  t: PlanTrainable,
): { elements: number; adapterBytes: number; adaptedGroupFloats: number; adaptedParameters: number; matrixParameters: Map<PlannerUnit, number> } {
  const pad = (n: number) => roundUp(n, 16);
  const r = t.rank ?? 8;
  const targets = new Set(t.targets ?? ['q', 'v']);
  const fraction = t.fraction ?? 0.25;
  let elements = 0;
  let tensors = 0;
  let noise = 0;
  let work = 0;
  let adaptedGroupFloats = 0;
  let adaptedParameters = 0;
  const matrixParameters = new Map<PlannerUnit, number>();
  for (const u of m.units) {
    if (u.kind !== 'block') continue;
    matrixParameters.set(u, (u.matrices ?? []).reduce((n, x) => n + x.out * x.in, 0));
    for (const x of u.matrices ?? []) {
      if (t.set === 'sparse') elements += Math.floor(fraction * x.out * x.in);
      if ((t.set !== 'lora' && t.set !== 'loldu') || !targets.has(x.stem)) continue;
      adaptedGroupFloats = Math.max(adaptedGroupFloats, x.groupFloats);
      adaptedParameters += x.out * x.in;
      if (t.set === 'lora') {
        // A (r, in) and B (out, r), each with its noise and perturbed copy.
        tensors += pad(r * x.in) + pad(x.out * r);
        noise = Math.max(noise, pad(r * x.in) + pad(x.out * r));
        work = Math.max(work, pad(r * x.in) + pad(x.out * r));
        elements += r * (x.in + x.out);
      } else {
        // U_r (r, in), P L_r (out, r), -D_r, z (r) and s (1); z and s train.
        tensors += pad(r * x.in) + pad(x.out * r) + 2 * pad(r) + pad(1);
        noise = Math.max(noise, pad(r) + 16);
        work = Math.max(work, pad(r) + 16 + pad(r) + pad(r * x.in));
        elements += r + 1;
      }
    }
  }
  if (t.set === 'full') elements = m.units.reduce((n, u) => n + u.parameters, 0);
  if (t.set === 'tokens') {
    // A delta per row for the embedding, and one for an untied head; each with its noise and copy.
    // The working copy holds the whole embedding (and the head's group) with the rows merged in
    // (not on the CPU, where the rows are merged on their own: makePlan's rowsMerged).
    const rows = (t.tokens ?? 2) * m.config.hidden;
    const deltas = m.config.tiedEmbeddings ? 1 : 2;
    elements = deltas * rows;
    tensors = deltas * pad(rows);
    noise = work = pad(rows);
    const embedding = m.config.vocabSize * m.config.hidden;
    // The embedding's group, or the head's (its norm and the rows' matrix) when larger.
    const head = m.units.find((u) => u.kind === 'head');
    adaptedGroupFloats = Math.max(pad(embedding), head?.maxGroupParameters ?? 0);
    adaptedParameters = deltas * embedding;
  }
  const adapterBytes = freezesBase(t.set) ? F32 * (tensors + noise + work) : 0;
  return { elements, adapterBytes, adaptedGroupFloats, adaptedParameters, matrixParameters };
}

/** The planner's view of a loaded model folder: parameters and engine slot size per unit. */
export function plannerModel(info: ModelInfo): PlannerModel {
  const seen = new Set<string>();
  const units = info.units.map((u) => {
    let parameters = 0;
    let slot = 0;
    for (const t of Object.values(u.tensors)) {
      const n = t.shape.reduce((a, b) => a * b, 1);
      parameters += n;
      if (seen.has(t.name)) continue;
      seen.add(t.name);
      slot += roundUp(n, 16) * F32;
    }
    const lmHead = u.kind === 'head' ? lmHeadOf(info, u) : undefined;
    return {
      kind: u.kind,
      index: u.index,
      parameters,
      slotBytes: slot,
      maxGroupParameters: largestGroup(info, u),
      ...(u.kind === 'block' ? { matrices: matricesOf(u) } : {}),
      ...(lmHead ? { chunkedHead: { groupParameters: headGroup(info, u), rows: lmHead.shape[0], width: lmHead.shape[1] } } : {}),
    };
  });
  const c = info.config;
  return {
    name: info.name,
    config: {
      hidden: c.hidden,
      heads: c.heads,
      intermediate: c.intermediate,
      vocabSize: c.vocabSize,
      tiedEmbeddings: c.tiedEmbeddings,
      family: c.family,
      kvHeads: c.kvHeads,
      headDim: c.headDim,
      norm: c.norm,
      activation: c.activation,
    },
    units,
  };
}

export function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}

/**
 * Peak activations of one forward pass: hidden states, q/k/v, MLP, attention scores and logits (an
 * upper bound), with `streams` activation streams alive (2q in a step: the + and - of each perturbation).
 */
export function activationBytes(c: PlannerModel['config'], batch: number, seq: number, streams = 2): number {
  // Per stream (streams run through a block in lockstep, each with its own buffers): the hidden
  // state and the engine's arena (a, tmp, q, att, k, v, m1, m2); once: logits and attention scores.
  const qd = c.heads * (c.headDim ?? c.hidden / c.heads);
  const kvd = (c.kvHeads ?? c.heads) * (c.headDim ?? c.hidden / c.heads);
  const arena = 2 * c.hidden + 2 * Math.max(qd, c.hidden) + 2 * Math.max(kvd, c.hidden) + 2 * Math.max(c.intermediate, qd);
  return F32 * (batch * seq * (Math.max(1, streams) * (c.hidden + arena) + c.vocabSize) + batch * c.heads * seq * seq);
}

/** FLOPs of one forward pass: 2 per parameter per token in the blocks, causal attention, the head's logits. */
export function forwardFlops(m: PlannerModel, batch: number, seq: number): { blocks: number; head: number; total: number } {
  const tokens = batch * seq;
  const blocks = m.units.filter((u) => u.kind === 'block');
  const blockParams = blocks.reduce((n, u) => n + u.parameters, 0);
  const attention = blocks.length * 2 * batch * seq * seq * m.config.hidden; // QK^T and AV, causal half
  const head = 2 * tokens * m.config.hidden * m.config.vocabSize;
  return { blocks: 2 * tokens * blockParams + attention, head, total: 2 * tokens * blockParams + attention + head };
}

const inf = Number.POSITIVE_INFINITY;

export function makePlan(input: PlanInput): Plan {
  const { model: m, budgets } = input;
  const q = Math.max(1, input.q ?? 1);
  const K = Math.max(1, input.writeBackEvery ?? 1);
  const shared = input.computeDevice === 'cpu';
  const devName = shared ? 'CPU memory' : 'device memory';
  const mode: UpdateMode = input.updateMode ?? 'auto';
  const requestedSlots = Math.max(1, Math.min(2, input.stageSlots ?? (shared ? 1 : 2)));
  let slots = requestedSlots;
  const requestedPrefetch = Math.max(0, input.prefetch ?? 2);
  // bf16/fp16 masters: streamed units are stored, moved, staged and written in 2 bytes per parameter
  // (widened or perturbed into float32 a tensor group at a time); resident ones stay float32.
  const EB = input.masters === 'fp32' ? F32 : 2;
  const dirs = input.spillDirs ?? [];
  // lora, loldu and tokens freeze the base: it is read wherever it lives and never updated or written back;
  // the adapters live on the compute device (ENGINE-SPEC.md, "Trainable sets").
  const train: PlanTrainable = input.trainable?.set ? input.trainable : { set: 'full' };
  const frozenBase = freezesBase(train.set);
  const tf = trainableOf(m, train);
  const shortfalls: string[] = [];
  const notes: string[] = [];

  const bytesOf = (u: PlannerUnit) => u.parameters * F32;
  const slotOf = (u: PlannerUnit) => u.slotBytes ?? u.parameters * F32;
  /** As stored on the CPU or the SSD and moved over the links. */
  const storedOf = (u: PlannerUnit) => u.parameters * EB;
  const storedSlotOf = (u: PlannerUnit) => (slotOf(u) / F32) * EB;
  const weights = m.units.reduce((n, u) => n + bytesOf(u), 0);
  // The engine's scratch: z and the perturbed working copy, each the size of the largest group of
  // tensors one kernel call reads (embeddings are perturbed on the fly; a tied head reads the embedding).
  // On the CPU a trained head is perturbed a vocabulary chunk at a time: two chunks of up to 1,024
  // rows (a +eps/-eps pair) per thread at work, instead of lm_head in the working copies
  // (Engine::head_chunked, CpuBackend::head_chunk_floats). Trainable tokens' rows are merged on
  // their own there (Engine::rows_merged): the head's chunks take them, and the embedding and the
  // head need no working copy.
  const head = m.units.find((u) => u.kind === 'head');
  const rowsMerged = shared && train.set === 'tokens';
  const chunkedHead = shared && (!frozenBase || rowsMerged) ? head?.chunkedHead : undefined;
  const adaptedGroupFloats = rowsMerged ? 0 : tf.adaptedGroupFloats;
  const headChunks = chunkedHead
    ? F32 *
      Math.min(Math.max(1, input.threads ?? 1), Math.ceil(chunkedHead.rows / HEAD_CHUNK_ROWS)) *
      2 *
      Math.min(chunkedHead.rows, HEAD_CHUNK_ROWS) *
      chunkedHead.width
    : 0;
  const largestUnit = Math.max(
    0,
    ...m.units.map((u) =>
      u === head && chunkedHead
        ? F32 * chunkedHead.groupParameters
        : u.maxGroupParameters !== undefined
          ? F32 * u.maxGroupParameters
          : bytesOf(u) + (u.kind === 'head' && m.config.tiedEmbeddings ? F32 * m.config.vocabSize * m.config.hidden : 0),
    ),
  );
  // The CPU backend makes a block's groups a +eps/-eps pair at a time: one more copy, of the largest block group.
  const largestBlockGroup = Math.max(0, ...m.units.filter((u) => u.kind === 'block').map((u) => F32 * (u.maxGroupParameters ?? u.parameters)));
  // A frozen base is read in place: z holds the largest adapted group's delta, the working copy
  // that group's weight (or, with a 16-bit base, the widened largest block group); never a
  // +eps/-eps pair (WorkingCopies::largest_adapted_group).
  const workingCopies = frozenBase
    ? F32 * adaptedGroupFloats + Math.max(F32 * adaptedGroupFloats, EB < F32 ? largestBlockGroup : 0) + headChunks
    : 2 * largestUnit + (shared ? largestBlockGroup : 0) + headChunks;
  const activations = activationBytes(m.config, input.batchSize, input.maxLength, 2 * q);
  const fixedUnits = m.units.filter((u) => u.kind !== 'block').reduce((n, u) => n + bytesOf(u), 0);
  const adapters = tf.adapterBytes;
  const fixedDevice = fixedUnits + workingCopies + activations + adapters;

  const cpuCap = budgets.cpu ?? inf;
  const devCap = shared ? Math.min(budgets.device ?? inf, cpuCap) : budgets.device ?? inf;
  const ssdCap = budgets.ssd ?? inf;
  const blocks = m.units.filter((u) => u.kind === 'block');
  // Resident blocks are counted in float32 in every precision: the engine keeps them in 2 bytes
  // with bf16/fp16 masters (so it uses less than planned), but the placement stays the one the
  // float32 plan makes, and precisions compare over the same homes.
  const blockBytes = blocks.reduce((n, u) => n + bytesOf(u), 0);
  const maxSlot = Math.max(0, ...blocks.map(slotOf));
  const maxStored = Math.max(0, ...blocks.map(storedSlotOf));
  const runtime = ENGINE_RUNTIME_BYTES;

  // --- placement: device first, then CPU, then SSD. Something streams: staging slots on the device
  // and one I/O buffer on the host, each the largest streamed unit.
  // `readAhead` SSD buffers are reserved in host memory up front; they are released again when
  // nothing ends up on the SSD.
  const place = (readAhead: number) => {
    const homes = new Map<PlannerUnit, Home>();
    for (const u of m.units) homes.set(u, 'device');
    let devUsed = fixedDevice;
    let cpuUsed = runtime;
    let stage = 0;
    let ioBuffer = 0;
    let prefetchBuffers = 0;
    const pool = () => (shared ? devUsed + cpuUsed : cpuUsed);
    if (fixedDevice + blockBytes > devCap || (shared && fixedDevice + blockBytes + runtime > cpuCap)) {
      stage = slots * (EB < F32 ? maxStored : maxSlot);
      ioBuffer = maxStored;
      prefetchBuffers = readAhead * maxStored;
      devUsed += stage;
      cpuUsed += ioBuffer + prefetchBuffers;
      for (const u of blocks) {
        const b = bytesOf(u);
        if (devUsed + b <= devCap && (!shared || pool() + b <= cpuCap)) {
          devUsed += b;
        } else if (pool() + storedOf(u) <= cpuCap && !shared) {
          cpuUsed += storedOf(u);
          homes.set(u, 'cpu');
        } else {
          homes.set(u, 'ssd');
        }
      }
      if (![...homes.values()].includes('ssd')) {
        cpuUsed -= prefetchBuffers;
        prefetchBuffers = 0;
      }
    } else {
      devUsed += blockBytes;
    }
    return { homes, devUsed, cpuUsed, stage, ioBuffer, prefetchBuffers, readAhead };
  };
  // Two staging slots let the next upload overlap this block's compute; when what must stay on the
  // device does not fit beside two, one slot it is (uploads then wait for the compute).
  if (requestedSlots > 1 && fixedDevice + blockBytes > devCap && fixedDevice + requestedSlots * (EB < F32 ? maxStored : maxSlot) > devCap) {
    slots = 1;
    notes.push('One staging slot instead of two: what must stay on the device does not fit beside two (uploads no longer overlap the compute).');
  }
  // The deepest read-ahead whose buffers fit the CPU budget beside what must stay (lowered to 0 if need be).
  let placed = place(requestedPrefetch);
  for (let p = requestedPrefetch - 1; p >= 0 && (shared ? placed.devUsed + placed.cpuUsed : placed.cpuUsed) > cpuCap; p--) placed = place(p);
  const { homes, devUsed, cpuUsed, stage, ioBuffer, prefetchBuffers } = placed;
  const prefetch = [...homes.values()].includes('ssd') ? placed.readAhead : requestedPrefetch;
  if (prefetch < requestedPrefetch) notes.push(`SSD read-ahead lowered from ${requestedPrefetch} to ${prefetch} block${prefetch === 1 ? '' : 's'}: the CPU budget cannot hold more read-ahead buffers.`);
  const homeOf = (u: PlannerUnit) => homes.get(u) as Home;

  const ssdUnits = m.units.filter((u) => homeOf(u) === 'ssd');
  const streamed = m.units.filter((u) => homeOf(u) !== 'device');
  const residentParams = m.units.filter((u) => homeOf(u) === 'device').reduce((n, u) => n + u.parameters, 0);

  // --- striping: SSD unit j (in unit order) lives in folder j mod F, one spill file per folder.
  const F = Math.max(1, dirs.length);
  const spillIndex = new Map<PlannerUnit, number>();
  ssdUnits.forEach((u, j) => spillIndex.set(u, j % F));
  const r = input.rates;
  const folderRates = (i: number): SpillRates => {
    const s = r?.spill?.[i];
    if (s) return s;
    return { readBytesPerS: r?.ssdReadBytesPerS ?? null, writeBytesPerS: r?.ssdWriteBytesPerS ?? null, ...(r?.ssdUnavailable ? { unavailable: r.ssdUnavailable } : {}) };
  };
  const folders: SsdFolderPlan[] = dirs.map((dir, i) => {
    const mine = ssdUnits.filter((u) => spillIndex.get(u) === i);
    const fr = folderRates(i);
    return {
      dir,
      device: input.spillInfo?.[i]?.device ?? fr.device ?? null,
      mount: input.spillInfo?.[i]?.mount ?? null,
      units: mine.length,
      bytes: mine.reduce((n, u) => n + roundUp(storedSlotOf(u), SPILL_ALIGN), 0),
      readBytesPerS: r ? fr.readBytesPerS : null,
      writeBytesPerS: r ? fr.writeBytesPerS : null,
      ...(fr.unavailable ? { unavailable: fr.unavailable } : {}),
    };
  });
  // Devices: folders with the same st_dev share one; folders whose device is unknown are taken to share one.
  const deviceKey = (f: SsdFolderPlan) => f.device ?? '?';
  const deviceKeys = [...new Set(folders.map(deviceKey))];
  const deviceBw = (key: string, which: 'readBytesPerS' | 'writeBytesPerS'): number | null => {
    const xs = folders.filter((f) => deviceKey(f) === key).map((f) => f[which]);
    const known = xs.filter((x): x is number => x !== null && x > 0);
    return known.length ? Math.max(...known) : null;
  };
  const ssdFile = folders.length ? folders.reduce((n, f) => n + f.bytes, 0) : ssdUnits.reduce((n, u) => n + roundUp(storedSlotOf(u), SPILL_ALIGN), 0);
  const ssdBytes = ssdUnits.reduce((n, u) => n + storedOf(u), 0);

  // --- what is short
  const fixedNeed = fixedDevice + stage;
  if (fixedNeed + (shared ? ioBuffer : 0) > devCap) {
    const parts = [
      `embeddings and head ${formatBytes(fixedUnits)}`,
      `working copies ${formatBytes(workingCopies)}`,
      `activations ${formatBytes(activations)}`,
      ...(stage ? [`staging slot${slots > 1 ? 's' : ''} ${formatBytes(stage)}`] : []),
      ...(shared && ioBuffer ? [`I/O buffer ${formatBytes(ioBuffer)}`] : []),
    ];
    const need = fixedNeed + (shared ? ioBuffer : 0);
    shortfalls.push(
      `${devName}: what must stay on the compute device needs ${formatBytes(need)} (${parts.join(', ')}) but the budget is ${formatBytes(devCap)} (short by ${formatBytes(need - devCap)})`,
    );
  } else if (!shared && ioBuffer > cpuCap) {
    shortfalls.push(`CPU memory: the I/O buffer streamed blocks pass through needs ${formatBytes(ioBuffer)} but the budget is ${formatBytes(cpuCap)} (short by ${formatBytes(ioBuffer - cpuCap)})`);
  } else if ((shared ? devUsed + cpuUsed : cpuUsed) > cpuCap) {
    const need = shared ? devUsed + cpuUsed : cpuUsed;
    const parts = [
      `the engine process ${formatBytes(runtime)}`,
      ...(ioBuffer ? [`I/O buffer ${formatBytes(ioBuffer)}`] : []),
      ...(prefetchBuffers ? [`read-ahead buffers ${formatBytes(prefetchBuffers)}`] : []),
      ...(shared ? [`the compute arena ${formatBytes(devUsed)}`] : []),
    ];
    shortfalls.push(`CPU memory: ${parts.join(', ')} need ${formatBytes(need)} but the budget is ${formatBytes(cpuCap)} (short by ${formatBytes(need - cpuCap)})`);
  }
  if (ssdUnits.length) {
    const what = `${ssdUnits.length} block${ssdUnits.length === 1 ? '' : 's'} (${formatBytes(ssdBytes)}) fit neither ${shared ? 'CPU memory' : 'device nor CPU memory'}`;
    if (!dirs.length) {
      shortfalls.push(`SSD: ${what} and need the SSD tier, but no spill folder was given (--spill DIR); spill file ${formatBytes(ssdFile)}`);
    } else if (ssdFile > ssdCap) {
      shortfalls.push(
        `SSD: ${what}; the spill file${folders.length > 1 ? 's need' : ' needs'} ${formatBytes(ssdFile)} but the SSD budget is ${formatBytes(ssdCap)} (short by ${formatBytes(ssdFile - ssdCap)})`,
      );
    } else {
      // Per filesystem: the spill files of its folders must fit its free space.
      if (folders.length > 1) {
        for (const key of deviceKeys) {
          const fs = folders.map((f, i) => ({ f, i })).filter(({ f }) => deviceKey(f) === key);
          const free = fs.map(({ i }) => input.spillInfo?.[i]?.freeBytes).filter((x): x is number => x !== undefined);
          const need = fs.reduce((n, { f }) => n + f.bytes, 0);
          if (free.length && need > Math.min(...free)) {
            shortfalls.push(
              `SSD: the spill file${fs.length > 1 ? 's' : ''} in ${fs.map(({ f }) => f.dir).join(', ')} need ${formatBytes(need)} but that filesystem has ${formatBytes(Math.min(...free))} free (short by ${formatBytes(need - Math.min(...free))})`,
            );
          }
        }
      }
      if (r) {
        for (const f of folders) {
          if (f.units && f.readBytesPerS === null) {
            shortfalls.push(`SSD: ${what}, but the spill folder ${f.dir} cannot be used: ${f.unavailable ?? 'not measured'}`);
          }
        }
      }
    }
  }

  // --- compute: the measured block where there is one, else FLOPs at the GEMM rate
  const fwd = forwardFlops(m, input.batchSize, input.maxLength);
  // The forwards' token-proportional part scales to the tokens a step really computes.
  const shapeTokens = input.batchSize * input.maxLength;
  const tokenScale = input.tokensPerStep && input.tokensPerStep > 0 ? Math.min(1, input.tokensPerStep / shapeTokens) : 1;
  let compute: Plan['compute'] = null;
  if (r) {
    const estimatedBlock = blocks.length ? (1000 * 2 * fwd.blocks) / blocks.length / r.gemmFlopsPerS : 0;
    const measured = r.blockForwardMs !== undefined;
    const perturb = measured ? Math.min(r.blockPerturbMs ?? 0, r.blockForwardMs as number) : 0;
    // A frozen base perturbs nothing but its adapted matrices (base + delta): that share of the block's perturbation time.
    const blockParams = blocks.reduce((n, u) => n + u.parameters, 0);
    const perturbShare = frozenBase ? Math.min(1, tf.adaptedParameters / Math.max(1, blockParams)) : 1;
    const scaled = tokenScale < 1 ? `, scaled to ${Math.round(input.tokensPerStep as number)} tokens per step from the ${shapeTokens} of the shape` : '';
    compute = {
      blockMs: measured ? perturb * perturbShare + ((r.blockForwardMs as number) - perturb) * tokenScale : estimatedBlock * tokenScale,
      blockSource: measured ? r.blockSource ?? 'measured' : 'estimated',
      headMs: ((1000 * 2 * fwd.head) / r.gemmFlopsPerS) * tokenScale,
      headSource: 'estimated',
      detail: measured
        ? `${(r.blockForwardMs as number).toFixed(2)} ms per block for both forwards, z and the perturbed copies included${r.blockDetail ? ` (${r.blockDetail})` : ''}${scaled}` +
          (frozenBase ? `; of its ${perturb.toFixed(2)} ms of z and perturbed copies, the adapted matrices' share ${(100 * perturbShare).toFixed(0)}% (the frozen rest is read in place)` : '')
        : `${(fwd.blocks / Math.max(1, blocks.length) / 1e9).toFixed(3)} GFLOP per block per forward at the measured GEMM rate of ${(r.gemmFlopsPerS / 1e9).toFixed(1)} GFLOP/s${scaled}`,
    };
  }
  const forwardMs = compute ? q * (blocks.length * compute.blockMs + compute.headMs) : 0;

  // --- the cost of a choice of update modes (streamed units updated on the device: `onDevice`)
  const hostRate = r?.cpuUpdateElemsPerS ?? 0;
  const devRate = r ? r.deviceUpdateElemsPerS ?? (shared ? r.cpuUpdateElemsPerS : null) : null;
  // SSD replays run on one prefetch thread beside a GPU's compute; on the CPU backend they take
  // their share of the same cores, so they count at the full host rate on the compute path.
  const replayRate = r ? (shared ? r.cpuUpdateElemsPerS : r.cpuUpdateElemsPerS / Math.max(1, r.hostThreads ?? 1)) : 0;
  // Pending updates an SSD unit's visit applies on average: 1 .. K of them, then it is rewritten.
  const pendingPerVisit = (K + 1) / 2;
  const ms = (bytes: number, bw: number | null | undefined) => (bytes === 0 ? 0 : bw && bw > 0 ? (1000 * bytes) / bw : inf);
  const updateCost = (u: PlannerUnit, on: UpdateOn) => {
    const home = homeOf(u);
    const n = u.parameters;
    if (frozenBase) return { ms: 0, d2h: 0 };
    if (home === 'device') return { ms: devRate ? (1000 * q * n) / devRate : null, d2h: 0 };
    if (on === 'device') {
      const floats = q * n * (home === 'ssd' ? pendingPerVisit : 1);
      return { ms: devRate ? (1000 * floats) / devRate : null, d2h: home === 'ssd' ? storedOf(u) / K : storedOf(u) };
    }
    if (home === 'cpu') return { ms: hostRate ? (1000 * q * n) / hostRate : null, d2h: 0 };
    return { ms: replayRate ? (1000 * q * n * pendingPerVisit) / replayRate : null, d2h: 0 };
  };
  const evaluate = (onDevice: Set<PlannerUnit>) => {
    const on = (u: PlannerUnit): UpdateOn => (homeOf(u) === 'device' || onDevice.has(u) ? 'device' : 'home');
    // A frozen base: only the adapters are updated, on the device; no unit is updated or written back.
    let deviceFloats = q * (frozenBase ? tf.elements : residentParams);
    let hostFloats = 0;
    let replayFloats = 0;
    let d2hBytes = 0;
    for (const u of frozenBase ? [] : streamed) {
      const n = u.parameters;
      if (on(u) === 'device') {
        deviceFloats += q * n * (homeOf(u) === 'ssd' ? pendingPerVisit : 1);
        d2hBytes += homeOf(u) === 'ssd' ? storedOf(u) / K : storedOf(u);
      } else if (homeOf(u) === 'cpu') {
        hostFloats += q * n;
      } else {
        replayFloats += q * n * pendingPerVisit;
      }
    }
    const link = {
      hostToDevice: streamed.reduce((n, u) => n + storedOf(u), 0), // one visit per step, whatever q is
      deviceToHost: d2hBytes,
      ssdRead: ssdBytes,
      ssdWrite: frozenBase ? 0 : ssdBytes / K,
    };
    if (!r) return { link, on, times: null, predicted: null, floor: null, bound: null as Bound | null };
    // SSD traffic per device: reads and write-backs of its folders' units.
    let ssdReadMs = 0;
    let ssdWriteMs = 0;
    let ssdWriteHomeMs = 0;
    let ssdWriteDeviceMs = 0;
    let ssdBusyMs = 0; // a device reads and writes through the same bandwidth, whichever thread asks
    const keys = folders.length ? deviceKeys : ['?'];
    for (const key of keys) {
      const mine = ssdUnits.filter((u) => (folders.length ? deviceKey(folders[spillIndex.get(u) as number]) === key : true));
      const read = folders.length ? deviceBw(key, 'readBytesPerS') : r.ssdReadBytesPerS;
      const write = folders.length ? deviceBw(key, 'writeBytesPerS') : r.ssdWriteBytesPerS;
      const rb = mine.reduce((n, u) => n + storedOf(u), 0);
      const written = frozenBase ? [] : mine;
      const wh = written.filter((u) => on(u) === 'home').reduce((n, u) => n + storedOf(u) / K, 0);
      const wd = written.filter((u) => on(u) === 'device').reduce((n, u) => n + storedOf(u) / K, 0);
      ssdReadMs = Math.max(ssdReadMs, ms(rb, read));
      ssdWriteMs = Math.max(ssdWriteMs, ms(wh + wd, write));
      ssdWriteHomeMs = Math.max(ssdWriteHomeMs, ms(wh, write));
      ssdWriteDeviceMs += ms(wd, write); // written from the compute thread, one unit after another
      ssdBusyMs = Math.max(ssdBusyMs, ms(rb, read) + ms(wh + wd, write));
    }
    const deviceUpdateMs = devRate ? (1000 * deviceFloats) / devRate : 0;
    const hostUpdateMs = hostFloats ? (1000 * hostFloats) / hostRate : 0;
    const replayMs = replayFloats ? (1000 * replayFloats) / replayRate : 0;
    const times: TimeTerms = {
      computeMs: forwardMs + deviceUpdateMs,
      hostToDeviceMs: ms(link.hostToDevice, r.h2dBytesPerS),
      deviceToHostMs: ms(link.deviceToHost, r.d2hBytesPerS),
      ssdReadMs,
      ssdWriteMs,
      cpuUpdateMs: hostUpdateMs + replayMs,
      forwardMs,
      deviceUpdateMs,
      hostUpdateMs,
      replayMs,
    };
    // GPU: uploads (two staging slots) and write-backs run on copy queues beside the compute, SSD reads,
    // replays and write-backs at home on prefetch threads. CPU: copies and replays take the compute's
    // cores; only the SSD's own time overlaps.
    const path = shared
      ? Math.max(times.computeMs + times.hostToDeviceMs + times.deviceToHostMs + ssdWriteDeviceMs + replayMs, ssdReadMs + ssdWriteHomeMs, ssdBusyMs)
      : Math.max(times.computeMs + ssdWriteDeviceMs, times.hostToDeviceMs, times.deviceToHostMs, ssdReadMs + ssdWriteHomeMs + replayMs, ssdBusyMs);
    const terms: [Bound, number][] = [
      ['compute', times.computeMs],
      ['host-to-device', times.hostToDeviceMs],
      ['device-to-host', times.deviceToHostMs],
      ['ssd-read', times.ssdReadMs],
      ['ssd-write', times.ssdWriteMs],
      ['cpu-update', times.cpuUpdateMs],
    ];
    const [bound, floor] = terms.reduce((a, b) => (b[1] > a[1] ? b : a));
    let predicted: number | null = Math.max(path + hostUpdateMs, floor);
    if (!Number.isFinite(predicted)) predicted = null;
    return { link, on, times, predicted, floor: predicted === null ? null : floor, bound: predicted === null ? null : bound };
  };

  // --- the update mode of each streamed unit
  const cpuStreamed = streamed.filter((u) => homeOf(u) === 'cpu');
  const ssdStreamed = streamed.filter((u) => homeOf(u) === 'ssd');
  const allHome = evaluate(new Set());
  const allDevice = evaluate(new Set(streamed));
  let chosen = allHome;
  let reason: string;
  if (frozenBase) {
    reason = `the base is frozen (${train.set}): streamed blocks are read and never updated, replayed or written back; only the adapters are updated, on the compute device`;
  } else if (!streamed.length) {
    reason = 'every unit is resident on the compute device and is updated there';
  } else if (mode === 'home') {
    reason = 'forced: every streamed unit is updated at home (--update-on home)';
  } else if (mode === 'device') {
    chosen = allDevice;
    reason = 'forced: every streamed unit is updated on the device and written back home (--update-on device)';
  } else if (!r) {
    reason = 'not calibrated: streamed units are updated at home';
  } else if (!devRate) {
    reason = "the compute device's update rate is not calibrated: streamed units are updated at home";
  } else {
    // The predicted step time depends on how many CPU- and SSD-homed units are updated on the device
    // (blocks are alike): try every split, keep the fastest, and the fewest device updates on a tie.
    let best = { kc: 0, ks: 0, e: allHome };
    for (let kc = 0; kc <= cpuStreamed.length; kc++) {
      for (let ks = 0; ks <= ssdStreamed.length; ks++) {
        if (kc + ks === 0) continue;
        const e = evaluate(new Set([...cpuStreamed.slice(0, kc), ...ssdStreamed.slice(0, ks)]));
        const bp = best.e.predicted ?? inf;
        const ep = e.predicted ?? inf;
        if (ep < bp * (1 - 1e-9) || (Math.abs(ep - bp) <= bp * 1e-9 && kc + ks < best.kc + best.ks)) best = { kc, ks, e };
      }
    }
    chosen = best.e;
    const n = best.kc + best.ks;
    const f = (x: number | null) => (x === null ? 'n/a' : `${x.toFixed(1)} ms`);
    const rates = `(update at home ${(hostRate / 1e9).toFixed(2)} G floats/s per term, device → host ${(r.d2hBytesPerS / 1e9).toFixed(1)} GB/s, update on the device ${(devRate / 1e9).toFixed(2)} G floats/s per term)`;
    reason =
      n === 0
        ? `auto: updates at home are fastest: step ${f(allHome.predicted)} against ${f(allDevice.predicted)} with every streamed unit updated on the device ${rates}`
        : `auto: ${n} of ${streamed.length} streamed unit${streamed.length === 1 ? '' : 's'} updated on the device: step ${f(chosen.predicted)} against ${f(allHome.predicted)} with every update at home ${rates}`;
  }

  const planned: PlannedUnit[] = m.units.map((u) => {
    const on = chosen.on(u);
    const c = updateCost(u, on);
    return {
      kind: u.kind,
      index: u.index,
      parameters: u.parameters,
      bytes: homeOf(u) === 'device' ? bytesOf(u) : storedOf(u),
      home: homeOf(u),
      updateOn: on,
      updateMs: r ? c.ms : null,
      deviceToHostBytes: c.d2h,
      spillIndex: spillIndex.get(u) ?? null,
    };
  });
  const count: Record<Home, number> = { device: 0, cpu: 0, ssd: 0 };
  for (const u of planned) count[u.home]++;
  const deviceUnits = planned.filter((u) => u.home !== 'device' && u.updateOn === 'device').length;

  // --- notes
  const { times, predicted, floor, bound } = chosen;
  if (r) {
    notes.push(
      shared
        ? 'Predicted step time = max(compute + copies + SSD replays, SSD reads + write-backs) + updates at home: on the CPU backend ' +
            'copies are made by the compute threads and SSD replays share their cores; SSD blocks are read and written back ahead on ' +
            'prefetch threads. The floor is what full overlap of copies, SSD traffic and compute would give: the largest single term (docs/TIERED-STORE.md, "The plan").'
        : 'Predicted step time = max(compute, host → device, device → host, SSD read + write-back + replay) + updates at home: uploads go through ' +
            `${slots} staging slot${slots > 1 ? 's' : ''} on a copy queue and write-backs of device-side updates are assumed to overlap compute; SSD blocks are read ` +
            '(and replayed) ahead on prefetch threads; updates at home of CPU-homed blocks follow the forwards. The floor is what full overlap would give: the largest single term (docs/TIERED-STORE.md, "The plan").',
    );
    notes.push(
      compute && compute.blockSource !== 'estimated'
        ? `Compute uses the ${compute.blockSource} forward time per block: ${compute.detail}; the head is estimated from FLOPs at the measured GEMM rate.`
        : `Compute is estimated from ${(fwd.total / 1e9).toFixed(2)} GFLOP per forward (2 forwards × ${q} perturbation${q === 1 ? '' : 's'}) at the measured GEMM rate of ${(r.gemmFlopsPerS / 1e9).toFixed(1)} GFLOP/s; it counts logits for every token (an upper bound for classification).`,
    );
    if (!devRate && !shared) notes.push("The compute device's update rate is not calibrated: updates on the device are left out of the compute time.");
  } else {
    notes.push('Predicted step time is unknown until the engine has been calibrated on this machine (`spillway plan --recalibrate`).');
  }
  if (streamed.length) notes.push(`Updates: ${reason}.`);
  if (folders.length > 1) {
    const nDev = deviceKeys.length;
    const unknown = folders.some((f) => f.device === null);
    notes.push(
      nDev > 1
        ? `SSD: ${folders.length} spill folders on ${nDev} distinct devices: their bandwidths add up (SSD blocks are striped round-robin over the folders in unit order).`
        : `SSD: the ${folders.length} spill folders are on ${unknown ? 'devices that could not be told apart (taken as one)' : `the same filesystem (${folders[0].mount ?? `device ${folders[0].device}`})`}: striping over them does not add bandwidth.`,
    );
  }
  notes.push(
    input.masters === 'fp32'
      ? 'Masters are float32 (4 bytes per parameter).'
      : `Masters are ${input.masters} with stochastic rounding of every update: streamed blocks are stored, moved and written in 2 bytes per parameter (half the CPU, SSD and link bytes of float32) and widened on the device; resident units keep the format's values in float32.`,
  );
  notes.push(`The engine process itself is budgeted ${formatBytes(runtime)} of CPU memory (runtime, addon, BLAS and small buffers).`);
  notes.push(`Activations are an upper-bound estimate for ${input.batchSize} sequences of ${input.maxLength} tokens.`);
  if (shared) notes.push('The compute device is the CPU: its arena (device-homed units, working copies, activations) is CPU memory and counts against the CPU budget.');
  if (ssdUnits.length && prefetch > 0) {
    notes.push(`SSD blocks are read ahead into ${prefetch} host buffer${prefetch === 1 ? '' : 's'} of the largest block (${formatBytes(prefetchBuffers)}), counted in CPU memory.`);
  }
  if (ssdUnits.length && K > 1 && !frozenBase) notes.push(`SSD blocks are rewritten every ${K} updates; pending updates are replayed on read in between.`);

  // What trains and what is frozen, per tier, as the engine holds it.
  function trainableSplit(): Plan['trainable'] {
    const held = (u: PlannerUnit) => (u.kind === 'block' ? (slotOf(u) / F32) * EB : slotOf(u));
    const bytes: TierBytes = { device: adapters, cpu: 0, ssd: 0 };
    const frozenBytes: TierBytes = { device: 0, cpu: 0, ssd: 0 };
    for (const u of m.units) {
      const home = homeOf(u);
      const whole = home === 'ssd' ? roundUp(held(u), SPILL_ALIGN) : held(u);
      const trained = train.set === 'full' ? whole : train.set === 'sparse' ? (tf.matrixParameters.get(u) ?? 0) * (u.kind === 'block' ? EB : F32) : 0;
      bytes[home] += trained;
      frozenBytes[home] += whole - trained;
    }
    const adapterSet = frozenBase;
    return {
      set: train.set,
      rank: adapterSet ? train.rank ?? 8 : null,
      targets: adapterSet ? [...(train.targets ?? ['q', 'v'])] : null,
      fraction: train.set === 'sparse' ? train.fraction ?? 0.25 : null,
      elements: tf.elements,
      baseFrozen: frozenBase,
      bytes,
      frozenBytes,
    };
  }
  if (frozenBase) {
    notes.push(
      `What trains: ${train.set === 'tokens' ? `the label words' rows (${train.tokens ?? 2} tokens) of the embedding${m.config.tiedEmbeddings ? ' and the tied head' : ' and of the head'}` : `${train.set} rank ${train.rank ?? 8} on ${(train.targets ?? ['q', 'v']).join(', ')}`}: ${tf.elements} elements; the adapters take ${formatBytes(adapters)} of ${devName} with their noise and working copies. ` +
        `The base is frozen: read from its home every step, never written (no update, replay or write-back; the spill file is written once at load), and its working copies are only those of the adapted ${train.set === 'tokens' ? 'embedding and head' : 'matrices'}.`,
    );
  } else if (train.set === 'sparse') {
    notes.push(
      `What trains: sparse, the smallest ${train.fraction ?? 0.25} of each block matrix (at most ${tf.elements} elements); the blocks are updated and written back as in a full run.`,
    );
  }

  const readAgg = deviceKeys.map((k) => deviceBw(k, 'readBytesPerS'));
  const writeAgg = deviceKeys.map((k) => deviceBw(k, 'writeBytesPerS'));
  const sum = (xs: (number | null)[]) => (xs.length && xs.every((x) => x !== null) ? xs.reduce((a: number, b) => a + (b as number), 0) : null);

  return {
    model: m.name,
    computeDevice: input.computeDevice,
    units: planned,
    homes: planned.map((u) => u.home),
    spillDirs: [...dirs],
    deviceUpdate: planned.map((u) => u.home !== 'device' && u.updateOn === 'device'),
    updateOn: planned.map((u) => u.updateOn),
    count,
    memory: { device: devUsed, cpu: cpuUsed, ssd: ssdFile },
    breakdown: { weights, workingCopies, activations, stage, ioBuffer, prefetchBuffers, runtime, adapters },
    trainable: trainableSplit(),
    prefetch,
    stageSlots: slots,
    bytesPerParameter: EB,
    linkBytesPerStep: chosen.link,
    ssd: folders.length
      ? { folders, devices: deviceKeys.length, readBytesPerS: r ? sum(readAgg) : null, writeBytesPerS: r ? sum(writeAgg) : null, summed: deviceKeys.length > 1 }
      : null,
    update: {
      mode,
      homeUnits: streamed.length - deviceUnits,
      deviceUnits,
      allHomeStepMs: allHome.predicted,
      allDeviceStepMs: streamed.length ? (devRate ? allDevice.predicted : null) : allHome.predicted,
      reason,
    },
    compute,
    times,
    predictedStepMs: predicted,
    floorMs: floor,
    bound,
    calibratedAt: r?.date ?? null,
    feasible: shortfalls.length === 0,
    shortfalls,
    notes,
  };
}

/** What a run keeps of its plan (its start event carries it): homes per tier, predictions per step and per link. */
export function runPlan(p: Plan): RunPlan {
  const t = p.times;
  return {
    homes: { ...p.count },
    predictedStepMs: p.predictedStepMs,
    floorMs: p.floorMs,
    bound: p.bound,
    linkBytes: { ...p.linkBytesPerStep },
    linkMs: t ? { hostToDevice: t.hostToDeviceMs, deviceToHost: t.deviceToHostMs, ssdRead: t.ssdReadMs, ssdWrite: t.ssdWriteMs } : null,
    ioWaitMs: t && p.predictedStepMs !== null ? Math.max(0, p.predictedStepMs - t.computeMs - t.hostUpdateMs) : null,
  };
}

/** The plan's "what trains" lines: trainable and frozen bytes apart, and where each lives. */
export function formatTrainable(p: Plan): string[] {
  const t = p.trainable;
  const dev = p.computeDevice === 'cpu' ? 'device (CPU arena)' : 'device (GPU)';
  const where = (b: TierBytes) => {
    const parts = ([['device', dev], ['cpu', 'CPU'], ['ssd', 'SSD']] as const).filter(([k]) => b[k] > 0).map(([k, name]) => `${name} ${formatBytes(b[k])}`);
    return parts.length ? parts.join(', ') : 'none';
  };
  const sum = (b: TierBytes) => b.device + b.cpu + b.ssd;
  const what =
    t.set === 'full'
      ? 'full (every weight)'
      : t.set === 'sparse'
        ? `sparse (the smallest ${t.fraction} of each block matrix)`
        : t.set === 'tokens'
          ? "tokens (the label words' rows of the embedding)"
          : `${t.set} rank ${t.rank} on ${(t.targets ?? []).join(', ')}`;
  const precision = p.bytesPerParameter === F32 ? 'float32' : `blocks in ${p.bytesPerParameter} bytes per parameter`;
  return [
    `what trains: ${what}; ${t.elements} elements a step moves${t.set === 'sparse' ? ' (at most)' : ''}`,
    `  trainable ${formatBytes(sum(t.bytes))}: ${where(t.bytes)}${t.baseFrozen ? ' (the adapters, with their noise and working copies)' : ''}`,
    `  frozen    ${formatBytes(sum(t.frozenBytes))}: ${where(t.frozenBytes)} (${precision})${t.baseFrozen ? '; read only: never updated, replayed or written back' : ''}`,
  ];
}

/** A plain-text rendering for `spillway plan`; `steps`: the run's, for its predicted whole time. */
export function formatPlan(p: Plan, o: { steps?: number } = {}): string {
  const ms = (x: number | null) => (x === null ? 'n/a' : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(1)} ms`);
  // A link's time per step: nothing moves on it, or its rate was not measured (no usable spill folder).
  const link = (x: number, bytes: number) => (bytes === 0 ? 'none' : Number.isFinite(x) ? ms(x) : 'unmeasured');
  const bw = (x: number | null) => (x === null ? 'n/a' : `${(x / 1e9).toFixed(2)} GB/s`);
  const dev = p.computeDevice === 'cpu' ? 'device (CPU arena)' : 'device (GPU)';
  const lines = [`plan for ${p.model}: compute on the ${p.computeDevice.toUpperCase()}; ${p.feasible ? 'fits' : 'DOES NOT FIT'}`];
  for (const s of p.shortfalls) lines.push(`  short: ${s}`);
  const striped = p.spillDirs.length > 1;
  lines.push('', `unit          parameters        bytes  home${striped ? '  folder' : ''}  update`);
  for (const u of p.units) {
    const name = `${u.kind}${u.index >= 0 ? ` ${u.index}` : ''}`;
    const folder = striped ? `  ${(u.spillIndex === null ? '' : `#${u.spillIndex}`).padEnd(6)}` : '';
    const wb = u.deviceToHostBytes ? ` + write-back ${formatBytes(u.deviceToHostBytes)}` : '';
    const upd = p.trainable.baseFrozen ? 'frozen (read only)' : `${u.updateOn.padEnd(6)} ${u.updateMs === null ? '' : ms(u.updateMs)}${wb}`;
    lines.push(`${name.padEnd(12)} ${String(u.parameters).padStart(11)} ${formatBytes(u.bytes).padStart(12)}  ${u.home.padEnd(6)}${folder}  ${upd}`);
  }
  lines.push(
    '',
    'memory per tier',
    `  ${dev.padEnd(20)} ${formatBytes(p.memory.device)} (working copies ${formatBytes(p.breakdown.workingCopies)}, activations ${formatBytes(p.breakdown.activations)}, staging ${formatBytes(p.breakdown.stage)})`,
    `  ${'CPU'.padEnd(20)} ${formatBytes(p.memory.cpu)} (I/O buffer ${formatBytes(p.breakdown.ioBuffer)}, read-ahead ${formatBytes(p.breakdown.prefetchBuffers)}, engine process ${formatBytes(p.breakdown.runtime)})`,
    `  ${(p.spillDirs.length > 1 ? 'SSD (spill files)' : 'SSD (spill file)').padEnd(20)} ${formatBytes(p.memory.ssd)}`,
  );
  if (p.ssd) {
    for (const [i, f] of p.ssd.folders.entries()) {
      lines.push(
        `    #${i} ${f.dir}: ${f.units} block${f.units === 1 ? '' : 's'}, ${formatBytes(f.bytes)}; ${f.mount ? `on ${f.mount}` : 'filesystem unknown'}; read ${bw(f.readBytesPerS)}, write ${bw(f.writeBytesPerS)}${f.unavailable ? ` (${f.unavailable})` : ''}`,
      );
    }
    if (p.ssd.folders.length > 1) {
      lines.push(
        `    aggregate read ${bw(p.ssd.readBytesPerS)}, write ${bw(p.ssd.writeBytesPerS)} (${p.ssd.summed ? `summed over ${p.ssd.devices} devices` : 'one device: not summed'})`,
      );
    }
  }
  lines.push(...formatTrainable(p));
  lines.push(
    'bytes per step',
    `  host → device  ${formatBytes(p.linkBytesPerStep.hostToDevice)}`,
    `  device → host  ${formatBytes(p.linkBytesPerStep.deviceToHost)}`,
    `  SSD read       ${formatBytes(p.linkBytesPerStep.ssdRead)}`,
    `  SSD write      ${formatBytes(p.linkBytesPerStep.ssdWrite)}`,
  );
  if (p.compute) {
    lines.push(`compute per block ${ms(p.compute.blockMs)} (${p.compute.blockSource}), head ${ms(p.compute.headMs)} (${p.compute.headSource})`);
  }
  if (p.update.homeUnits + p.update.deviceUnits > 0) {
    lines.push(
      `updates (${p.update.mode}): ${p.update.homeUnits} streamed unit${p.update.homeUnits === 1 ? '' : 's'} at home, ${p.update.deviceUnits} on the device; ` +
        `step with all at home ${ms(p.update.allHomeStepMs)}, all on the device ${ms(p.update.allDeviceStepMs)}`,
    );
  }
  if (p.times) {
    const t = p.times;
    const l = p.linkBytesPerStep;
    lines.push(
      'time per step',
      `  compute ${ms(t.computeMs)} (forwards ${ms(t.forwardMs)}, updates on the device ${ms(t.deviceUpdateMs)}) · H2D ${link(t.hostToDeviceMs, l.hostToDevice)} · D2H ${link(t.deviceToHostMs, l.deviceToHost)} · ` +
        `SSD read ${link(t.ssdReadMs, l.ssdRead)} · SSD write ${link(t.ssdWriteMs, l.ssdWrite)} · update at home ${ms(t.hostUpdateMs)} · SSD replay ${ms(t.replayMs)}`,
    );
  }
  const run = o.steps !== undefined && p.predictedStepMs !== null ? `; ${o.steps} steps ${formatDuration(o.steps * p.predictedStepMs)}` : '';
  lines.push(`predicted step ${ms(p.predictedStepMs)}${run}; floor ${ms(p.floorMs)}${p.bound ? ` (bound by ${p.bound})` : ''}${p.calibratedAt ? `; calibrated ${p.calibratedAt}` : ''}`);
  for (const n of p.notes) lines.push(`note: ${n}`);
  return lines.join('\n');
}

