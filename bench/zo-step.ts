// `npm run bench`: one ZO (MeZO) step of the CPU engine against a PyTorch
// MeZO step on the same OPT-125M-shaped model, same batch, same loss, same
// thread count, in one run. Writes bench/results/zo-step-cpu.{json,md}.
//
//   node dist/bench/zo-step.js [--threads 2] [--steps 3] [--warmup 1] [--rounds 1] [--python /usr/bin/python3]
//
// The engine and each PyTorch configuration run in their own child process,
// so that each peak RSS is that implementation's own.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { packBatch } from '../electron/engine/batch.js';
import { loadNative } from '../electron/engine/native.js';
import type { NativeStepParams, NativeStepResult, PhaseTimes } from '../electron/engine/native.js';
import { engineSpec } from '../electron/engine/spec.js';
import { loadModelInfo } from '../electron/model/index.js';
import { makeOptModel, OPT_125M } from './make-model.js';
import { BATCH, BATCH_FILE, benchArgs, BENCH, EPS, LR, MODEL_DIR, RESULTS, SEQ, WD, WORK, machine, machineBusyMs, makeTokens, median, runChild } from './common.js';

const SELF = fileURLToPath(import.meta.url);

interface Options {
  threads: number;
  steps: number;
  warmup: number;
  python: string;
  rounds: number;
}

function parseArgs(argv: string[]): Options & { engineChild: boolean } {
  const a = benchArgs(argv, { threads: 2, steps: 3, warmup: 1, python: '/usr/bin/python3', rounds: 1, 'engine-child': false });
  return { threads: a.threads, steps: a.steps, warmup: a.warmup, python: a.python, rounds: a.rounds, engineChild: a['engine-child'] };
}

/** 16 random token sequences of 64 tokens (seeded), as [B][T]. */

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
// Engine child: load, warm up, time N steps, print JSON on stdout.

