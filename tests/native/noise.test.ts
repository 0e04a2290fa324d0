// The counter-based noise: Philox known-answer vectors (Random123 kat_vectors),
// bulk generation (every SIMD generator this CPU has) bit-identical to the
// per-element definition, and Gaussian moments.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { packBatch } from '../../electron/engine/batch.js';
import { loadNative } from '../../electron/engine/native.js';
import { FIXTURE_MODELS, GOLDEN, loadEngine, readJson, toExamples } from '../helpers/engine.js';
import type { GoldenExample } from '../helpers/engine.js';

const native = loadNative();
const hex = (a: Uint32Array) => Array.from(a, (v) => v.toString(16).padStart(8, '0')).join(' ');

describe('perturbation noise', () => {
  it('reproduces the Philox4x32-10 known-answer vectors', () => {
    expect(hex(native.philox(new Uint32Array([0, 0, 0, 0, 0, 0])))).toBe('6627e8d5 e169c58d bc57ac4c 9b00dbd8');
    expect(hex(native.philox(new Uint32Array(6).fill(0xffffffff)))).toBe('408f276d 41c83b0e a20bc7c6 6d5451fd');
    expect(hex(native.philox(new Uint32Array([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0])))).toBe(
      'd16cfe09 94fdcceb 5001e420 24126ea1',
    );
  });

  it.each(['gaussian', 'rademacher'])('generates %s noise in bulk bit-identical to element by element', (kind) => {
    for (const [start, count] of [[0, 100_003], [4096, 37], [1 << 20, 8192]]) {
      const seed = 0x9e3779b97f4a7c15n;
      const bulk = native.noise({ seed, id: 1234567, start, count, kind, bulk: true });
      const single = native.noise({ seed, id: 1234567, start, count, kind });
      expect(Buffer.from(bulk.buffer).equals(Buffer.from(single.buffer))).toBe(true);
    }
  });

  // The engine guarantees these bits on every backend and generator, so == is the comparison.
  it.each(['gaussian', 'rademacher'])('gives the same %s bits on every bulk generator this CPU has, at any offset and length', (kind) => {
    const isas = native.noiseIsas();
    expect(isas).toContain('scalar');
    if (process.arch === 'x64') expect(isas).toContain('avx2');
    const seeds = [0n, 1n, 0x9e3779b97f4a7c15n, 0xffffffffffffffffn, 0x0000000100000000n];
    const ids = [0, 1, 0xace, 0xffffffff];
    // Starts near the 32-bit boundary of the block counter (block 2^32 is element 2^34) as well.
    const starts = [0, 4, 60, 252, 4096, 2 ** 34 - 256, 2 ** 34 - 4, 2 ** 34 + 1020];
    // Lengths below, at and above each generator's groups (32/128 elements AVX2, 64/256 AVX-512).
    const counts = [1, 3, 4, 5, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000, 1023, 4099];
    let compared = 0;
    for (const [i, seed] of seeds.entries())
      for (const [j, id] of ids.entries())
        for (const [m, start] of starts.entries()) {
          const count = counts[(i * 7 + j * 3 + m * 5) % counts.length];
          const single = native.noise({ seed, id, start, count, kind });
          for (const isa of isas) {
            const bulk = native.noise({ seed, id, start, count, kind, isa });
            expect(Buffer.from(bulk.buffer).equals(Buffer.from(single.buffer)), `${isa} seed ${seed} id ${id} start ${start} count ${count}`).toBe(true);
            compared += count;
          }
        }
    for (const count of counts)
      for (const isa of isas) {
        const bulk = native.noise({ seed: 42n, id: 7, start: 8, count, kind, isa });
        expect(Buffer.from(bulk.buffer).equals(Buffer.from(native.noise({ seed: 42n, id: 7, start: 8, count, kind }).buffer)), `${isa} count ${count}`).toBe(true);
      }
    expect(compared).toBeGreaterThan(10_000);
  });

  it('names an unknown or unavailable generator', () => {
    expect(() => native.noise({ seed: 1n, id: 1, start: 0, count: 8, kind: 'gaussian', isa: 'neon' })).toThrow(/field 'isa' must be one of 'scalar', 'avx2', 'avx512', not 'neon'/);
    expect(() => native.noise({ seed: 1n, id: 1, start: 2, count: 8, kind: 'gaussian', isa: 'scalar' })).toThrow(/multiple of 4/);
    process.env.SPILLWAY_NOISE_ISA = 'sse';
    try {
      expect(() => native.noise({ seed: 1n, id: 1, start: 0, count: 8, kind: 'gaussian', bulk: true })).toThrow(/SPILLWAY_NOISE_ISA=sse: expected scalar, avx2 or avx512/);
    } finally {
      delete process.env.SPILLWAY_NOISE_ISA;
    }
  });

  // A whole run on each generator ($SPILLWAY_NOISE_ISA, read when an engine is made): the
  // perturbed copies, the embedding's noisy rows and the update all draw z, so the losses and
  // weights are the same bits.
  it('trains to the same bits on every generator', async () => {
    const name = 'llama-tiny';
    const batch = packBatch(toExamples(readJson<{ examples: { batch: GoldenExample[] } }>(join(GOLDEN, `${name}.json`)).examples.batch));
    const run = async (isa: string) => {
      process.env.SPILLWAY_NOISE_ISA = isa;
      const e = await loadEngine(join(FIXTURE_MODELS, name)).finally(() => delete process.env.SPILLWAY_NOISE_ISA);
      const losses: number[] = [];
      for (let step = 0; step < 3; step++) {
        const r = await e.step(batch, { seed: 11n, step, q: 2, lr: 1e-2, eps: 1e-3, weightDecay: 0.1, noise: 'gaussian' });
        losses.push(...r.lossPlus, ...r.lossMinus);
      }
      const weights = e.tensorNames().map((t) => Buffer.from(e.getTensor(t.name).buffer));
      e.close();
      return { losses, weights };
    };
    const isas = native.noiseIsas();
    const reference = await run('scalar');
    for (const isa of isas.filter((i) => i !== 'scalar')) {
      const r = await run(isa);
      expect(r.losses, isa).toEqual(reference.losses);
      r.weights.forEach((w, i) => expect(w.equals(reference.weights[i]), `${isa} tensor ${i}`).toBe(true));
    }
  });

  it('has zero mean and unit variance (Gaussian) and balanced signs (Rademacher)', () => {
    const n = 400_000;
    const g = native.noise({ seed: 42n, id: 7, start: 0, count: n, kind: 'gaussian', bulk: true });
    let s = 0;
    let s2 = 0;
    let s4 = 0;
    for (const v of g) {
      s += v;
      s2 += v * v;
      s4 += v ** 4;
    }
    // Standard errors: mean 1/sqrt(n) = 0.0016, variance sqrt(2/n) = 0.0022, 4th moment sqrt(96/n) = 0.015.
    expect(Math.abs(s / n)).toBeLessThan(0.008);
    expect(Math.abs(s2 / n - 1)).toBeLessThan(0.011);
    expect(Math.abs(s4 / n - 3)).toBeLessThan(0.08);
    const r = native.noise({ seed: 42n, id: 7, start: 0, count: n, kind: 'rademacher', bulk: true });
    let plus = 0;
    for (const v of r) {
      expect(Math.abs(v)).toBe(1);
      if (v > 0) plus++;
    }
    expect(Math.abs(plus / n - 0.5)).toBeLessThan(0.004);
  });

  it('depends on the seed and the tensor', () => {
    const a = native.noise({ seed: 1n, id: 1, start: 0, count: 64, kind: 'gaussian' });
    const b = native.noise({ seed: 2n, id: 1, start: 0, count: 64, kind: 'gaussian' });
    const c = native.noise({ seed: 1n, id: 2, start: 0, count: 64, kind: 'gaussian' });
    expect(Array.from(a)).not.toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(c));
  });
});
