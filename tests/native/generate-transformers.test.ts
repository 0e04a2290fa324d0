// Decoding against transformers itself (the venv's transformers 5 and torch 2; tests/reference/
// generate_reference.py), for every model family under tests/fixtures/models:
// - greedy tokens equal AutoModelForCausalLM.generate(do_sample=False) with its KV cache, each
//   prompt alone there and the three prompts decoded together here, with and without a
//   repetition penalty;
// - each sampled token equals the one transformers' own logits processors (repetition penalty,
//   temperature, top-k, top-p) leave for the draw docs/ENGINE-SPEC.md defines, fed the engine's
//   raw logits of that step;
// - a seed reproduces every draw, another seed changes them.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { NativeDecodeRequest, NativeEngine } from '../../electron/engine/native.js';
import { loadModelInfo } from '../../electron/model/index.js';
import { FIXTURE_MODELS, ROOT, loadEngine } from '../helpers/engine.js';
import { venvPython } from '../helpers/python.js';

// Models whose rotary table changes with the sequence's length (dynamic NTK, longrope) decode only up to
// that length (native/src/generate/decode.cpp); their fixtures are made to cross it within a few
// tokens, so they are left out here and their stop is tested in decode-cache.test.ts.
const MODELS = (
  await Promise.all(
    readdirSync(FIXTURE_MODELS)
      .filter((n) => existsSync(join(FIXTURE_MODELS, n, 'config.json')))
      .map(async (n) => ((await loadModelInfo(join(FIXTURE_MODELS, n))).config.ropes.some((r) => r.type === 'dynamic' || r.type === 'longrope') ? null : n)),
  )
)
  .filter((n): n is string => n !== null)
  .sort();
const NEW_TOKENS = 12;
const opened: NativeEngine[] = [];
afterAll(() => {
  for (const e of opened) e.close();
});

function reference<T>(request: object): T {
  const out = execFileSync(venvPython(), [join(ROOT, 'tests', 'reference', 'generate_reference.py')], {
    input: JSON.stringify(request),
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  return JSON.parse(out) as T;
}

function prompts(vocab: number, seed: number): number[][] {
  let x = seed;
  const next = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 8) % vocab;
  return [5, 9, 2].map((len) => Array.from({ length: len }, next));
}

interface Decoded {
  tokens: number[][];
  /** Per sequence and step: the raw logits and the sequence's tokens before that step. */
  steps: { seq: number; step: number; logits: number[]; context: number[] }[];
}

async function decode(engine: NativeEngine, ps: number[][], o: Omit<NativeDecodeRequest, 'prompts'>, vocab: number): Promise<Decoded> {
  const tokens: number[][] = ps.map(() => []);
  const steps: Decoded['steps'] = [];
  let r = await engine.decodeBegin({ ...o, prompts: ps.map((p) => Int32Array.from(p)) });
  for (;;) {
    r.tokens.forEach((t, s) => {
      if (t < 0) return;
      if (r.logits) steps.push({ seq: s, step: tokens[s].length, logits: [...r.logits.slice(s * vocab, (s + 1) * vocab)], context: [...ps[s], ...tokens[s]] });
      tokens[s].push(t);
    });
    if (r.finish.every((f) => f !== null)) break;
    r = await engine.decodeNext();
  }
  return { tokens, steps };
}

const PENALTIES = [1.0, 1.3];
const SAMPLING: Omit<NativeDecodeRequest, 'prompts' | 'maxNewTokens'>[] = [
  { temperature: 0.8, seed: 1n },
  { temperature: 1.0, topK: 5, seed: 2n },
  { temperature: 0.7, topP: 0.9, seed: 3n },
  { temperature: 1.3, topK: 20, topP: 0.8, repetitionPenalty: 1.2, seed: 0xfeedface12345n },
];
const SAMPLED_MODEL = join(FIXTURE_MODELS, 'llama-tiny');

// Everything decoded here first, then transformers once (its start-up costs seconds).
const greedyOurs = new Map<string, number[][][]>();
const greedyJobs: { model: string; prompts: number[][]; max_new_tokens: number; repetition_penalty: number }[] = [];
const sampled: Decoded[] = [];
let ref: { greedy: number[][][]; sample: number[] };

beforeAll(async () => {
  for (const name of MODELS) {
    const dir = join(FIXTURE_MODELS, name);
    const vocab = (await loadModelInfo(dir)).config.vocabSize;
    const engine = await loadEngine(dir);
    opened.push(engine);
    const ps = prompts(vocab, 7);
    const runs: number[][][] = [];
    for (const penalty of PENALTIES) {
      runs.push((await decode(engine, ps, { maxNewTokens: NEW_TOKENS, repetitionPenalty: penalty }, vocab)).tokens);
      greedyJobs.push({ model: dir, prompts: ps, max_new_tokens: NEW_TOKENS, repetition_penalty: penalty });
    }
    greedyOurs.set(name, runs);
  }
  const vocab = (await loadModelInfo(SAMPLED_MODEL)).config.vocabSize;
  const engine = await loadEngine(SAMPLED_MODEL);
  opened.push(engine);
  for (const s of SAMPLING) sampled.push(await decode(engine, prompts(vocab, 11), { ...s, maxNewTokens: NEW_TOKENS, logits: true }, vocab));
  const cases = SAMPLING.flatMap((s, i) =>
    sampled[i].steps.map((st) => ({
      logits: st.logits,
      context: st.context,
      temperature: s.temperature,
      top_k: s.topK ?? 0,
      top_p: s.topP ?? 1,
      repetition_penalty: s.repetitionPenalty ?? 1,
      seed: Number(s.seed),
      step: st.step,
      seq: st.seq,
    })),
  );
  ref = reference({ greedy: greedyJobs, sample: cases });
});

describe.each(MODELS)('decoding %s against transformers', (name) => {
  it.each(PENALTIES.map((p, i) => [p, i] as const))("gives generate()'s greedy tokens (repetition penalty %d)", (_, i) => {
    const k = MODELS.indexOf(name) * PENALTIES.length + i;
    expect(greedyOurs.get(name)![i]).toEqual(ref.greedy[k]);
  });
});

describe('sampling', () => {
  it.each(SAMPLING.map((s, i) => [i, s] as const))("draws what transformers' processors leave (setting %i)", (i) => {
    const offset = sampled.slice(0, i).reduce((n, d) => n + d.steps.length, 0);
    const ours = sampled[i];
    expect(ours.steps).toHaveLength(3 * NEW_TOKENS);
    expect(ours.steps.map((st) => ours.tokens[st.seq][st.step])).toEqual(ref.sample.slice(offset, offset + ours.steps.length));
  });

  it('reproduces a seed run to run, and another seed draws otherwise', async () => {
    const vocab = (await loadModelInfo(SAMPLED_MODEL)).config.vocabSize;
    const ps = prompts(vocab, 13);
    const run = async (seed: bigint, which = ps) => {
      const engine = await loadEngine(SAMPLED_MODEL);
      opened.push(engine);
      return (await decode(engine, which, { temperature: 1.0, topP: 0.95, seed, maxNewTokens: 24 }, vocab)).tokens;
    };
    const a = await run(42n);
    expect(await run(42n)).toEqual(a);
    expect(await run(43n)).not.toEqual(a);
    // A sequence draws the same tokens alone as beside others (its draws are keyed by its index).
    expect((await run(42n, [ps[0]]))[0]).toEqual(a[0]);
  });
});
