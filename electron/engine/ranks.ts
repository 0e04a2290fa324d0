// Parent side of a distributed run: starts its ranks with mpirun (one rank host per GPU, or per
// group of cores), sends the job to rank 0 over mpirun's stdin, relays rank 0's events, and turns
// a rank's failure into an error naming the rank and why. The job looks like a one-process
// engine job (runner.ts) to the run supervisor.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { HostCommand } from './host.js';
import { mpirunCommand, noticedEnd, RANK_LINE, TaggedLineReader } from './mpirun.js';
import type { RankMessage } from './mpirun.js';
import { packageRoot } from './native.js';
import { EngineCrashError, EngineJobError } from './runner.js';
import type { EngineJob } from './runner.js';

export interface RankJobOptions {
  ranks: number;
  /** Open MPI host file: ranks across machines (the same install path on each). */
  hostfile?: string;
  /** How long a rank waits for the others at an exchange before it names them and ends the job, ms. */
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
}

/** How long after asking mpirun to end the ranks (SIGTERM) the launcher kills what is left. */
export const KILL_GRACE_MS = 3000;

function rankHostEntry(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const sibling = join(here, 'rank-host.js');
  if (existsSync(sibling)) return sibling;
  const built = join(packageRoot(), 'dist', 'electron', 'engine', 'rank-host.js');
  if (existsSync(built)) return built;
  throw new Error(`the rank host is not built (${built} is missing): run \`npm run build:ts\``);
}

export function startRankJob(cmd: Extract<HostCommand, { type: 'train' }>, onEvent: (e: unknown) => void, o: RankJobOptions): EngineJob {
  const env = { ...process.env, ...o.env, SPILLWAY_RANK_TIMEOUT_MS: String(o.timeoutMs) };
  const { command, args } = mpirunCommand(
    { ranks: o.ranks, hostfile: o.hostfile, asRoot: process.getuid?.() === 0, forwardEnv: [...forwarded(env)] },
    [process.execPath, rankHostEntry()],
    env,
  );
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
  const tail: string[] = [];
  const mpirunLines: string[] = [];
  const keep = (line: string) => {
    if (!line.trim()) return;
    tail.push(line);
    while (tail.length > 40) tail.shift();
  };
  let finished = false;
  const rankErrors: Extract<RankMessage, { type: 'error' }>[] = [];
  // From rank 0's start event: every rank's process, to name it and to kill what mpirun leaves.
  const world = new Map<number, { pid: number; host: string }>();
  const reader = new TaggedLineReader((l) => {
    if (l.rank < 0) {
      mpirunLines.push(l.text);
      keep(l.text);
      return;
    }
    if (!l.text.startsWith(RANK_LINE)) {
      keep(`rank ${l.rank}: ${l.text}`);
      return;
    }
    let m: RankMessage;
    try {
      m = JSON.parse(l.text.slice(RANK_LINE.length)) as RankMessage;
    } catch {
      keep(`rank ${l.rank}: ${l.text}`);
      return;
    }
    if (m.type === 'error') rankErrors.push({ ...m, rank: m.rank >= 0 ? m.rank : l.rank });
    else if (m.type === 'finished') finished = true;
    else if (m.type === 'event') {
      const e = m.event as { type?: string; world?: { ranks?: { rank: number; pid: number; host: string }[] } };
      if (e?.type === 'start') for (const r of e.world?.ranks ?? []) world.set(r.rank, { pid: r.pid, host: r.host });
      onEvent(m.event);
    }
  });
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d: string) => reader.push(d));
  child.stderr.on('data', (d: string) => reader.push(d));

  let killTimer: NodeJS.Timeout | null = null;
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (e) =>
      reject(
        new EngineCrashError(
          (e as NodeJS.ErrnoException).code === 'ENOENT'
            ? `${command} not found: install Open MPI (Debian: apt-get install openmpi-bin) to run with --ranks`
            : `mpirun failed to start: ${e.message}`,
          null,
          null,
          tail,
        ),
      ),
    );
    child.on('close', (code, sig) => {
      reader.end();
      if (killTimer) clearTimeout(killTimer);
      if (finished && code === 0 && rankErrors.length === 0) {
        resolve();
        return;
      }
      reject(failure(rankErrors, mpirunLines, world, code, sig, tail));
    });
  });
  child.stdin.on('error', () => {});
  child.stdin.write(JSON.stringify(cmd) + '\n');
  const send = (c: HostCommand) => {
    if (child.stdin.writable) child.stdin.write(JSON.stringify(c) + '\n');
  };
  return {
    child,
    done,
    stop: () => send({ type: 'stop' }),
    checkpoint: () => send({ type: 'checkpoint' }),
    kill: () => {
      // mpirun ends its ranks on SIGTERM; a SIGKILL would orphan them (Open MPI gives each rank
      // its own process group), so what is left after the grace is killed by pid.
      child.kill('SIGTERM');
      if (!killTimer) {
        killTimer = setTimeout(() => {
          for (const { pid, host } of world.values()) {
            if (host !== hostname()) continue;
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              // already gone
            }
          }
          child.kill('SIGKILL');
        }, KILL_GRACE_MS);
        killTimer.unref();
      }
    },
  };
}

/** Variables the ranks need on every machine: the defaults and every SPILLWAY_* one. */
function forwarded(env: NodeJS.ProcessEnv): Set<string> {
  const names = new Set(['PATH', 'LD_LIBRARY_PATH']);
  for (const k of Object.keys(env)) if (k.startsWith('SPILLWAY_')) names.add(k);
  return names;
}

/**
 * Why a distributed job ended: the rank that reported an error first (it knows what it waited
 * for), else the rank mpirun saw die, else mpirun's exit.
 */
function failure(
  errors: Extract<RankMessage, { type: 'error' }>[],
  mpirunLines: string[],
  world: Map<number, { pid: number; host: string }>,
  code: number | null,
  sig: NodeJS.Signals | null,
  tail: string[],
): Error {
  const noticed = noticedEnd(mpirunLines);
  const who = (rank: number, host: string | null) => {
    const w = world.get(rank);
    return w ? `rank ${rank} (pid ${w.pid} on ${w.host})` : host ? `rank ${rank} (on ${host})` : `rank ${rank}`;
  };
  const reported = errors[0];
  if (reported) {
    const also = noticed && noticed.rank !== reported.rank && !/MPI_Abort/.test(noticed.how) ? `; mpirun saw ${who(noticed.rank, noticed.host)} end: ${noticed.how}` : '';
    return new EngineJobError(`rank ${reported.rank}: ${reported.message}${also}; every rank was stopped`, reported.stack);
  }
  if (noticed) return new EngineCrashError(`${who(noticed.rank, noticed.host)} ${noticed.how}; every rank was stopped`, code, sig, [...tail]);
  const how = sig ? `was killed by ${sig}` : `exited with code ${code}`;
  const last = tail.length ? `; last output: ${tail.slice(-5).join(' | ')}` : '';
  return new EngineCrashError(`mpirun ${how} before the job finished${last}`, code, sig, [...tail]);
}
