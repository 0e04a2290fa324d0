// Two engine builds on the `npm run bench` step, paired step by step: both engines are loaded
// (zo-step.js --engine-child, one per addon), then each takes one step in turn, the first of
// each pair alternating, and the ratio of each pair's two steps is taken. On a host whose speed
// drifts from minute to minute (other guests), two steps a couple of seconds apart see nearly the
// same host, where whole runs a minute apart do not (bench/zo-step-ab.sh).
//
//   node bench/zo-step-pair.mjs BEFORE.node AFTER.node [PAIRS] [BATCH]
//
// BEFORE / AFTER: built addons (native/build/Release/spillway.node of two checkouts, or a copy).
// PAIRS: 10 by default. BATCH: 16x64 (default), 4x256 or 1x512, from bench/work/ (written by
// `npm run bench`). Prints each pair's step and phase ratios (after / before) and their medians,
// and says where the two builds' losses differ (they should not: the engine keeps its bits).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [beforeArg, afterArg, pairsArg = '10', batch = '16x64'] = process.argv.slice(2);
if (!beforeArg || !afterArg) {
  console.error('usage: node bench/zo-step-pair.mjs BEFORE.node AFTER.node [PAIRS] [BATCH]');
  process.exit(2);
}
const before = resolve(beforeArg), after = resolve(afterArg);  // the engine requires the addon by path
const batchFile = join(root, 'bench', 'work', `batch-${batch}.json`);
for (const f of [before, after, batchFile, join(root, 'dist', 'bench', 'zo-step.js')])
  if (!existsSync(f)) {
    console.error(`${f} not found (build with \`npm run build\`; bench/work/ is written by \`npm run bench\`)`);
    process.exit(2);
  }

function engine(addon) {
  const p = spawn(process.execPath, [join(root, 'dist', 'bench', 'zo-step.js'), '--engine-child', batchFile, '--threads', '2'], {
    env: { ...process.env, SPILLWAY_ADDON: addon },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const waiting = [];
  readline.createInterface({ input: p.stdout }).on('line', (l) => {
    if (l.startsWith('{"ms"')) waiting.shift()?.resolve(JSON.parse(l));
  });
  p.on('exit', (code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`the engine for ${addon} exited (${code})`));
  });
  return { p, ask: (cmd) => new Promise((resolve, reject) => { waiting.push({ resolve, reject }); p.stdin.write(`${cmd}\n`); }) };
}

const b = engine(before), a = engine(after);
try {
  await b.ask('warmup');
  await a.ask('warmup');
  const pairs = [];
  for (let i = 0; i < Number(pairsArg); i++) {
    const [x, y] = i % 2 ? [a, b] : [b, a];
    const rx = await x.ask('step'), ry = await y.ask('step');
    const [rb, ra] = i % 2 ? [ry, rx] : [rx, ry];
    pairs.push({ rb, ra });
    const r = (k) => (ra.times[k] / rb.times[k]).toFixed(3);
    console.log(
      `before ${rb.ms.toFixed(0)} ms, after ${ra.ms.toFixed(0)} ms: ${(ra.ms / rb.ms).toFixed(3)} | forward ${r('forwardMs')}, head ${r('headMs')}, update ${r('updateMs')}` +
        (ra.lossPlus === rb.lossPlus && ra.lossMinus === rb.lossMinus ? '' : ' | the losses differ'),
    );
  }
  const med = (xs) => [...xs].sort((p, q) => p - q)[xs.length >> 1];
  const ratio = (k) => med(pairs.map(({ ra, rb }) => ra.times[k] / rb.times[k])).toFixed(3);
  console.log(
    `median after / before: step ${med(pairs.map(({ ra, rb }) => ra.ms / rb.ms)).toFixed(3)}, forward ${ratio('forwardMs')}, head ${ratio('headMs')}, update ${ratio('updateMs')} ` +
      `(before's steps ${med(pairs.map(({ rb }) => rb.ms)).toFixed(0)} ms, after's ${med(pairs.map(({ ra }) => ra.ms)).toFixed(0)} ms, medians)`,
  );
} finally {
  a.p.kill();
  b.p.kill();
}
