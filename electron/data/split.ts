// Deterministic train / eval split: an explicit eval set, or a seeded fraction
// of the training rows (drawn with the xoshiro128** permutation of sampler.ts,
// under its own purpose tag so it is independent of the batch order).

import { permutation, PURPOSE_SPLIT } from './sampler.js';

export interface SplitIndices {
  /** Ascending indices into the original rows. */
  train: number[];
  eval: number[];
}

/**
 * Split [0, n) into train / eval. The eval count is round(n * evalFraction),
 * kept within [1, n-1] when evalFraction > 0 and n >= 2. Both lists are sorted,
 * so file order is preserved; which rows land in eval depends only on (n, seed).
 */
export function splitIndices(n: number, evalFraction: number, seed: number): SplitIndices {
  const { train, eval: ev } = splitIndexArrays(n, evalFraction, seed);
  return { train: Array.from(train), eval: Array.from(ev) };
}

/** splitIndices as typed arrays: 4 bytes a row, for datasets of millions of rows. */
export function splitIndexArrays(n: number, evalFraction: number, seed: number): { train: Uint32Array; eval: Uint32Array } {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`n must be a non-negative integer, got ${n}`);
  if (!(evalFraction >= 0 && evalFraction < 1)) throw new RangeError(`evalFraction must be in [0, 1), got ${evalFraction}`);
  let nEval = Math.round(n * evalFraction);
  if (evalFraction > 0 && n >= 2) nEval = Math.min(Math.max(nEval, 1), n - 1);
  if (nEval === 0) return { train: Uint32Array.from({ length: n }, (_, i) => i), eval: new Uint32Array(0) };
  const perm = permutation(seed, PURPOSE_SPLIT, 0, n);
  const isEval = new Uint8Array(n);
  for (let i = 0; i < nEval; i++) isEval[perm[i]] = 1;
  const train = new Uint32Array(n - nEval);
  const evalIdx = new Uint32Array(nEval);
  let t = 0;
  let e = 0;
  for (let i = 0; i < n; i++) {
    if (isEval[i]) evalIdx[e++] = i;
    else train[t++] = i;
  }
  return { train, eval: evalIdx };
}

export interface SplitOptions<T> {
  /** Rows of an explicit eval file: used as is, and all of `rows` is training data. */
  evalRows?: readonly T[];
  /** Otherwise hold out this fraction of `rows` (default 0: no eval set). */
  evalFraction?: number;
  /** Seed for the held-out draw (default 0). */
  seed?: number;
}

export function splitRows<T>(rows: readonly T[], options: SplitOptions<T> = {}): { train: T[]; eval: T[] } {
  if (options.evalRows !== undefined) {
    if (options.evalFraction !== undefined && options.evalFraction !== 0) {
      throw new Error('give either an eval file or an eval fraction, not both');
    }
    return { train: [...rows], eval: [...options.evalRows] };
  }
  const { train, eval: ev } = splitIndices(rows.length, options.evalFraction ?? 0, options.seed ?? 0);
  return { train: train.map((i) => rows[i]), eval: ev.map((i) => rows[i]) };
}
