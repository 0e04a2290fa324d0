// Seeded, resumable batch sampling.
//
// PRNG: xoshiro128** (Blackman & Vigna, 2018), a 32-bit generator with a
// 128-bit state, seeded through SplitMix32 (the 32-bit SplitMix variant: a
// Weyl increment of 0x9E3779B9 followed by MurmurHash3's fmix32 finaliser).
// Everything is done with 32-bit integer arithmetic (Math.imul, >>> 0): no
// BigInt, no floating-point randomness, so results are identical on every
// platform and Node version.
//
// Sampling: the sample stream is the concatenation of epochs; epoch e is a
// Fisher–Yates permutation of [0, n) drawn from a generator keyed by
// (seed, e). Step s takes stream positions [s*B, (s+1)*B), so a batch may
// straddle two epochs (no example is dropped, none repeated within an epoch).
// `batchIndices(seed, step, batchSize, n)` is a pure function of its inputs:
// resuming at step s needs no replay of steps 0..s-1 (only the O(n)
// permutation of the current epoch, which is cached).

const GOLDEN = 0x9e3779b9;

/** MurmurHash3 fmix32 finaliser. */
function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** SplitMix32: a tiny generator used to expand seeds into xoshiro state. */
export class SplitMix32 {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + GOLDEN) >>> 0;
    return fmix32(this.state);
  }
}

/** Hash a list of 32-bit words into one (a SplitMix32 chain). */
export function hashWords(words: readonly number[]): number {
  let h = 0x6a09e667;
  for (const w of words) h = fmix32((h ^ (w >>> 0)) + GOLDEN);
  return h >>> 0;
}

/** Split a seed (any safe integer) into two 32-bit words. */
export function seedWords(seed: number): [number, number] {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 0x100000000) >>> 0;
  return [lo, hi];
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** xoshiro128**: 32-bit outputs, period 2^128 - 1. */
export class Xoshiro128 {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** Seed from a list of 32-bit words (e.g. [seedLo, seedHi, purpose, epoch]). */
  constructor(key: readonly number[]) {
    const sm = new SplitMix32(hashWords(key));
    this.s0 = sm.next();
    this.s1 = sm.next();
    this.s2 = sm.next();
    this.s3 = sm.next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // the all-zero state is forbidden
  }

  /** Next uniform 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform integer in [0, bound), bound in [1, 2^32]; unbiased (rejection sampling). */
  below(bound: number): number {
    if (!Number.isInteger(bound) || bound < 1 || bound > 0x100000000) throw new RangeError(`bad bound ${bound}`);
    const limit = 0x100000000 - (0x100000000 % bound); // largest multiple of bound <= 2^32
    for (;;) {
      const r = this.nextU32();
      if (r < limit) return r % bound;
    }
  }
}

/** Purpose tags keep the split and the sampler streams independent for one seed. */
export const PURPOSE_SAMPLER = 0x53414d50; // "SAMP"
export const PURPOSE_SPLIT = 0x53504c54; // "SPLT"

/** A Fisher–Yates permutation of [0, n) drawn from xoshiro128** keyed by (seed, purpose, epoch). */
export function permutation(seed: number, purpose: number, epoch: number, n: number): Uint32Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`bad size ${n}`);
  const [lo, hi] = seedWords(seed);
  const rng = new Xoshiro128([lo, hi, purpose >>> 0, epoch >>> 0, Math.floor(epoch / 0x100000000) >>> 0]);
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    const tmp = perm[i];
    perm[i] = perm[j];
    perm[j] = tmp;
  }
  return perm;
}

// A two-entry cache: a batch straddles at most two epochs when batchSize <= n.
const permCache: { key: string; perm: Uint32Array }[] = [];

function epochPermutation(seed: number, epoch: number, n: number): Uint32Array {
  const key = `${seed}:${epoch}:${n}`;
  const hit = permCache.find((c) => c.key === key);
  if (hit) return hit.perm;
  const perm = permutation(seed, PURPOSE_SAMPLER, epoch, n);
  permCache.unshift({ key, perm });
  if (permCache.length > 2) permCache.pop();
  return perm;
}

function checkArgs(step: number, batchSize: number, n: number): void {
  if (!Number.isSafeInteger(step) || step < 0) throw new RangeError(`step must be a non-negative integer, got ${step}`);
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`dataset size must be a positive integer, got ${n}`);
  if (!Number.isSafeInteger(step * batchSize + batchSize)) throw new RangeError('step * batchSize is too large');
}

/** The epoch (0-based) in which step `step` starts. */
export function epochOfStep(step: number, batchSize: number, n: number): number {
  checkArgs(step, batchSize, n);
  return Math.floor((step * batchSize) / n);
}

/**
 * Indices (into a dataset of size n) of the examples in batch `step`: a pure
 * function of (seed, step, batchSize, n). See the file header for the scheme.
 */
export function batchIndices(seed: number, step: number, batchSize: number, n: number): number[] {
  checkArgs(step, batchSize, n);
  seedWords(seed);
  const out = new Array<number>(batchSize);
  const start = step * batchSize;
  for (let k = 0; k < batchSize; k++) {
    const pos = start + k;
    const epoch = Math.floor(pos / n);
    out[k] = epochPermutation(seed, epoch, n)[pos - epoch * n];
  }
  return out;
}

export interface BatchSamplerOptions {
  seed: number;
  batchSize: number;
  /** Dataset size. */
  n: number;
  /** First step to produce (to resume a run). Default 0. */
  step?: number;
}

/** Stateful convenience wrapper over batchIndices; its state is just (seed, step). */
export class BatchSampler {
  readonly seed: number;
  readonly batchSize: number;
  readonly n: number;
  private _step: number;

  constructor(options: BatchSamplerOptions) {
    this.seed = options.seed;
    this.batchSize = options.batchSize;
    this.n = options.n;
    this._step = options.step ?? 0;
    checkArgs(this._step, this.batchSize, this.n);
    seedWords(this.seed);
  }

  /** The step the next call to next() returns. */
  get step(): number {
    return this._step;
  }

  get epoch(): number {
    return epochOfStep(this._step, this.batchSize, this.n);
  }

  next(): number[] {
    const b = batchIndices(this.seed, this._step, this.batchSize, this.n);
    this._step++;
    return b;
  }

  *[Symbol.iterator](): Iterator<number[]> {
    for (;;) yield this.next();
  }
}
