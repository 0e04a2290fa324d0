// Text generation on a loaded engine: prompts (raw, or conversations rendered
// with the model's chat template) become token ids, the engine decodes them
// together with its KV cache (docs/ENGINE-SPEC.md, "Decoding"), and each
// sequence's text is streamed as it grows, cut at the first stop string. The
// sampling settings left unset take the model's generation_config.json.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { SamplingOptions } from '../common/options.js';
import { answerScores } from '../data/index.js';
import type { ChatMessage, ChatRenderer, SpillwayTokenizer, TokenizedExample } from '../data/index.js';
import type { FinishReason, NativeEngine } from './native.js';

/** Why a sequence ended: an end id, the token limit, a stop string, or a stop asked for. */
export type GenerationFinish = 'eos' | 'length' | 'stop' | 'stopped';

/** What the model's files say about decoding: its end ids and the sampling its authors set. */
export interface GenerationDefaults {
  eos: number[];
  /** generation_config.json's do_sample and the values it comes with (transformers' defaults filled in). */
  sample: { temperature: number; topK: number; topP: number } | null;
  repetitionPenalty: number | null;
  /** Where they were read from. */
  source: 'generation_config.json' | 'config.json' | 'tokenizer' | 'none';
}

async function readJsonObject(file: string): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${file} does not hold a JSON object`);
  return v as Record<string, unknown>;
}

/** An id or a list of ids (eos_token_id), as numbers; anything else is an error naming the file and field. */
function ids(v: unknown, file: string): number[] | null {
  if (v === undefined || v === null) return null;
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((x) => Number.isInteger(x) && (x as number) >= 0)) throw new Error(`${file}: eos_token_id must be a token id or a list of them`);
  return list as number[];
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/**
 * The end ids and sampling of a model folder, as transformers reads them: generation_config.json,
 * else config.json's eos_token_id, else the tokenizer's EOS.
 */
export async function generationDefaults(dir: string, tokenizer?: SpillwayTokenizer): Promise<GenerationDefaults> {
  const genFile = join(dir, 'generation_config.json');
  const gen = await readJsonObject(genFile);
  const cfgFile = join(dir, 'config.json');
  const cfg = await readJsonObject(cfgFile);
  let eos = gen ? ids(gen.eos_token_id, genFile) : null;
  let source: GenerationDefaults['source'] = eos ? 'generation_config.json' : 'none';
  if (!eos && cfg) {
    eos = ids(cfg.eos_token_id, cfgFile);
    if (eos) source = 'config.json';
  }
  if (!eos && tokenizer?.eosId != null) {
    eos = [tokenizer.eosId];
    source = 'tokenizer';
  }
  const sample = gen?.do_sample === true ? { temperature: num(gen.temperature) ?? 1, topK: num(gen.top_k) ?? 50, topP: num(gen.top_p) ?? 1 } : null;
  return { eos: eos ?? [], sample, repetitionPenalty: num(gen?.repetition_penalty), source };
}

/**
 * generation_config.json for a saved model whose source folder has none: its special token ids from
 * config.json, as transformers' GenerationConfig.from_model_config takes them (greedy decoding).
 */
export function generationConfigFor(config: Record<string, unknown>): string | null {
  const keep = ['bos_token_id', 'eos_token_id', 'pad_token_id', 'decoder_start_token_id'].filter((k) => config[k] !== undefined && config[k] !== null);
  if (keep.length === 0) return null;
  return JSON.stringify(Object.fromEntries(keep.map((k) => [k, config[k]])), null, 2) + '\n';
}

/** Sampling as the engine runs it. */
export interface SamplingSettings {
  maxNewTokens: number;
  /** 0: greedy. */
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  seed: number;
  stop: string[];
  /** Decode past the end ids. */
  ignoreEos: boolean;
}

/**
 * The options over the model's defaults: a temperature given decides (0 greedy); top-k or top-p
 * given without one samples at the model's temperature (else 1); nothing given follows the model
 * (greedy unless its generation_config.json samples).
 */
export function resolveSampling(o: SamplingOptions, d: GenerationDefaults, extraStop: string[] = []): SamplingSettings {
  const wantsSampling = o.temperature === undefined && (o.topK !== undefined || o.topP !== undefined);
  const temperature = o.temperature ?? (d.sample?.temperature ?? (wantsSampling ? 1 : 0));
  const sampled = temperature > 0;
  return {
    maxNewTokens: o.maxNewTokens,
    temperature,
    topK: sampled ? (o.topK ?? d.sample?.topK ?? 0) : 0,
    topP: sampled ? (o.topP ?? d.sample?.topP ?? 1) : 1,
    repetitionPenalty: o.repetitionPenalty ?? d.repetitionPenalty ?? 1,
    seed: o.seed,
    stop: [...new Set([...(o.stop ?? []), ...extraStop])],
    ignoreEos: o.ignoreEos,
  };
}

/** A prompt: raw text (BOS added when the tokenizer adds one), or a conversation for the chat template. */
export type PromptInput = { text: string } | { messages: ChatMessage[] };

/**
 * The token ids of a prompt: raw text as the tokenizer encodes it, or the conversation rendered with
 * add_generation_prompt and encoded without special tokens (the template writes BOS).
 */
export function promptIds(tokenizer: SpillwayTokenizer, renderer: ChatRenderer | null, input: PromptInput): number[] {
  if ('text' in input) return tokenizer.encode(input.text);
  if (!renderer) throw new Error('a conversation needs a chat renderer');
  return tokenizer.encode(renderer.render(input.messages, true), { addSpecialTokens: false });
}

/** Stop strings a rendering implies: the plain fallback template's next header. */
export function templateStops(renderer: ChatRenderer | null): string[] {
  return renderer?.source === 'fallback' ? ['\n### '] : [];
}

/**
 * A sequence's text as its tokens arrive: each push gives the text that is final so far (not an
 * unfinished UTF-8 character, and nothing that could still turn out to start a stop string); the
 * text ends before the first stop string.
 */
export class TextStream {
  private readonly ids: number[] = [];
  private shown = 0;
  text = '';
  stopped = false;
  private readonly holdBack: number;

  constructor(
    private readonly tokenizer: SpillwayTokenizer,
    private readonly stop: readonly string[],
  ) {
    this.holdBack = Math.max(0, ...stop.map((s) => s.length - 1));
  }

  /** Adds a token; returns the newly final text. */
  push(id: number): string {
    this.ids.push(id);
    let text = this.tokenizer.decode(this.ids, { skipSpecialTokens: true });
    let cut = -1;
    for (const s of this.stop) {
      const at = text.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      text = text.slice(0, cut);
      this.stopped = true;
    }
    this.text = text;
    let final = this.stopped ? text.length : text.length - this.holdBack;
    while (final > 0 && text.charCodeAt(final - 1) === 0xfffd) final--;
    return this.take(final);
  }

  /** The rest of the text once the sequence has ended. */
  end(): string {
    return this.take(this.text.length);
  }

  private take(upTo: number): string {
    if (upTo <= this.shown) return '';
    const delta = this.text.slice(this.shown, upTo);
    this.shown = upTo;
    return delta;
  }
}

export interface SequenceResult {
  text: string;
  finishReason: GenerationFinish;
  promptTokens: number;
  /** Tokens generated (the end id included). */
  newTokens: number;
  tokens: number[];
}

export interface GenerationResult {
  sequences: SequenceResult[];
  /** The prompts' pass and the first tokens. */
  prefillMs: number;
  /** Every later step. */
  decodeMs: number;
  steps: number;
  /** Tokens generated per second over every sequence, after the prefill. */
  tokensPerS: number;
}

export interface GenerationHooks {
  /** Newly final text of sequence `seq` (index into the prompts). */
  onText?(seq: number, delta: string, newTokens: number): void;
  /** Checked before every step: true ends every sequence (finish 'stopped'). */
  stopRequested?(): boolean;
}

const FINISH: Record<FinishReason, GenerationFinish> = { eos: 'eos', length: 'length', stopped: 'stop' };

function isCancelled(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: string }).code === 'ECANCELLED';
}

/**
 * Decodes the prompts together. A stop asked for (hooks.stopRequested, or engine.cancel() to cut a
 * pass short) ends every sequence still going with 'stopped' and keeps the text so far.
 */
export async function generateTokens(
  engine: NativeEngine,
  tokenizer: SpillwayTokenizer,
  prompts: number[][],
  s: SamplingSettings,
  eos: readonly number[],
  hooks: GenerationHooks = {},
): Promise<GenerationResult> {
  const streams = prompts.map(() => new TextStream(tokenizer, s.stop));
  const tokens: number[][] = prompts.map(() => []);
  const finish: (GenerationFinish | null)[] = prompts.map(() => null);
  const t0 = performance.now();
  let t1 = t0;
  let steps = 0;
  let after = 0;
  const take = (r: { tokens: Int32Array; finish: (FinishReason | null)[] }): number[] => {
    const stopNow: number[] = [];
    r.tokens.forEach((id, i) => {
      if (id < 0 || finish[i] !== null) return;
      tokens[i].push(id);
      const delta = streams[i].push(id);
      if (delta) hooks.onText?.(i, delta, tokens[i].length);
      const f = r.finish[i];
      if (streams[i].stopped) {
        finish[i] = 'stop';
        if (f === null) stopNow.push(i);
      } else if (f !== null) {
        finish[i] = FINISH[f];
      }
      if (finish[i] !== null) {
        const rest = streams[i].end();
        if (rest) hooks.onText?.(i, rest, tokens[i].length);
      }
    });
    return stopNow;
  };
  const stopAll = () => {
    finish.forEach((f, i) => {
      if (f !== null) return;
      finish[i] = 'stopped';
      const rest = streams[i].end();
      if (rest) hooks.onText?.(i, rest, tokens[i].length);
    });
  };
  try {
    let stop = take(
      await engine.decodeBegin({
        prompts: prompts.map((p) => Int32Array.from(p)),
        maxNewTokens: s.maxNewTokens,
        temperature: s.temperature,
        topK: s.topK,
        topP: s.topP,
        repetitionPenalty: s.repetitionPenalty,
        seed: BigInt(s.seed),
        eos: Int32Array.from(s.ignoreEos ? [] : eos),
      }),
    );
    t1 = performance.now();
    while (finish.some((f) => f === null)) {
      if (hooks.stopRequested?.()) {
        stopAll();
        break;
      }
      const before = tokens.reduce((n, t) => n + t.length, 0);
      stop = take(await engine.decodeNext(stop));
      after += tokens.reduce((n, t) => n + t.length, 0) - before;
      steps++;
    }
  } catch (e) {
    if (!isCancelled(e)) throw e;
    stopAll();
  } finally {
    engine.decodeEnd();
  }
  const t2 = performance.now();
  return {
    sequences: prompts.map((p, i) => ({
      text: streams[i].text,
      finishReason: finish[i] ?? 'stopped',
      promptTokens: p.length,
      newTokens: tokens[i].length,
      tokens: tokens[i],
    })),
    prefillMs: t1 - t0,
    decodeMs: t2 - t1,
    steps,
    tokensPerS: t2 > t1 ? (after / (t2 - t1)) * 1000 : 0,
  };
}

/**
 * Generation-based evaluation of prompt/answer examples (MeZO's SQuAD and DROP figures): each
 * chunk's prompts decoded greedily together, up to `maxNewTokens` or an end id, each answer cut at
 * its first line break unless its reference holds one; the answers scored by exact match and token
 * F1 against the reference (the example's scored tokens, decoded).
 */
export async function evaluateAnswers(
  engine: NativeEngine,
  tokenizer: SpillwayTokenizer,
  chunks: AsyncIterable<readonly TokenizedExample[]>,
  o: { maxNewTokens: number; eos: readonly number[] },
): Promise<{ exactMatch: number; f1: number }> {
  const pairs: { prediction: string; references: string[] }[] = [];
  for await (const examples of chunks) {
    const items = examples.map((ex) => {
      const s = ex.sequences[0];
      return { prompt: s.tokens.slice(0, s.scoreStart), reference: tokenizer.decode(s.tokens.slice(s.scoreStart, s.scoreEnd), { skipSpecialTokens: true }) };
    });
    // An answer ends at its first line break unless its reference holds one. The stop string does
    // that for a whole chunk; a chunk with a multi-line reference writes on and cuts the others after.
    const multiline = items.map((i) => i.reference.includes('\n'));
    const stop = multiline.some(Boolean) ? [] : ['\n'];
    const settings: SamplingSettings = { maxNewTokens: o.maxNewTokens, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0, stop, ignoreEos: false };
    const r = await generateTokens(engine, tokenizer, items.map((c) => c.prompt), settings, o.eos);
    r.sequences.forEach((s, j) => pairs.push({ prediction: multiline[j] ? s.text : s.text.split('\n')[0], references: [items[j].reference] }));
  }
  return answerScores(pairs);
}
