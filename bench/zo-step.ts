// `npm run bench`: one ZO (MeZO) step of the CPU engine against PyTorch MeZO steps on the same
// OPT-125M-shaped model, at several batch shapes, and against the machine's own floor (the step's
// FLOPs at the float32 GEMM rate this machine reaches at the step's shapes). Same precision
// (float32), model, batch, loss and thread count everywhere. Writes bench/results/zo-step-cpu.{json,md}
// (--out names another pair, e.g. for a run of fewer shapes or anchors beside the full one).
//
//   node dist/bench/zo-step.js [--threads 2] [--steps 3] [--warmup 1]
//        [--shapes 16x64,4x256,1x512] [--anchors torch1.13,torch2,torch2-compile]
//        [--debian-python /usr/bin/python3] [--venv-python PATH] [--engine-also LABEL=ADDON] [--out zo-step-cpu]
//
// The anchors, each in its best configuration:
//   torch1.13       Debian's PyTorch 1.13 (OpenBLAS): run twice, OPENBLAS_NUM_THREADS=1 and =threads
//   torch2          PyTorch 2.x from the venv (MKL, oneDNN as they come), eager: run twice,
//                   OpenMP's default wait policy and OMP_WAIT_POLICY=PASSIVE
//   torch2-compile  the same with the forward under torch.compile (inductor)
// --engine-also runs other builds of the engine (addon files, e.g. one built before a change;
// comma-separated), each as one more implementation: what a change bought, measured the same way.
//
//   node dist/bench/zo-step.js --pair BEFORE.node,AFTER.node [--pairs 10] [--shapes 16x64]
//
// --pair compares two engine builds alone, step by step: both load, then take one step each in
// turn (the first of a pair alternating), and each pair's ratio (after / before) is printed for
// the step and its forward, head and update phases, with their medians and any pair whose losses
// differ. Nothing is written to bench/results/.
//
// Paired steps: the engine and each implementation it is compared with run as servers in their
// own processes (each peak RSS is that implementation's own), and take turns, one step each,
// `--steps` times (after their warm-up steps). On a machine other work shares, the two steps of
// a pair see about the same load: the ratio is the median of the pairs' ratios. A server is
// stopped (SIGSTOP) except during its own steps, so that its idle threads cannot take the cores.
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { loadNative } from '../electron/engine/native.js';
import type { NativeStepParams, NativeStepResult, PhaseTimes } from '../electron/engine/native.js';
import { engineSpec } from '../electron/engine/spec.js';
import { loadModelInfo } from '../electron/model/index.js';
import { makeOptModel, OPT_125M } from './make-model.js';
import type { OptShape } from './make-model.js';
import { BENCH, EPS, LR, MODEL_DIR, RESULTS, ROOT, WD, WORK, batchFile, benchArgs, benchBatch, machineBusyMs, machineInfo, machineLine, makeTokens, median, runChild, steadiness, venvPython } from './common.js';

const SELF = fileURLToPath(import.meta.url);
const GEMM_RATE = join(ROOT, 'native', 'build', 'gemm_rate');
const TARGET_VS_PYTORCH = 0.5;
const TARGET_VS_FLOOR = 1.25;
// The host's steadiness, read before every pair of steps: this product's rate on the step's threads.
const PROBE_SHAPE = '1024x768x768';

interface Shape {
  batch: number;
  seq: number;
}
const shapeName = (s: Shape) => `${s.batch}x${s.seq}`;

interface Options {
  threads: number;
  steps: number;
  warmup: number;
  shapes: Shape[];
  anchors: string[];
  debianPython: string;
  venvPython: string;
  /** Other engine builds to run beside this one: label and addon file. */
  engineAlso: { label: string; addon: string }[];
  /** Base name of the results pair in bench/results/. */
  out: string;
  /** --pair: two engine builds (addon files) compared step by step, and how many pairs. */
  pair: [string, string] | null;
  pairs: number;
}

function parseShape(text: string): Shape {
  const m = /^(\d+)x(\d+)$/.exec(text.trim());
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 2) throw new Error(`shape '${text}': expected BATCHxTOKENS, e.g. 16x64 (at least 2 tokens)`);
  return { batch: Number(m[1]), seq: Number(m[2]) };
}

const ANCHORS = ['torch1.13', 'torch2', 'torch2-compile'];

