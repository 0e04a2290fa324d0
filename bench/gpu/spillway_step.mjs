// One MeZO step of Spillway's CUDA engine (all masters resident on the device,
// fp32 weights), timed: the Spillway side of bench/gpu/run.sh.
//
//   node bench/gpu/spillway_step.mjs ADDON.node MODEL_DIR [--batches 1,16] [--steps 5]
//        [--warmup 2] [--threads 16] [--gemm fp32|tf32|bf16]   prints one JSON object on stdout
//
// --gemm (default $SPILLWAY_GEMM, else fp32) sets SPILLWAY_GEMM, the CUDA backend's GEMM
// precision, before each engine is made; the precision recorded is the one the backend's name
// reports ("gemm tf32"), so a mode that fell back to fp32 is recorded as fp32, with a warning.
//
// MODEL_DIR is what make_opt_model.py writes (spec.json, batch.json). Per batch
// size: a fresh Engine({threads, device: 'cuda'}), load, score() at the
// unperturbed weights (the sanity-check loss), warm-up + timed steps (q = 1,
// Gaussian noise, lr 1e-6, eps 1e-3, wd 0), kind "lm" over all positions
// (score span [1, T) per sequence). GPU memory: cudaMemGetInfo through
// cudaDevices() before the engine exists and after load / score / every step
// (the engine keeps its work buffers, so the lowest free figure is its peak).
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
const [addonPath, modelDir] = args;
const batches = opt('--batches', '1,16').split(',').map(Number);
const steps = Number(opt('--steps', '5'));
const warmup = Number(opt('--warmup', '2'));
const threads = Number(opt('--threads', '16'));
const device = opt('--device', 'cuda'); // 'cpu' only to try the script without a GPU
const gemm = opt('--gemm', process.env.SPILLWAY_GEMM || 'fp32');
process.env.SPILLWAY_GEMM = gemm; // read by the native backend when an engine is made
const LR = 1e-6, EPS = 1e-3;

const addon = createRequire(import.meta.url)(resolve(addonPath));
const spec = JSON.parse(readFileSync(join(modelDir, 'spec.json'), 'utf8'));
const rows = JSON.parse(readFileSync(join(modelDir, 'batch.json'), 'utf8')).tokens;
const free = () => (device === 'cpu' ? 0 : addon.cudaDevices().devices[0].freeBytes);
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); const n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };
const summary = (xs) => ({ median: med(xs), min: Math.min(...xs), max: Math.max(...xs) });
const log = (s) => process.stderr.write(s + '\n');

function makeBatch(B) {
  const T = rows[0].length;
  const tokens = new Int32Array(B * T);
  for (let b = 0; b < B; b++) tokens.set(rows[b], b * T);
  return {
    tokens,
    seqStart: Int32Array.from({ length: B + 1 }, (_, i) => i * T),
    scoreStart: new Int32Array(B).fill(1),
    scoreEnd: new Int32Array(B).fill(T),
    exampleStart: Int32Array.from({ length: B + 1 }, (_, i) => i),
    exampleKind: new Int32Array(B).fill(0), // lm
    label: new Int32Array(B).fill(-1),
  };
}

const out = { impl: 'spillway', device: addon.cudaDevices(), threads, gemm, lr: LR, eps: EPS, wd: 0, runs: [] };
for (const B of batches) {
  const T = rows[0].length;
  const batch = makeBatch(B);
  const free0 = free();
  let minFree = free0;
  const e = new addon.Engine({ threads, device });
  const t0 = performance.now();
  const info = await e.load(spec);
  const loadMs = performance.now() - t0;
  const freeLoaded = free();
  minFree = Math.min(minFree, freeLoaded);
  const score = await e.score(batch);
  minFree = Math.min(minFree, free());
  const precision = (/gemm (fp32|tf32|bf16)/.exec(info.backend) || [])[1] || 'fp32';
  if (precision !== gemm) log(`[spillway] WARNING: asked for gemm ${gemm}, the backend runs ${precision}: ${info.backend}`);
  log(`[spillway] B=${B} T=${T} loaded in ${(loadMs / 1e3).toFixed(1)} s (backend ${info.backend}), ` +
      `${((free0 - freeLoaded) / 2 ** 30).toFixed(2)} GiB on the device; score loss ${score.loss.toFixed(6)}`);
  const recs = [];
  for (let i = 0; i < warmup + steps; i++) {
    const w0 = performance.now();
    const r = await e.step(batch, { seed: 1234n, step: i, q: 1, lr: LR, eps: EPS, weightDecay: 0, noise: 'gaussian' });
    const ms = performance.now() - w0;
    minFree = Math.min(minFree, free());
    recs.push({ ms, times: r.times, lossPlus: r.lossPlus[0], lossMinus: r.lossMinus[0],
                projectedGrad: r.projectedGrad[0], skipped: r.skipped, warmup: i < warmup });
    const t = r.times;
    log(`[spillway] B=${B} T=${T} step ${i}${i < warmup ? ' (warm-up)' : ''}: ${ms.toFixed(1)} ms (noise ${t.noiseMs.toFixed(1)}, ` +
        `forward ${t.forwardMs.toFixed(1)}, head ${t.headMs.toFixed(1)}, update ${t.updateMs.toFixed(1)}, total ${t.totalMs.toFixed(1)}) ` +
        `L+ ${r.lossPlus[0].toFixed(6)} L- ${r.lossMinus[0].toFixed(6)}`);
  }
  const timed = recs.filter((s) => !s.warmup);
  const phases = {};
  for (const k of Object.keys(timed[0].times)) phases[k] = med(timed.map((s) => s.times[k]));
  out.runs.push({
    impl: 'spillway', precision, gemmRequested: gemm, batch: B, seq: T, backend: info.backend, loadMs,
    loss0: score.loss, ms: summary(timed.map((s) => s.ms)), phasesMedianMs: phases,
    deviceBytesAfterLoad: free0 - freeLoaded, peakDeviceBytes: free0 - minFree, steps: recs,
  });
  if (typeof e.close === 'function') await e.close();
  else if (typeof e.unload === 'function') await e.unload();
}
process.stdout.write(JSON.stringify(out, (k, v) => (typeof v === 'bigint' ? Number(v) : v)) + '\n');
process.exit(0);
