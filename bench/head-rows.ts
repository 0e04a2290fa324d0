// `node dist/bench/head-rows.js [--rounds 4] [--steps 2] [--threads 2]`: the CPU engine's head and
// trainable tokens' rows made without whole working copies (token_logprobs_noisy, rows merged on
// their own) against the same engine with SPILLWAY_HEAD_WHOLE=1 (z and a perturbed or merged copy
// of the whole head and embedding, the path of backends without chunks), on the random OPT-125M
// (vocabulary 50,272, tied), batch 16 x 64, for MeZO-full and for --train tokens (three rows).
// Each round runs every variant in a fresh process in turn (who goes first alternates): load, one
// warm-up step, then --steps timed steps; a ratio is the median of the rounds' ratios. Both give
// the same losses bit for bit (checked here). Writes bench/results/head-rows-cpu.md.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadNative } from '../electron/engine/native.js';
import type { NativeTrainSpec } from '../electron/engine/native.js';
import { engineSpec } from '../electron/engine/spec.js';
import { loadModelInfo } from '../electron/model/index.js';
import { BATCH, BATCH_FILE, EPS, MODEL_DIR, RESULTS, SEQ, WORK, benchArgs, benchBatch, machineInfo, machineLine, makeTokens, median, runChild } from './common.js';
import { makeOptModel, OPT_125M } from './make-model.js';

const SELF = fileURLToPath(import.meta.url);
const TOKENS = [5, 25_000, 50_000];
const SETS: Record<string, { spec: NativeTrainSpec; lr: number }> = {
  full: { spec: { kind: 'full' }, lr: 1e-6 },
  tokens: { spec: { kind: 'tokens', tokens: Int32Array.from(TOKENS) }, lr: 1e-2 },
};

interface ChildResult {
  stepMs: number[];
  losses: number[];
  scratchBytes: number;
  maxRssBytes: number;
}

const args = benchArgs(process.argv.slice(2), { rounds: 4, steps: 2, threads: 2, child: '' });

if (args.child) {
  // One variant: --child SET (the head variant comes from SPILLWAY_HEAD_WHOLE in the environment).
  const set = SETS[args.child];
  if (!set) throw new Error(`--child: unknown set ${args.child}`);
  const engine = new (loadNative().Engine)({ threads: args.threads });
  await engine.load(engineSpec(await loadModelInfo(MODEL_DIR)), undefined, set.spec);
  const batch = benchBatch();
  const out: ChildResult = { stepMs: [], losses: [], scratchBytes: 0, maxRssBytes: 0 };
  for (let i = 0; i <= args.steps; i++) {
    const t0 = performance.now();
    const r = await engine.step(batch, { seed: 7n, step: i, q: 1, lr: set.lr, eps: EPS, weightDecay: 0, noise: 'gaussian' });
    const ms = performance.now() - t0;
    if (i > 0) out.stepMs.push(ms);
    out.losses.push(r.lossPlus[0], r.lossMinus[0]);
  }
  out.scratchBytes = engine.info().tiers!.scratchBytes;
  out.maxRssBytes = process.resourceUsage().maxRSS * 1024;
  engine.close();
  process.stdout.write(JSON.stringify(out) + '\n');
} else {
  await makeOptModel(MODEL_DIR, OPT_125M);
  mkdirSync(WORK, { recursive: true });
  writeFileSync(BATCH_FILE, JSON.stringify({ tokens: makeTokens(OPT_125M.vocab) }));
  const variants = [
    { name: 'chunks', env: { ...process.env, SPILLWAY_HEAD_WHOLE: '0' } },
    { name: 'whole', env: { ...process.env, SPILLWAY_HEAD_WHOLE: '1' } },
  ];
  const rows: string[] = [];
  for (const set of Object.keys(SETS)) {
    const results: Record<string, ChildResult[]> = { chunks: [], whole: [] };
    for (let r = 0; r < args.rounds; r++) {
      const order = r % 2 ? [...variants].reverse() : variants;
      for (const v of order) {
        const [line] = await runChild(process.execPath, [SELF, '--child', set, '--steps', String(args.steps), '--threads', String(args.threads)], v.env);
        results[v.name].push(JSON.parse(line) as ChildResult);
        process.stderr.write(`[head-rows] ${set} ${v.name} round ${r}: ${results[v.name].at(-1)!.stepMs.map((m) => m.toFixed(0)).join(', ')} ms\n`);
      }
    }
    const [c, w] = [results.chunks, results.whole];
    const same = c.every((x, i) => x.losses.every((l, k) => Object.is(l, w[i].losses[k])));
    if (!same) throw new Error(`${set}: the two heads gave different losses`);
    const ratios = c.map((x, i) => median(x.stepMs) / median(w[i].stepMs));
    const mib = (b: number) => (b / 2 ** 20).toFixed(0);
    const step = (xs: ChildResult[]) => median(xs.flatMap((x) => x.stepMs)) / 1e3;
    rows.push(
      `| ${set} | ${step(c).toFixed(3)} s | ${step(w).toFixed(3)} s | **${median(ratios).toFixed(2)}** (${Math.min(...ratios).toFixed(2)} – ${Math.max(...ratios).toFixed(2)}) | ` +
        `${mib(c[0].scratchBytes)} / ${mib(w[0].scratchBytes)} MiB | ${mib(median(c.map((x) => x.maxRssBytes)))} / ${mib(median(w.map((x) => x.maxRssBytes)))} MiB |`,
    );
  }
  const md = [
    '# The head and trainable tokens without whole working copies (CPU)',
    '',
    `Random OPT-125M (vocabulary 50,272, hidden 768, tied, float32), batch ${BATCH} x ${SEQ}, q = 1, eps ${EPS}, ${args.threads} threads. ` +
      `"chunks": the head perturbed (or its trainable rows patched) a 1,024-row chunk at a time, trainable tokens' rows merged on their own; ` +
      '"whole": the same engine with `SPILLWAY_HEAD_WHOLE=1`, z and the perturbed (or merged) head and embedding written whole first. ' +
      `tokens: rows ${TOKENS.join(', ')} (lr 1e-2); full: every weight (lr 1e-6). ${args.rounds} rounds, each variant in a fresh process per round ` +
      `(load, a warm-up step, ${args.steps} timed steps), who goes first alternating; a ratio is the median of the rounds' ratios (their range). ` +
      'Both variants gave the same losses bit for bit in every round.',
    '',
    `${machineLine(machineInfo())}.`,
    '',
    '| set | chunks, step | whole, step | chunks / whole | scratch (z, copies, chunks): chunks / whole | peak RSS: chunks / whole |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
    'Command: `npm run build && node dist/bench/head-rows.js`.',
    '',
  ].join('\n');
  writeFileSync(join(RESULTS, 'head-rows-cpu.md'), md);
  process.stdout.write(md);
}
