import { describe, it, expect } from 'vitest';
import {
  BatchSampler,
  batchIndices,
  epochOfStep,
  permutation,
  PURPOSE_SAMPLER,
  splitIndices,
  splitRows,
  SplitMix32,
  Xoshiro128,
} from '../../../electron/data/index.js';

describe('xoshiro128**', () => {
  it('matches the reference output for state [1, 2, 3, 4]', () => {
    // Reference vector (as in rand_xoshiro's Xoshiro128StarStar test).
    const rng = Object.create(Xoshiro128.prototype) as Xoshiro128;
    Object.assign(rng, { s0: 1, s1: 2, s2: 3, s3: 4 });
    const out = Array.from({ length: 10 }, () => rng.nextU32());
    expect(out).toEqual([
      11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849, 3729100597, 4258142804,
    ]);
  });

  it('is deterministic per key, differs across keys, and below() stays in range', () => {
    const a = new Xoshiro128([1, 2, 3]);
    const b = new Xoshiro128([1, 2, 3]);
    const c = new Xoshiro128([1, 2, 4]);
    const xa = Array.from({ length: 5 }, () => a.nextU32());
    expect(Array.from({ length: 5 }, () => b.nextU32())).toEqual(xa);
    expect(Array.from({ length: 5 }, () => c.nextU32())).not.toEqual(xa);
    const counts = new Array(7).fill(0);
    for (let i = 0; i < 7000; i++) counts[a.below(7)]++;
    for (const k of counts) expect(k).toBeGreaterThan(800); // ~1000 each
    const sm = new SplitMix32(0);
    expect(sm.next()).not.toBe(sm.next());
  });
});

describe('permutation', () => {
  it('is a permutation, deterministic in (seed, purpose, epoch)', () => {
    const p = permutation(42, PURPOSE_SAMPLER, 0, 100);
    expect([...p].sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect([...permutation(42, PURPOSE_SAMPLER, 0, 100)]).toEqual([...p]);
    expect([...permutation(42, PURPOSE_SAMPLER, 1, 100)]).not.toEqual([...p]);
    expect([...permutation(43, PURPOSE_SAMPLER, 0, 100)]).not.toEqual([...p]);
    // seeds above 2^32 are not folded onto small ones
    expect([...permutation(2 ** 32 + 42, PURPOSE_SAMPLER, 0, 100)]).not.toEqual([...p]);
  });
});

describe('batchIndices', () => {
  it('each epoch visits every index exactly once; epochs are shuffled differently', () => {
    const n = 10;
    const B = 3;
    const stream: number[] = [];
    for (let step = 0; step < 10; step++) stream.push(...batchIndices(7, step, B, n));
    const e0 = stream.slice(0, n);
    const e1 = stream.slice(n, 2 * n);
    const e2 = stream.slice(2 * n, 3 * n);
    for (const e of [e0, e1, e2]) expect([...e].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(e0).not.toEqual(e1);
    expect(epochOfStep(3, B, n)).toBe(0); // positions 9..11 start in epoch 0
    expect(epochOfStep(4, B, n)).toBe(1);
  });

  it('is a pure function of (seed, step, batchSize, n): resumable without replay', () => {
    const full = new BatchSampler({ seed: 1234, batchSize: 4, n: 37 });
    const run = Array.from({ length: 50 }, () => full.next());
    expect(full.step).toBe(50);
    const resumed = new BatchSampler({ seed: 1234, batchSize: 4, n: 37, step: 31 });
    expect(resumed.epoch).toBe(Math.floor((31 * 4) / 37));
    expect(Array.from({ length: 19 }, () => resumed.next())).toEqual(run.slice(31));
    // random access in any order, with the cache disturbed by other seeds
    for (const step of [49, 0, 17, 3, 49]) {
      batchIndices(999, step, 4, 37);
      expect(batchIndices(1234, step, 4, 37)).toEqual(run[step]);
    }
    expect(batchIndices(1235, 0, 4, 37)).not.toEqual(run[0]);
  });

  it('batch larger than the dataset spans several epochs; arguments are checked', () => {
    const b = batchIndices(1, 0, 7, 3);
    expect(b).toHaveLength(7);
    expect([...b.slice(0, 3)].sort()).toEqual([0, 1, 2]);
    expect([...b.slice(3, 6)].sort()).toEqual([0, 1, 2]);
    expect(batchIndices(1, 0, 1, 1)).toEqual([0]);
    expect(() => batchIndices(1, -1, 2, 3)).toThrow(RangeError);
    expect(() => batchIndices(1, 0, 0, 3)).toThrow(RangeError);
    expect(() => batchIndices(1, 0, 2, 0)).toThrow(RangeError);
    expect(() => batchIndices(1.5, 0, 2, 3)).toThrow(RangeError);
  });

  it('known values do not drift (determinism across runs and versions)', () => {
    // Pinned output: a change here means every resumed run would change its batches.
    expect(batchIndices(0, 0, 8, 20)).toEqual([2, 3, 13, 6, 19, 16, 17, 4]);
    expect(batchIndices(12345, 3, 5, 11)).toEqual([6, 9, 0, 7, 3]);
    expect(splitIndices(10, 0.3, 1)).toEqual({ train: [0, 1, 2, 4, 6, 8, 9], eval: [3, 5, 7] });
  });
});

describe('split', () => {
  it('fraction split is deterministic, disjoint, complete and sorted', () => {
    const a = splitIndices(100, 0.2, 5);
    expect(a.eval).toHaveLength(20);
    expect(a.train).toHaveLength(80);
    expect([...a.train, ...a.eval].sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(a.eval).toEqual([...a.eval].sort((x, y) => x - y));
    expect(splitIndices(100, 0.2, 5)).toEqual(a);
    expect(splitIndices(100, 0.2, 6).eval).not.toEqual(a.eval);
    expect(splitIndices(3, 0.01, 1).eval).toHaveLength(1); // at least one
    expect(splitIndices(3, 0.99, 1).train).toHaveLength(1); // at least one left to train on
    expect(splitIndices(5, 0, 1)).toEqual({ train: [0, 1, 2, 3, 4], eval: [] });
    expect(() => splitIndices(5, 1, 1)).toThrow(RangeError);
  });

  it('splitRows: explicit eval file or fraction', () => {
    const rows = Array.from({ length: 10 }, (_, i) => ({ line: i + 1, values: { i } }));
    const ev = [{ line: 1, values: { i: -1 } }];
    expect(splitRows(rows, { evalRows: ev })).toEqual({ train: rows, eval: ev });
    expect(() => splitRows(rows, { evalRows: ev, evalFraction: 0.1 })).toThrow(/not both/);
    const s = splitRows(rows, { evalFraction: 0.3, seed: 9 });
    expect(s.eval).toHaveLength(3);
    expect(s).toEqual(splitRows(rows, { evalFraction: 0.3, seed: 9 }));
    expect(splitRows(rows)).toEqual({ train: rows, eval: [] });
  });
});
