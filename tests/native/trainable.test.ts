// The trainable sets and the FZOO estimator of the CPU engine, by what a step may and may not move:
// the adapter sets leave every model tensor as it was (the base is frozen) and start at the base's
// own function; sparse moves only the small weights of the block matrices; FZOO's update is
// -sum_j coef_j z_j with coef_j = lr (L_j - L0) / (eps q sigma), z drawn from the logged seeds.
// Tolerances: the model's bits are compared exactly where nothing may move them; an update against
// its float64 recomputation within 1e-6 relative (float32 arithmetic in the engine).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { packBatch } from '../../electron/engine/batch.js';
import { loadNative } from '../../electron/engine/native.js';
import type { NativeEngine, NativeTrainSpec } from '../../electron/engine/native.js';
import { engineSpec } from '../../electron/engine/spec.js';
import type { TokenizedExample } from '../../electron/data/types.js';
import { loadModelInfo } from '../../electron/model/index.js';
import { FIXTURE_MODELS } from '../helpers/engine.js';

const MODEL = join(FIXTURE_MODELS, 'llama-tiny');
const native = loadNative();

async function load(train: NativeTrainSpec): Promise<NativeEngine> {
  const engine = new native.Engine({ threads: 2 });
  await engine.load(engineSpec(await loadModelInfo(MODEL)), undefined, train);
  return engine;
}

/** Four LM examples of 12 tokens, a fixed pseudo-random draw (vocabulary 128), the last 6 scored. */
function batch() {
  let x = 12345;
  const next = () => (x = (x * 1103515245 + 12345) % 2 ** 31) % 128;
  const examples: TokenizedExample[] = Array.from({ length: 4 }, (_, i) => ({
    kind: 'lm',
    label: -1,
    source: `ex${i}`,
    sequences: [{ tokens: Array.from({ length: 12 }, next), scoreStart: 6, scoreEnd: 12 }],
  }));
  return packBatch(examples);
}

const snapshot = (e: NativeEngine) => new Map(e.tensorNames().map((t) => [t.name, e.getTensor(t.name)]));
const same = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));

