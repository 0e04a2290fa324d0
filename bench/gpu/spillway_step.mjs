// One MeZO step of Spillway's engine, timed: the Spillway side of bench/gpu/run.sh.
// Two regimes:
//   --offload none (default): every master resident on the device, fp32 (the comparison
//       with PyTorch MeZO);
//   --offload cpu | ssd: ZO2's regime: every transformer block lives on the CPU (pinned)
//       or on the SSD (a spill file in --spill DIR) and is streamed through the device
//       once per step; the embeddings and the head stay resident.
//
//   node bench/gpu/spillway_step.mjs ADDON.node MODEL_DIR [--batches 1,16] [--seqs 512]
//        [--shapes 1x512,16x512,1x2048] [--steps 5] [--warmup 2] [--threads 16]
//        [--gemm fp32|tf32|bf16] [--device cuda|cpu]
//        [--offload none|cpu|ssd] [--masters fp32|bf16] [--update-on home|device]
//        [--spill DIR] [--slots 1|2] [--prefetch N] [--write-back-every K]
//        [--engine fresh|reuse] [--poll-ms 20] [--calibrate | --no-calibrate]
//   prints one JSON object on stdout (progress on stderr)
//
// --gemm (default $SPILLWAY_GEMM, else fp32) sets SPILLWAY_GEMM, the CUDA backend's GEMM
// precision, before each engine is made; the precision recorded is the one the backend's name
// reports ("gemm tf32"), so a mode that fell back to fp32 is recorded as fp32, with a warning.
// --masters bf16 keeps every master in bf16 with stochastic rounding of updates (streamed
// blocks move at half the bytes). --update-on device (the default when streaming) is ZO2's
// way: a streamed block's update is applied on the device at its next visit and the block is
// written back home (D2H); home updates it on host threads and moves nothing device-to-host.
//
// MODEL_DIR is what make_opt_model.py writes (spec.json, batch.json, batch-T.json for other
// sequence lengths). Shapes (B x T) run in order of B*T; rows longer than T are cut to T.
// Per shape: score() at the current weights (the sanity-check loss; it streams the blocks too,
// outside the counters' per-step deltas), warm-up + timed steps (q = 1, Gaussian noise, lr 1e-6,
// eps 1e-3, wd 0), kind "lm" over all positions (score span [1, T) per sequence).
// --engine fresh (the default resident) makes one engine per shape; reuse (the default when
// streaming: loading and pinning a streamed model costs tens of seconds) keeps one engine for
// all shapes of the process, in increasing B*T, so its work buffers only grow and the peak
// recorded for a shape is that of the largest shape so far (= its own).
//
// GPU memory, two figures, both from addon.cudaDevices(): NVML's free memory of the device
// (the whole device: nothing else may run on it):
//   peakProcessBytes: free at the start of this process (before any CUDA context of ours) minus
//       the lowest free seen: this process's peak, CUDA context and cuBLAS workspace included
//       (what ZO2's NVML figures measure);
//   peakDeviceBytes: the same from just before this shape's engine was made (resident: as before).
// The lowest free figure is sampled after load, score and every step, and every --poll-ms while
// load, score and the warm-up steps run (timed steps are not polled: the samples cost host time).
// Transfers: the engine's tier counters (info().tiers: h2dBytes, d2hBytes, ssdReadBytes,
// ssdWriteBytes), their delta over the timed steps / steps. Bandwidth: addon.calibrate({device,
// parts: ['machine']}) after the engines are closed (streamed runs, or --calibrate): pinned host buffer, 64 MiB copies, best of 4
// (the same copy path as the engine's uploads of pinned masters). Transfer efficiency =
// (h2d bytes per step / calibrated H2D bytes/s) / median step time: ALGORITHMS.md §5's H2D floor
// over the measured step; floorMs = max(H2D floor, D2H floor) (full-duplex PCIe).
import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
const flag = (k) => args.includes(k);
const [addonPath, modelDir] = args;
const steps = Number(opt('--steps', '5'));
const warmup = Number(opt('--warmup', '2'));
const threads = Number(opt('--threads', '16'));
const device = opt('--device', 'cuda'); // 'cpu' only to try the script without a GPU
const gemm = opt('--gemm', process.env.SPILLWAY_GEMM || 'fp32');
process.env.SPILLWAY_GEMM = gemm; // read by the native backend when an engine is made
const offload = opt('--offload', 'none');
const masters = opt('--masters', 'fp32');
const streamed = offload !== 'none';
const updateOn = opt('--update-on', streamed ? 'device' : 'home');
const slots = opt('--slots', undefined);
const prefetch = opt('--prefetch', undefined);
const writeBackEvery = opt('--write-back-every', undefined);
const engineMode = opt('--engine', streamed ? 'reuse' : 'fresh');
const pollMs = Number(opt('--poll-ms', '20'));
const calibrateAfter = flag('--calibrate') || (streamed && !flag('--no-calibrate'));
const LR = 1e-6, EPS = 1e-3;
const die = (m) => { process.stderr.write(`[spillway] ${m}\n`); process.exit(2); };
if (!['none', 'cpu', 'ssd'].includes(offload)) die(`--offload must be none, cpu or ssd, not ${offload}`);
if (!['fp32', 'bf16', 'fp16'].includes(masters)) die(`--masters must be fp32 or bf16 (or fp16), not ${masters}`);
if (!['home', 'device'].includes(updateOn)) die(`--update-on must be home or device, not ${updateOn}`);
if (!['fresh', 'reuse'].includes(engineMode)) die(`--engine must be fresh or reuse, not ${engineMode}`);
if (slots !== undefined && !['1', '2'].includes(slots)) die(`--slots must be 1 or 2, not ${slots}`);
let spillDir = opt('--spill', undefined);
let spillTemp = null;
if (offload === 'ssd' && !spillDir) spillDir = spillTemp = mkdtempSync(join(tmpdir(), 'spillway-bench-spill-'));

