// What the CPU benchmarks share: the random OPT-125M model and batch they run,
// their folders, their flags, and the small statistics and machine-load helpers.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { packBatch } from '../electron/engine/batch.js';
import type { NativeBatch } from '../electron/engine/native.js';
import { packageRoot } from '../electron/engine/native.js';
import { Rng } from './make-model.js';

export const ROOT = packageRoot();
export const BENCH = join(ROOT, 'bench');
export const WORK = join(BENCH, 'work');
export const RESULTS = join(BENCH, 'results');
export const MODEL_DIR = join(WORK, 'opt-125m-random');
export const BATCH_FILE = join(WORK, 'batch-16x64.json');

export const BATCH = 16;
export const SEQ = 64;
export const LR = 1e-6;
export const EPS = 1e-3;
export const WD = 0;

/** The benchmark batch: BATCH random sequences of SEQ tokens, the same in every run. */
export function makeTokens(vocab: number): number[][] {
  const rng = new Rng(20240601);
  return Array.from({ length: BATCH }, () => Array.from({ length: SEQ }, () => rng.int(vocab)));
}

/** The batch of BATCH_FILE (written by makeTokens), packed as language-model examples. */
export function benchBatch(): NativeBatch {
  const tokens = (JSON.parse(readFileSync(BATCH_FILE, 'utf8')) as { tokens: number[][] }).tokens;
  return packBatch(
    tokens.map((t, i) => ({ kind: 'lm' as const, label: -1, source: `bench:${i}`, sequences: [{ tokens: t, scoreStart: 1, scoreEnd: t.length }] })),
  );
}

type FlagValue = number | string | boolean;

/**
 * A benchmark's flags, named as on its command line, each with its default: a number, a string, or
 * false for a switch. Unknown flags and numbers that do not read are errors.
 */
export function benchArgs<T extends Record<string, FlagValue>>(argv: string[], defaults: T): { -readonly [K in keyof T]: T[K] extends boolean ? boolean : T[K] } {
  const options = Object.fromEntries(Object.entries(defaults).map(([k, v]) => [k, { type: typeof v === 'boolean' ? ('boolean' as const) : ('string' as const) }]));
  const { values } = parseArgs({ args: argv, options, strict: true });
  const out: Record<string, FlagValue> = { ...defaults };
  for (const [k, v] of Object.entries(values)) {
    if (typeof defaults[k] !== 'number') {
      out[k] = v as FlagValue;
      continue;
    }
    const n = v === '' ? Number.NaN : Number(v);
    if (!Number.isFinite(n)) throw new Error(`--${k} expects a number, got ${JSON.stringify(v)}`);
    out[k] = n;
  }
  return out as { -readonly [K in keyof T]: T[K] extends boolean ? boolean : T[K] };
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

/** Runs a benchmark child in the package root; resolves with the JSON of its last stdout line. */
export function runChild<T>(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}`));
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as T);
      } catch {
        reject(new Error(`${cmd}: no JSON result on stdout:\n${out}`));
      }
    });
  });
}

/** The machine a result was measured on: CPU, cores, SIMD, memory, OS, Node, and the PyTorch of `python` when given. */
export function machine(python?: string): Record<string, unknown> {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  const flags = /flags\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.split(' ') ?? [];
  let torch = 'unknown';
  if (python) {
    try {
      torch = execFileSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' }).trim();
    } catch {
      /* reported as unknown */
    }
  }
  return {
    cpu: model,
    cores: os.cpus().length,
    simd: ['avx2', 'avx512f', 'fma'].filter((f) => flags.includes(f)),
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    ...(python ? { torch, python } : {}),
    date: new Date().toISOString(),
  };
}