function parseArgs(argv: string[]): Options & { engineChild: string } {
  const a = benchArgs(argv, {
    threads: 2,
    steps: 3,
    warmup: 1,
    shapes: '16x64,4x256,1x512',
    anchors: ANCHORS.join(','),
    'debian-python': '/usr/bin/python3',
    'venv-python': venvPython(),
    'engine-also': '',
    'engine-child': '',
    out: 'zo-step-cpu',
    pair: '',
    pairs: 10,
  });
  if (!/^[\w.-]+$/.test(a.out)) throw new Error(`--out '${a.out}': expected a file base name (letters, digits, '.', '_', '-')`);
  for (const [k, min] of [['threads', 1], ['steps', 1], ['warmup', 0], ['pairs', 1]] as const)
    if (!Number.isInteger(a[k]) || a[k] < min) throw new Error(`--${k} needs an integer >= ${min}`);
  const anchors = a.anchors.split(',').map((s) => s.trim()).filter(Boolean);
  for (const x of anchors) if (!ANCHORS.includes(x)) throw new Error(`unknown anchor '${x}' (known: ${ANCHORS.join(', ')})`);
  const engineAlso: Options['engineAlso'] = [];
  for (const spec of a['engine-also'].split(',').filter(Boolean)) {
    const m = /^([^=]+)=(.+)$/.exec(spec);
    if (!m || !existsSync(m[2])) throw new Error(`--engine-also ${spec}: expected LABEL=ADDON with an existing addon file (several: comma-separated)`);
    engineAlso.push({ label: m[1], addon: resolve(m[2]) });
  }
  const pair = a.pair ? a.pair.split(',').map((f) => resolve(f)) : null;
  if (pair && (pair.length !== 2 || !pair.every((f) => existsSync(f))))
    throw new Error(`--pair ${a.pair}: expected BEFORE,AFTER, two existing addon files (native/build/Release/spillway.node of two builds)`);
  return {
    threads: a.threads,
    steps: a.steps,
    warmup: a.warmup,
    shapes: a.shapes.split(',').map(parseShape),
    anchors,
    debianPython: a['debian-python'],
    venvPython: a['venv-python'],
    engineAlso,
    engineChild: a['engine-child'],
    out: a.out,
    pair: pair as [string, string] | null,
    pairs: a.pairs,
  };
}

interface StepRecord {
  ms: number;
  /** CPU time (user + system, all threads) of the step. */
  cpuMs: number;
  /** 1-minute load average after the step (other processes inflate wall time). */
  load1: number;
  /** CPU time other processes used during the step (machine busy time minus our own). */
  otherCpuMs: number;
  warmup: boolean;
  times?: PhaseTimes;
  perturbMs?: number;
  forwardMs?: number;
  updateMs?: number;
  lossPlus: number;
  lossMinus: number;
  projectedGrad: number;
}

interface ImplResult {
  impl: string;
  steps: StepRecord[];
  maxRssBytes: number;
  [k: string]: unknown;
}

// ---------------------------------------------------------------------------
// Engine child: load, then one step per line on stdin ('warmup' or 'step'), one JSON line back;
// at the end of stdin, the summary.

async function engineChild(o: Options, file: string): Promise<void> {
  const batch = benchBatch(file);
  const info = await loadModelInfo(MODEL_DIR);
  const engine = new (loadNative().Engine)({ threads: o.threads });
  const tl = performance.now();
  const einfo = await engine.load(engineSpec(info));
  const loadMs = performance.now() - tl;
  process.stdout.write(JSON.stringify({ ready: true }) + '\n');
  let i = 0;
  for await (const line of createInterface({ input: process.stdin })) {
    const warmup = line.trim() === 'warmup';
    const params: NativeStepParams = { seed: 42n, step: i, q: 1, lr: LR, eps: EPS, weightDecay: WD, noise: 'gaussian' };
    const b0 = machineBusyMs();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const r: NativeStepResult = await engine.step(batch, params);
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    const rec: StepRecord = {
      ms,
      cpuMs: (c.user + c.system) / 1e3,
      load1: os.loadavg()[0],
      otherCpuMs: Math.max(0, machineBusyMs() - b0 - (c.user + c.system) / 1e3),
      warmup,
      times: r.times,
      lossPlus: r.lossPlus[0],
      lossMinus: r.lossMinus[0],
      projectedGrad: r.projectedGrad[0],
    };
    const t = r.times;
    process.stderr.write(
      `[engine] step ${i}${warmup ? ' (warm-up)' : ''}: ${(ms / 1e3).toFixed(3)} s ` +
        `(noise ${t.noiseMs.toFixed(0)} ms, forward ${t.forwardMs.toFixed(0)}, head ${t.headMs.toFixed(0)}, ` +
        `update ${t.updateMs.toFixed(0)}, total ${t.totalMs.toFixed(0)}) L+ ${r.lossPlus[0].toFixed(6)} L- ${r.lossMinus[0].toFixed(6)}\n`,
    );
    process.stdout.write(JSON.stringify(rec) + '\n');
    i++;
  }
  const out: ImplResult = {
    impl: 'spillway-cpu',
    engine: einfo,
    loadMs,
    threads: o.threads,
    parameters: info.parameterCount,
    steps: [],
    maxRssBytes: process.resourceUsage().maxRSS * 1024, // Node reports KiB
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}

// ---------------------------------------------------------------------------
// Children

/** An implementation running as a step server (engineChild, mezo_torch.py --serve). */
class Served {
  private readonly child: ChildProcess;
  private readonly lines: string[] = [];
  private waiting: { resolve: (l: string) => void; reject: (e: Error) => void } | null = null;
  private ended: Error | null = null;

  constructor(
    readonly runner: Runner,
    cmd: string,
    args: string[],
    env: NodeJS.ProcessEnv,
  ) {
    this.child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'inherit'] });
    const child = this.child;
    createInterface({ input: child.stdout! }).on('line', (l) => {
      if (!l.startsWith('{')) return;
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w.resolve(l);
      } else this.lines.push(l);
    });
    child.on('error', (e) => this.end(e));
    child.on('close', (code) => this.end(new Error(`${runner.label}: ${cmd} ended (exit ${code}) before answering`)));
  }

  private end(e: Error): void {
    this.ended ??= e;
    if (this.waiting) this.waiting.reject(e);
    this.waiting = null;
  }

  private next(): Promise<Record<string, unknown>> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(JSON.parse(l) as Record<string, unknown>);
    if (this.ended) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => (this.waiting = { resolve: (x) => resolve(JSON.parse(x) as Record<string, unknown>), reject }));
  }

  async ready(): Promise<void> {
    await this.next();
  }

  /**
   * One step. Between its steps the server is stopped (SIGSTOP): threads that spin while they
   * wait (OpenMP's, by default) would otherwise take a core from the other side's step.
   */
  async step(warmup: boolean): Promise<StepRecord> {
    this.child.kill('SIGCONT');
    this.child.stdin!.write(warmup ? 'warmup\n' : 'step\n');
    const rec = (await this.next()) as unknown as StepRecord;
    this.child.kill('SIGSTOP');
    return rec;
  }

  /** Ends the server; its summary (peak RSS, versions). */
  async close(): Promise<ImplResult> {
    this.child.kill('SIGCONT');
    this.child.stdin!.end();
    return (await this.next()) as unknown as ImplResult;
  }
}