const addon = createRequire(import.meta.url)(resolve(addonPath));
const spec = JSON.parse(readFileSync(join(modelDir, 'spec.json'), 'utf8'));
const baseRows = JSON.parse(readFileSync(join(modelDir, 'batch.json'), 'utf8')).tokens;

// Shapes: --shapes "1x512,16x512" or --batches x --seqs (default: batch.json's length).
let shapes;
if (opt('--shapes')) shapes = opt('--shapes').split(',').map((s) => s.split('x').map(Number));
else {
  const bs = opt('--batches', '1,16').split(',').map(Number);
  const ts = opt('--seqs', String(baseRows[0].length)).split(',').map(Number);
  shapes = bs.flatMap((b) => ts.map((t) => [b, t]));
}
shapes.sort((x, y) => x[0] * x[1] - y[0] * y[1] || x[1] - y[1]);
function rowsFor(B, T) {
  const f = join(modelDir, `batch-${T}.json`);
  const rows = baseRows[0].length >= T ? baseRows : existsSync(f) ? JSON.parse(readFileSync(f, 'utf8')).tokens : null;
  if (!rows || rows[0].length < T) die(`no token rows of length ${T} in ${modelDir} (make_opt_model.py --extra-seqs ${T})`);
  if (rows.length < B) die(`batch ${B} asked for, ${modelDir} has ${rows.length} rows of length ${T}`);
  return rows.slice(0, B).map((r) => r.slice(0, T));
}

const cudaFree = () => {
  if (device === 'cpu') return 0;
  const d = addon.cudaDevices().devices?.[0];
  return d && typeof d.freeBytes === 'number' ? d.freeBytes : NaN;
};
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); const n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };
const summary = (xs) => ({ median: med(xs), min: Math.min(...xs), max: Math.max(...xs) });
const log = (s) => process.stderr.write(s + '\n');
const GiB = 2 ** 30;

