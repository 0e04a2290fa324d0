// Decoding with the KV cache (native/src/generate/) against recomputing the whole forward each
// step, for every model family under tests/fixtures/models (a family added there is covered
// without touching this file), resident and with every block streamed from CPU memory or from
// the SSD tier. Three prompts of different lengths decode together; each step's logits of each
// sequence are compared with a fresh prefill of that sequence alone (prompt + the tokens chosen
// so far: the training forward's attention over every position, no cache).
// Tolerance: greedy tokens identical, logits within 1e-4 absolute (observed <= 3e-6; float32:
// the cached and the full attention take the same steps over the same keys; their products, and
// the blocks' GEMMs, differ in their row counts). One pass over the blocks per step serves the whole batch: a streamed
// block's bytes cross once per step whether one sequence or three decode.
import { mkdtempSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import type { Home } from '../../electron/common/options.js';
import { loadNative } from '../../electron/engine/native.js';
import type { NativeEngine, TierInfo } from '../../electron/engine/native.js';
import { engineSpec } from '../../electron/engine/spec.js';
import { loadModelInfo } from '../../electron/model/index.js';
import { FIXTURE_MODELS } from '../helpers/engine.js';

// Models whose rotary table changes with the sequence's length (dynamic NTK past max_position_embeddings,
// longrope past original_max_position_embeddings) decode only up to that length: a cache keeps each
// key rotated by the table it was made with, so crossing it would not be the model's forward. Their
// fixtures cross it within a few tokens; the stop is tested below.
const LENGTH_DEPENDENT_ROPE = new Set(['dynamic', 'longrope']);
const ALL = readdirSync(FIXTURE_MODELS).filter((n) => existsSync(join(FIXTURE_MODELS, n, 'config.json'))).sort();
const MODELS = (
  await Promise.all(
    ALL.map(async (n) => ((await loadModelInfo(join(FIXTURE_MODELS, n))).config.ropes.some((r) => LENGTH_DEPENDENT_ROPE.has(r.type)) ? null : n)),
  )
)
  .filter((n): n is string => n !== null)
  .sort();
const spill = mkdtempSync(join(tmpdir(), 'spw-decode-spill-'));
const opened: NativeEngine[] = [];
afterAll(() => {
  for (const e of opened) e.close();
});

const LOGIT_TOL = 1e-4;
const NEW_TOKENS = 10;

async function engineFor(name: string, home: Home): Promise<{ engine: NativeEngine; vocab: number; maxPositions: number; blockBytes: number }> {
  const info = await loadModelInfo(join(FIXTURE_MODELS, name));
  const engine = new (loadNative().Engine)({ threads: 2 });
  const n = info.units.length;
  const homes: Home[] = info.units.map((_, i) => (i === 0 || i === n - 1 ? 'device' : home));
  await engine.load(engineSpec(info), home === 'device' ? undefined : { homes, spillDirs: [spill] });
  opened.push(engine);
  const blockBytes = info.units
    .filter((u) => u.kind === 'block')
    .flatMap((u) => Object.values(u.tensors))
    .reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1) * 4, 0);
  return { engine, vocab: info.config.vocabSize, maxPositions: info.config.maxPositions, blockBytes };
}

/** Deterministic prompts of different lengths inside the vocabulary. */
function prompts(vocab: number): Int32Array[] {
  let x = 12345;
  const next = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 8) % vocab;
  return [7, 3, 12].map((len) => Int32Array.from({ length: len }, next));
}

function maxAbs(a: Float32Array, b: Float32Array, off = 0, len = b.length): number {
  let m = 0;
  for (let i = 0; i < len; i++) m = Math.max(m, Math.abs(a[off + i] - b[i]));
  return m;
}

/** Decodes `ps` together and compares each step of each sequence with a fresh prefill of it alone. */
async function checkAgainstFull(engine: NativeEngine, vocab: number, name: string, ps: Int32Array[]): Promise<void> {
  const chosen: number[][] = ps.map(() => []);
  const logits: Float32Array[][] = ps.map(() => []);
  let r = await engine.decodeBegin({ prompts: ps, maxNewTokens: NEW_TOKENS, logits: true });
  for (;;) {
    r.tokens.forEach((t, s) => {
      if (t < 0) return;
      chosen[s].push(t);
      logits[s].push(r.logits!.slice(s * vocab, (s + 1) * vocab));
    });
    if (r.finish.every((f) => f !== null)) break;
    r = await engine.decodeNext();
  }
  expect(r.finish).toEqual(ps.map(() => 'length'));
  let worst = 0;
  for (let s = 0; s < ps.length; s++) {
    expect(chosen[s]).toHaveLength(NEW_TOKENS);
    for (let t = 0; t < NEW_TOKENS; t++) {
      const full = Int32Array.from([...ps[s], ...chosen[s].slice(0, t)]);
      const f = await engine.decodeBegin({ prompts: [full], maxNewTokens: 1, logits: true });
      expect(f.tokens[0], `${name} sequence ${s} step ${t}`).toBe(chosen[s][t]);
      worst = Math.max(worst, maxAbs(f.logits!, logits[s][t]));
    }
  }
  expect(worst).toBeLessThan(LOGIT_TOL);
}

