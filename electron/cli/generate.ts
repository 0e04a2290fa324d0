// `spillway generate` and `spillway chat`: text from a model, streamed to the
// terminal as it is decoded (or as JSON events with --json). The model runs
// in a generator process (electron/engine/generator-client.ts); Ctrl-C ends
// the text being written (and, a second time, the command).
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

import { ChatOptions, GenerateOptions } from '../common/options.js';
import type { SamplingOptionsInput } from '../common/options.js';
import type { ChatMessage } from '../data/index.js';
import type { GenerationResult, SamplingSettings } from '../engine/generate.js';
import { startGenerator } from '../engine/generator-client.js';
import type { GeneratorProcess } from '../engine/generator-client.js';
import type { GeneratorOptions, GeneratorReady } from '../engine/generator.js';
import { argOptions, helpLines, optionsFromFlags } from './flags.js';
import type { ArgValues } from './flags.js';
import { out, stdoutClosed } from './output.js';

export const GENERATE_USAGE = `Generate options:
${helpLines(GenerateOptions)}
  --json                one JSON object per line: start, text (each sequence's new text), done, error

Chat options (one user turn per line read; /reset starts over, /exit or end of input leaves):
${helpLines(ChatOptions)}
  --json                one JSON object per line: start, then per turn text and reply, error`;

const GENERATE_FLAGS = { ...argOptions(GenerateOptions), json: { type: 'boolean' } } as const;
const CHAT_FLAGS = { ...argOptions(ChatOptions), json: { type: 'boolean' } } as const;

function fail(message: string, json: boolean): never {
  if (json) out(JSON.stringify({ type: 'error', message }) + '\n');
  else process.stderr.write(`spillway: ${message}\n`);
  process.exit(1);
}

/** The options a generator process loads with, picked from a command's options. */
function generatorOptions(o: GenerateOptions | ChatOptions): GeneratorOptions {
  const { model, threads, spillDirs, masters, offload, templateName, templateVariables } = o;
  return { model, threads, spillDirs, masters, offload, templateName, templateVariables };
}

function samplingOf(o: GenerateOptions | ChatOptions): SamplingOptionsInput {
  const { maxNewTokens, temperature, topK, topP, repetitionPenalty, seed, stop, ignoreEos } = o;
  return { maxNewTokens, temperature, topK, topP, repetitionPenalty, seed, stop, ignoreEos };
}

/** "greedy" or "temperature 0.7, top-p 0.9, seed 3", for the header line. */
export function describeSampling(s: SamplingSettings): string {
  const parts = [s.temperature > 0 ? `temperature ${s.temperature}` : 'greedy'];
  if (s.topK > 0) parts.push(`top-k ${s.topK}`);
  if (s.topP < 1) parts.push(`top-p ${s.topP}`);
  if (s.repetitionPenalty !== 1) parts.push(`repetition penalty ${s.repetitionPenalty}`);
  if (s.temperature > 0) parts.push(`seed ${s.seed}`);
  return parts.join(', ');
}

function header(r: GeneratorReady): string {
  const template = r.template === 'model' ? 'its chat template' : 'the plain chat fallback (the model has no chat template)';
  return `${r.model} (${r.architecture}, ${(r.parameters / 1e6).toFixed(2)}M parameters) on ${r.backend} × ${r.threads} threads; conversations use ${template}`;
}

function stats(r: GenerationResult, s: SamplingSettings | null): string {
  const tokens = r.sequences.reduce((n, x) => n + x.newTokens, 0);
  const why = [...new Set(r.sequences.map((x) => x.finishReason))].join(', ');
  const rate = r.tokensPerS > 0 ? `, ${r.tokensPerS.toFixed(1)} tokens/s after a ${r.prefillMs.toFixed(0)} ms prefill` : '';
  return `${tokens} tokens${rate}; ended: ${why}${s ? `; ${describeSampling(s)}` : ''}`;
}

/** Ctrl-C: the first ends the text being written, the second leaves. */
function onInterrupt(first: () => void, second: () => void): void {
  let count = 0;
  process.on('SIGINT', () => (++count === 1 ? first() : second()));
}

async function loaded(gen: GeneratorProcess, json: boolean): Promise<GeneratorReady> {
  try {
    return await gen.ready;
  } catch (e) {
    gen.close();
    fail((e as Error).message, json);
  }
}