function makeBatch(rows) {
  const B = rows.length, T = rows[0].length;
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

// The lowest NVML free figure seen; poll() samples it every pollMs while a promise runs.
let minFree = Infinity;
const sample = () => { const f = cudaFree(); if (Number.isFinite(f)) minFree = Math.min(minFree, f); return f; };
async function poll(p) {
  if (device === 'cpu' || !(pollMs > 0)) return p;
  const timer = setInterval(sample, pollMs);
  try { return await p; } finally { clearInterval(timer); sample(); }
}

const placement = () => {
  if (!streamed) return masters === 'fp32' ? undefined : { masters }; // resident bf16 masters: every unit on the device
  const home = offload === 'cpu' ? 'cpu' : 'ssd';
  const homes = spec.units.map((u) => (u.kind === 'block' ? home : 'device'));
  const p = { homes, masters, deviceUpdate: spec.units.map((u) => u.kind === 'block' && updateOn === 'device') };
  if (offload === 'ssd') p.spillDirs = [spillDir];
  if (slots !== undefined) p.stageSlots = Number(slots);
  if (prefetch !== undefined) p.prefetch = Number(prefetch);
  if (writeBackEvery !== undefined) p.writeBackEvery = Number(writeBackEvery);
  return p;
};
const tierCounters = (e) => {
  const t = e.info().tiers || {};
  return { h2d: t.h2dBytes || 0, d2h: t.d2hBytes || 0, ssdRead: t.ssdReadBytes || 0, ssdWrite: t.ssdWriteBytes || 0 };
};

const freeStart = cudaFree();
minFree = Number.isFinite(freeStart) ? freeStart : Infinity;
const out = {
  impl: 'spillway', device: addon.cudaDevices(), threads, gemm, lr: LR, eps: EPS, wd: 0,
  mode: { offload, masters, updateOn, slots: slots === undefined ? null : Number(slots), engine: engineMode,
          spillDir: offload === 'ssd' ? spillDir : null },
  freeStartBytes: freeStart, runs: [],
};
let e = null, info = null, loadMs = 0, free0 = freeStart, freeLoaded = freeStart;
// Whatever has been measured goes out once: at the end, or on SIGTERM (run.sh's timeout) with the
// shapes done so far (no calibration then: the floors are left out).
let emitted = false;
function emit() {
  if (emitted) return;
  emitted = true;
  if (spillTemp) rmSync(spillTemp, { recursive: true, force: true });
  process.stdout.write(JSON.stringify(out, (k, v) => (typeof v === 'bigint' ? Number(v) : v)) + '\n');
}
process.on('SIGTERM', () => {
  log('[spillway] SIGTERM: writing the shapes measured so far');
  out.errors = [...(out.errors || []), 'terminated (timeout) before the end'];
  emit();
  process.exit(out.runs.length ? 0 : 1);
});
const modelName = spec.config.family + ' ' + spec.config.hidden + 'x' + spec.config.layers;
try {
  for (const [B, T] of shapes) try {
    const batch = makeBatch(rowsFor(B, T));
    if (!e || engineMode === 'fresh') {
      if (e) { e.close(); e = null; }
      free0 = sample();
      if (engineMode === 'fresh') minFree = Number.isFinite(free0) ? free0 : Infinity;
      e = new addon.Engine({ threads, device });
      const t0 = performance.now();
      info = await poll(e.load(spec, placement()));
      loadMs = performance.now() - t0;
      freeLoaded = sample();
      const t = info.tiers || {};
      log(`[spillway] ${modelName}: loaded in ${(loadMs / 1e3).toFixed(1)} s (backend ${info.backend}, offload ${offload}, ` +
          `masters ${t.masters || masters}, update on ${streamed ? updateOn : 'device'}, ${t.stageSlots ?? 0} staging slots), ` +
          `${((free0 - freeLoaded) / GiB).toFixed(2)} GiB on the device (engine: weights ${((t.deviceWeightBytes || 0) / GiB).toFixed(2)}, ` +
          `staging ${((t.deviceStageBytes || 0) / GiB).toFixed(2)}; host ${((t.cpuBytes || 0) / GiB).toFixed(2)} GiB)`);
    }
    const minFreeBefore = minFree; // reuse: the peak so far carries over (buffers only grow)
    const score = await poll(e.score(batch));
    sample();
    const precision = (/gemm (fp32|tf32|bf16)/.exec(info.backend) || [])[1] || 'fp32';
    if (precision !== gemm) log(`[spillway] WARNING: asked for gemm ${gemm}, the backend runs ${precision}: ${info.backend}`);
    log(`[spillway] B=${B} T=${T}: score loss ${score.loss.toFixed(6)} (${score.times.totalMs.toFixed(1)} ms)`);
    const recs = [];
    let c0 = tierCounters(e);
    let timedStart = null;
    for (let i = 0; i < warmup + steps; i++) {
      if (i === warmup) timedStart = tierCounters(e);
      const w0 = performance.now();
      const p = e.step(batch, { seed: 1234n, step: i, q: 1, lr: LR, eps: EPS, weightDecay: 0, noise: 'gaussian' });
      const r = i < warmup ? await poll(p) : await p;
      const ms = performance.now() - w0;
      sample();
      const c1 = tierCounters(e);
      const moved = { h2dBytes: c1.h2d - c0.h2d, d2hBytes: c1.d2h - c0.d2h, ssdReadBytes: c1.ssdRead - c0.ssdRead,
                      ssdWriteBytes: c1.ssdWrite - c0.ssdWrite };
      c0 = c1;
      recs.push({ ms, times: r.times, lossPlus: r.lossPlus[0], lossMinus: r.lossMinus[0],
                  projectedGrad: r.projectedGrad[0], skipped: r.skipped, warmup: i < warmup, ...moved });
      const t = r.times;
      log(`[spillway] B=${B} T=${T} step ${i}${i < warmup ? ' (warm-up)' : ''}: ${ms.toFixed(1)} ms (noise ${t.noiseMs.toFixed(1)}, ` +
          `io ${(t.ioMs ?? 0).toFixed(1)}, forward ${t.forwardMs.toFixed(1)}, head ${t.headMs.toFixed(1)}, update ${t.updateMs.toFixed(1)}, ` +
          `total ${t.totalMs.toFixed(1)})${streamed ? ` h2d ${(moved.h2dBytes / 1e9).toFixed(2)} GB d2h ${(moved.d2hBytes / 1e9).toFixed(2)} GB` : ''} ` +
          `L+ ${r.lossPlus[0].toFixed(6)} L- ${r.lossMinus[0].toFixed(6)}`);
    }
    const timed = recs.filter((s) => !s.warmup);
    const phases = {};
    for (const k of Object.keys(timed[0].times)) phases[k] = med(timed.map((s) => s.times[k]));
    const end = tierCounters(e);
    const perStep = (k) => (end[k] - (timedStart ? timedStart[k] : 0)) / Math.max(1, timed.length);
    const t = e.info().tiers || {};
    out.runs.push({
      impl: 'spillway', precision, gemmRequested: gemm, batch: B, seq: T, backend: info.backend, loadMs,
      offload, masters: t.masters || masters, updateOn: streamed ? updateOn : null, stageSlots: t.stageSlots ?? 0,
      engine: engineMode, loss0: score.loss, scoreMs: score.times.totalMs,
      ms: summary(timed.map((s) => s.ms)), phasesMedianMs: phases,
      deviceBytesAfterLoad: free0 - freeLoaded,
      peakDeviceBytes: free0 - minFree, peakProcessBytes: freeStart - minFree,
      peakCarriedOver: engineMode === 'reuse' && minFreeBefore === minFree && out.runs.length > 0,
      tiers: { deviceWeightBytes: t.deviceWeightBytes, deviceStageBytes: t.deviceStageBytes, scratchBytes: t.scratchBytes,
               cpuBytes: t.cpuBytes, ssdBytes: t.ssdBytes, ioPath: t.ioPath || null },
      h2dBytesPerStep: perStep('h2d'), d2hBytesPerStep: perStep('d2h'),
      ssdReadBytesPerStep: perStep('ssdRead'), ssdWriteBytesPerStep: perStep('ssdWrite'),
      steps: recs,
    });
  } catch (err) {
    // Out of device memory at a large shape, say: keep what ran, skip the rest (the engine may be unusable).
    const msg = `B=${B} T=${T}: ${err && err.message ? err.message : err}`;
    log(`[spillway] FAILED ${msg}; the remaining shapes are skipped`);
    out.errors = [...(out.errors || []), msg];
    break;
  }
} finally {
  try { if (e) e.close(); } catch (err) { log(`[spillway] close: ${err.message || err}`); }
  e = null;
}

// Calibrated copy rates on the same device, with the engines gone (their pinned memory released).
if (calibrateAfter) {
  try {
    const c = await addon.calibrate({ device, threads, parts: ['machine'] });
    out.calibration = { backend: c.backend, pinned: c.pinned, copyBytes: c.copyBytes, h2dBytesPerS: c.h2dBytesPerS,
                        d2hBytesPerS: c.d2hBytesPerS, gemmFlopsPerS: c.gemmFlopsPerS, seconds: c.seconds };
    log(`[spillway] calibrate (${c.backend}, ${c.pinned ? 'pinned' : 'not pinned'}, ${(c.copyBytes / 2 ** 20).toFixed(0)} MiB copies): ` +
        `H2D ${(c.h2dBytesPerS / 1e9).toFixed(2)} GB/s, D2H ${(c.d2hBytesPerS / 1e9).toFixed(2)} GB/s`);
  } catch (err) {
    out.calibration = { error: String(err && err.message ? err.message : err) };
    log(`[spillway] calibrate failed: ${out.calibration.error}`);
  }
}
const bw = out.calibration && out.calibration.h2dBytesPerS;
const bwDown = out.calibration && out.calibration.d2hBytesPerS;
for (const r of out.runs) {
  if (!streamed || !bw) continue;
  r.h2dFloorMs = (r.h2dBytesPerStep / bw) * 1e3;
  r.d2hFloorMs = bwDown ? (r.d2hBytesPerStep / bwDown) * 1e3 : 0;
  r.floorMs = Math.max(r.h2dFloorMs, r.d2hFloorMs);
  r.transferEfficiency = r.h2dFloorMs / r.ms.median;
  r.floorEfficiency = r.floorMs / r.ms.median;
  log(`[spillway] B=${r.batch} T=${r.seq}: median ${r.ms.median.toFixed(1)} ms; h2d ${(r.h2dBytesPerStep / 1e9).toFixed(3)} GB/step ` +
      `(floor ${r.h2dFloorMs.toFixed(1)} ms, ${(100 * r.transferEfficiency).toFixed(1)}% of the step), d2h ` +
      `${(r.d2hBytesPerStep / 1e9).toFixed(3)} GB/step; peak ${(r.peakProcessBytes / GiB).toFixed(2)} GiB (process, NVML)`);
}
emit();
process.exit(out.runs.length ? 0 : 1);
