// The calibrated planner (ALGORITHMS.md §4.6, §5): chooses the home of every
// unit under the budgets, and predicts memory per tier, bytes per step per
// link, the step time and the physical floor of one step. Pure: the inputs are
// the model's shape, the budgets and the calibrated rates (calibration.ts).
import type { ModelInfo } from '../model/index.js';
import { HOME } from './native.js';

export type Home = 'device' | 'cpu' | 'ssd';
export type Precision = 'f32' | 'bf16' | 'fp16';
export type Bound = 'compute' | 'host-to-device' | 'device-to-host' | 'ssd-read' | 'ssd-write' | 'cpu-update';

export interface PlannerUnit {
  kind: 'embed' | 'block' | 'head';
  index: number;
  parameters: number;
  /** The engine's slot: every tensor padded to 16 floats (default parameters × 4). */
  slotBytes?: number;
}

export interface PlannerModel {
  name: string;
  config: { hidden: number; heads: number; intermediate: number; vocabSize: number; tiedEmbeddings: boolean };
  units: PlannerUnit[];
}

/** Measured (or assumed) rates; null fields are unknown. */
export interface PlannerRates {
  h2dBytesPerS: number;
  d2hBytesPerS: number;
  ssdReadBytesPerS: number | null;
  ssdWriteBytesPerS: number | null;
  /** Why the SSD could not be measured, when it could not. */
  ssdUnavailable?: string;
  gemmFlopsPerS: number;
  cpuUpdateElemsPerS: number;
  /** Measured time of both forwards of one block at this batch shape; overrides the FLOP estimate. */
  blockForwardMs?: number;
  /** ISO date of the measurement, or a label for assumed figures. */
  date?: string;
}

export interface PlanInput {
  model: PlannerModel;
  /** Where the forwards run: on 'cpu' the device arena is CPU memory and shares the CPU budget. */
  computeDevice: 'cpu' | 'gpu';
  /** Bytes each tier may use; absent = unlimited. */
  budgets: { device?: number; cpu?: number; ssd?: number };
  spillDir?: string | null;
  precision: Precision;
  batchSize: number;
  maxLength: number;
  /** Perturbations per step (default 1). */
  q?: number;
  /** SSD lazy write-back: a unit is rewritten every K updates (default 1). */
  writeBackEvery?: number;
  rates: PlannerRates | null;
}

export interface PlannedUnit {
  kind: PlannerUnit['kind'];
  index: number;
  parameters: number;
  bytes: number;
  home: Home;
}

export interface TimeTerms {
  computeMs: number;
  hostToDeviceMs: number;
  deviceToHostMs: number;
  ssdReadMs: number;
  ssdWriteMs: number;
  cpuUpdateMs: number;
}

export interface Plan {
  model: string;
  computeDevice: 'cpu' | 'gpu';
  units: PlannedUnit[];
  /** HOME values per unit, for Engine.load. */
  homes: number[];
  count: Record<Home, number>;
  /** Bytes per tier: device arena, CPU tier (masters of CPU-homed units + I/O buffer), spill file. */
  memory: { device: number; cpu: number; ssd: number };
  breakdown: { weights: number; workingCopies: number; activations: number; stage: number; ioBuffer: number };
  linkBytesPerStep: { hostToDevice: number; deviceToHost: number; ssdRead: number; ssdWrite: number };
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
const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;

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
    return { kind: u.kind, index: u.index, parameters, slotBytes: slot };
  });
  const c = info.config;
  return {
    name: info.name,
    config: { hidden: c.hidden, heads: c.heads, intermediate: c.intermediate, vocabSize: c.vocabSize, tiedEmbeddings: c.tiedEmbeddings },
    units,
  };
}

export function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}

