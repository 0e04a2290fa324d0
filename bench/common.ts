// What the CPU benchmarks share: the random OPT-125M model and batch they run,
// their folders, their flags, and the small statistics and machine-load helpers.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os, { homedir } from 'node:os';
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

/** A batch file written from makeTokens (BATCH_FILE unless told), packed as language-model examples. */
export function benchBatch(file = BATCH_FILE): NativeBatch {
  const tokens = (JSON.parse(readFileSync(file, 'utf8')) as { tokens: number[][] }).tokens;
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
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(benchUsage(defaults));
    process.exit(0);
  }
  const options = Object.fromEntries(Object.entries(defaults).map(([k, v]) => [k, { type: typeof v === 'boolean' ? ('boolean' as const) : ('string' as const) }]));
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true }));
  } catch (e) {
    // parseArgs's own words ("Unknown option '--x'", "Option '--runs <value>' argument missing"), and the flags there are.
    throw new Error(`${e instanceof Error ? e.message : String(e)}\n${benchUsage(defaults)}`);
  }
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

/** The flags a benchmark takes, with their defaults (its --help, and the tail of a flag error). */
export function benchUsage(defaults: Record<string, FlagValue>): string {
  const flags = Object.entries(defaults).map(([k, v]) => (typeof v === 'boolean' ? `  --${k}` : `  --${k} <${typeof v}>  (default ${v === '' ? 'none' : String(v)})`));
  return `flags (the file's opening comment says what each does):\n${flags.join('\n')}\n`;
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

/** The machine a result was measured on: CPU (with the SIMD it offers), cores, memory, OS, Node, date. */
export function machineInfo(): { cpu: string; family?: string; model?: string; cores: number; simd: string[]; memGiB: number; os: string; node: string; date: string } {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const field = (k: string) => new RegExp(`${k}\\s*:\\s*(.*)`).exec(cpuinfo)?.[1];
  const flags = field('flags')?.split(' ') ?? [];
  return {
    cpu: field('model name') ?? os.cpus()[0]?.model ?? 'unknown',
    family: field('cpu family'),
    model: field('model'),
    cores: os.cpus().length,
    simd: ['avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni', 'avx512_bf16'].filter((f) => flags.includes(f)),
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    date: new Date().toISOString(),
  };
}

/** machineInfo as a report's sentence (without its full stop, for the caller's additions). */
export function machineLine(m: ReturnType<typeof machineInfo>): string {
  return (
    `Machine: ${m.cpu} (family ${m.family ?? '?'}, model ${m.model ?? '?'}), ${m.cores} cores (${m.simd.join(', ')}), ${m.memGiB} GiB; ` +
    `${m.os}; Node ${m.node}; ${m.date}`
  );
}

/** The share of a core other processes may take during timed steps before a report calls the machine shared. */
const SHARED_CORES = 0.1;

/**
 * How steady the machine was while a benchmark ran, as a report's paragraph. `probes`: a fixed
 * product's rate (GFLOP/s) read between timed steps, `probeWhat` naming it; `other`: the median
 * and largest share of the cores that other processes took during a timed step (from /proc/stat,
 * steal time included), the cores, the largest 1-minute load average. A virtual machine's
 * neighbours on its host can slow memory-bound work without taking any of its cores, so that
 * accounting can read 0 while the same product runs at half its rate: the probe is what sees
 * them. Steady: no process took over SHARED_CORES of a core, and the slowest probe was within
 * `spread` of the fastest.
 */
export function steadiness(
  probes: number[],
  probeWhat: string,
  other: { median: number; max: number; cores: number; maxLoad1: number },
  spread = 1.15,
): { steady: boolean; text: string } {
  const f2 = (x: number) => x.toFixed(2);
  const ok = probes.filter((x) => Number.isFinite(x) && x > 0);
  const lo = ok.length ? Math.min(...ok) : NaN;
  const hi = ok.length ? Math.max(...ok) : NaN;
  const read = ok.length
    ? `${probeWhat}, read ${ok.length} times between timed steps, ran at ${lo.toFixed(0)}-${hi.toFixed(0)} GFLOP/s (median ${median(ok).toFixed(0)})`
    : '';
  const shared = other.max > SHARED_CORES;
  const unsteady = ok.length > 1 && hi / lo > spread;
  const text: string[] = [];
  if (shared)
    text.push(
      `**The machine was shared:** other processes took a median ${f2(other.median)} and up to ${f2(other.max)} of the ${other.cores} cores ` +
        `during timed steps (1-minute load average up to ${other.maxLoad1.toFixed(1)}). Wall times are inflated and noisy, and implementations ` +
        'whose threads spin (OpenMP) lose more than others: read the ratios as measured under that load, not as those of an idle machine.',
    );
  if (unsteady)
    text.push(
      `**The host was not steady:** ${read}, its slowest reading ${Math.round((1 - lo / hi) * 100)} % under its fastest` +
        (shared ? '.' : `, while no other process took more than ${SHARED_CORES} of a core: work outside this machine (other guests of its host) slowed it.`) +
        ' Step times carry that spread; paired ratios less, since the two steps of a pair run back to back; the floor takes every product at its best repetition, so a step is compared with a quiet moment.',
    );
  if (!shared && !unsteady)
    text.push(`The machine was quiet: other processes took at most ${SHARED_CORES} of a core during any timed step${read ? `, and ${read}` : ''}.`);
  else if (shared && !unsteady && read) text.push(`${read[0].toUpperCase()}${read.slice(1)}.`);
  return { steady: !shared && !unsteady, text: text.join(' ') };
}

/** Runs a child to completion and returns its JSON lines on stdout. stderr passes through (progress). */
export function runChild(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}`));
      resolve(out.trim().split('\n').filter((l) => l.startsWith('{')));
    });
  });
}
