// The counter-based noise: Philox known-answer vectors (Random123 kat_vectors),
// bulk generation bit-identical to the per-element definition, and Gaussian
// moments.
import { describe, expect, it } from 'vitest';

import { loadNative } from '../../electron/engine/native.js';

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
