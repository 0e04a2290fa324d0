// The planner for a run over several GPUs (ALGORITHMS.md §7, DistZO2): from the plan input of
// one GPU (planner.ts), what each GPU and each link does when N ranks share a step, with or without the
// sliced transfer, and the predicted speedup over one GPU doing the same step. Pure.
//
// What the engine does, and so what is modelled:
// - PlanInput.budgets.cpu is the machine's CPU memory. Each rank holds its own copy of the
//   masters it streams (its CPU-homed blocks, its spill file), so a rank places its blocks under
//   1/L of it (L ranks per machine), and a machine's SSD serves L readers.
// - Sliced (--sliced, DistZO2): CPU-homed blocks live once per machine in memory its ranks
//   share; each GPU uploads 1/L of such a block over its own PCIe link and the slices are
//   all-gathered GPU to GPU on the same copy queue, after the upload; the block is updated on
//   the device and each rank writes back its slice. Over NVLink the all-gather has links of its
//   own; on a PCIe-only machine it crosses the same PCIe links, so the bytes per link do not
//   shrink (the memory does). SSD-homed blocks are not sliced.
// - data parallel: each rank computes all q perturbations on its shard of the batch (compute
//   scales with its tokens); perturbation parallel: its q / ranks perturbations on the whole batch.
//   Either way every rank applies every update (device updates do not shrink).
import { ENGINE_RUNTIME_BYTES, makePlan } from './planner.js';
import type { Plan, PlanInput } from './planner.js';
import type { Parallel } from '../common/options.js';

export interface Interconnect {
  kind: 'nvlink' | 'pcie';
  /** Bytes per second one GPU receives in an all-gather among the GPUs of its machine. */
  allGatherBytesPerS: number;
  label?: string;
}

export interface DistPlanInput {
  /** GPUs, one rank each. */
  ranks: number;
  /** Ranks on one machine (default: all of them). */
  ranksPerMachine?: number;
  parallel: Parallel;
  /** Perturbation groups for 2d (perturbation: ranks; data: 1). */
  groups?: number;
  q: number;
  batchSize: number;
  interconnect: Interconnect;
  /** The sliced transfer of CPU-homed blocks (--sliced; default off, as in the engine). */
  sliced?: boolean;
  /** The per-step exchange of losses between ranks, ms (default 0.1: MPI within a machine). */
  exchangeMs?: number;
}

export type DistBound = 'compute' | 'host-to-device + all-gather' | 'device-to-host' | 'ssd' | 'cpu-update';

export interface DistPlan {
  ranks: number;
  ranksPerMachine: number;
  groups: number;
  shards: number;
  sliced: boolean;
  /** Per GPU (every rank does the same): bytes per step on each of its links, and times. */
  perGpu: {
    examples: number;
    perturbations: number;
    h2dBytes: number;
    allGatherBytes: number;
    d2hBytes: number;
    computeMs: number;
    h2dMs: number;
    allGatherMs: number;
    d2hMs: number;
    /** Device memory of one rank (its share of the batch and perturbations). */
    deviceBytes: number;
  };
  perMachine: {
    /** CPU memory of its ranks (one copy of the streamed masters each). */
    cpuBytes: number;
    ssdReadBytes: number;
    ssdMs: number;
    /** Updates at home and SSD replays of all its ranks on its cores. */
    cpuUpdateMs: number;
  };
  exchangeMs: number;
  stepMs: number;
  /** One GPU doing the same step (the same global batch and q). */
  singleGpuStepMs: number;
  speedup: number;
  bound: DistBound;
  /** One rank's share fits its device (the single-GPU plan it is compared with may not: see single.feasible). */
  feasible: boolean;
  /** The single-GPU plan of the same step. */
  single: Plan;
  /** One rank's plan (its share of the batch and of the perturbations): where its blocks live, its memory and links. */
  rank: Plan;
  notes: string[];
}

/**
 * The plan of one rank from the plan input of the whole step (its model, budgets of one GPU and
 * rates): the rank's share of the batch and of the perturbations, each rank's links, and the
 * same step on one GPU for the speedup.
 */
