// The tiered store's placement invariant on one backend, for a GPU machine:
// on CUDA, blocks streamed from CPU memory and from the SSD tier (K, prefetch,
// device-side updates, two spill folders; fp32, bf16 and fp16 masters)
// give bit-identical losses and weights to the all-resident run.
//   node native/tests/tier_compare.mjs ADDON.node SPECS.json SPILL_DIR [cuda|cpu]
// (SPECS.json from `node native/tests/zo_step_compare.mjs make-specs`.)
import { createRequire } from 'node:module';
import { mkdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const [addonPath, specsPath, spillDir, device = 'cuda'] = process.argv.slice(2);
const spillDir2 = `${spillDir}/second`;
mkdirSync(spillDir2, { recursive: true });
const addon = createRequire(import.meta.url)(resolve(addonPath));
const specs = JSON.parse(readFileSync(specsPath, 'utf8'));
const root = process.cwd();

function batchFor(cfg) {
  const seqs = [[1, 5, 9, 14, 3, 7, 11, 2], [2, 8, 6, 4, 12, 10, 13, 15, 5, 3]].map((s) => s.map((t) => t % cfg.vocabSize));
  const tokens = [], seqStart = [0], scoreStart = [], scoreEnd = [];
  for (const s of seqs) { tokens.push(...s); seqStart.push(tokens.length); scoreStart.push(1); scoreEnd.push(s.length); }
  return { tokens: Int32Array.from(tokens), seqStart: Int32Array.from(seqStart), scoreStart: Int32Array.from(scoreStart),
    scoreEnd: Int32Array.from(scoreEnd), exampleStart: Int32Array.from([0, 1, 2]), exampleKind: Int32Array.from([0, 0]), label: Int32Array.from([-1, -1]) };
}

async function run(spec, homes, k, extra = {}) {
  for (const u of spec.units) for (const t of Object.values(u.tensors)) t.file = resolve(root, t.file);
  const e = new addon.Engine({ threads: 8, device });
  const n = homes.length;
  await e.load(spec, { homes, spillDirs: [spillDir], writeBackEvery: k, ...extra, deviceUpdate: extra.deviceUpdate ? Array(n).fill(true) : undefined });
  const batch = batchFor(spec.config);
  const losses = [];
  for (let step = 0; step < 4; step++) {
    const r = await e.step(batch, { seed: 3n, step, q: 1, lr: 1e-2, eps: 1e-3, weightDecay: 0.1, noise: 'gaussian' });
    losses.push(...r.lossPlus, ...r.lossMinus);
  }
  const weights = e.tensorNames().map((t) => Buffer.from(e.getTensor(t.name).buffer));
  return { losses, weights, tiers: e.info().tiers };
}

let failed = 0;
for (const name of ['llama-tiny', 'gpt2-tiny', 'qwen2-tiny']) {
  const spec = () => JSON.parse(JSON.stringify(specs[name]));
  const n = specs[name].units.length;
  // The embeddings and the head stay on the device; blocks where h says (a home, or one per unit index).
  const homes = (h) => Array.from({ length: n }, (_, i) => (i === 0 || i === n - 1 ? 'device' : typeof h === 'function' ? h(i) : h));
  // fp32, then bf16 and fp16 masters (stochastic rounding): each against its own all-resident run.
  for (const masters of ['fp32', 'bf16', 'fp16']) {
    const ref = await run(spec(), homes('device'), 1, { masters });
    for (const [label, hs, k, extra] of [
      ['cpu', homes('cpu'), 1, {}],
      ['cpu, device update, 1 slot', homes('cpu'), 1, { deviceUpdate: true, stageSlots: 1 }],
      ['ssd K=1', homes('ssd'), 1, {}],
      ['ssd K=2', homes('ssd'), 2, {}],
      ['ssd K=2, device update', homes('ssd'), 2, { deviceUpdate: true }],
      ['ssd K=3, no prefetch', homes('ssd'), 3, { prefetch: 0 }],
      ['mixed', homes((i) => (i % 2 ? 'ssd' : 'cpu')), 2, {}],
      ['mixed, device update, two folders', homes((i) => (i % 2 ? 'ssd' : 'cpu')), 2, { deviceUpdate: true, spillDirs: [spillDir, spillDir2] }],
    ]) {
      const r = await run(spec(), hs, k, { masters, ...extra });
      const same = JSON.stringify(r.losses) === JSON.stringify(ref.losses) && r.weights.every((w, i) => w.equals(ref.weights[i]));
      if (!same) failed++;
      console.log(`${device} ${name.padEnd(11)} ${masters} ${label.padEnd(34)} ${same ? 'bit-identical' : 'DIFFERENT'}  h2d ${r.tiers.h2dBytes} B, d2h ${r.tiers.d2hBytes} B, ssd read ${r.tiers.ssdReadBytes} B, written ${r.tiers.ssdWriteBytes} B`);
    }
  }
}
console.log(failed ? `${failed} failed` : 'all placements bit-identical');
process.exit(failed ? 1 : 0);