export async function cmdGenerate(argv: string[]): Promise<number> {
  const values: ArgValues = parseArgs({ args: argv, options: GENERATE_FLAGS }).values;
  const json = values.json === true;
  let o: GenerateOptions;
  try {
    if (values.model === undefined) throw new Error('generate needs --model');
    if (values.prompt === undefined) throw new Error('generate needs --prompt');
    o = optionsFromFlags(GenerateOptions, values, {}, 'generate');
  } catch (e) {
    fail((e as Error).message, json);
  }
  const gen = startGenerator(generatorOptions(o));
  const ready = await loaded(gen, json);
  if (json) out(JSON.stringify({ type: 'start', model: ready.model, dir: ready.dir, backend: ready.backend, threads: ready.threads, template: ready.template }) + '\n');
  else process.stderr.write(`${header(ready)}\n`);
  const prompts = o.prompts.map((text) =>
    o.chat ? { messages: [...(o.systemPrompt !== undefined ? [{ role: 'system' as const, content: o.systemPrompt }] : []), { role: 'user' as const, content: text }] } : { text },
  );
  const single = prompts.length === 1;
  const request = gen.generate({ prompts, sampling: samplingOf(o) }, (seq, text, tokens) => {
    if (json) out(JSON.stringify({ type: 'text', seq, text, tokens }) + '\n');
    else if (single) out(text);
  });
  onInterrupt(
    () => {
      if (!json) process.stderr.write('\nstopping (Ctrl-C again to leave)…\n');
      gen.stop(request.id);
    },
    () => process.exit(130),
  );
  void stdoutClosed.then(() => gen.stop(request.id));
  try {
    const { result, sampling } = await request.done;
    if (json) {
      out(JSON.stringify({ type: 'done', ...result, sequences: result.sequences.map(({ tokens: _ids, ...rest }) => rest), sampling }) + '\n');
    } else {
      if (single) out('\n');
      else result.sequences.forEach((s, i) => out(`${i ? '\n' : ''}=== prompt ${i + 1} (${s.finishReason})\n${s.text}\n`));
      process.stderr.write(`${stats(result, sampling)}\n`);
    }
    return 0;
  } catch (e) {
    fail((e as Error).message, json);
  } finally {
    gen.close();
  }
}

export async function cmdChat(argv: string[]): Promise<number> {
  const values: ArgValues = parseArgs({ args: argv, options: CHAT_FLAGS }).values;
  const json = values.json === true;
  let o: ChatOptions;
  try {
    if (values.model === undefined) throw new Error('chat needs --model');
    o = optionsFromFlags(ChatOptions, values, {}, 'chat');
  } catch (e) {
    fail((e as Error).message, json);
  }
  const gen = startGenerator(generatorOptions(o));
  const ready = await loaded(gen, json);
  const tty = process.stdin.isTTY === true && !json;
  if (json) out(JSON.stringify({ type: 'start', model: ready.model, dir: ready.dir, backend: ready.backend, threads: ready.threads, template: ready.template }) + '\n');
  else process.stderr.write(`${header(ready)}\n${tty ? 'Type a message; /reset starts over, /exit or Ctrl-D leaves.\n' : ''}`);
  const system: ChatMessage[] = o.systemPrompt !== undefined ? [{ role: 'system', content: o.systemPrompt }] : [];
  let messages: ChatMessage[] = [...system];
  let running: string | null = null;
  const rl = createInterface({ input: process.stdin, output: tty ? process.stderr : undefined, terminal: tty });
  let leaving = false;
  const leave = () => {
    leaving = true;
    rl.close();
  };
  onInterrupt(
    () => {
      if (running) gen.stop(running);
      else leave();
    },
    () => process.exit(130),
  );
  // readline takes Ctrl-C on a terminal itself.
  rl.on('SIGINT', () => (running ? gen.stop(running) : leave()));
  void stdoutClosed.then(() => {
    if (running) gen.stop(running);
    leave();
  });
  if (tty) rl.setPrompt('> ');
  const ask = () => {
    if (tty) rl.prompt();
  };
  try {
    ask();
    for await (const line of rl) {
      const text = line.trim();
      if (text === '/exit' || leaving) break;
      if (text === '/reset') {
        messages = [...system];
        if (!json) process.stderr.write('(conversation cleared)\n');
        ask();
        continue;
      }
      if (!text) {
        ask();
        continue;
      }
      messages.push({ role: 'user', content: line });
      const request = gen.generate({ prompts: [{ messages }], sampling: samplingOf(o) }, (_seq, delta, tokens) => {
        if (json) out(JSON.stringify({ type: 'text', text: delta, tokens }) + '\n');
        else out(delta);
      });
      running = request.id;
      const { result, sampling } = await request.done;
      running = null;
      const reply = result.sequences[0];
      messages.push({ role: 'assistant', content: reply.text });
      if (json) {
        const { tokens: _ids, ...rest } = reply;
        out(JSON.stringify({ type: 'reply', ...rest, tokensPerS: result.tokensPerS, prefillMs: result.prefillMs, sampling }) + '\n');
      } else {
        out('\n');
        if (tty) process.stderr.write(`(${stats(result, null)})\n`);
      }
      if (leaving) break;
      ask();
    }
    return 0;
  } catch (e) {
    fail((e as Error).message, json);
  } finally {
    rl.close();
    gen.close();
  }
}