export function distPlan(input: PlanInput, o: DistPlanInput): DistPlan {
  const N = o.ranks;
  if (!Number.isInteger(N) || N < 1) throw new Error(`ranks must be an integer >= 1, got ${N}`);
  const L = Math.min(N, o.ranksPerMachine ?? N);
  if (N % L !== 0) throw new Error(`${N} ranks do not fill machines of ${L}`);
  const groups = o.parallel === 'data' ? 1 : o.parallel === 'perturbation' ? N : (o.groups ?? 0);
  if (!Number.isInteger(groups) || groups < 1 || N % groups !== 0) throw new Error(`${N} ranks cannot form ${groups} perturbation groups`);
  const shards = N / groups;
  if (o.q % groups !== 0) throw new Error(`q (${o.q}) must be a multiple of the ${groups} perturbation groups`);
  if (o.batchSize < shards) throw new Error(`the batch of ${o.batchSize} is smaller than the ${shards} data shards`);
  const single = makePlan({ ...input, batchSize: o.batchSize, q: o.q });
  if (!single.times || single.predictedStepMs === null) {
    throw new Error(
      single.feasible
        ? 'the multi-rank plan needs calibrated (or assumed) rates'
        : `the step does not fit one process (${single.shortfalls.join('; ')}): there is no one-process step to set the ranks against`,
    );
  }
  const notes: string[] = [];
  const sliced = o.sliced === true && L > 1;
  if (o.sliced && !sliced) notes.push('one rank per machine: nothing to slice');
  // A rank's share of the machine's CPU memory: 1/L, or (sliced) all of it but the other ranks' own.
  const cpu = input.budgets.cpu;
  const rankCpu = cpu === undefined ? undefined : sliced ? Math.max(0, cpu - (L - 1) * ENGINE_RUNTIME_BYTES) : cpu / L;
  const rankInput: PlanInput = { ...input, budgets: { ...input.budgets, cpu: rankCpu } };

  const examples = Math.ceil(o.batchSize / shards);
  const perturbations = o.q / groups;
  // The rank's tokens: its share of the step's (the measured block stays at the step's shape and is scaled).
  const tokensPerStep = ((input.tokensPerStep ?? o.batchSize * input.maxLength) * examples) / o.batchSize;
  // Sliced: streamed blocks are updated on the device, and each rank writes back only its slice.
  const updateMode = sliced ? ('device' as const) : input.updateMode;
  // The rank as it runs: its share of the batch and its perturbations' streams place its blocks
  // and give its memory and links; its forwards are the step's measured block scaled to its tokens;
  // its updates are all q terms (every rank applies them all: linear in the terms).
  const rank = makePlan({ ...rankInput, batchSize: examples, q: perturbations, updateMode });
  const forwards = makePlan({ ...rankInput, batchSize: o.batchSize, tokensPerStep, q: perturbations, updateMode });
  const f = forwards.times;
  const t = rank.times;
  if (!f || !t) throw new Error('the multi-rank plan needs calibrated (or assumed) rates');
  if (!rank.feasible) notes.push(`one rank's share does not fit: ${rank.shortfalls.join('; ')}`);
  const termShare = o.q / perturbations;
  const H = rank.linkBytesPerStep.hostToDevice;
  // What is sliced: the CPU-homed blocks, as stored (and written back every visit, updated on the device).
  const cpuHomed = sliced ? rank.units.filter((u) => u.home === 'cpu').reduce((n, u) => n + u.parameters * rank.bytesPerParameter, 0) : 0;
  if (sliced && !cpuHomed) notes.push('no block lives on the CPU: nothing to slice');
  if (sliced && rank.count.ssd) notes.push('blocks on the SSD are not sliced: each rank streams them whole from its own spill file');
  // CPU ranks of one machine share its cores: each computes at 1/L of the rate the plan was calibrated at.
  const cores = input.computeDevice === 'cpu' ? L : 1;
  if (cores > 1) notes.push(`the ${L} CPU ranks of a machine share its cores: each computes at 1/${L} of the calibrated rate`);
  const computeMs = (f.forwardMs + t.deviceUpdateMs * termShare) * cores;
  const h2dBytes = H - cpuHomed + cpuHomed / L;
  const allGatherBytes = (cpuHomed * (L - 1)) / L;
  const h2dMs = H > 0 ? (t.hostToDeviceMs * h2dBytes) / H : 0;
  const allGatherMs = (1000 * allGatherBytes) / o.interconnect.allGatherBytesPerS;
  const D = rank.linkBytesPerStep.deviceToHost;
  const d2hBytes = D - Math.min(D, cpuHomed) + Math.min(D, cpuHomed) / L;
  const d2hMs = D > 0 ? (t.deviceToHostMs * d2hBytes) / D : 0;
  // A machine's ranks share its SSD and its cores.
  const ssdMs = L * (t.ssdReadMs + t.ssdWriteMs);
  const cpuUpdateMs = L * (t.hostUpdateMs + t.replayMs) * termShare;
  const exchangeMs = N > 1 ? (o.exchangeMs ?? 0.1) : 0;
  const terms: [DistBound, number][] = [
    ['compute', computeMs],
    ['host-to-device + all-gather', h2dMs + allGatherMs],
    ['device-to-host', d2hMs],
    ['ssd', ssdMs],
  ];
  const [bound0, path] = terms.reduce((a, b) => (b[1] > a[1] ? b : a));
  const stepMs = path + cpuUpdateMs + exchangeMs;
  const bound: DistBound = cpuUpdateMs > path ? 'cpu-update' : bound0;
  if (L > 1 && H > 0 && !sliced) notes.push(`each of the ${L} ranks on a machine holds its own copy of the streamed masters`);
  if (o.interconnect.kind === 'pcie' && cpuHomed) notes.push('PCIe only: the all-gather crosses the same links as the uploads');
  // Sliced: the CPU-homed blocks once per machine; the rest of each rank's CPU memory L times.
  const cpuBytes = L * rank.memory.cpu - (L - 1) * cpuHomed;
  return {
    ranks: N,
    ranksPerMachine: L,
    groups,
    shards,
    sliced,
    perGpu: { examples, perturbations, h2dBytes, allGatherBytes, d2hBytes, computeMs, h2dMs, allGatherMs, d2hMs, deviceBytes: rank.memory.device },
    perMachine: { cpuBytes, ssdReadBytes: L * rank.linkBytesPerStep.ssdRead, ssdMs, cpuUpdateMs },
    exchangeMs,
    stepMs,
    singleGpuStepMs: single.predictedStepMs,
    speedup: single.predictedStepMs / stepMs,
    bound,
    feasible: rank.feasible,
    single,
    rank,
    notes,
  };
}