/** Peak activations of one forward pass: hidden states, q/k/v, MLP, attention scores and logits (an upper bound). */
export function activationBytes(c: PlannerModel['config'], batch: number, seq: number): number {
  return F32 * (batch * seq * (5 * c.hidden + 2 * c.intermediate + c.vocabSize) + batch * c.heads * seq * seq);
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

export function makePlan(input: PlanInput): Plan {
  const { model: m, budgets } = input;
  const q = input.q ?? 1;
  const K = Math.max(1, input.writeBackEvery ?? 1);
  const shared = input.computeDevice === 'cpu';
  const devName = shared ? 'CPU memory' : 'device memory';
  const shortfalls: string[] = [];
  const notes: string[] = [];

  const bytesOf = (u: PlannerUnit) => u.parameters * F32;
  const slotOf = (u: PlannerUnit) => u.slotBytes ?? u.parameters * F32;
  const weights = m.units.reduce((n, u) => n + bytesOf(u), 0);
  // The engine's scratch: z and the two perturbed copies, each the size of the largest unit
  // (a tied head also materialises the embedding matrix).
  const largestUnit = Math.max(
    0,
    ...m.units.map((u) => bytesOf(u) + (u.kind === 'head' && m.config.tiedEmbeddings ? F32 * m.config.vocabSize * m.config.hidden : 0)),
  );
  const workingCopies = 3 * largestUnit;
  const activations = activationBytes(m.config, input.batchSize, input.maxLength);
  const fixedUnits = m.units.filter((u) => u.kind !== 'block').reduce((n, u) => n + bytesOf(u), 0);
  const fixedDevice = fixedUnits + workingCopies + activations;

  const inf = Number.POSITIVE_INFINITY;
  const cpuCap = budgets.cpu ?? inf;
  const devCap = shared ? Math.min(budgets.device ?? inf, cpuCap) : budgets.device ?? inf;
  const ssdCap = budgets.ssd ?? inf;
  const blocks = m.units.filter((u) => u.kind === 'block');
  const blockBytes = blocks.reduce((n, u) => n + bytesOf(u), 0);
  const homes = new Map<PlannerUnit, Home>();
  for (const u of m.units) homes.set(u, 'device');

  let stage = 0;
  let ioBuffer = 0;
  let devUsed = fixedDevice;
  let cpuUsed = 0;
  const pool = () => (shared ? devUsed + cpuUsed : cpuUsed);
  if (fixedDevice + blockBytes > devCap) {
    // Something streams: one staging slot on the device and one I/O buffer on the host, each the largest streamed unit.
    stage = ioBuffer = Math.max(0, ...blocks.map(slotOf));
    devUsed += stage;
    cpuUsed += ioBuffer;
    for (const u of blocks) {
      const b = bytesOf(u);
      if (devUsed + b <= devCap && (!shared || pool() + b <= cpuCap)) {
        devUsed += b;
      } else if (pool() + b <= cpuCap && !shared) {
        cpuUsed += b;
        homes.set(u, 'cpu');
      } else {
        homes.set(u, 'ssd');
      }
    }
  } else {
    devUsed += blockBytes;
  }

  const planned: PlannedUnit[] = m.units.map((u) => ({ kind: u.kind, index: u.index, parameters: u.parameters, bytes: bytesOf(u), home: homes.get(u) as Home }));
  const count: Record<Home, number> = { device: 0, cpu: 0, ssd: 0 };
  for (const u of planned) count[u.home]++;
  const ssdUnits = m.units.filter((u) => homes.get(u) === 'ssd');
  const streamed = m.units.filter((u) => homes.get(u) !== 'device');
  const ssdFile = ssdUnits.reduce((n, u) => n + roundUp(slotOf(u), SPILL_ALIGN), 0);
  const ssdBytes = ssdUnits.reduce((n, u) => n + bytesOf(u), 0);
  const streamedBytes = streamed.reduce((n, u) => n + bytesOf(u), 0);
  const homeUpdated = streamed.reduce((n, u) => n + u.parameters, 0);
  const deviceParams = m.units.filter((u) => homes.get(u) === 'device').reduce((n, u) => n + u.parameters, 0);

  // --- what is short
  const fixedNeed = fixedDevice + stage;
  if (fixedNeed > devCap) {
    const parts = [
      `embeddings and head ${formatBytes(fixedUnits)}`,
      `working copies ${formatBytes(workingCopies)}`,
      `activations ${formatBytes(activations)}`,
      ...(stage ? [`staging slot ${formatBytes(stage)}`] : []),
      ...(shared && ioBuffer ? [`I/O buffer ${formatBytes(ioBuffer)}`] : []),
    ];
    const need = fixedNeed + (shared ? ioBuffer : 0);
    shortfalls.push(
      `${devName}: what must stay on the compute device needs ${formatBytes(need)} (${parts.join(', ')}) but the budget is ${formatBytes(devCap)} (short by ${formatBytes(need - devCap)})`,
    );
  } else if (!shared && ioBuffer > cpuCap) {
    shortfalls.push(`CPU memory: the I/O buffer streamed blocks pass through needs ${formatBytes(ioBuffer)} but the budget is ${formatBytes(cpuCap)} (short by ${formatBytes(ioBuffer - cpuCap)})`);
  }
  if (ssdUnits.length) {
    const what = `${ssdUnits.length} block${ssdUnits.length === 1 ? '' : 's'} (${formatBytes(ssdBytes)}) fit neither ${shared ? 'CPU memory' : 'device nor CPU memory'}`;
    if (!input.spillDir) {
      shortfalls.push(`SSD: ${what} and need the SSD tier, but no spill folder was given (--spill DIR); spill file ${formatBytes(ssdFile)}`);
    } else if (ssdFile > ssdCap) {
      shortfalls.push(`SSD: ${what}; the spill file needs ${formatBytes(ssdFile)} but the SSD budget is ${formatBytes(ssdCap)} (short by ${formatBytes(ssdFile - ssdCap)})`);
    } else if (input.rates && input.rates.ssdReadBytesPerS === null) {
      shortfalls.push(`SSD: ${what}, but the spill folder ${input.spillDir} cannot be used: ${input.rates.ssdUnavailable ?? 'not measured'}`);
    }
  }
  if (input.precision !== 'f32') {
    shortfalls.push(`precision: ${input.precision} masters are not implemented yet (float32 masters only); this plan is for f32`);
  }

  // --- bytes per step per link
  const link = {
    hostToDevice: q * streamedBytes, // every streamed unit crosses once per perturbation (both forwards share it)
    deviceToHost: 0, // updates happen at home: only (seed, coefficient) pairs go back
    ssdRead: q * ssdBytes,
    ssdWrite: ssdBytes / K,
  };

  // --- times
  let times: TimeTerms | null = null;
  let predicted: number | null = null;
  let floor: number | null = null;
  let bound: Bound | null = null;
  const r = input.rates;
  if (r) {
    const fwd = forwardFlops(m, input.batchSize, input.maxLength);
    let computeMs =
      r.blockForwardMs !== undefined
        ? q * (blocks.length * r.blockForwardMs + (1000 * 2 * fwd.head) / r.gemmFlopsPerS)
        : (1000 * q * 2 * fwd.total) / r.gemmFlopsPerS;
    // On the CPU backend the device-homed units are updated by the same CPU threads, inside the step.
    if (shared) computeMs += (1000 * q * deviceParams) / r.cpuUpdateElemsPerS;
    // Updates at home: q terms per streamed element, plus the replay of pending SSD updates (on average (K-1)/2 steps of q terms, on each of q reads).
    const ssdParams = ssdUnits.reduce((n, u) => n + u.parameters, 0);
    const replay = ssdParams * q * q * ((K - 1) / 2);
    const cpuUpdateMs = (1000 * (q * homeUpdated + replay)) / r.cpuUpdateElemsPerS;
    const ms = (bytes: number, bw: number | null) => (bytes === 0 ? 0 : bw && bw > 0 ? (1000 * bytes) / bw : inf);
    times = {
      computeMs,
      hostToDeviceMs: ms(link.hostToDevice, r.h2dBytesPerS),
      deviceToHostMs: ms(link.deviceToHost, r.d2hBytesPerS),
      ssdReadMs: ms(link.ssdRead, r.ssdReadBytesPerS),
      ssdWriteMs: ms(link.ssdWrite, r.ssdWriteBytesPerS),
      cpuUpdateMs,
    };
    const terms: [Bound, number][] = [
      ['compute', times.computeMs],
      ['host-to-device', times.hostToDeviceMs],
      ['device-to-host', times.deviceToHostMs],
      ['ssd-read', times.ssdReadMs],
      ['ssd-write', times.ssdWriteMs],
      ['cpu-update', times.cpuUpdateMs],
    ];
    [bound, floor] = terms.reduce((a, b) => (b[1] > a[1] ? b : a));
    // SSD reads, write-backs and replays run on prefetch threads beside the compute path;
    // uploads and updates at home are on it.
    const replayMs = (1000 * replay) / r.cpuUpdateElemsPerS;
    const homeUpdateMs = times.cpuUpdateMs - replayMs;
    predicted =
      Math.max(times.computeMs + times.hostToDeviceMs + times.deviceToHostMs, times.ssdReadMs + times.ssdWriteMs + replayMs) + homeUpdateMs;
    if (!Number.isFinite(predicted)) predicted = floor = null;
    notes.push(
      'Predicted step time = max(compute + H2D, SSD read + write-back + replay) + updates at home: SSD blocks are prefetched on their own threads ' +
        'while earlier blocks compute, uploads and home updates are not overlapped yet. On the CPU backend the prefetch threads share the cores with compute, ' +
        'so the overlap is partial. The floor (ALGORITHMS.md §5) is what full overlap would give: the largest single term.',
    );
    notes.push(
      r.blockForwardMs !== undefined
        ? 'Compute uses the measured forward time per block.'
        : `Compute is estimated from ${(fwd.total / 1e9).toFixed(2)} GFLOP per forward (2 forwards × ${q} perturbation${q === 1 ? '' : 's'}) at the measured GEMM rate of ${(r.gemmFlopsPerS / 1e9).toFixed(1)} GFLOP/s; it counts logits for every token (an upper bound for classification).`,
    );
  } else {
    notes.push('Predicted step time is unknown until the engine has been calibrated on this machine (`spillway plan --recalibrate`).');
  }
  notes.push(`Masters are float32 (4 bytes per parameter); bf16/fp16 masters are not implemented yet.`);
  notes.push(`Activations are an upper-bound estimate for ${input.batchSize} sequences of ${input.maxLength} tokens.`);
  if (shared) notes.push('The compute device is the CPU: its arena (device-homed units, working copies, activations) is CPU memory and counts against the CPU budget.');
  if (ssdUnits.length && K > 1) notes.push(`SSD blocks are rewritten every ${K} updates; pending updates are replayed on read in between.`);

  return {
    model: m.name,
    computeDevice: input.computeDevice,
    units: planned,
    homes: planned.map((u) => HOME[u.home]),
    count,
    memory: { device: devUsed, cpu: cpuUsed, ssd: ssdFile },
    breakdown: { weights, workingCopies, activations, stage, ioBuffer },
    linkBytesPerStep: link,
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

/** The one-line summary the training start event carries. */
export function planSummary(p: Plan): { homes: Record<Home, number>; predicted_step_ms: number | null; floor_ms: number | null; bound: Bound | null } {
  return { homes: { ...p.count }, predicted_step_ms: p.predictedStepMs, floor_ms: p.floorMs, bound: p.bound };
}

/** A plain-text rendering for `spillway plan`. */
export function formatPlan(p: Plan): string {
  const ms = (x: number | null) => (x === null ? 'n/a' : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(1)} ms`);
  const dev = p.computeDevice === 'cpu' ? 'device (CPU arena)' : 'device (GPU)';
  const lines = [`plan for ${p.model}: compute on the ${p.computeDevice.toUpperCase()}; ${p.feasible ? 'fits' : 'DOES NOT FIT'}`];
  for (const s of p.shortfalls) lines.push(`  short: ${s}`);
  lines.push('', 'unit          parameters        bytes  home');
  for (const u of p.units) {
    const name = `${u.kind}${u.index >= 0 ? ` ${u.index}` : ''}`;
    lines.push(`${name.padEnd(12)} ${String(u.parameters).padStart(11)} ${formatBytes(u.bytes).padStart(12)}  ${u.home}`);
  }
  lines.push(
    '',
    'memory per tier',
    `  ${dev.padEnd(20)} ${formatBytes(p.memory.device)} (working copies ${formatBytes(p.breakdown.workingCopies)}, activations ${formatBytes(p.breakdown.activations)}, staging ${formatBytes(p.breakdown.stage)})`,
    `  ${'CPU'.padEnd(20)} ${formatBytes(p.memory.cpu)} (I/O buffer ${formatBytes(p.breakdown.ioBuffer)})`,
    `  ${'SSD (spill file)'.padEnd(20)} ${formatBytes(p.memory.ssd)}`,
    'bytes per step',
    `  host → device  ${formatBytes(p.linkBytesPerStep.hostToDevice)}`,
    `  device → host  ${formatBytes(p.linkBytesPerStep.deviceToHost)}`,
    `  SSD read       ${formatBytes(p.linkBytesPerStep.ssdRead)}`,
    `  SSD write      ${formatBytes(p.linkBytesPerStep.ssdWrite)}`,
  );
  if (p.times) {
    const t = p.times;
    lines.push(
      'time per step',
      `  compute ${ms(t.computeMs)} · H2D ${ms(t.hostToDeviceMs)} · SSD read ${ms(t.ssdReadMs)} · SSD write ${ms(t.ssdWriteMs)} · update at home ${ms(t.cpuUpdateMs)}`,
    );
  }
  lines.push(`predicted step ${ms(p.predictedStepMs)}; floor ${ms(p.floorMs)}${p.bound ? ` (bound by ${p.bound})` : ''}${p.calibratedAt ? `; calibrated ${p.calibratedAt}` : ''}`);
  for (const n of p.notes) lines.push(`note: ${n}`);
  return lines.join('\n');
}

/** "24GB" (10^9), "24GiB" (2^30), "512MB", "512MiB", "1TB", or a plain byte count. */
export function parseBytes(v: string): number {
  const m = /^\s*([\d.]+)\s*([KMGT]?)(i?)B?\s*$/i.exec(v);
  if (!m || !Number.isFinite(Number(m[1]))) throw new Error(`cannot read "${v}" as a size (for example 24GB, 512MiB or 1000000)`);
  const pow = ' KMGT'.indexOf(m[2].toUpperCase() || ' ');
  const base = m[3] ? 1024 : 1000;
  return Math.round(Number(m[1]) * base ** pow);
}
