// `npm run bench:decode`: decoding speed on the CPU. The engine's KV-cache
// decode (greedy, one pass over the blocks per step for every sequence)
// against PyTorch 2 + transformers' generate() with its KV cache, on the same
// OPT-125M-shaped model, the same prompts and the same thread count, for
// batches of 1 and 8; and the engine with every block streamed from CPU
// memory (staged into the device arena each step) against the floor of
// ALGORITHMS.md §5 for a decoding step: max(the resident step's compute, the
// blocks' bytes / the measured copy rate). Writes bench/results/decode-cpu.{json,md}.
//
//   node dist/bench/decode.js [--threads 2] [--prompt 32] [--new 64] [--batches 1,8] [--runs 2] [--rounds 1] [--python VENV]
//
// Each implementation runs in its own child process; rounds interleave them so
// that a busy machine slows all alike.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Home } from '../electron/common/options.js';
import { loadNative } from '../electron/engine/native.js';
import type { TierInfo } from '../electron/engine/native.js';
import { engineSpec } from '../electron/engine/spec.js';
import { loadModelInfo } from '../electron/model/index.js';
import { BENCH, MODEL_DIR, RESULTS, WORK, benchArgs, machineInfo, machineLine, median, runChild, venvPython } from './common.js';
import { makeOptModel, OPT_125M, Rng } from './make-model.js';

const SELF = fileURLToPath(import.meta.url);
const PROMPTS_FILE = join(WORK, 'decode-prompts.json');

interface Run {
  warmup: boolean;
  prefillMs: number;
  /** Each decoding step after the first token (one token for every sequence). */
  stepMs: number[];
  cpuMs: number;
}

interface ChildResult {
  impl: string;
  runs: Run[];
  maxRssBytes: number;
  /** Engine: bytes of every block, and the bytes copied into the device arena per decoding step. */
  blockBytes?: number;
  h2dBytesPerStep?: number;
  torch?: string;
  transformers?: string;
}

function options(argv: string[]) {
  const a = benchArgs(argv, {
    threads: 2,
    prompt: 32,
    new: 64,
    batches: '1,8',
    runs: 2,
    warmup: 1,
    rounds: 1,
    python: '',
    'engine-child': false,
    batch: 1,
    home: 'device',
  });
  return { ...a, batchList: a.batches.split(',').map(Number) };
}

async function engineChild(o: ReturnType<typeof options>): Promise<void> {
  const prompts = (JSON.parse(readFileSync(PROMPTS_FILE, 'utf8')) as { prompts: number[][] }).prompts.slice(0, o.batch);
  const info = await loadModelInfo(MODEL_DIR);
  const engine = new (loadNative().Engine)({ threads: o.threads });
  const n = info.units.length;
  const homes = info.units.map((_, i): Home => (i === 0 || i === n - 1 ? 'device' : (o.home as Home)));
  await engine.load(engineSpec(info), o.home === 'device' ? undefined : { homes });
  const runs: Run[] = [];
  let h2dPerStep = 0;
  for (let r = 0; r < o.warmup + o.runs; r++) {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let s = await engine.decodeBegin({ prompts: prompts.map((p) => Int32Array.from(p)), maxNewTokens: o.new });
    const prefillMs = performance.now() - t0;
    const stepMs: number[] = [];
    const h2d0 = (engine.info().tiers as TierInfo).h2dBytes;
    while (s.finish.some((f) => f === null)) {
      const ts = performance.now();
      s = await engine.decodeNext();
      stepMs.push(performance.now() - ts);
    }
    h2dPerStep = ((engine.info().tiers as TierInfo).h2dBytes - h2d0) / stepMs.length;
    const cpu = process.cpuUsage(cpu0);
    runs.push({ warmup: r < o.warmup, prefillMs, stepMs, cpuMs: (cpu.user + cpu.system) / 1e3 });
  }
  engine.close();
  const blockBytes = info.units
    .filter((u) => u.kind === 'block')
    .flatMap((u) => Object.values(u.tensors))
    .reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1) * 4, 0);
  const out: ChildResult = { impl: `spillway ${o.home}`, runs, maxRssBytes: process.resourceUsage().maxRSS * 1024, blockBytes, h2dBytesPerStep: h2dPerStep };
  process.stdout.write(JSON.stringify(out) + '\n');
}

interface Figures {
  stepMs: number;
  prefillMs: number;
  /** Tokens per second over the batch in the decoding steps. */
  tokensPerS: number;
  cpuMsPerStep: number;
}

