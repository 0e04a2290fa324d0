// ZO-SGD behaviour on the CPU engine: determinism, seeds, q-averaging, the
// NaN guard, weight decay and the schedules.
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { packBatch } from '../../electron/engine/batch.js';
import type { NativeEngine, NativeStepParams } from '../../electron/engine/native.js';
import { scheduledLr } from '../../electron/engine/trainer.js';
import { readSafetensorsHeader } from '../../electron/model/index.js';
import { FIXTURE_MODELS, GOLDEN, loadEngine, maxAbsDiff, readJson, toExamples } from '../helpers/engine.js';
import type { GoldenExample } from '../helpers/engine.js';
import { makeTinyLlama } from '../helpers/tiny-model.js';

const golden = readJson<{ examples: { batch: GoldenExample[] } }>(join(GOLDEN, 'llama-tiny.json'));
const batch = packBatch(toExamples(golden.examples.batch));
const params = (over: Partial<NativeStepParams> = {}): NativeStepParams => ({
  seed: 7n,
  step: 0,
  q: 1,
  lr: 1e-3,
  eps: 1e-3,
  weightDecay: 0,
  noise: 'gaussian',
  ...over,
});

async function trajectory(engine: NativeEngine, steps: number, over: Partial<NativeStepParams> = {}): Promise<number[]> {
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    const r = await engine.step(batch, params({ ...over, step: s }));
    losses.push(...r.lossPlus, ...r.lossMinus);
  }
  return losses;
}

function allTensors(engine: NativeEngine): Map<string, Float32Array> {
  return new Map(engine.tensorNames().map((t) => [t.name, engine.getTensor(t.name)]));
}

