// The Playground: chat with a model or a run's latest weights, optionally side
// by side with another model (a run's base by default) on the same turns, the
// same sampling and the same seed. Each pane keeps its own replies; a reply
// streams in through `generation` events and is settled by the call's answer.

import type { GenerateResult, GenerationSource, GenerationWeights, SamplingOptionsInput } from '../../../electron/common/contract.ts';
import type { Client } from '../../../electron/common/client.ts';
import { describeError } from '../../../electron/common/client.ts';
import { finishWords, messagesOf, sourceKey, type Turn } from '../lib/playground.ts';
import { app } from './app.svelte.ts';

export class Pane {
  source = $state<GenerationSource | null>(null);
  turns = $state<Turn[]>([]);
  /** The generation being written, by id. */
  generating = $state<string | null>(null);
  error = $state<string | null>(null);
  /** What the last reply ran on (a run's final model or checkpoint). */
  weights = $state<GenerationWeights | null>(null);
}

export interface SamplingForm {
  maxNewTokens: number;
  /** 0: greedy. */
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
  seed: number;
  ignoreEos: boolean;
}

let nextId = 1;

export class PlaygroundState {
  primary = new Pane();
  secondary = new Pane();
  compare = $state(false);
  system = $state('');
  draft = $state('');
  sampling = $state<SamplingForm>({ maxNewTokens: 128, temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1, seed: 0, ignoreEos: false });
  /** When the primary pane is a run's: the model it was trained from. */
  runBase = $state<string | null>(null);

  panes = $derived(this.compare ? [this.primary, this.secondary] : [this.primary]);
  generating = $derived(this.panes.some((p) => p.generating !== null));

  #client: () => Client;

  constructor(client: () => Client) {
    this.#client = client;
  }

  /** Streams replies: each event's text goes to the pane writing that generation. */
  listen(): () => void {
    return this.#client().on('generation', (g) => {
      for (const pane of [this.primary, this.secondary]) {
        if (pane.generating !== g.generationId) continue;
        const last = pane.turns.at(-1);
        if (last?.pending) last.content += g.text;
      }
    });
  }

  /** The primary pane on a model folder or a run's weights (a run: compare with its base model). */
  async choose(source: GenerationSource | null): Promise<void> {
    if (this.primary.source && source && sourceKey(this.primary.source) === sourceKey(source)) return;
    this.primary.source = source;
    this.primary.weights = null;
    this.runBase = null;
    if (source && 'runId' in source) {
      try {
        const run = await this.#client().call('getRun', { runId: source.runId });
        this.runBase = run.options.model;
        this.secondary.source = { model: run.options.model };
      } catch (e) {
        this.primary.error = describeError(e);
      }
    }
  }

  /** Opens a run's latest weights beside its base model ("Try this model"). */
  async openRun(runId: string): Promise<void> {
    await this.choose({ runId });
    this.compare = this.runBase !== null;
  }

  clear(): void {
    for (const p of [this.primary, this.secondary]) {
      p.turns = [];
      p.error = null;
    }
  }

  /** Sends the draft as a user turn to every pane shown; each writes its reply. */
  async send(): Promise<void> {
    const text = this.draft.trim();
    if (!text || this.generating) return;
    const panes = this.panes.filter((p) => p.source !== null);
    if (panes.length === 0) {
      app.notify('error', 'No model chosen', 'Pick a model or a run to chat with.');
      return;
    }
    this.draft = '';
    await Promise.all(panes.map((p) => this.#reply(p, text)));
  }

  async #reply(pane: Pane, text: string): Promise<void> {
    pane.turns.push({ role: 'user', content: text });
    const messages = messagesOf(this.system, pane.turns);
    pane.turns.push({ role: 'assistant', content: '', pending: true });
    const reply = pane.turns[pane.turns.length - 1];
    const generationId = `pg-${Date.now().toString(36)}-${nextId++}`;
    pane.generating = generationId;
    pane.error = null;
    try {
      const r: GenerateResult = await this.#client().call('generate', {
        generationId,
        source: pane.source as GenerationSource,
        messages,
        sampling: this.#sampling(),
      });
      reply.content = r.text;
      reply.finish = r.finishReason;
      const why = finishWords(r.finishReason);
      reply.stats = `${r.newTokens} tokens · ${r.tokensPerS.toFixed(1)} tok/s${why ? ` · ${why}` : ''}`;
      pane.weights = r.weights;
    } catch (e) {
      pane.error = describeError(e);
      reply.finish = 'stopped';
    } finally {
      reply.pending = false;
      pane.generating = null;
    }
  }

  #sampling(): SamplingOptionsInput {
    const s = this.sampling;
    const sampled = s.temperature > 0;
    return {
      maxNewTokens: s.maxNewTokens,
      temperature: s.temperature,
      ...(sampled ? { topP: s.topP, topK: s.topK, seed: s.seed } : {}),
      repetitionPenalty: s.repetitionPenalty,
      ignoreEos: s.ignoreEos,
    };
  }

  /** Ends every reply being written; each keeps its text so far. */
  async stop(): Promise<void> {
    await Promise.all(
      this.panes
        .filter((p) => p.generating !== null)
        .map((p) => this.#client().call('stopGeneration', { generationId: p.generating as string }).catch((e) => app.fail('Could not stop', e))),
    );
  }

  newSeed(): void {
    this.sampling.seed = Math.floor(Math.random() * 2 ** 31);
  }
}

export const playground = new PlaygroundState(() => app.client);
