// The CPU backend perturbs the head a vocabulary chunk at a time (token_logprobs_noisy) instead of
// writing theta + eps z for the whole of lm_head into the working copies first. Both ways must give
// the same bits: every loss, projected gradient and tensor after the steps is compared exactly
// (Object.is) against the same engine with SPILLWAY_HEAD_WHOLE=1, the path of backends without
// chunks. The model's vocabulary (2,500) spans three chunks of 1,024, the last one partial. Trainable
// tokens' rows, merged on their own on the CPU, are held to the same bits as whole merged copies.
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { packBatch } from '../../electron/engine/batch.js';
import { loadNative } from '../../electron/engine/native.js';
import type { NativeEngine, NativeStepParams, NativeTrainSpec } from '../../electron/engine/native.js';
import { engineSpec } from '../../electron/engine/spec.js';
import type { TokenizedExample } from '../../electron/data/types.js';
import { loadModelInfo } from '../../electron/model/index.js';
import { FIXTURE_MODELS } from '../helpers/engine.js';
import { expectSameBits, lmBatch } from '../helpers/same-bits.js';
import { makeTinyLlama } from '../helpers/tiny-model.js';

const VOCAB = 2500;
let work = '';
let tied = '';
const opened: NativeEngine[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-head-chunks-'));
  tied = await makeTinyLlama(join(work, 'tied'), { vocab: VOCAB, hidden: 32, layers: 2, seed: 7, maxPositions: 512 });
});
afterAll(() => {
  for (const e of opened) e.close();
  rmSync(work, { recursive: true, force: true });
});

async function load(model: string, whole: boolean, train?: NativeTrainSpec): Promise<NativeEngine> {
  if (whole) process.env.SPILLWAY_HEAD_WHOLE = '1';
  try {
    const engine = new (loadNative().Engine)({ threads: 2 });
    opened.push(engine);
    await engine.load(engineSpec(await loadModelInfo(model)), undefined, train);
    return engine;
  } finally {
    delete process.env.SPILLWAY_HEAD_WHOLE;
  }
}

const params = (step: number, over: Partial<NativeStepParams> = {}): NativeStepParams => ({
  seed: 5n,
  step,
  q: 2,
  lr: 1e-2,
  eps: 1e-2,
  weightDecay: 0,
  noise: 'gaussian',
  ...over,
});

