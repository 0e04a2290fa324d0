// Processes as the fault harness sees them: spillway commands started for
// real, their children found through /proc, SIGKILL sent, and the wait for a
// process that is not ours to end (an engine whose parent was killed).
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { packageRoot } from '../../electron/engine/native.js';

export const BIN = join(packageRoot(), 'bin', 'spillway.js');

/** The pids whose parent is `pid` (Linux /proc). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // The command name may hold spaces and parentheses: the fields follow the last ')'.
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Whether a process is alive (a zombie nobody reaped yet is not). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves once the process has ended; it is not our child, so its exit is polled (no deadline: the caller's harness has one). */
export async function ended(pid: number): Promise<void> {
  while (alive(pid)) await tick(20);
}

/** The engine host of a spillway process: its forked child running host.js. */
export async function engineOf(pid: number): Promise<number | null> {
  for (const c of childrenOf(pid)) {
    try {
      if (readFileSync(`/proc/${c}/cmdline`, 'utf8').includes('host.js')) return c;
    } catch {
      // gone
    }
  }
  return null;
}

export interface Spawned {
  child: ChildProcess;
  /** stdout and stderr as they came. */
  output(): string;
  /** Each stdout line, as it comes. */
  onLine(listener: (line: string) => void): void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `spillway ARGS` as a person runs it, with its own data folder and two engine threads. */
export function spillway(args: string[], env: NodeJS.ProcessEnv = {}): Spawned {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, SPILLWAY_THREADS: '2', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let all = '';
  let partial = '';
  const listeners: ((line: string) => void)[] = [];
  child.stdout?.on('data', (b: Buffer) => {
    const text = b.toString('utf8');
    all += text;
    partial += text;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) for (const f of listeners) f(l);
  });
  child.stderr?.on('data', (b: Buffer) => (all += b.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.on('exit', (code, signal) => res({ code, signal })));
  return { child, output: () => all, onLine: (l) => listeners.push(l), exited };
}

/** A seeded generator of uniform numbers in [0, 1) (mulberry32): the kill schedule is the same on every run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