describe('trainable sets', () => {
  it('lora: only the adapters move, B starts at 0 so the model starts as the base, and A is drawn as peft draws it', async () => {
    const full = await load({ kind: 'full' });
    const lora = await load({ kind: 'lora', rank: 4, alpha: 8, targets: ['q', 'v'], seed: 3 });
    const b = batch();
    expect((await lora.score(b)).exampleLoss).toEqual((await full.score(b)).exampleLoss);
    const names = lora.trainableTensors().map((t) => t.name);
    expect(names).toContain('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight');
    expect(names).toContain('base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight');
    // 2 layers x (q: 4 x (32 + 32), v: 4 x (32 + 16)).
    expect(lora.info().trainable?.elements).toBe(2 * (4 * 64 + 4 * 48));
    const a0 = lora.getTensor(names[0]);
    // kaiming_uniform_(a = sqrt(5)) on (r, in): bound 1 / sqrt(in).
    expect(Math.max(...a0.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(32));
    expect(new Set(a0).size).toBe(a0.length);
    const before = snapshot(lora);
    const adapters = new Map(names.map((n) => [n, lora.getTensor(n)]));
    for (let step = 0; step < 3; step++) {
      const r = await lora.step(b, { seed: 7n, step, q: 1, lr: 1e-2, eps: 1e-2, weightDecay: 0, noise: 'gaussian' });
      expect(r.skipped).toBe(false);
    }
    for (const [name, w] of snapshot(lora)) expect(same(w, before.get(name)!), name).toBe(true);
    for (const [name, w] of adapters) expect(same(lora.getTensor(name), w), name).toBe(false);
    expect((await lora.score(b)).exampleLoss).not.toEqual((await full.score(b)).exampleLoss);
    full.close();
    lora.close();
  });

  it('loldu: z starts at D_r and s at 1 (the model is the base), only z and s train, P L_r D_r U_r rebuilds W at full rank', async () => {
    const full = await load({ kind: 'full' });
    const loldu = await load({ kind: 'loldu', rank: 16, targets: ['v'] });
    const b = batch();
    const l0 = (await full.score(b)).exampleLoss;
    (await loldu.score(b)).exampleLoss.forEach((l, i) => expect(Math.abs(l - l0[i])).toBeLessThan(1e-5));
    const module = 'model.layers.0.self_attn.v_proj';
    const get = (part: string) => loldu.getTensor(`${module}.loldu_${part}`);
    const [pl, u, negD, z, s] = [get('PL'), get('U'), get('neg_D'), get('z'), get('s')];
    expect(Array.from(z)).toEqual(Array.from(negD, (d) => -d));
    expect(Array.from(s)).toEqual([1]);
    // v_proj is 16 x 32: at rank 16 the factors are the whole decomposition.
    const w = full.getTensor(`${module}.weight`);
    let err = 0;
    for (let i = 0; i < 16; i++) {
      for (let j = 0; j < 32; j++) {
        let acc = 0;
        for (let k = 0; k < 16; k++) acc += pl[i * 16 + k] * z[k] * u[k * 32 + j];
        err = Math.max(err, Math.abs(acc - w[i * 32 + j]));
      }
    }
    expect(err).toBeLessThan(1e-5);
    expect(loldu.trainableTensors().filter((t) => !t.frozen).map((t) => t.name)).toEqual([
      `${module}.loldu_z`, `${module}.loldu_s`, 'model.layers.1.self_attn.v_proj.loldu_z', 'model.layers.1.self_attn.v_proj.loldu_s',
    ]);
    expect(loldu.info().trainable?.elements).toBe(2 * (16 + 1));
    const before = snapshot(loldu);
    await loldu.step(b, { seed: 1n, step: 0, q: 1, lr: 1e-3, eps: 1e-2, weightDecay: 0, noise: 'gaussian' });
    for (const [name, t] of snapshot(loldu)) expect(same(t, before.get(name)!), name).toBe(true);
    expect(same(get('z'), z)).toBe(false);
    expect(same(get('PL'), pl)).toBe(true);
    full.close();
    loldu.close();
  });

  it('sparse: only the smallest fraction of each block matrix moves; embeddings, norms and the head stay', async () => {
    const fraction = 0.25;
    const engine = await load({ kind: 'sparse', fraction });
    const before = snapshot(engine);
    const b = batch();
    for (let step = 0; step < 2; step++) await engine.step(b, { seed: 5n, step, q: 1, lr: 1e-3, eps: 1e-3, weightDecay: 0, noise: 'gaussian' });
    let moved = 0;
    for (const [name, w] of snapshot(engine)) {
      const w0 = before.get(name)!;
      const isBlockMatrix = /layers\.\d+\.(self_attn|mlp)\.\w+\.weight$/.test(name);
      if (!isBlockMatrix) {
        expect(same(w, w0), name).toBe(true);
        continue;
      }
      // The threshold: the magnitude below which `fraction` of the tensor lies at load.
      const sorted = Array.from(w0, Math.abs).sort((x, y) => x - y);
      const threshold = sorted[Math.floor(fraction * sorted.length)];
      let n = 0;
      for (let i = 0; i < w.length; i++) {
        if (Object.is(w[i], w0[i])) continue;
        n++;
        expect(Math.abs(w0[i]), `${name}[${i}]`).toBeLessThan(threshold);
      }
      expect(n, name).toBeGreaterThan(0.5 * fraction * w.length);
      moved += n;
    }
    expect(moved).toBeGreaterThan(0);
    engine.close();
  });
});

describe('the FZOO estimator', () => {
  it('probes around the unperturbed loss and applies -sum_j lr (L_j - L0) / (eps q sigma) z_j', async () => {
    const engine = await load({ kind: 'loldu', rank: 4, targets: ['q'] });
    const b = batch();
    const clean = (await engine.score(b)).exampleLoss;
    const name = 'model.layers.1.self_attn.q_proj.loldu_z';
    const z0 = engine.getTensor(name);
    const q = 5;
    const lr = 1e-3;
    const eps = 1e-2;
    const r = await engine.step(b, { seed: 11n, step: 2, q, lr, eps, weightDecay: 0, noise: 'rademacher', estimator: 'fzoo' });
    expect(r.skipped).toBe(false);
    const l0 = clean.reduce((a, x) => a + x, 0) / clean.length;
    expect(Math.abs(r.loss - l0)).toBeLessThan(1e-6);
    expect(r.lossMinus).toEqual(Array(q).fill(r.loss));
    const mean = r.lossPlus.reduce((a, x) => a + x, 0) / q;
    const sigma = Math.sqrt(r.lossPlus.reduce((a, x) => a + (x - mean) ** 2, 0) / (q - 1));
    expect(Math.abs(r.sigma - sigma)).toBeLessThanOrEqual(1e-12 + 1e-9 * sigma);
    const expected = Float64Array.from(z0);
    r.seeds.forEach((seed, j) => {
      expect(seed).toBe(native.stepSeed(11n, 2, j));
      expect(Math.abs(r.projectedGrad[j] - (r.lossPlus[j] - r.loss) / Math.fround(eps))).toBeLessThanOrEqual(1e-9);
      const coef = (lr * r.projectedGrad[j]) / (q * sigma);
      expect(Math.abs(r.coef[j] - coef)).toBeLessThanOrEqual(1e-6 * Math.abs(coef));
      const zj = native.noise({ seed, id: native.fnv1a32(name), start: 0, count: 4, kind: 'rademacher' });
      zj.forEach((v, k) => (expected[k] -= coef * v));
    });
    const z1 = engine.getTensor(name);
    expected.forEach((v, k) => expect(Math.abs(z1[k] - v), `z[${k}]`).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(v))));
    engine.close();
  });

  it('refuses fewer than 2 probes', async () => {
    const engine = await load({ kind: 'full' });
    await expect(engine.step(batch(), { seed: 1n, step: 0, q: 1, lr: 1e-3, eps: 1e-3, weightDecay: 0, noise: 'rademacher', estimator: 'fzoo' })).rejects.toThrow(/at least 2 probes/);
    engine.close();
  });
});
