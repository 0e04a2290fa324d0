// The engine host: one child process per job. It receives one command from
// its parent over IPC, streams events back, and exits. A crash here (native
// or otherwise) ends this process only; the parent reports it. A generator
// job stays: it loads a model once and answers generate requests, one at a
// time, until its parent disconnects.
import { Generator } from './generator.js';
import type { GenerationRequest, GeneratorOptions } from './generator.js';
import { scoreDataset } from './score.js';
import type { ScoreOptions } from './score.js';
import { StopSignal, train } from './trainer.js';
import type { TrainOptions } from './trainer.js';

export type HostCommand =
  | { type: 'train'; options: TrainOptions }
  | { type: 'score'; options: ScoreOptions }
  | { type: 'generator'; options: GeneratorOptions }
  | { type: 'generate'; id: string; request: GenerationRequest }
  | { type: 'stop-generation'; id: string }
  | { type: 'stop' }
  | { type: 'checkpoint' };

export type HostMessage =
  | { type: 'event'; event: unknown }
  | { type: 'error'; message: string; stack?: string }
  | { type: 'finished' };

function send(m: HostMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) {
      resolve();
      return;
    }
    process.send(m, undefined, undefined, () => resolve());
  });
}

const signal = new StopSignal();
let started = false;
let generator: Generator | null = null;
let closing = false;
/** Requests waiting for the engine, and those of them stopped before they started (answered as stopped, with no text). */
const waiting = new Set<string>();
const stoppedEarly = new Set<string>();
/** Generate requests run one after another. */
let queue: Promise<void> = Promise.resolve();

async function serveGenerator(options: GeneratorOptions, emit: (event: unknown) => void): Promise<void> {
  generator = await Generator.load(options);
  emit(generator.ready());
}

function enqueueGenerate(cmd: Extract<HostCommand, { type: 'generate' }>): void {
  const emit = (event: unknown) => void send({ type: 'event', event });
  waiting.add(cmd.id);
  queue = queue.then(async () => {
    waiting.delete(cmd.id);
    if (closing) return;
    if (stoppedEarly.delete(cmd.id)) {
      const sequences = cmd.request.prompts.map(() => ({ text: '', finishReason: 'stopped', promptTokens: 0, newTokens: 0, tokens: [] }));
      emit({ type: 'generated', id: cmd.id, result: { sequences, prefillMs: 0, decodeMs: 0, steps: 0, tokensPerS: 0 }, sampling: null });
      return;
    }
    if (!generator) {
      emit({ type: 'failed', id: cmd.id, message: 'no model is loaded in this engine process' });
      return;
    }
    try {
      await generator.generate(cmd.id, cmd.request, emit);
    } catch (e) {
      emit({ type: 'failed', id: cmd.id, message: (e as Error)?.message ?? String(e) });
    }
  });
}

async function run(cmd: HostCommand): Promise<void> {
  const emit = (event: unknown) => void send({ type: 'event', event });
  try {
    if (cmd.type === 'generator') {
      await serveGenerator(cmd.options, emit);
      return;
    }
    if (cmd.type === 'train') await train(cmd.options, emit, signal);
    else if (cmd.type === 'score') await scoreDataset(cmd.options, emit);
    await send({ type: 'finished' });
    process.exit(0);
  } catch (e) {
    const err = e as Error;
    await send({ type: 'error', message: err?.message ?? String(e), stack: err?.stack });
    process.exit(1);
  }
}

process.on('message', (raw: unknown) => {
  const cmd = raw as HostCommand;
  if (!cmd || typeof cmd !== 'object' || typeof cmd.type !== 'string') {
    void send({ type: 'error', message: 'engine host: malformed command' });
    return;
  }
  if (cmd.type === 'stop') {
    signal.stop();
    return;
  }
  if (cmd.type === 'checkpoint') {
    signal.checkpointRequested = true;
    return;
  }
  if (cmd.type === 'generate') {
    enqueueGenerate(cmd);
    return;
  }
  if (cmd.type === 'stop-generation') {
    if (!generator?.stop(cmd.id) && waiting.has(cmd.id)) stoppedEarly.add(cmd.id);
    return;
  }
  if (started) {
    void send({ type: 'error', message: 'engine host: a job is already running' });
    return;
  }
  started = true;
  void run(cmd);
});

process.on('disconnect', () => {
  if (generator) {
    // A generator holds nothing to save: end what it decodes, free the engine (its spill file), leave.
    const g = generator;
    closing = true;
    g.stopCurrent();
    void queue.finally(() => {
      g.close();
      process.exit(0);
    });
    setTimeout(() => process.exit(2), 5000).unref();
    return;
  }
  // The parent is gone: stop cooperatively, then leave.
  signal.stop();
  setTimeout(() => process.exit(2), 5000).unref();
});