describe('ZO-SGD on the CPU engine', () => {
  const model = join(FIXTURE_MODELS, 'llama-tiny');

  it('gives a bit-identical loss trajectory and weights for the same seed', async () => {
    const a = await loadEngine(model, 2);
    const b = await loadEngine(model, 2);
    const ta = await trajectory(a, 5);
    const tb = await trajectory(b, 5);
    expect(ta).toEqual(tb);
    for (const [name, w] of allTensors(a)) expect(maxAbsDiff(w, b.getTensor(name))).toBe(0);
  });

  it('gives the same trajectory whatever the thread count', async () => {
    const a = await loadEngine(model, 1);
    const b = await loadEngine(model, 2);
    expect(await trajectory(a, 3)).toEqual(await trajectory(b, 3));
  });

  it('gives the same trajectory run to run when the products are split across threads', async () => {
    // Hidden 256, 256 tokens: the CPU backend splits every projection into bands of output
    // columns and the head into vocabulary chunks, which the threads take in whatever order they
    // free up; each band and chunk lands in its own place, so the order cannot show.
    const dir = await makeTinyLlama(join(mkdtempSync(join(tmpdir(), 'spw-bands-')), 'model'), { hidden: 256, layers: 1, vocab: 2500 });
    const rand = (i: number) => (Math.imul(i + 1, 2654435761) >>> 8) % 2500;
    const wide = packBatch(
      Array.from({ length: 4 }, (_, s) => ({
        kind: 'lm' as const,
        label: -1,
        source: 'bands',
        sequences: [{ tokens: Array.from({ length: 64 }, (_, t) => rand(64 * s + t)), scoreStart: 1, scoreEnd: 64 }],
      })),
    );
    const run = async (threads: number) => {
      const e = await loadEngine(dir, threads);
      const losses: number[] = [];
      for (let s = 0; s < 2; s++) {
        const r = await e.step(wide, params({ step: s }));
        losses.push(...r.lossPlus, ...r.lossMinus);
      }
      return { losses, weights: allTensors(e) };
    };
    for (const threads of [2, 3]) {
      const [a, b] = [await run(threads), await run(threads)];
      expect(b.losses).toEqual(a.losses);
      for (const [name, w] of a.weights) expect(maxAbsDiff(w, b.weights.get(name) as Float32Array)).toBe(0);
    }
  });

  it('gives a different trajectory for a different seed', async () => {
    const a = await loadEngine(model);
    const b = await loadEngine(model);
    const ta = await trajectory(a, 3);
    const tb = await trajectory(b, 3, { seed: 8n });
    expect(ta).not.toEqual(tb);
  });

  it('averages q perturbations: q = 2 equals two q = 1 halves applied together', async () => {
    // With weight decay 0, theta' = theta - lr/q * sum_j g_j z_j; replaying the two
    // perturbations by their seeds gives the same projected gradients.
    const e = await loadEngine(model);
    const r = await e.step(batch, params({ q: 2 }));
    expect(r.seeds).toHaveLength(2);
    expect(r.seeds[0]).not.toBe(r.seeds[1]);
    expect(r.projectedGrad).toHaveLength(2);
    r.projectedGrad.forEach((g, j) => expect(g).toBeCloseTo((r.lossPlus[j] - r.lossMinus[j]) / 2e-3, 6));
    expect(r.loss).toBeCloseTo((r.lossPlus[0] + r.lossMinus[0] + r.lossPlus[1] + r.lossMinus[1]) / 4, 12);
  });

  it('moves nothing when lr is 0, weight decay included (decay is scaled by lr)', async () => {
    const e = await loadEngine(model);
    const before = allTensors(e);
    await e.step(batch, params({ lr: 0, weightDecay: 0.5 }));
    for (const [name, w] of allTensors(e)) expect(maxAbsDiff(w, before.get(name) as Float32Array)).toBe(0);
  });

  it('applies weight decay to weights but not to biases and norms', async () => {
    // Two engines, same seed and step: the difference between decayed and plain
    // updates is lr * wd * theta on decayed tensors and exactly 0 on the others.
    const a = await loadEngine(join(FIXTURE_MODELS, 'qwen2-tiny'));
    const b = await loadEngine(join(FIXTURE_MODELS, 'qwen2-tiny'));
    const before = allTensors(a);
    const qb = packBatch(toExamples(readJson<{ examples: { batch: GoldenExample[] } }>(join(GOLDEN, 'qwen2-tiny.json')).examples.batch));
    await a.step(qb, params({ lr: 1e-2, weightDecay: 0.5 }));
    await b.step(qb, params({ lr: 1e-2, weightDecay: 0 }));
    let decayed = 0;
    for (const [name, w0] of before) {
      const d = maxAbsDiff(a.getTensor(name), b.getTensor(name));
      const noDecay = name.endsWith('.bias') || name.includes('norm');
      if (noDecay) expect(d).toBe(0);
      else {
        let expected = 0;
        for (const v of w0) expected = Math.max(expected, Math.abs(1e-2 * 0.5 * v));
        expect(d).toBeGreaterThan(0);
        expect(Math.abs(d - expected)).toBeLessThan(1e-3 * expected + 1e-6);
        decayed++;
      }
    }
    expect(decayed).toBeGreaterThan(3);
  });

  it('skips the update and says so when the loss is not finite', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spw-nan-'));
    cpSync(model, dir, { recursive: true });
    // Poison one weight of the final norm with a NaN.
    const file = join(dir, 'model.safetensors');
    const header = await readSafetensorsHeader(file);
    const norm = header.tensors.find((t) => t.name === 'model.norm.weight');
    expect(norm).toBeDefined();
    const bytes = readFileSync(file);
    bytes.writeFloatLE(Number.NaN, norm!.offset);
    writeFileSync(file, bytes);
    const e = await loadEngine(dir);
    const before = allTensors(e);
    const r = await e.step(batch, params());
    expect(r.skipped).toBe(true);
    expect(Number.isFinite(r.projectedGrad[0])).toBe(false);
    for (const [name, w] of allTensors(e)) {
      const b = before.get(name) as Float32Array;
      for (let i = 0; i < w.length; i++) expect(Object.is(w[i], b[i]) || w[i] === b[i]).toBe(true);
    }
  });

  it('computes the documented schedules', () => {
    const base = { lr: 1, steps: 10, warmupSteps: 0 };
    expect(scheduledLr({ ...base, schedule: 'constant' }, 7)).toBe(1);
    expect(scheduledLr({ ...base, schedule: 'linear' }, 0)).toBe(1);
    expect(scheduledLr({ ...base, schedule: 'linear' }, 5)).toBeCloseTo(0.5, 12);
    expect(scheduledLr({ ...base, schedule: 'cosine' }, 5)).toBeCloseTo(0.5, 12);
    expect(scheduledLr({ ...base, schedule: 'cosine' }, 0)).toBe(1);
    expect(scheduledLr({ ...base, schedule: 'cosine', warmupSteps: 4 }, 1)).toBeCloseTo(0.5, 12);
  });

  it('rejects bad batches and a busy engine with clear errors', async () => {
    const e = await loadEngine(model);
    const bad = packBatch([{ kind: 'lm', label: -1, source: 'x', sequences: [{ tokens: [1, 500, 3], scoreStart: 1, scoreEnd: 3 }] }]);
    await expect(e.score(bad)).rejects.toThrow(/token id 500 outside the vocabulary/);
    const span = packBatch([{ kind: 'lm', label: -1, source: 'x', sequences: [{ tokens: [1, 2, 3], scoreStart: 0, scoreEnd: 3 }] }]);
    await expect(e.score(span)).rejects.toThrow(/invalid scored span/);
    const first = e.score(batch);
    expect(() => e.score(batch)).toThrow(/busy/);
    await first;
  });
});
