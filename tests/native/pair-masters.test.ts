// On the CPU backend's own GEMM, a +eps/-eps pair's perturbed weights are made as the GEMM
// packs them (Backend::linear_pair_noisy for the block products up to 768 deep; the head's chunks in
// token_logprobs_noisy), from one draw of z, instead of being written into working copies first.
// Both ways must give the same bits: every loss, projected gradient and tensor after the steps is
// compared exactly (Object.is) against the same engine with SPILLWAY_CPU_PAIR_COPIES=1 and
// SPILLWAY_HEAD_WHOLE=1 (the copies, and the head perturbed whole: the path of every other backend).
// The model is OPT-shaped (biases on every product, a tied head) and wide enough for the own GEMM
// (128 wide, 512 deep in fc2: it takes a linear's products from 16 rows); where the CPU has no
// AVX-512F both engines run its AVX2 kernel, which has a pair path of its own. gemm_check holds the backend
// call itself to the copies' bits at edge shapes (pieces starting mid-tensor, refused shapes).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { makeOptModel } from '../../bench/make-model.js';
import { loadNative } from '../../electron/engine/native.js';
import type { NativeEngine, NativeStepParams } from '../../electron/engine/native.js';
import { engineSpec } from '../../electron/engine/spec.js';
import { loadModelInfo } from '../../electron/model/index.js';
import { expectSameBits, lmBatch } from '../helpers/same-bits.js';

const VOCAB = 2500;
const SHAPE = { vocab: VOCAB, hidden: 128, layers: 2, heads: 4, ffn: 512, maxPositions: 1024 };
let work = '';
let model = '';
const opened: NativeEngine[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-pair-masters-'));
  model = (await makeOptModel(join(work, 'opt'), SHAPE, 11)).dir;
});
afterAll(() => {
  for (const e of opened) e.close();
  rmSync(work, { recursive: true, force: true });
});

async function load(env: Record<string, string>, threads = 2): Promise<NativeEngine> {
  Object.assign(process.env, env);
  try {
    const engine = new (loadNative().Engine)({ threads });
    opened.push(engine);
    await engine.load(engineSpec(await loadModelInfo(model)));
    return engine;
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
  }
}

const params = (step: number, q = 2): NativeStepParams => ({ seed: 9n, step, q, lr: 1e-3, eps: 1e-2, weightDecay: 0, noise: 'gaussian' });

describe('a pair perturbed as the GEMM packs it', () => {
  it('MeZO, two pairs a step, more scored rows than one block of the head (1,197): the bits of the copies', async () => {
    const [fused, copies] = [await load({}), await load({ SPILLWAY_CPU_PAIR_COPIES: '1', SPILLWAY_HEAD_WHOLE: '1' })];
    await expectSameBits(fused, copies, lmBatch(3, 400, VOCAB), [0, 1].map((s) => params(s)));
  }, 120_000);

  it('one block of head rows (598), two pairs: the same bits', async () => {
    const [fused, copies] = [await load({}), await load({ SPILLWAY_CPU_PAIR_COPIES: '1', SPILLWAY_HEAD_WHOLE: '1' })];
    await expectSameBits(fused, copies, lmBatch(2, 300, VOCAB), [0, 1].map((s) => params(s)));
  }, 120_000);

  it("the same bits on 1 and 3 threads (the bands of the pairs' products, and the head's last chunks split by rows among the threads)", async () => {
    const [one, three] = [await load({}, 1), await load({}, 3)];
    await expectSameBits(one, three, lmBatch(2, 300, VOCAB), [0, 1].map((s) => params(s)));
  }, 120_000);

  it("a head block under the own GEMM's 16 rows (1,030 scored: 1,024 + 6) keeps the copies there, the same bits", async () => {
    const [fused, copies] = [await load({}), await load({ SPILLWAY_CPU_PAIR_COPIES: '1', SPILLWAY_HEAD_WHOLE: '1' })];
    await expectSameBits(fused, copies, lmBatch(2, 516, VOCAB), [params(0, 1)]);
  }, 120_000);

  it('refuses a malformed SPILLWAY_CPU_PAIR_COPIES, naming it', async () => {
    process.env.SPILLWAY_CPU_PAIR_COPIES = 'on';
    try {
      const engine = new (loadNative().Engine)({ threads: 1 });
      opened.push(engine);
      await expect(engine.load(engineSpec(await loadModelInfo(model)))).rejects.toThrow(/SPILLWAY_CPU_PAIR_COPIES=on: expected 0 or 1/);
    } finally {
      delete process.env.SPILLWAY_CPU_PAIR_COPIES;
    }
  });
});
