// One MeZO step (and a scoring pass) of each fixture model on the CPU engine
// and on the CUDA engine, compared: L+, L-, projected gradient, token
// log-probabilities and every updated weight.
//
//   node native/tests/zo_step_compare.mjs make-specs OUT.json
//       (here, where dist/ is built) writes the engine specs of the fixture
//       models, file paths relative to the repository root.
//   node native/tests/zo_step_compare.mjs run ADDON.node SPECS.json
//       (on a GPU machine, from the repository root) runs the comparison;
//       exit status 1 when a tolerance below is exceeded.
import { createRequire } from 'node:module';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve, relative } from 'node:path';

const MODELS = ['llama-tiny', 'llama-tiny-sharded', 'mistral-tiny', 'qwen2-tiny', 'opt-tiny', 'gpt2-tiny'];
const root = process.cwd();

// Tolerances (float32 forwards on two backends: only summation order differs).
const TOL_LOSS_REL = 1e-5;      // |L_cpu - L_cuda| / max(1, |L_cpu|)
const TOL_GRAD_ABS = 2e-2;      // |g_cpu - g_cuda| (g = (L+ - L-) / 2eps amplifies loss rounding by 1/2eps)
const TOL_WEIGHTS = 1e-10;      // sum |w_cpu - w_cuda|^2 / sum |w_cpu|^2 over all updated weights
const TOL_LOGPROB = 1e-10;      // same on the scored token log-probabilities

async function makeSpecs(out) {
  const { loadModelInfo } = await import(resolve(root, 'dist/electron/model/index.js'));
  const { engineSpec } = await import(resolve(root, 'dist/electron/engine/spec.js'));
  const specs = {};
  for (const m of MODELS) {
    const spec = engineSpec(await loadModelInfo(resolve(root, 'tests/fixtures/models', m)));
    for (const u of spec.units) for (const t of Object.values(u.tensors)) t.file = relative(root, t.file);
    specs[m] = spec;
  }
  writeFileSync(out, JSON.stringify(specs, (k, v) => (typeof v === 'bigint' ? Number(v) : v), 1));
  console.log(`wrote ${Object.keys(specs).length} specs to ${out}`);
}

function lcg(seed) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

// Four LM sequences and one two-candidate classify example, random tokens.
function makeBatch(cfg) {
  const rnd = lcg(42);
  const maxT = Math.min(cfg.maxPositions, 48);
  const seqs = [];
  const lens = [12, 20, 7, 30].map((l) => Math.min(l, maxT));
  for (const l of lens) seqs.push(Array.from({ length: l }, () => Math.floor(rnd() * cfg.vocabSize)));
  const prompt = Array.from({ length: Math.min(10, maxT - 2) }, () => Math.floor(rnd() * cfg.vocabSize));
  const cands = [[...prompt, 3, 5], [...prompt, 7, 9]];
  const tokens = [], seqStart = [0], scoreStart = [], scoreEnd = [];
  for (const s of seqs) { tokens.push(...s); seqStart.push(tokens.length); scoreStart.push(1); scoreEnd.push(s.length); }
  for (const c of cands) { tokens.push(...c); seqStart.push(tokens.length); scoreStart.push(prompt.length); scoreEnd.push(c.length); }
  return {
    tokens: Int32Array.from(tokens), seqStart: Int32Array.from(seqStart),
    scoreStart: Int32Array.from(scoreStart), scoreEnd: Int32Array.from(scoreEnd),
    exampleStart: Int32Array.from([0, 1, 2, 3, 4, 6]), exampleKind: Int32Array.from([0, 0, 0, 0, 1]),
    label: Int32Array.from([-1, -1, -1, -1, 1]),
  };
}

function normErr(a, b) {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { const d = a[i] - b[i]; num += d * d; den += a[i] * a[i]; }
  return den > 0 ? num / den : num;
}

async function runOne(addon, device, spec, batch) {
  const e = new addon.Engine({ threads: 4, device });
  const info = await e.load(spec);
  const before = {};
  for (const { name } of e.tensorNames()) before[name] = e.getTensor(name);
  const params = { seed: 1234n, step: 0, q: 2, lr: 1e-2, eps: 1e-3, weightDecay: 0.1, noise: 'gaussian' };
  const step = await e.step(batch, params);
  const after = {};
  for (const { name } of e.tensorNames()) after[name] = e.getTensor(name);
  const score = await e.score(batch);
  return { info, before, step, after, score };
}