/** One implementation as the orchestrator starts it, for a shape. */
interface Runner {
  label: string;
  kind: 'spillway' | 'spillway-other' | 'pytorch';
  start(shape: Shape): Served;
}

// The environment every implementation starts from: no thread settings of the caller's.
function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.OPENBLAS_NUM_THREADS;
  delete env.OMP_NUM_THREADS;
  delete env.OMP_WAIT_POLICY;
  return env;
}

// The engine as a step server (this file's --engine-child), with extra variables (SPILLWAY_ADDON).
function engineRunner(o: Options, label: string, kind: Runner['kind'], extraEnv: NodeJS.ProcessEnv): Runner {
  const r: Runner = {
    label,
    kind,
    start: (shape) =>
      new Served(r, process.execPath, [SELF, '--engine-child', batchFile(shape.batch, shape.seq), '--threads', String(o.threads)], {
        ...childEnv(),
        ...extraEnv,
      }),
  };
  return r;
}

function runners(o: Options): Runner[] {
  const common = ['--threads', String(o.threads)];
  const env = childEnv();
  const engine = (label: string, kind: Runner['kind'], extraEnv: NodeJS.ProcessEnv) => engineRunner(o, label, kind, extraEnv);
  const torch = (label: string, python: string, extraEnv: NodeJS.ProcessEnv, extraArgs: string[]): Runner => {
    const r: Runner = {
      label,
      kind: 'pytorch',
      start: (shape) =>
        new Served(
          r,
          python,
          [join(BENCH, 'mezo_torch.py'), MODEL_DIR, batchFile(shape.batch, shape.seq), ...common, '--lr', String(LR), '--eps', String(EPS), '--wd', String(WD), '--serve', ...extraArgs],
          { ...env, ...extraEnv },
        ),
    };
    return r;
  };
  const list: Runner[] = [engine('spillway (cpu engine)', 'spillway', {})];
  for (const e of o.engineAlso) list.push(engine(`spillway (${e.label})`, 'spillway-other', { SPILLWAY_ADDON: e.addon }));
  for (const a of o.anchors) {
    if (a === 'torch1.13') {
      for (const ob of [...new Set(['1', String(o.threads)])])
        list.push(torch(`torch 1.13 OpenBLAS, OPENBLAS_NUM_THREADS=${ob}`, o.debianPython, { OPENBLAS_NUM_THREADS: ob }, []));
    } else {
      // OpenMP's threads spin between parallel regions by default; on a machine other work shares,
      // sleeping (PASSIVE) can be the faster setting. Both are run: the anchor gets its best.
      const compile = a === 'torch2-compile';
      for (const wait of ['', 'PASSIVE'])
        list.push(
          torch(
            `torch 2 MKL, ${compile ? 'torch.compile' : 'eager'}${wait ? `, OMP_WAIT_POLICY=${wait}` : ''}`,
            o.venvPython,
            wait ? { OMP_WAIT_POLICY: wait } : {},
            compile ? ['--compile'] : [],
          ),
        );
    }
  }
  return list;
}

function checkPythons(o: Options): void {
  const need = (python: string, why: string) => {
    if (!existsSync(python)) throw new Error(`${python} not found (${why}); pass --anchors to leave that anchor out`);
  };
  if (o.anchors.includes('torch1.13')) need(o.debianPython, "Debian's python3 with python3-torch");
  if (o.anchors.some((a) => a.startsWith('torch2')))
    need(o.venvPython, 'the venv with torch 2, made by `bash scripts/setup.sh --test`; $SPILLWAY_VENV or --venv-python point elsewhere');
}