export function formatDistPlan(d: DistPlan): string {
  const gb = (b: number) => `${(b / 1e9).toFixed(2)} GB`;
  const ms = (x: number) => (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(1)} ms`);
  const mode = d.groups === 1 ? 'data parallel' : d.shards === 1 ? 'perturbation parallel' : `2d (${d.groups} perturbation groups of ${d.shards})`;
  return [
    `${d.ranks} ranks (${d.ranksPerMachine} per machine), ${mode}${d.sliced ? ', sliced transfer' : ''}`,
    `  per rank: ${d.perGpu.examples} examples × ${d.perGpu.perturbations} perturbations; H2D ${gb(d.perGpu.h2dBytes)}` +
      (d.sliced ? ` + all-gather ${gb(d.perGpu.allGatherBytes)}` : '') +
      `, D2H ${gb(d.perGpu.d2hBytes)} per step`,
    `  compute ${ms(d.perGpu.computeMs)} · H2D ${ms(d.perGpu.h2dMs)}${d.sliced ? ` · all-gather ${ms(d.perGpu.allGatherMs)}` : ''} · D2H ${ms(d.perGpu.d2hMs)}` +
      ` · SSD (machine) ${ms(d.perMachine.ssdMs)} · updates at home (machine) ${ms(d.perMachine.cpuUpdateMs)} · exchange ${ms(d.exchangeMs)}`,
    `  CPU memory per machine ${gb(d.perMachine.cpuBytes)}`,
    `predicted step ${ms(d.stepMs)} (bound by ${d.bound}); the same step in one process ${ms(d.singleGpuStepMs)}: ${d.speedup.toFixed(2)}×`,
    ...d.notes.map((n) => `  note: ${n}`),
  ].join('\n');
}
