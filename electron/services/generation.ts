// Generation for the UI (the Playground): a generator process per model in
// use, kept while it is used and closed when idle or when too many are open;
// each call's text streams to every UI as `generation` events, and a call
// stops when it is cancelled or stopGeneration names it. A run's weights are
// its final model, or its newest checkpoint while it has none.
import { randomUUID } from 'node:crypto';
import { basename, join } from 'node:path';

import { SpillwayError } from '../common/contract.js';
import type { AnyEvent, GenerateResult, GenerationWeights, MethodParams, RunDetail } from '../common/contract.js';
import type { PromptInput } from '../engine/generate.js';
import { startGenerator } from '../engine/generator-client.js';
import type { GeneratorProcess } from '../engine/generator-client.js';
import { EngineCrashError } from '../engine/runner.js';
import { isFile } from '../node/files.js';
import type { CallContext, EventListener, EventSource } from './api.js';

/** The weights "Try this model" opens for a run: its final model once it has ended with one, else its newest checkpoint. */
export async function runWeights(run: Pick<RunDetail, 'id' | 'status' | 'outDir' | 'checkpoints' | 'stepsDone'>): Promise<GenerationWeights | null> {
  if (run.status !== 'running' && run.outDir && (await isFile(join(run.outDir, 'model.safetensors')))) {
    return { dir: run.outDir, name: `run ${run.id}`, kind: 'final', step: run.stepsDone };
  }
  for (const c of [...run.checkpoints].sort((a, b) => b.step - a.step)) {
    if (await isFile(join(c.path, 'model.safetensors'))) return { dir: c.path, name: `run ${run.id} at step ${c.step}`, kind: 'checkpoint', step: c.step };
  }
  return null;
}

export interface GenerationServiceOptions {
  /** A model folder as allowed for reading models (throws when it is not), resolved. */
  checkModel(path: string): Promise<string>;
  getRun(runId: string, ctx: CallContext): Promise<RunDetail>;
  /** CPU threads of a generator (0: all cores). */
  threads(): Promise<number>;
  /** Generator processes kept at once (default 2: a model and its base, side by side). */
  maxProcesses?: number;
  /** A generator unused this long is closed (default 10 minutes). */
  idleMs?: number;
  env?: NodeJS.ProcessEnv;
}

interface Slot {
  dir: string;
  proc: GeneratorProcess;
  busy: number;
  lastUsed: number;
  idle: NodeJS.Timeout | null;
}

export class GenerationService implements EventSource {
  private readonly slots = new Map<string, Slot>();
  private readonly running = new Map<string, () => void>();
  private readonly listeners = new Set<EventListener>();

  constructor(private readonly o: GenerationServiceOptions) {}

  onEvent(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: AnyEvent): void {
    for (const l of this.listeners) l(e);
  }

  private async weights(source: MethodParams<'generate'>['source'], ctx: CallContext): Promise<GenerationWeights> {
    if ('model' in source) {
      const dir = await this.o.checkModel(source.model);
      return { dir, name: basename(dir), kind: 'model', step: null };
    }
    const run = await this.o.getRun(source.runId, ctx);
    const w = await runWeights(run);
    if (!w) throw new SpillwayError('NOT_FOUND', `run ${run.id} has no weights to try yet: no final model and no checkpoint so far`);
    return w;
  }

  private slot(dir: string, threads: number): Slot {
    const key = `${dir}\0${threads}`;
    const have = this.slots.get(key);
    if (have?.proc.alive) return have;
    if (have) this.drop(key);
    const slot: Slot = { dir, proc: startGenerator({ model: dir, threads }, { env: this.o.env }), busy: 0, lastUsed: Date.now(), idle: null };
    this.slots.set(key, slot);
    void slot.proc.exited.then(() => {
      if (this.slots.get(key) === slot) this.drop(key);
    });
    const max = this.o.maxProcesses ?? 2;
    const idle = [...this.slots.entries()].filter(([, s]) => s.busy === 0 && s !== slot).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    while (this.slots.size > max && idle.length) this.drop(idle.shift()![0]);
    return slot;
  }

  private drop(key: string): void {
    const s = this.slots.get(key);
    if (!s) return;
    if (s.idle) clearTimeout(s.idle);
    s.proc.close();
    this.slots.delete(key);
  }

  private release(key: string, slot: Slot): void {
    slot.busy--;
    slot.lastUsed = Date.now();
    if (slot.idle) clearTimeout(slot.idle);
    if (slot.busy === 0) {
      slot.idle = setTimeout(() => this.drop(key), this.o.idleMs ?? 10 * 60_000);
      slot.idle.unref();
    }
  }

  async generate(p: MethodParams<'generate'>, ctx: CallContext): Promise<GenerateResult> {
    if (this.running.has(p.generationId)) throw new SpillwayError('CONFLICT', `generation ${p.generationId} is already running`);
    const weights = await this.weights(p.source, ctx);
    const threads = await this.o.threads();
    const slot = this.slot(weights.dir, threads);
    const key = `${weights.dir}\0${threads}`;
    slot.busy++;
    if (slot.idle) clearTimeout(slot.idle);
    const id = randomUUID();
    let stopped = false;
    const stop = () => {
      stopped = true;
      slot.proc.stop(id);
    };
    this.running.set(p.generationId, stop);
    ctx.signal.addEventListener('abort', stop);
    try {
      let ready;
      try {
        ready = await slot.proc.ready;
      } catch (e) {
        throw new SpillwayError('BAD_REQUEST', `${weights.dir} cannot be loaded for generation: ${(e as Error).message}`, { name: 'ModelLoadError' });
      }
      if (stopped) throw new SpillwayError('CANCELLED', 'the generation was stopped before it started');
      const prompt: PromptInput = p.messages ? { messages: p.messages } : { text: p.prompt as string };
      const req = slot.proc.generate({ prompts: [prompt], sampling: p.sampling, templateVariables: p.templateVariables }, (_seq, text, tokens) =>
        this.emit({ event: 'generation', payload: { generationId: p.generationId, text, tokens, at: Date.now() } }),
        id,
      );
      const { result, sampling } = await req.done;
      const seq = result.sequences[0];
      return {
        generationId: p.generationId,
        text: seq.text,
        finishReason: seq.finishReason,
        promptTokens: seq.promptTokens,
        newTokens: seq.newTokens,
        prefillMs: result.prefillMs,
        decodeMs: result.decodeMs,
        tokensPerS: result.tokensPerS,
        weights,
        template: p.messages ? ready.template : null,
        sampling,
      };
    } catch (e) {
      if (e instanceof SpillwayError) throw e;
      const crashed = e instanceof EngineCrashError;
      throw new SpillwayError(crashed ? 'INTERNAL' : 'BAD_REQUEST', (e as Error).message, { name: crashed ? 'EngineCrash' : 'GenerationError' });
    } finally {
      ctx.signal.removeEventListener('abort', stop);
      this.running.delete(p.generationId);
      this.release(key, slot);
    }
  }

  async stop(generationId: string): Promise<{ stopped: boolean }> {
    const stop = this.running.get(generationId);
    stop?.();
    return { stopped: stop !== undefined };
  }

  /** Ends every generator process. */
  async shutdown(): Promise<void> {
    const slots = [...this.slots.values()];
    for (const key of [...this.slots.keys()]) this.drop(key);
    await Promise.all(slots.map((s) => s.proc.exited));
  }
}