// ---------------------------------------------------------------------------
// The floor: every product of the step at the best float32 GEMM rate measured for its shape.

interface Product {
  name: string;
  /** Shape measured for the rate: MxKxN (out = x W^T) or bmm:BxMxKxN. */
  shape: string;
  /** FLOPs of this product in one ZO step (both forwards). */
  flops: number;
  phase: 'forward' | 'head';
}

/** The products of one MeZO step (q = 1: two forwards) on an OPT model at batch B x T. */
function stepProducts(m: OptShape, s: Shape): Product[] {
  const N = s.batch * s.seq;
  const M = s.batch * (s.seq - 1); // scored rows: the head runs on them only
  const C = m.hidden;
  const F = m.ffn;
  const HD = C / m.heads;
  const fwd = 2 * m.layers; // two forwards through every block
  const pairs = (s.seq * (s.seq + 1)) / 2; // causal (query, key) pairs per sequence and head
  return [
    { name: 'q, k, v, out projections', shape: `${N}x${C}x${C}`, flops: fwd * 4 * 2 * N * C * C, phase: 'forward' },
    { name: 'fc1', shape: `${N}x${C}x${F}`, flops: fwd * 2 * N * C * F, phase: 'forward' },
    { name: 'fc2', shape: `${N}x${F}x${C}`, flops: fwd * 2 * N * F * C, phase: 'forward' },
    { name: 'attention scores q k^T (causal half)', shape: `bmm:${s.batch * m.heads}x${s.seq}x${HD}x${s.seq}`, flops: fwd * 2 * s.batch * m.heads * pairs * HD, phase: 'forward' },
    { name: 'attention values p v (causal half)', shape: `bmm:${s.batch * m.heads}x${s.seq}x${s.seq}x${HD}`, flops: fwd * 2 * s.batch * m.heads * pairs * HD, phase: 'forward' },
    { name: 'head (tied, full vocabulary)', shape: `${M}x${C}x${m.vocab}`, flops: 2 * 2 * M * C * m.vocab, phase: 'head' },
  ];
}

interface Rate {
  shape: string;
  via: string;
  /** From the fastest repetition (wall time). */
  gflops: number;
  gflopsMedian: number;
  /** From the repetition that took the least CPU time: one busy core's rate. */
  gflopsPerCpuSecond: number;
}

/** One reading of the host's steadiness: PROBE_SHAPE's rate on the engine's GEMM, best of 3 repetitions. */
async function probeHost(o: Options): Promise<number> {
  const [line] = await runChild(GEMM_RATE, ['--threads', String(o.threads), '--reps', '3', PROBE_SHAPE], process.env);
  return (JSON.parse(line) as Rate).gflops;
}

/** GEMM rates at the shapes: the engine's GEMM (the CPU backend's linear, as the engine runs it) and MKL through torch 2. */
async function measureRates(o: Options, shapes: string[]): Promise<Rate[]> {
  const rates: Rate[] = [];
  const plain = shapes.filter((s) => !s.startsWith('bmm:'));
  if (!existsSync(GEMM_RATE)) throw new Error(`${GEMM_RATE} not found: run \`npm run build:native\``);
  for (const line of await runChild(GEMM_RATE, ['--threads', String(o.threads), '--reps', '5', ...plain], process.env))
    rates.push(JSON.parse(line) as Rate);
  if (existsSync(o.venvPython)) {
    const env = { ...process.env };
    delete env.OMP_NUM_THREADS;
    delete env.OMP_WAIT_POLICY;
    // OpenMP's default (spinning) and sleeping waits: the faster wall time, and CPU times without spinning.
    for (const wait of [{}, { OMP_WAIT_POLICY: 'PASSIVE' }])
      for (const line of await runChild(o.venvPython, [join(BENCH, 'gemm_torch.py'), '--threads', String(o.threads), '--reps', '5', ...shapes], { ...env, ...wait }))
        rates.push(JSON.parse(line) as Rate);
  }
  return rates;
}

interface FloorRow extends Product {
  rates: { via: string; gflops: number; perCpuSecond: number }[];
  bestGflops: number;
  bestPerCpuSecond: number;
  /** The product at the best wall-time rate. */
  ms: number;
  /** The product's CPU time at the best rate per CPU second. */
  cpuMs: number;
}

function floorRows(products: Product[], rates: Rate[]): FloorRow[] {
  return products.map((p) => {
    const mine = rates.filter((r) => r.shape === p.shape);
    const vias = [...new Set(mine.map((r) => r.via))];
    const best = vias.map((via) => {
      const of = mine.filter((r) => r.via === via);
      return { via, gflops: Math.max(...of.map((r) => r.gflops)), perCpuSecond: Math.max(...of.map((r) => r.gflopsPerCpuSecond)) };
    });
    const top = Math.max(0, ...best.map((b) => b.gflops));
    const topCpu = Math.max(0, ...best.map((b) => b.perCpuSecond));
    if (top <= 0 || topCpu <= 0) throw new Error(`no GEMM rate measured for ${p.shape}`);
    return { ...p, rates: best, bestGflops: top, bestPerCpuSecond: topCpu, ms: p.flops / top / 1e6, cpuMs: p.flops / topCpu / 1e6 };
  });
}

