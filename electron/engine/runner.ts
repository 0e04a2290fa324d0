// Parent side of the engine host: forks one process per job, relays its
// events, and turns a crash or a kill into an error that names the cause.
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { HostCommand, HostMessage } from './host.js';
import { packageRoot } from './native.js';

export class EngineCrashError extends Error {
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
    readonly lastLines: string[],
  ) {
    super(message);
    this.name = 'EngineCrashError';
  }
}

export class EngineJobError extends Error {
  constructor(message: string, readonly engineStack?: string) {
    super(message);
    this.name = 'EngineJobError';
  }
}

export function hostEntry(): { file: string; execArgv: string[] } {
  const here = dirname(fileURLToPath(import.meta.url));
  const sibling = join(here, 'host.js');
  if (existsSync(sibling)) return { file: sibling, execArgv: [] };
  // Loaded from the TypeScript sources (tests): use the compiled host.
  const built = join(packageRoot(), 'dist', 'electron', 'engine', 'host.js');
  if (existsSync(built)) return { file: built, execArgv: [] };
  throw new Error(`the engine host is not built (${built} is missing): run \`npm run build:ts\``);
}

export interface EngineJob {
  readonly child: ChildProcess;
  /** Resolves when the job finishes; rejects with EngineJobError or EngineCrashError. */
  readonly done: Promise<void>;
  stop(): void;
  /** Ask for a checkpoint after the current step. */
  checkpoint(): void;
  kill(signal?: NodeJS.Signals): void;
}

export function startEngineJob(cmd: Extract<HostCommand, { type: 'train' | 'score' }>, onEvent: (e: unknown) => void, options: { env?: NodeJS.ProcessEnv } = {}): EngineJob {
  const entry = hostEntry();
  const child = fork(entry.file, [], {
    execArgv: entry.execArgv,
    serialization: 'advanced',
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: { ...process.env, ...options.env },
  });
  const tail: string[] = [];
  const keep = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim()) tail.push(line);
    }
    while (tail.length > 20) tail.shift();
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);

  let finished = false;
  let jobError: EngineJobError | null = null;
  const done = new Promise<void>((resolve, reject) => {
    child.on('message', (raw: unknown) => {
      const m = raw as HostMessage;
      if (m.type === 'event') onEvent(m.event);
      else if (m.type === 'error') jobError = new EngineJobError(m.message, m.stack);
      else if (m.type === 'finished') finished = true;
    });
    child.on('error', (e) => reject(new EngineCrashError(`engine process failed to start: ${e.message}`, null, null, tail)));
    child.on('exit', (code, sig) => {
      if (jobError) reject(jobError);
      else if (finished && code === 0) resolve();
      else {
        const how = sig ? `was killed by ${sig}` : `exited with code ${code}`;
        const last = tail.length ? `; last output: ${tail.slice(-5).join(' | ')}` : '';
        reject(new EngineCrashError(`the engine process ${how} before finishing${last}`, code, sig, [...tail]));
      }
    });
  });
  child.send(cmd);
  return {
    child,
    done,
    stop: () => {
      if (child.connected) child.send({ type: 'stop' } satisfies HostCommand);
    },
    checkpoint: () => {
      if (child.connected) child.send({ type: 'checkpoint' } satisfies HostCommand);
    },
    kill: (signal: NodeJS.Signals = 'SIGKILL') => {
      child.kill(signal);
    },
  };
}
