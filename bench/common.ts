// What the CPU benchmarks share: the random OPT-125M model and batch they run,
// their folders, and the small statistics and machine-load helpers.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

import { packageRoot } from '../electron/engine/native.js';
import { Rng } from './make-model.js';

export const ROOT = packageRoot();
export const BENCH = join(ROOT, 'bench');
export const WORK = join(BENCH, 'work');
export const RESULTS = join(BENCH, 'results');
export const MODEL_DIR = join(WORK, 'opt-125m-random');

/** The batch shape of the tier benchmarks and the first shape of `npm run bench`. */
export const BATCH = 16;
export const SEQ = 64;
export const BATCH_FILE = batchFile(BATCH, SEQ);
export const LR = 1e-6;
export const EPS = 1e-3;
export const WD = 0;

/** A benchmark batch: `batch` random sequences of `seq` tokens, the same in every run. */
export function makeTokens(vocab: number, batch = BATCH, seq = SEQ): number[][] {
  const rng = new Rng(20240601);
  return Array.from({ length: batch }, () => Array.from({ length: seq }, () => rng.int(vocab)));
}

/** Where the batch of a shape is written for the implementations to read. */
export function batchFile(batch: number, seq: number): string {
  return join(WORK, `batch-${batch}x${seq}.json`);
}

/** The venv's python with torch 2 (MKL): $SPILLWAY_VENV, default ~/.cache/spillway/venv (scripts/setup.sh --test makes it). */
export function venvPython(): string {
  return join(process.env.SPILLWAY_VENV || join(homedir(), '.cache', 'spillway', 'venv'), 'bin', 'python');
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Busy CPU time of the whole machine (all processes), from /proc/stat; NaN where absent. */
export function machineBusyMs(): number {
  try {
    const v = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
    return ((v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) * 1000) / 100; // USER_HZ is 100 on Linux
  } catch {
    return Number.NaN;
  }
}