// ---------------------------------------------------------------------------
// Summaries

interface Summary {
  label: string;
  kind: Runner['kind'];
  medianMs: number;
  minMs: number;
  maxMs: number;
  tokensPerSec: number;
  medianCpuMs: number;
  maxLoad1: number;
  /** Median and largest share of the cores that other processes took during a timed step. */
  medianOtherCores: number;
  maxOtherCores: number;
  maxRssBytes: number;
  phases: Record<string, number>;
  /** Spillway's step over this one's, pair by pair (absent for Spillway itself). */
  pairRatios: number[];
  /** The median of pairRatios. */
  ratio: number;
  /** probeHost's readings before each of its pairs (all of the shape's for Spillway). */
  probes: number[];
  steps: StepRecord[];
  summary: ImplResult;
}

function summarise(r: Runner, shape: Shape, steps: StepRecord[], summary: ImplResult, pairRatios: number[], probes: number[]): Summary {
  const timed = steps.filter((s) => !s.warmup);
  const ms = timed.map((s) => s.ms);
  const med = median(ms);
  const per = timed.map((s): Record<string, number> =>
    s.times ? { ...(s.times as unknown as Record<string, number>) } : { perturbMs: s.perturbMs ?? 0, forwardMs: s.forwardMs ?? 0, updateMs: s.updateMs ?? 0 },
  );
  const phases: Record<string, number> = {};
  for (const k of Object.keys(per[0] ?? {})) phases[k] = median(per.map((p) => p[k]));
  const others = timed.map((s) => s.otherCpuMs / s.ms);
  return {
    label: r.label,
    kind: r.kind,
    medianMs: med,
    minMs: Math.min(...ms),
    maxMs: Math.max(...ms),
    tokensPerSec: (shape.batch * shape.seq) / (med / 1e3),
    medianCpuMs: median(timed.map((s) => s.cpuMs)),
    maxLoad1: Math.max(...timed.map((s) => s.load1)),
    medianOtherCores: median(others),
    maxOtherCores: Math.max(...others),
    maxRssBytes: summary.maxRssBytes,
    phases,
    pairRatios,
    ratio: pairRatios.length ? median(pairRatios) : 1,
    probes,
    steps,
    summary,
  };
}

interface ShapeResult {
  shape: Shape;
  tokens: number;
  impls: Summary[];
  spillway: Summary;
  /** The fastest PyTorch (lowest median step); absent when no anchor ran. */
  best?: Summary;
  floor: FloorRow[];
  floorMs: number;
  floorRatio: number;
  /** The same in CPU time: the step's products at one busy core's best rate, against Spillway's CPU time per step. */
  floorCpuMs: number;
  floorCpuRatio: number;
  phaseFloor: { phase: string; ms: number; floorMs: number }[];
}

type Machine = ReturnType<typeof machineInfo> & { engineBlas: string; torchDebian: string; torchVenv: string };