async function run(addonPath, specsPath) {
  const require = createRequire(import.meta.url);
  const addon = require(resolve(addonPath));
  const specs = JSON.parse(readFileSync(specsPath, 'utf8'));
  console.log('cudaDevices:', JSON.stringify(addon.cudaDevices()));
  let failures = 0;
  for (const [name, spec] of Object.entries(specs)) {
    for (const u of spec.units) for (const t of Object.values(u.tensors)) t.file = resolve(root, t.file);
    if (!existsSync(spec.units[0].tensors.tok.file)) { console.log(`${name}: fixture missing, skipped`); continue; }
    const batch = makeBatch(spec.config);
    const cpu = await runOne(addon, 'cpu', spec, batch);
    const gpu = await runOne(addon, 'cuda', spec, batch);
    const lines = [];
    let ok = true;
    for (let j = 0; j < cpu.step.lossPlus.length; j++) {
      const dp = Math.abs(cpu.step.lossPlus[j] - gpu.step.lossPlus[j]) / Math.max(1, Math.abs(cpu.step.lossPlus[j]));
      const dm = Math.abs(cpu.step.lossMinus[j] - gpu.step.lossMinus[j]) / Math.max(1, Math.abs(cpu.step.lossMinus[j]));
      const dg = Math.abs(cpu.step.projectedGrad[j] - gpu.step.projectedGrad[j]);
      const same = cpu.step.seeds[j] === gpu.step.seeds[j];
      ok &&= dp <= TOL_LOSS_REL && dm <= TOL_LOSS_REL && dg <= TOL_GRAD_ABS && same;
      lines.push(`  j=${j} seed ${same ? 'same' : 'DIFFERENT'}  L+ cpu ${cpu.step.lossPlus[j].toFixed(8)} cuda ${gpu.step.lossPlus[j].toFixed(8)} (rel ${dp.toExponential(2)})` +
        `  L- cpu ${cpu.step.lossMinus[j].toFixed(8)} cuda ${gpu.step.lossMinus[j].toFixed(8)} (rel ${dm.toExponential(2)})` +
        `  g cpu ${cpu.step.projectedGrad[j].toFixed(6)} cuda ${gpu.step.projectedGrad[j].toFixed(6)} (abs ${dg.toExponential(2)})`);
    }
    // Updated weights: all tensors concatenated; and the update (after - before) on its own.
    const cat = (o) => Float64Array.from(Object.keys(cpu.after).flatMap((k) => Array.from(o[k])));
    const wc = cat(cpu.after), wg = cat(gpu.after);
    const delta = (r) => { const a = cat(r.after), b = cat(r.before); return a.map((x, i) => x - b[i]); };
    const werr = normErr(wc, wg);
    const derr = normErr(delta(cpu), delta(gpu));
    const lerr = normErr(cpu.score.tokenLogprobs, gpu.score.tokenLogprobs);
    const initErr = normErr(cat(cpu.before), cat(gpu.before));
    ok &&= werr <= TOL_WEIGHTS && lerr <= TOL_LOGPROB && initErr === 0 && cpu.step.skipped === gpu.step.skipped;
    lines.push(`  weights after step: norm_err ${werr.toExponential(3)} (tol ${TOL_WEIGHTS})  update delta norm_err ${derr.toExponential(3)}  initial weights identical: ${initErr === 0}`);
    lines.push(`  score: loss cpu ${cpu.score.loss.toFixed(8)} cuda ${gpu.score.loss.toFixed(8)}  token logprobs norm_err ${lerr.toExponential(3)} (tol ${TOL_LOGPROB})`);
    lines.push(`  times (ms) cpu step ${cpu.step.times.totalMs.toFixed(2)}  cuda step ${gpu.step.times.totalMs.toFixed(2)}  backends ${cpu.info.backend} / ${gpu.info.backend}`);
    console.log(`${name}: ${ok ? 'PASS' : 'FAIL'}`);
    for (const l of lines) console.log(l);
    if (!ok) failures++;
  }
  console.log(`zo_step_compare: ${failures === 0 ? 'all passed' : failures + ' model(s) failed'}`);
  process.exit(failures ? 1 : 0);
}

const [mode, a, b] = process.argv.slice(2);
if (mode === 'make-specs' && a) await makeSpecs(a);
else if (mode === 'run' && a && b) await run(a, b);
else {
  console.error('usage: zo_step_compare.mjs make-specs OUT.json | run ADDON.node SPECS.json');
  process.exit(2);
}