function figures(results: ChildResult[], batch: number): Figures {
  const timed = results.flatMap((r) => r.runs.filter((x) => !x.warmup));
  const stepMs = median(timed.flatMap((r) => r.stepMs));
  return {
    stepMs,
    prefillMs: median(timed.map((r) => r.prefillMs)),
    tokensPerS: (batch * 1000) / stepMs,
    cpuMsPerStep: median(timed.map((r) => r.cpuMs / (r.stepMs.length + 1))),
  };
}

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  if (o['engine-child']) return engineChild(o);
  const python = o.python || venvPython();
  mkdirSync(WORK, { recursive: true });
  mkdirSync(RESULTS, { recursive: true });
  await makeOptModel(MODEL_DIR);
  const rng = new Rng(20261206);
  const maxBatch = Math.max(...o.batchList);
  writeFileSync(PROMPTS_FILE, JSON.stringify({ prompts: Array.from({ length: maxBatch }, () => Array.from({ length: o.prompt }, () => rng.int(OPT_125M.vocab))) }));

  const env = { ...process.env };
  delete env.OPENBLAS_NUM_THREADS;
  delete env.OMP_NUM_THREADS;
  const common = ['--threads', String(o.threads), '--new', String(o.new), '--runs', String(o.runs), '--warmup', String(o.warmup)];
  const collected = new Map<string, ChildResult[]>();
  const add = (key: string, lines: string[]) => {
    const last = lines.at(-1);
    if (last === undefined) throw new Error(`${key}: the child printed no result`);
    collected.set(key, [...(collected.get(key) ?? []), JSON.parse(last) as ChildResult]);
  };
  for (let round = 0; round < o.rounds; round++) {
    for (const batch of o.batchList) {
      for (const home of ['device', 'cpu']) {
        process.stderr.write(`[bench] round ${round + 1}: Spillway, batch ${batch}, blocks ${home === 'device' ? 'resident' : 'streamed from CPU memory'}\n`);
        add(`${home}:${batch}`, await runChild(process.execPath, [SELF, '--engine-child', '--batch', String(batch), '--home', home, ...common], env));
      }
      process.stderr.write(`[bench] round ${round + 1}: PyTorch generate(), batch ${batch}\n`);
      add(`torch:${batch}`, await runChild(python, [join(BENCH, 'decode_torch.py'), MODEL_DIR, PROMPTS_FILE, '--batch', String(batch), ...common], env));
    }
  }
  // The copy rate the floor divides by: the engine's own host-to-device copy path on this backend.
  const cal = await loadNative().calibrate({ parts: ['machine'], threads: o.threads });
  const blockBytes = collected.get(`cpu:${o.batchList[0]}`)![0].blockBytes as number;
  const rows = o.batchList.map((batch) => {
    const resident = figures(collected.get(`device:${batch}`)!, batch);
    const streamed = figures(collected.get(`cpu:${batch}`)!, batch);
    const torch = figures(collected.get(`torch:${batch}`)!, batch);
    const h2d = collected.get(`cpu:${batch}`)![0].h2dBytesPerStep as number;
    const copyMs = (h2d / cal.h2dBytesPerS) * 1000;
    const floorMs = Math.max(resident.stepMs, copyMs);
    return { batch, resident, streamed, torch, ratio: resident.stepMs / torch.stepMs, h2dBytesPerStep: h2d, copyMs, floorMs, floorRatio: streamed.stepMs / floorMs };
  });
  const torchInfo = collected.get(`torch:${o.batchList[0]}`)![0];
  const res = {
    bench: 'decode-cpu',
    model: { dir: 'bench/work/opt-125m-random', shape: OPT_125M, dtype: 'float32', tied: true, blockBytes },
    prompt: o.prompt,
    newTokens: o.new,
    threads: o.threads,
    runs: o.runs,
    warmup: o.warmup,
    rounds: o.rounds,
    copyBytesPerS: cal.h2dBytesPerS,
    machine: { ...machineInfo(), torch: torchInfo.torch, transformers: torchInfo.transformers, python },
    rows,
    target: 1.0,
    targetMet: rows.every((r) => r.ratio <= 1.0),
    raw: Object.fromEntries(collected),
  };
  writeFileSync(join(RESULTS, 'decode-cpu.json'), JSON.stringify(res, null, 2) + '\n');
  const ms = (x: number) => `${x.toFixed(1)} ms`;
  const m = res.machine;
  const md = [
    '# Decoding on the CPU: Spillway engine vs PyTorch generate()',
    '',
    `Model: random OPT-125M shape (vocab ${OPT_125M.vocab}, hidden ${OPT_125M.hidden}, ${OPT_125M.layers} layers, float32, tied). ` +
      `Prompts of ${o.prompt} random tokens, ${o.new} new tokens each, greedy, no end token; batch = prompts decoded together. ` +
      `${o.threads} threads each. PyTorch ${m.torch} with transformers ${m.transformers}: generate(do_sample=False, use_cache=True), ` +
      `timed per step by a stopping criterion. Per implementation and batch: ${o.warmup} warm-up run, then ${o.runs} timed runs; ` +
      `${o.rounds} interleaved round(s); medians over every decoding step (the prefill and first token apart).`,
    '',
    '| batch | Spillway ms / step | tokens/s | PyTorch ms / step | tokens/s | **ratio** (target <= 1.0) | prefill Spillway / PyTorch |',
    '|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.batch} | ${ms(r.resident.stepMs)} | ${r.resident.tokensPerS.toFixed(1)} | ${ms(r.torch.stepMs)} | ${r.torch.tokensPerS.toFixed(1)} | **${r.ratio.toFixed(3)}** | ${ms(r.resident.prefillMs)} / ${ms(r.torch.prefillMs)} |`,
    ),
    '',
    `Blocks streamed from CPU memory (every block's ${(blockBytes / 2 ** 20).toFixed(0)} MiB copied into the device arena once per step, ` +
      `for the whole batch; copy rate measured by the engine's calibration: ${(cal.h2dBytesPerS / 1e9).toFixed(2)} GB/s). ` +
      'Floor (ALGORITHMS.md §5 for one decoding step) = max(the resident step, bytes copied / copy rate):',
    '',
    '| batch | streamed ms / step | bytes copied / step | copy time | floor | streamed / floor |',
    '|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.batch} | ${ms(r.streamed.stepMs)} | ${(r.h2dBytesPerStep / 2 ** 20).toFixed(0)} MiB | ${ms(r.copyMs)} | ${ms(r.floorMs)} | ${r.floorRatio.toFixed(2)} |`,
    ),
    '',
    `${machineLine(m)}. ` +
      'The machine is shared with other work: compare the ratios (measured side by side), not the absolute times.',
    '',
    'Command: `npm run build:ts && npm run bench:decode` (see bench/README.md).',
    '',
  ].join('\n');
  writeFileSync(join(RESULTS, 'decode-cpu.md'), md);
  process.stdout.write(md);
}

await main();