function machine(o: Options): Machine {
  const torch = (python: string) => {
    try {
      return execFileSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' }).trim();
    } catch {
      return 'not available';
    }
  };
  let blas = 'unknown';
  try {
    blas = loadNative().probe().blas;
  } catch {
    /* reported as unknown */
  }
  // Every product of the step takes the backend's own GEMM, its AVX-512 kernel where the CPU has
  // AVX-512F, else its AVX2 one, unless SPILLWAY_CPU_GEMM says avx2 or openblas (OpenBLAS's own
  // name for the kernels it picked is in `blas`).
  const machine = machineInfo();
  const gemm = process.env.SPILLWAY_CPU_GEMM?.trim() || 'own';
  const kernel = gemm === 'avx2' || !machine.simd.includes('avx512f') ? 'AVX2' : 'AVX-512';
  return {
    ...machine,
    engineBlas: gemm === 'openblas' ? blas : `own ${kernel} GEMM (projections, attention, head; ${blas} present, unused by the step)`,
    torchDebian: `${torch(o.debianPython)} (${o.debianPython})`,
    torchVenv: `${torch(o.venvPython)} (${o.venvPython})`,
  };
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
const sec = (ms: number) => `${(ms / 1e3).toFixed(2)} s`;
const f2 = (x: number) => x.toFixed(2);

const PHASE_WHY: Record<string, string> = {
  noiseMs: 'not a GEMM: z (Philox + Box-Muller) and the +eps/-eps working copies of what no product makes from the masters (norms, biases, embeddings), once per step for both forwards',
  forwardMs: 'the blocks: projections and attention (GEMMs; each weight perturbed both ways from its master as the GEMM packs it, z drawn there), norms, activations, residuals',
  headMs: 'the tied head over the full vocabulary (a GEMM, its weight perturbed as it is packed, a chunk of 1,024 words at a time, its logits made and reduced 72 tokens at a time so that they stay in L2) and its log-softmax',
  updateMs: 'not a GEMM: z regenerated and theta -= lr g z over every parameter',
};

function markdown(res: { machine: Machine; threads: number; warmup: number; steps: number; parameters: number }, shapes: ShapeResult[]): string {
  const m = res.machine;
  const maxOthers = Math.max(...shapes.flatMap((s) => s.impls.map((i) => i.maxOtherCores)));
  const medOthers = median(shapes.flatMap((s) => s.impls.map((i) => i.medianOtherCores)));
  const maxLoad = Math.max(...shapes.flatMap((s) => s.impls.map((i) => i.maxLoad1)));
  const host = steadiness(
    shapes.flatMap((s) => s.spillway.probes),
    `a fixed product (the engine's GEMM at ${PROBE_SHAPE}, ${res.threads} threads, best of 3 repetitions)`,
    { median: medOthers, max: maxOthers, cores: m.cores, maxLoad1: maxLoad },
  );
  const spread = (xs: number[]) => (xs.length ? `${f2(Math.min(...xs))} – ${f2(Math.max(...xs))}` : '');
  const lines = [
    "# ZO step, CPU: Spillway against the strongest PyTorch MeZO, and against the machine's floor",
    '',
    `Model: random OPT-125M shape (vocab ${OPT_125M.vocab}, hidden ${OPT_125M.hidden}, ${OPT_125M.layers} layers, ` +
      `${OPT_125M.heads} heads, ffn ${OPT_125M.ffn}, tied, ${res.parameters.toLocaleString('en')} parameters), float32 everywhere. ` +
      `"lm" loss over tokens 1..T-1, q = 1, Gaussian noise, lr ${LR}, eps ${EPS}, wd ${WD}. ${res.threads} threads each. ` +
      `Steps are paired: the engine and each other implementation run side by side as servers and take turns, one step each, ` +
      `${res.steps} times after ${res.warmup} warm-up step(s) each; a server is stopped (SIGSTOP) outside its own steps, so that idle threads ` +
      "cannot spin on the cores. A ratio is the median of its pairs' ratios (their range beside it); Spillway's own figures are over all its timed steps.",
    '',
    `${machineLine(m)}; engine GEMM ${m.engineBlas}; PyTorch ${m.torchDebian} and ${m.torchVenv}.`,
    '',
    host.text,
    '',
    '## Step time by shape',
    '',
    '| shape | implementation | step (median) | min – max | tokens/s | CPU time / step | peak RSS | other processes (cores, median / max) | Spillway / this, paired (range) |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const s of shapes)
    for (const i of s.impls)
      lines.push(
        `| ${shapeName(s.shape)} | ${i.label}${s.best && i === s.best ? ' (strongest)' : ''} | ${sec(i.medianMs)} | ${sec(i.minMs)} – ${sec(i.maxMs)} | ` +
          `${i.tokensPerSec.toFixed(0)} | ${sec(i.medianCpuMs)} | ${mib(i.maxRssBytes)} | ${f2(i.medianOtherCores)} / ${f2(i.maxOtherCores)} | ` +
          `${i === s.spillway ? '' : `${f2(i.ratio)} (${spread(i.pairRatios)})`} |`,
      );
  lines.push(
    '',
    '| shape | strongest PyTorch | Spillway / strongest, paired (range) | target | Spillway / floor, wall time | Spillway / floor, CPU time | target |',
    '|---|---|---|---|---|---|---|',
  );
  for (const s of shapes)
    lines.push(
      (s.best
        ? `| ${shapeName(s.shape)} | ${s.best.label}, ${sec(s.best.medianMs)} | **${f2(s.best.ratio)}** (${spread(s.best.pairRatios)}) | ` +
          `<= ${TARGET_VS_PYTORCH}: ${s.best.ratio <= TARGET_VS_PYTORCH ? 'met' : 'not met'} | `
        : `| ${shapeName(s.shape)} | none run | | | `) +
        `**${f2(s.floorRatio)}** (${sec(s.spillway.medianMs)} / ${sec(s.floorMs)}) | ` +
        `**${f2(s.floorCpuRatio)}** (${sec(s.spillway.medianCpuMs)} / ${sec(s.floorCpuMs)}) | <= ${TARGET_VS_FLOOR}: ` +
        `${s.floorRatio <= TARGET_VS_FLOOR ? 'met' : 'not met'} (wall), ${s.floorCpuRatio <= TARGET_VS_FLOOR ? 'met' : 'not met'} (CPU) |`,
    );
  lines.push(
    '',
    '## The floor',
    '',
    'Every product of the step (both forwards of every block, attention over the causal half, the head over the full vocabulary) at the best ' +
      "float32 GEMM rate measured on this machine for its shape, in the same run (before and after the paired steps): the engine's own GEMM " +
      "(`native/build/gemm_rate`: the CPU backend's linear as the engine runs it, its own AVX-512 kernel where the CPU has one, else its AVX2 one) and MKL through torch 2 (`bench/gemm_torch.py`: " +
      "F.linear, and torch.bmm for attention's per-head products). Rates are the best of 5 repetitions; everything else in the step (noise, " +
      'perturbed copies, norms, softmax, update) counts for nothing, so the floor is below anything that computes the step. ' +
      'The wall-time floor uses the fastest repetition; the CPU-time floor uses the rate per CPU second of the repetition that took the least ' +
      "CPU time (one busy core's rate, which other processes sharing the machine disturb far less than wall time) and is compared with " +
      "Spillway's CPU time per step (its threads do not spin: CPU time is work).",
    '',
    '| shape | product | measured as | GFLOP / step | rates, GFLOP/s (wall; per CPU second) | best | floor (wall; CPU) |',
    '|---|---|---|---|---|---|---|',
  );
  for (const s of shapes)
    for (const r of s.floor)
      lines.push(
        `| ${shapeName(s.shape)} | ${r.name} | ${r.shape} | ${(r.flops / 1e9).toFixed(1)} | ` +
          `${r.rates.map((x) => `${x.via.replace(/ \(.*\)$/, '')}: ${x.gflops.toFixed(0)}; ${x.perCpuSecond.toFixed(0)}`).join(' / ')} | ` +
          `${r.bestGflops.toFixed(0)}; ${r.bestPerCpuSecond.toFixed(0)} | ${(r.ms / 1e3).toFixed(3)} s; ${(r.cpuMs / 1e3).toFixed(3)} s |`,
      );
  lines.push('', "## Where Spillway's step goes, phase by phase against its floor", '', '| shape | phase | Spillway (median) | floor | ratio | what it is |', '|---|---|---|---|---|---|');
  for (const s of shapes)
    for (const p of s.phaseFloor)
      lines.push(
        `| ${shapeName(s.shape)} | ${p.phase.replace(/Ms$/, '')} | ${(p.ms / 1e3).toFixed(3)} s | ${(p.floorMs / 1e3).toFixed(3)} s | ` +
          `${p.floorMs > 0 ? f2(p.ms / p.floorMs) : 'all overhead'} | ${PHASE_WHY[p.phase] ?? ''} |`,
      );
  lines.push(
    '',
    "## PyTorch's phases",
    '',
    '| shape | anchor | perturb (3x, incl. z) | forward (2x, incl. loss) | update (incl. z) |',
    '|---|---|---|---|---|',
  );
  for (const s of shapes)
    for (const i of s.impls.filter((x) => x.kind === 'pytorch'))
      lines.push(`| ${shapeName(s.shape)} | ${i.label} | ${(i.phases.perturbMs / 1e3).toFixed(3)} s | ${(i.phases.forwardMs / 1e3).toFixed(3)} s | ${(i.phases.updateMs / 1e3).toFixed(3)} s |`);
  const args = process.argv.slice(2).join(' ');
  lines.push('', `Command: \`npm run build && ${args ? `node dist/bench/zo-step.js ${args}` : 'npm run bench'}\` (see bench/README.md).`, '');
  return lines.join('\n');
}

// The model, written once into bench/work/ (reused after).
async function benchModel(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  const t0 = performance.now();
  const made = await makeOptModel(MODEL_DIR);
  process.stderr.write(`[bench] model ${made.reused ? 'reused' : 'written'}: ${MODEL_DIR} (${((performance.now() - t0) / 1e3).toFixed(1)} s)\n`);
}

const writeBatch = (shape: Shape) =>
  writeFileSync(batchFile(shape.batch, shape.seq), JSON.stringify({ tokens: makeTokens(OPT_125M.vocab, shape.batch, shape.seq) }));

// --pair: two engine builds, one step each in turn. Two steps a couple of seconds apart see
// nearly the same host, where whole runs a minute apart do not; a host whose speed swings within
// seconds still spreads the pairs (results/zo-step-profile-cpu.md).
async function pairBuilds(o: Options, [before, after]: [string, string]): Promise<void> {
  await benchModel();
  for (const shape of o.shapes) {
    writeBatch(shape);
    const b = engineRunner(o, 'before', 'spillway-other', { SPILLWAY_ADDON: before }).start(shape);
    const a = engineRunner(o, 'after', 'spillway-other', { SPILLWAY_ADDON: after }).start(shape);
    await b.ready();
    await a.ready();
    for (let w = 0; w < o.warmup; w++) {
      await b.step(true);
      await a.step(true);
    }
    const pairs: { rb: StepRecord; ra: StepRecord }[] = [];
    const ratio = (ra: StepRecord, rb: StepRecord, k: 'forwardMs' | 'headMs' | 'updateMs') => ra.times![k] / rb.times![k];
    for (let i = 0; i < o.pairs; i++) {
      // Who goes first alternates, so that neither always follows the other.
      const [first, second] = i % 2 ? [a, b] : [b, a];
      const r1 = await first.step(false), r2 = await second.step(false);
      const [rb, ra] = i % 2 ? [r2, r1] : [r1, r2];
      pairs.push({ rb, ra });
      const r = (k: 'forwardMs' | 'headMs' | 'updateMs') => ratio(ra, rb, k).toFixed(3);
      process.stdout.write(
        `${shapeName(shape)}: before ${rb.ms.toFixed(0)} ms, after ${ra.ms.toFixed(0)} ms: ${(ra.ms / rb.ms).toFixed(3)} | ` +
          `forward ${r('forwardMs')}, head ${r('headMs')}, update ${r('updateMs')}` +
          (ra.lossPlus === rb.lossPlus && ra.lossMinus === rb.lossMinus ? '' : ' | the losses differ') +
          '\n',
      );
    }
    const med = (k: 'forwardMs' | 'headMs' | 'updateMs') => median(pairs.map(({ ra, rb }) => ratio(ra, rb, k))).toFixed(3);
    process.stdout.write(
      `${shapeName(shape)}: median after / before: step ${median(pairs.map(({ ra, rb }) => ra.ms / rb.ms)).toFixed(3)}, ` +
        `forward ${med('forwardMs')}, head ${med('headMs')}, update ${med('updateMs')} (before's steps ` +
        `${median(pairs.map(({ rb }) => rb.ms)).toFixed(0)} ms, after's ${median(pairs.map(({ ra }) => ra.ms)).toFixed(0)} ms, medians)\n`,
    );
    await b.close();
    await a.close();
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (o.engineChild) return engineChild(o, o.engineChild);
  if (o.pair) return pairBuilds(o, o.pair);
  checkPythons(o);

  mkdirSync(RESULTS, { recursive: true });
  await benchModel();
  const info = await loadModelInfo(MODEL_DIR);
  const [self, ...others] = runners(o);
  const results: ShapeResult[] = [];
  for (const shape of o.shapes) {
    const name = shapeName(shape);
    writeBatch(shape);
    const products = stepProducts(OPT_125M, shape);
    const gemms = [...new Set(products.map((p) => p.shape))];
    process.stderr.write(`[bench] ${name}: GEMM rates for the floor\n`);
    const rates = await measureRates(o, gemms);
    const engine = self.start(shape);
    await engine.ready();
    const engineSteps: StepRecord[] = [];
    // After its warm-up the engine waits, stopped, while each other implementation loads and warms up (compiles).
    for (let w = 0; w < o.warmup; w++) engineSteps.push(await engine.step(true));
    const sums: Summary[] = [];
    for (const r of others) {
      process.stderr.write(`[bench] ${name}: ${self.label} paired with ${r.label}\n`);
      const other = r.start(shape);
      await other.ready();
      const steps: StepRecord[] = [];
      for (let w = 0; w < o.warmup; w++) steps.push(await other.step(true));
      const ratios: number[] = [];
      const probes: number[] = [];
      for (let i = 0; i < o.steps; i++) {
        // Both servers are stopped here: the reading is the host's, not theirs.
        probes.push(await probeHost(o));
        // Who goes first alternates, so that neither always follows the other.
        const [a, b] = i % 2 ? [await other.step(false), await engine.step(false)] : [await engine.step(false), await other.step(false)];
        const [mine, theirs] = i % 2 ? [b, a] : [a, b];
        engineSteps.push(mine);
        steps.push(theirs);
        ratios.push(mine.ms / theirs.ms);
      }
      sums.push(summarise(r, shape, steps, await other.close(), ratios, probes));
    }
    process.stderr.write(`[bench] ${name}: GEMM rates for the floor, again\n`);
    rates.push(...(await measureRates(o, gemms)));
    const spillway = summarise(self, shape, engineSteps, await engine.close(), [], sums.flatMap((x) => x.probes));
    const anchors = sums.filter((s) => s.kind === 'pytorch');
    const best = anchors.length ? anchors.reduce((a, b) => (b.medianMs < a.medianMs ? b : a)) : undefined;
    const floor = floorRows(products, rates);
    const floorMs = floor.reduce((a, r) => a + r.ms, 0);
    const floorCpuMs = floor.reduce((a, r) => a + r.cpuMs, 0);
    const phaseFloor = ['noiseMs', 'forwardMs', 'headMs', 'updateMs'].map((phase) => ({
      phase,
      ms: spillway.phases[phase] ?? 0,
      floorMs: floor.filter((r) => `${r.phase}Ms` === phase).reduce((a, r) => a + r.ms, 0),
    }));
    results.push({
      shape,
      tokens: shape.batch * shape.seq,
      impls: [spillway, ...sums],
      spillway,
      best,
      floor,
      floorMs,
      floorRatio: spillway.medianMs / floorMs,
      floorCpuMs,
      floorCpuRatio: spillway.medianCpuMs / floorCpuMs,
      phaseFloor,
    });
  }

  const res = {
    bench: 'zo-step-cpu',
    model: { dir: 'bench/work/opt-125m-random', shape: OPT_125M, seed: 1234, dtype: 'float32', tied: true },
    hyper: { q: 1, lr: LR, eps: EPS, weightDecay: WD, noise: 'gaussian', loss: 'lm, tokens 1..T-1' },
    threads: o.threads,
    warmup: o.warmup,
    steps: o.steps,
    parameters: info.parameterCount,
    machine: machine(o),
    targets: { vsStrongestPytorch: TARGET_VS_PYTORCH, vsFloor: TARGET_VS_FLOOR },
    shapes: results,
  };
  writeFileSync(join(RESULTS, `${o.out}.json`), JSON.stringify(res, null, 2) + '\n');
  const md = markdown(res, results);
  writeFileSync(join(RESULTS, `${o.out}.md`), md);
  process.stdout.write(md);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