describe('the head perturbed a vocabulary chunk at a time', () => {
  it('MeZO, two +eps/-eps pairs a step: the same bits as the head perturbed whole, in less scratch', async () => {
    const [chunked, whole] = [await load(tied, false), await load(tied, true)];
    const b = lmBatch(6, 24, VOCAB);
    await expectSameBits(chunked, whole, b, [0, 1, 2].map((s) => params(s)));
    // z and the working copy held the head's group (its norm, 32, and lm_head, 2,500 x 32 floats);
    // now the largest block group (gate or up, 64 x 32), beside two chunks of 1,024 rows for each
    // of the two threads.
    const [c, w] = [chunked.info().tiers!.scratchBytes, whole.info().tiers!.scratchBytes];
    expect(w - c).toBe(4 * (2 * (32 + VOCAB * 32) - 2 * 64 * 32 - 2 * 2 * 1024 * 32));
  });

  it('FZOO, the clean masters and three single probes a step', async () => {
    const [chunked, whole] = [await load(tied, false), await load(tied, true)];
    await expectSameBits(chunked, whole, lmBatch(4, 20, VOCAB), [0, 1].map((s) => params(s, { q: 3, estimator: 'fzoo' })));
  });

  it('more scored rows than one band of 8,192 (the chunks are made again per band)', async () => {
    const [chunked, whole] = [await load(tied, false), await load(tied, true)];
    // 33 sequences of 256 tokens: 8,415 scored rows.
    await expectSameBits(chunked, whole, lmBatch(33, 256, VOCAB), [params(0, { q: 1 })]);
  });

  it('FZOO with 16 probes over more than one band (17 streams: bands of 1,024 rows)', async () => {
    const [chunked, whole] = [await load(tied, false), await load(tied, true)];
    // 5 sequences of 256 tokens: 1,275 scored rows.
    await expectSameBits(chunked, whole, lmBatch(5, 256, VOCAB), [params(0, { q: 16, estimator: 'fzoo' })]);
  });

  it('a frozen head (sparse trains the block matrices alone) is read in place', async () => {
    const train: NativeTrainSpec = { kind: 'sparse', fraction: 0.25 };
    const [chunked, whole] = [await load(tied, false, train), await load(tied, true, train)];
    await expectSameBits(chunked, whole, lmBatch(4, 20, VOCAB), [0, 1].map((s) => params(s)));
  });

  it('an untied head (llama-tiny), one chunk', async () => {
    const model = join(FIXTURE_MODELS, 'llama-tiny');
    const [chunked, whole] = [await load(model, false), await load(model, true)];
    await expectSameBits(chunked, whole, lmBatch(4, 12, 128), [0, 1].map((s) => params(s)));
  });

  // Trainable tokens: the chosen rows are merged on their own (the lookup and the head's chunks
  // patched with each stream's rows) instead of into whole copies of the embedding and the head.
  const TOKENS = [5, 1500, 2400]; // in the first, second and last (partial) chunk
  /** Sequences that use the chosen tokens often, as inputs and as targets. */
  function tokensBatch(n: number, len: number) {
    let x = 99;
    const pool = [...TOKENS, 7, 300, 1200, 2000];
    const next = () => pool[(x = (x * 1103515245 + 12345) % 2 ** 31) % pool.length];
    return packBatch(
      Array.from({ length: n }, (_, i): TokenizedExample => ({
        kind: 'lm',
        label: -1,
        source: `t${i}`,
        sequences: [{ tokens: Array.from({ length: len }, next), scoreStart: 1, scoreEnd: len }],
      })),
    );
  }
  const tokensSpec = (tokens: number[]): NativeTrainSpec => ({ kind: 'tokens', tokens: Int32Array.from(tokens) });
  const sameAdapters = (a: NativeEngine, b: NativeEngine) => {
    for (const t of a.trainableTensors()) {
      const [x, y] = [a.getTensor(t.name), b.getTensor(t.name)];
      expect(x.every((v, i) => Object.is(v, y[i])), t.name).toBe(true);
    }
  };

  it('trainable tokens on a tied head: the same bits as whole merged copies, with no copy of the embedding', async () => {
    const [rows, whole] = [await load(tied, false, tokensSpec(TOKENS)), await load(tied, true, tokensSpec(TOKENS))];
    const b = tokensBatch(6, 24);
    await expectSameBits(rows, whole, b, [0, 1, 2].map((s) => params(s, { lr: 1 })));
    sameAdapters(rows, whole);
    // The rows moved (a test of the merge, not of two zero deltas).
    const delta = rows.getTensor(rows.trainableTensors()[0].name);
    expect(Math.max(...delta.map(Math.abs))).toBeGreaterThan(1e-3);
    // Whole: z and a working copy of the head's group (its norm, 32 floats, and the tied embedding,
    // 2,500 x 32). Merged rows: the head's chunks alone (two of 1,024 rows for each of two threads).
    expect(whole.info().tiers!.scratchBytes).toBe(4 * 2 * (32 + VOCAB * 32));
    expect(rows.info().tiers!.scratchBytes).toBe(4 * 2 * 2 * 1024 * 32);
    // FZOO: the clean stream and single probes.
    await expectSameBits(rows, whole, b, [3, 4].map((s) => params(s, { q: 3, estimator: 'fzoo', lr: 1 })));
    sameAdapters(rows, whole);
    // Decoding after training: the chosen tokens' logit columns come from their merged rows (a
    // product of their own, so within 1e-6 of the whole copy's, relative to the logit: a float32 dot
    // product of 32 terms rounded in another order; every other logit bit for bit).
    const prompts = [Int32Array.from([5, 300, 1500, 7]), Int32Array.from([2400, 5, 2000])];
    const [dr, dw] = [await rows.decodeBegin({ prompts, maxNewTokens: 1, logits: true }), await whole.decodeBegin({ prompts, maxNewTokens: 1, logits: true })];
    expect(dr.tokens).toEqual(dw.tokens);
    let worst = 0;
    for (let i = 0; i < dw.logits!.length; i++) {
      const d = Math.abs(dr.logits![i] - dw.logits![i]) / Math.max(1, Math.abs(dw.logits![i]));
      if (TOKENS.includes(i % VOCAB)) worst = Math.max(worst, d);
      else expect(Object.is(dr.logits![i], dw.logits![i]), `logit ${i}`).toBe(true);
    }
    expect(worst).toBeLessThan(1e-6);
  });

  it('trainable tokens on an untied head (llama-tiny: a delta for each)', async () => {
    const model = join(FIXTURE_MODELS, 'llama-tiny');
    const [rows, whole] = [await load(model, false, tokensSpec([5, 9, 17])), await load(model, true, tokensSpec([5, 9, 17]))];
    await expectSameBits(rows, whole, lmBatch(4, 12, 128), [0, 1].map((s) => params(s, { lr: 1 })));
    sameAdapters(rows, whole);
    expect(rows.trainableTensors()).toHaveLength(2);
  });

  it("the plan counts the chunks of as many threads as the run takes, as the engine allocates them", async () => {
    const { makePlan, plannerModel } = await import('../../electron/engine/planner.js');
    const info = await loadModelInfo(tied);
    const plan = (threads: number, set: 'full' | 'tokens') =>
      makePlan({ model: plannerModel(info), computeDevice: 'cpu', budgets: {}, masters: 'fp32', batchSize: 1, maxLength: 8, threads, trainable: { set, tokens: TOKENS.length }, rates: null });
    // The engine runs at most the cores present (the plan, made by planFor, the same).
    for (const threads of [1, 2].filter((t) => t <= availableParallelism())) {
      for (const set of ['full', 'tokens'] as const) {
        const e = new (loadNative().Engine)({ threads });
        opened.push(e);
        await e.load(engineSpec(info), undefined, set === 'tokens' ? tokensSpec(TOKENS) : undefined);
        await e.step(tokensBatch(2, 8), params(0, { q: 1 }));
        expect(e.info().tiers!.scratchBytes, `${set}, ${threads} threads`).toBe(plan(threads, set).breakdown.workingCopies);
      }
    }
    // Three chunks of the 2,500-row head: a third thread adds two more chunks, a fourth none.
    expect(plan(3, 'full').breakdown.workingCopies - plan(2, 'full').breakdown.workingCopies).toBe(4 * 2 * 1024 * 32);
    expect(plan(4, 'full').breakdown.workingCopies).toBe(plan(3, 'full').breakdown.workingCopies);
  });

  it('refuses a malformed SPILLWAY_HEAD_WHOLE, naming it', async () => {
    process.env.SPILLWAY_HEAD_WHOLE = 'yes';
    try {
      const engine = new (loadNative().Engine)({ threads: 1 });
      opened.push(engine);
      await expect(engine.load(engineSpec(await loadModelInfo(tied)))).rejects.toThrow(/SPILLWAY_HEAD_WHOLE=yes: expected 0 or 1/);
    } finally {
      delete process.env.SPILLWAY_HEAD_WHOLE;
    }
  });
});