describe.each(MODELS)('KV-cache decoding of %s equals the full forward each step', (name) => {
  it.each(['device', 'cpu', 'ssd'] as Home[])('with blocks homed on the %s', async (home) => {
    const { engine, vocab } = await engineFor(name, home);
    await checkAgainstFull(engine, vocab, name, prompts(vocab));
  });

  // One sequence makes every step's products a single row (the CPU backend's matrix-vector path).
  it('with one sequence alone', async () => {
    const { engine, vocab } = await engineFor(name, 'device');
    await checkAgainstFull(engine, vocab, name, prompts(vocab).slice(2));
  });

  it('streams each block once per decoding step, whatever the number of sequences', async () => {
    const { engine, vocab, blockBytes } = await engineFor(name, 'cpu');
    const perStep = async (n: number): Promise<number> => {
      await engine.decodeBegin({ prompts: prompts(vocab).slice(0, n), maxNewTokens: 4 });
      const before = engine.info().tiers as TierInfo;
      await engine.decodeNext();
      return (engine.info().tiers as TierInfo).h2dBytes - before.h2dBytes;
    };
    expect(await perStep(1)).toBe(blockBytes);
    expect(await perStep(3)).toBe(blockBytes);
  });
});

describe('decoding limits', () => {
  it('stops at an end id, at the position limit and where the caller says', async () => {
    const { engine, vocab, maxPositions } = await engineFor('llama-tiny', 'device');
    const [p] = prompts(vocab);
    // The first greedy token, made an end id: the sequence ends after reporting it.
    const first = (await engine.decodeBegin({ prompts: [p], maxNewTokens: 5 })).tokens[0];
    const r = await engine.decodeBegin({ prompts: [p, p], maxNewTokens: 5, eos: Int32Array.of(first) });
    expect([...r.tokens]).toEqual([first, first]);
    expect(r.finish).toEqual(['eos', 'eos']);
    // A prompt one short of the limit has room for exactly one token.
    const long = Int32Array.from({ length: maxPositions - 1 }, (_, i) => i % vocab);
    const l = await engine.decodeBegin({ prompts: [long], maxNewTokens: 5 });
    expect(l.finish).toEqual(['length']);
    await expect(engine.decodeBegin({ prompts: [Int32Array.from({ length: maxPositions }, () => 1)], maxNewTokens: 1 })).rejects.toThrow(
      /leaves no room for a new token/,
    );
    // Stopping one sequence leaves the other decoding.
    await engine.decodeBegin({ prompts: [p, p], maxNewTokens: 5 });
    const n = await engine.decodeNext([0]);
    expect(n.tokens[0]).toBe(-1);
    expect(n.tokens[1]).toBeGreaterThanOrEqual(0);
    expect(n.finish).toEqual(['stopped', null]);
    await expect(engine.decodeBegin({ prompts: [Int32Array.of(vocab)], maxNewTokens: 1 })).rejects.toThrow(/outside the vocabulary/);
    await expect(engine.decodeBegin({ prompts: [p], maxNewTokens: 1, topP: 0 })).rejects.toThrow(/top_p/);
  });

  it('refuses malformed arguments by name, and decoding goes on after', async () => {
    const { engine, vocab } = await engineFor('llama-tiny', 'device');
    const [p] = prompts(vocab);
    expect(() => engine.decodeBegin({ prompts: p as never, maxNewTokens: 2 })).toThrow(/field 'prompts' must be an array of Int32Arrays/);
    expect(() => engine.decodeBegin({ prompts: [[...p]] as never, maxNewTokens: 2 })).toThrow(/field 'prompts' must be an array of Int32Arrays/);
    expect(() => engine.decodeBegin({ prompts: [p], maxNewTokens: 2, eos: [0] as never })).toThrow(/field 'eos' must be an Int32Array/);
    await engine.decodeBegin({ prompts: [p, p], maxNewTokens: 3 });
    expect(() => engine.decodeNext(0 as never)).toThrow(/decodeNext\(stop\) takes an array of sequence indices/);
    expect(() => engine.decodeNext([0, '1'] as never)).toThrow(/decodeNext\(stop\) takes an array of sequence indices/);
    // Not truncated to an index: 1.5 would have stopped sequence 1.
    expect(() => engine.decodeNext([1.5])).toThrow(/decodeNext\(stop\) takes an array of sequence indices: 1.5 is not one/);
    expect(() => engine.decodeNext([-1])).toThrow(/-1 is not one/);
    expect(() => engine.decodeNext([Number.NaN])).toThrow(/NaN is not one/);
    await expect(engine.decodeNext([2])).rejects.toThrow(/stop: sequence 2 does not exist/);
    const n = await engine.decodeNext([1]);
    expect(n.finish).toEqual([null, 'stopped']);
  });
});

describe.each(ALL.filter((n) => !MODELS.includes(n)))('decoding %s, whose rotary table changes with the length', (name) => {
  it('stops ("length") where the table would change, and refuses a prompt that reaches it', async () => {
    const info = await loadModelInfo(join(FIXTURE_MODELS, name));
    const limit = Math.min(
      info.config.maxPositions,
      ...info.config.ropes.map((r) => (r.type === 'dynamic' ? info.config.maxPositions : r.type === 'longrope' ? (r.originalMaxPositions ?? Infinity) : Infinity)),
    );
    const { engine, vocab } = await engineFor(name, 'device');
    const prompt = prompts(vocab)[2].slice(0, Math.max(1, limit - 2));
    let r = await engine.decodeBegin({ prompts: [prompt], maxNewTokens: 50 });
    let n = 0;
    for (;;) {
      if (r.tokens[0] >= 0) n++;
      if (r.finish[0] !== null) break;
      r = await engine.decodeNext();
    }
    expect(r.finish[0]).toBe('length');
    expect(prompt.length + n).toBe(limit);
    const long = Int32Array.from({ length: limit }, (_, i) => i % vocab);
    await expect(engine.decodeBegin({ prompts: [long], maxNewTokens: 1 })).rejects.toThrow(`has ${limit} tokens; the model decodes up to ${limit} positions`);
  });
});
