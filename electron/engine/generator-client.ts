// Parent side of a generator: an engine host process holding one model for
// generation (generator.ts). Requests are queued there one at a time; their
// text streams back as it is decoded. A crash of the process rejects what is
// pending with the reason and leaves this process intact.
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';

import type { GenerationResult, SamplingSettings } from './generate.js';
import type { GenerationRequest, GeneratorEvent, GeneratorOptions, GeneratorReady } from './generator.js';
import type { HostCommand, HostMessage } from './host.js';
import { EngineCrashError, EngineJobError, hostEntry } from './runner.js';

export interface Generated {
  result: GenerationResult;
  sampling: SamplingSettings;
}

export interface GeneratorProcess {
  /** The model loaded (or why it could not be). */
  readonly ready: Promise<GeneratorReady>;
  /** Resolves when the process has ended. */
  readonly exited: Promise<void>;
  readonly alive: boolean;
  /** Queues a request; onText gets each sequence's newly final text. `id` names it for stop(). */
  generate(request: GenerationRequest, onText?: (seq: number, text: string, tokens: number) => void, id?: string): { id: string; done: Promise<Generated> };
  /** Ends a request now (running: its text so far is kept, finish 'stopped'). */
  stop(id: string): void;
  /** Ends the process (what runs is stopped first). */
  close(): void;
}

interface Pending {
  onText?: (seq: number, text: string, tokens: number) => void;
  resolve(g: Generated): void;
  reject(e: Error): void;
}

export function startGenerator(options: GeneratorOptions, o: { env?: NodeJS.ProcessEnv } = {}): GeneratorProcess {
  const entry = hostEntry();
  const child = fork(entry.file, [], {
    execArgv: entry.execArgv,
    serialization: 'advanced',
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: { ...process.env, ...o.env },
  });
  const tail: string[] = [];
  const keep = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) tail.push(line);
    while (tail.length > 20) tail.shift();
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);

  const pending = new Map<string, Pending>();
  let alive = true;
  let settleReady: { resolve(r: GeneratorReady): void; reject(e: Error): void };
  const ready = new Promise<GeneratorReady>((resolve, reject) => (settleReady = { resolve, reject }));
  // A caller that never awaits ready still learns of failures through generate().
  ready.catch(() => {});
  let loadError: Error | null = null;

  child.on('message', (raw: unknown) => {
    const m = raw as HostMessage;
    if (m.type === 'error') {
      loadError = new EngineJobError(m.message, m.stack);
      settleReady.reject(loadError);
      return;
    }
    if (m.type !== 'event') return;
    const e = m.event as GeneratorEvent;
    if (e.type === 'ready') settleReady.resolve(e);
    else if (e.type === 'text') pending.get(e.id)?.onText?.(e.seq, e.text, e.tokens);
    else if (e.type === 'generated' || e.type === 'failed') {
      const p = pending.get(e.id);
      pending.delete(e.id);
      if (e.type === 'generated') p?.resolve({ result: e.result, sampling: e.sampling });
      else p?.reject(new EngineJobError(e.message));
    }
  });
  const exited = new Promise<void>((resolve) => {
    const ended = (why: Error) => {
      alive = false;
      settleReady.reject(loadError ?? why);
      for (const p of pending.values()) p.reject(loadError ?? why);
      pending.clear();
      resolve();
    };
    child.on('error', (e) => ended(new EngineCrashError(`engine process failed to start: ${e.message}`, null, null, tail)));
    child.on('exit', (code, sig) => {
      const how = sig ? `was killed by ${sig}` : `exited with code ${code}`;
      const last = tail.length ? `; last output: ${tail.slice(-5).join(' | ')}` : '';
      ended(new EngineCrashError(`the engine process ${how}${last}`, code, sig, [...tail]));
    });
  });
  child.send({ type: 'generator', options } satisfies HostCommand);

  return {
    ready,
    exited,
    get alive() {
      return alive;
    },
    generate(request, onText, id = randomUUID()) {
      const done = new Promise<Generated>((resolve, reject) => {
        if (!alive || !child.connected) {
          reject(loadError ?? new EngineCrashError('the engine process has ended', child.exitCode, null, [...tail]));
          return;
        }
        pending.set(id, { onText, resolve, reject });
        child.send({ type: 'generate', id, request } satisfies HostCommand);
      });
      return { id, done };
    },
    stop(id) {
      if (child.connected) child.send({ type: 'stop-generation', id } satisfies HostCommand);
    },
    close() {
      if (child.connected) child.disconnect();
    },
  };
}