async function engineChild(o: Options): Promise<void> {
  const tokens = (JSON.parse(readFileSync(BATCH_FILE, 'utf8')) as { tokens: number[][] }).tokens;
  const batch = packBatch(
    tokens.map((t, i) => ({
      kind: 'lm' as const,
      label: -1,
      source: `bench:${i}`,
      sequences: [{ tokens: t, scoreStart: 1, scoreEnd: t.length }],
    })),
  );
  const info = await loadModelInfo(MODEL_DIR);
  const engine = new (loadNative().Engine)({ threads: o.threads });
  const tl = performance.now();
  const einfo = await engine.load(engineSpec(info));
  const loadMs = performance.now() - tl;
  const steps: StepRecord[] = [];
  for (let i = 0; i < o.warmup + o.steps; i++) {
    const params: NativeStepParams = { seed: 42n, step: i, q: 1, lr: LR, eps: EPS, weightDecay: WD, noise: 'gaussian' };
    const b0 = machineBusyMs();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const r: NativeStepResult = await engine.step(batch, params);
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    const others = Math.max(0, machineBusyMs() - b0 - (c.user + c.system) / 1e3);
    steps.push({
      ms,
      cpuMs: (c.user + c.system) / 1e3,
      load1: os.loadavg()[0],
      otherCpuMs: others,
      warmup: i < o.warmup,
      times: r.times,
      lossPlus: r.lossPlus[0],
      lossMinus: r.lossMinus[0],
      projectedGrad: r.projectedGrad[0],
    });
    const t = r.times;
    process.stderr.write(
      `[engine] step ${i}${i < o.warmup ? ' (warm-up)' : ''}: ${(ms / 1e3).toFixed(3)} s ` +
        `(noise ${t.noiseMs.toFixed(0)} ms, forward ${t.forwardMs.toFixed(0)}, head ${t.headMs.toFixed(0)}, ` +
        `update ${t.updateMs.toFixed(0)}, total ${t.totalMs.toFixed(0)}) L+ ${r.lossPlus[0].toFixed(6)} L- ${r.lossMinus[0].toFixed(6)}\n`,
    );
  }
  const out: ImplResult = {
    impl: 'spillway-cpu',
    engine: einfo,
    loadMs,
    threads: o.threads,
    parameters: info.parameterCount,
    batch: [BATCH, SEQ],
    steps,
    maxRssBytes: process.resourceUsage().maxRSS * 1024, // Node reports KiB
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}

// ---------------------------------------------------------------------------
// Orchestrator

interface Summary {
  label: string;
  medianMs: number;
  minMs: number;
  maxMs: number;
  tokensPerSec: number;
  medianCpuMs: number;
  maxLoad1: number;
  /** Largest share of one core that other processes took during a timed step. */
  maxOtherCores: number;
  maxRssBytes: number;
  phases: Record<string, number>;
  raw: ImplResult;
}

function summarise(label: string, r: ImplResult, phaseKeys: (s: StepRecord) => Record<string, number>): Summary {
  const timed = r.steps.filter((s) => !s.warmup);
  const ms = timed.map((s) => s.ms);
  const med = median(ms);
  const phases: Record<string, number> = {};
  const per = timed.map(phaseKeys);
  for (const k of Object.keys(per[0] ?? {})) phases[k] = median(per.map((p) => p[k]));
  return {
    label,
    medianMs: med,
    minMs: Math.min(...ms),
    maxMs: Math.max(...ms),
    tokensPerSec: (BATCH * SEQ) / (med / 1e3),
    medianCpuMs: median(timed.map((s) => s.cpuMs)),
    maxLoad1: Math.max(...timed.map((s) => s.load1)),
    maxOtherCores: Math.max(...timed.map((s) => s.otherCpuMs / s.ms)),
    maxRssBytes: r.maxRssBytes,
    phases,
    raw: r,
  };
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
const sec = (ms: number) => `${(ms / 1e3).toFixed(2)} s`;

function markdown(res: Record<string, unknown>, eng: Summary, torchRuns: Summary[], best: Summary, ratio: number): string {
  const m = res.machine as Record<string, unknown>;
  const others = Math.max(eng.maxOtherCores, ...torchRuns.map((t) => t.maxOtherCores));
  const busy = others > 0.1;
  const rows = [eng, ...torchRuns].map(
    (s) =>
      `| ${s.label}${s === best ? ' (best)' : ''} | ${sec(s.medianMs)} | ${sec(s.minMs)} | ${sec(s.maxMs)} | ${s.tokensPerSec.toFixed(0)} | ${sec(s.medianCpuMs)} | ${mib(s.maxRssBytes)} | ${s.maxOtherCores.toFixed(2)} |`,
  );
  const ep = eng.phases;
  const tp = (s: Summary) =>
    `| ${s.label} | ${(s.phases.perturbMs ?? 0).toFixed(0)} | ${(s.phases.forwardMs ?? 0).toFixed(0)} | ${(s.phases.updateMs ?? 0).toFixed(0)} |`;
  return [
    '# ZO step, CPU: Spillway engine vs PyTorch MeZO',
    '',
    `Model: random OPT-125M shape (vocab ${OPT_125M.vocab}, hidden ${OPT_125M.hidden}, ${OPT_125M.layers} layers, ` +
      `${OPT_125M.heads} heads, ffn ${OPT_125M.ffn}, tied, float32, ${(eng.raw.parameters as number).toLocaleString('en')} parameters). ` +
      `Batch ${BATCH} x ${SEQ} tokens, "lm" loss over tokens 1..${SEQ - 1}, q = 1, Gaussian noise, lr ${LR}, eps ${EPS}, wd ${WD}. ` +
      `${res.threads} threads each. Each run: ${res.warmup} warm-up step, then ${res.steps} timed steps; ${res.rounds} interleaved round(s); medians over all timed steps.`,
    '',
    '| implementation | step (median) | min | max | tokens/s | CPU time / step | peak RSS | other processes (cores, max) |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `**Ratio spillway / pytorch (best) = ${ratio.toFixed(3)}** (wall time, medians; target <= 1.0: ${ratio <= 1 ? 'met' : 'NOT met'}). ` +
      `CPU-time ratio (spillway / the same PyTorch run): ${(eng.medianCpuMs / best.medianCpuMs).toFixed(3)}.`,
    ...(busy
      ? [
          '',
          `Warning: other processes used up to ${others.toFixed(2)} of the ${m.cores as number} cores during a timed step: ` +
            'they competed for the CPU, so wall times are inflated and noisy. ' +
            'Re-run on an idle machine (and/or with --rounds 2+) before quoting these figures.',
        ]
      : []),
    '',
    'Engine phases (median, ms): ' +
      `noise ${ep.noiseMs.toFixed(0)}, forward ${ep.forwardMs.toFixed(0)}, head ${ep.headMs.toFixed(0)}, ` +
      `update ${ep.updateMs.toFixed(0)}, total ${ep.totalMs.toFixed(0)}.`,
    '',
    '| PyTorch phases (median, ms) | perturb (3x, incl. z) | forward (2x, incl. loss) | update (incl. z) |',
    '|---|---|---|---|',
    ...torchRuns.map(tp),
    '',
    `Machine: ${m.cpu}, ${m.cores} cores (${(m.simd as string[]).join(', ')}), ${m.memGiB} GiB; ${m.os}; ` +
      `Node ${m.node}; PyTorch ${m.torch} (${m.python}); ${m.date}.`,
    '',
    'Command: `npm run build:ts && npm run bench` (see bench/README.md).',
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (o.engineChild) return engineChild(o);

  mkdirSync(WORK, { recursive: true });
  mkdirSync(RESULTS, { recursive: true });
  const t0 = performance.now();
  const made = await makeOptModel(MODEL_DIR);
  process.stderr.write(
    `[bench] model ${made.reused ? 'reused' : 'written'}: ${MODEL_DIR} (${((performance.now() - t0) / 1e3).toFixed(1)} s)\n`,
  );
  writeFileSync(BATCH_FILE, JSON.stringify({ tokens: makeTokens(OPT_125M.vocab) }));

  const common = ['--threads', String(o.threads), '--steps', String(o.steps), '--warmup', String(o.warmup)];
  const baseEnv = { ...process.env };
  delete baseEnv.OPENBLAS_NUM_THREADS;
  delete baseEnv.OMP_NUM_THREADS;

  const merge = (rs: ImplResult[]): ImplResult => ({
    ...rs[0],
    steps: rs.flatMap((r) => r.steps),
    maxRssBytes: Math.max(...rs.map((r) => r.maxRssBytes)),
    rounds: rs.length,
  });
  // Rounds interleave the three runs so that a busy machine slows all of them alike.
  const engRuns: ImplResult[] = [];
  const torchRuns1: Map<string, ImplResult[]> = new Map();
  for (let round = 0; round < o.rounds; round++) {
    process.stderr.write(`[bench] round ${round + 1}/${o.rounds}: Spillway CPU engine, ${o.threads} threads\n`);
    engRuns.push(await runChild<ImplResult>(process.execPath, [SELF, '--engine-child', ...common], baseEnv));
    for (const ob of ['1', String(o.threads)]) {
      process.stderr.write(`[bench] round ${round + 1}/${o.rounds}: PyTorch, torch.set_num_threads(${o.threads}), OPENBLAS_NUM_THREADS=${ob}\n`);
      const r = await runChild<ImplResult>(
        o.python,
        [join(BENCH, 'mezo_torch.py'), MODEL_DIR, BATCH_FILE, ...common, '--lr', String(LR), '--eps', String(EPS), '--wd', String(WD)],
        { ...baseEnv, OPENBLAS_NUM_THREADS: ob },
      );
      const label = `pytorch OPENBLAS_NUM_THREADS=${ob}`;
      torchRuns1.set(label, [...(torchRuns1.get(label) ?? []), r]);
    }
  }
  const engRaw = merge(engRuns);
  const torchRaw = [...torchRuns1].map(([label, rs]) => ({ label, r: merge(rs) }));

  const eng = summarise('spillway (cpu engine)', engRaw, (s) => ({ ...(s.times as unknown as Record<string, number>) }));
  const torchRuns = torchRaw.map(({ label, r }) =>
    summarise(label, r, (s) => ({ perturbMs: s.perturbMs ?? 0, forwardMs: s.forwardMs ?? 0, updateMs: s.updateMs ?? 0 })),
  );
  const best = torchRuns.reduce((a, b) => (b.medianMs < a.medianMs ? b : a));
  const ratio = eng.medianMs / best.medianMs;

  const res = {
    bench: 'zo-step-cpu',
    model: { dir: 'bench/work/opt-125m-random', shape: OPT_125M, seed: 1234, dtype: 'float32', tied: true },
    batch: { sequences: BATCH, tokens: SEQ, kind: 'lm', scoreStart: 1, scoreEnd: SEQ },
    hyper: { q: 1, lr: LR, eps: EPS, weightDecay: WD, noise: 'gaussian' },
    threads: o.threads,
    warmup: o.warmup,
    steps: o.steps,
    rounds: o.rounds,
    machine: machine(o.python),
    spillway: { ...eng, raw: undefined, detail: eng.raw },
    pytorch: torchRuns.map((s) => ({ ...s, raw: undefined, detail: s.raw })),
    pytorchBest: best.label,
    ratio,
    target: 1.0,
    targetMet: ratio <= 1.0,
  };
  writeFileSync(join(RESULTS, 'zo-step-cpu.json'), JSON.stringify(res, null, 2) + '\n');
  const md = markdown(res, eng, torchRuns, best, ratio);
  writeFileSync(join(RESULTS, 'zo-step-cpu.md'), md);
  process.stdout.write(md);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
