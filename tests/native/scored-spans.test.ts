// Several scored spans per sequence and several sequences per lm example (chat data, ENGINE-SPEC
// "Losses"): the example loss is the mean NLL over every scored token, whatever the layout; a
// single span per sequence packs and scores exactly as before.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { TokenizedExample } from '../../electron/data/types.js';
import { packBatch } from '../../electron/engine/batch.js';
import type { NativeEngine } from '../../electron/engine/native.js';
import { FIXTURE_MODELS, loadEngine } from '../helpers/engine.js';

const A = [1, 17, 33, 5, 90, 64, 12, 7, 101, 44, 3, 27];
const B = [2, 8, 60, 61, 62, 9, 120];

function lm(tokens: number[]): TokenizedExample {
  return { kind: 'lm', label: -1, source: 'x', sequences: [{ tokens, scoreStart: 1, scoreEnd: tokens.length }] };
}

describe('scored spans', () => {
  let engine: NativeEngine;
  // log p(token p) for p = 1..T-1 of A and B, from whole-sequence lm scoring.
  let lpA: Float32Array;
  let lpB: Float32Array;

  beforeAll(async () => {
    engine = await loadEngine(join(FIXTURE_MODELS, 'llama-tiny'));
    const r = await engine.score(packBatch([lm(A), lm(B)]));
    lpA = r.tokenLogprobs.slice(0, A.length - 1);
    lpB = r.tokenLogprobs.slice(A.length - 1);
  });
  afterAll(() => engine.close());

  const at = (lp: Float32Array, p: number) => lp[p - 1];
  const meanNll = (xs: number[]) => -xs.reduce((s, x) => s + x, 0) / xs.length;

  it('one span per sequence packs without span offsets, as before', () => {
    const b = packBatch([lm(A), lm(B)]);
    expect(b.seqSpans).toBeUndefined();
    expect([...b.scoreStart]).toEqual([1, 1]);
  });

  it('an lm example with several spans and sequences scores the mean NLL over all their tokens', async () => {
    const ex: TokenizedExample = {
      kind: 'chat',
      label: -1,
      source: 'x',
      sequences: [
        { tokens: A, scoreStart: 3, scoreEnd: 11, spans: [[3, 5], [8, 11]] },
        { tokens: B, scoreStart: 4, scoreEnd: 7 },
      ],
    };
    const batch = packBatch([lm(B), ex]);
    expect([...batch.seqSpans!]).toEqual([0, 1, 3, 4]);
    const r = await engine.score(batch);
    const picked = [3, 4, 8, 9, 10].map((p) => at(lpA, p)).concat([4, 5, 6].map((p) => at(lpB, p)));
    expect(r.scoredTokens).toEqual([B.length - 1, 8]);
    expect(Math.abs(r.exampleLoss[1] - meanNll(picked))).toBeLessThan(1e-6);
    // The same tokens scored, in span order (the head's row count differs: float32 closeness, not bits).
    const got = Array.from(r.tokenLogprobs.slice(B.length - 1));
    expect(got.length).toBe(picked.length);
    got.forEach((x, i) => expect(Math.abs(x - picked[i])).toBeLessThan(1e-6));
  });

  it('a training step takes the same batches', async () => {
    const ex: TokenizedExample = { kind: 'chat', label: -1, source: 'x', sequences: [{ tokens: A, scoreStart: 2, scoreEnd: 12, spans: [[2, 6], [9, 12]] }] };
    const r = await engine.step(packBatch([ex, lm(B)]), { seed: 3n, step: 0, q: 1, lr: 0, eps: 1e-3, weightDecay: 0, noise: 'gaussian' });
    expect(r.skipped).toBe(false);
    expect(Number.isFinite(r.lossPlus[0]) && Number.isFinite(r.lossMinus[0])).toBe(true);
    expect(r.lossPlus[0]).not.toBe(r.lossMinus[0]);
  });

  it('rejects spans out of order, overlapping, at the first token or beyond the sequence, and bad offsets', async () => {
    const withSpans = (spans: Array<[number, number]>) =>
      packBatch([{ kind: 'chat', label: -1, source: 'x', sequences: [{ tokens: A, scoreStart: 1, scoreEnd: 2, spans }, { tokens: B, scoreStart: 1, scoreEnd: 2 }] }]);
    for (const spans of [
      [[5, 8], [2, 4]],
      [[2, 6], [5, 8]],
      [[0, 3], [5, 6]],
      [[2, 4], [9, 13]],
      [[2, 4], [6, 6]],
    ] as Array<Array<[number, number]>>) {
      await expect(engine.score(withSpans(spans)), JSON.stringify(spans)).rejects.toThrow(/sequence 0 has an invalid scored span/);
    }
    const ok = withSpans([[2, 4], [6, 8]]);
    await expect(engine.score({ ...ok, seqSpans: new Int32Array([0, 2]) })).rejects.toThrow(/one entry per sequence plus one/);
    await expect(engine.score({ ...ok, seqSpans: new Int32Array([0, 2, 2]) })).rejects.toThrow(/sequence 1 has no scored span/);
    await expect(engine.score({ ...ok, seqSpans: new Int32Array([0, 1, 2]) })).rejects.toThrow(/do not cover the scored spans/);
  });
});
