// On the CPU backend's own AVX-512 GEMM, a +eps/-eps pair's perturbed weights are made as the GEMM
// packs them (Backend::linear_pair_noisy for the block products up to 768 deep; the head's chunks in
// token_logprobs_noisy), from one draw of z, instead of being written into working copies first.
// Both ways must give the same bits: every loss, projected gradient and tensor after the steps is
// compared exactly (Object.is) against the same engine with SPILLWAY_CPU_PAIR_COPIES=1 and
// SPILLWAY_HEAD_WHOLE=1 (the copies, and the head perturbed whole: the path of every other backend).
// The model is OPT-shaped (biases on every product, a tied head) and wide enough for the own GEMM
// (128 wide, 512 deep in fc2: it takes 16 rows or more, 128 deep or more); where the CPU has no
// AVX-512F both engines run OpenBLAS and the comparison still holds. gemm_check holds the backend
// call itself to the copies' bits at edge shapes (pieces starting mid-tensor, refused shapes).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { makeOptModel } from '../../bench/make-model.js';
import { packBatch } from '../../electron/engine/batch.js';
import { loadNative } from '../../electron/engine/native.js';
import type { NativeEngine, NativeStepParams } from '../../electron/engine/native.js';
import { engineSpec } from '../../electron/engine/spec.js';
import type { TokenizedExample } from '../../electron/data/types.js';
import { loadModelInfo } from '../../electron/model/index.js';

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

/** `n` LM examples of `len` tokens, all but the first scored. */
function batch(n: number, len: number) {
  let x = 991;
  const next = () => (x = (x * 1103515245 + 12345) % 2 ** 31) % VOCAB;
  const examples: TokenizedExample[] = Array.from({ length: n }, (_, i) => ({
    kind: 'lm',
    label: -1,
    source: `ex${i}`,
    sequences: [{ tokens: Array.from({ length: len }, next), scoreStart: 1, scoreEnd: len }],
  }));
  return packBatch(examples);
}

const params = (step: number, q = 2): NativeStepParams => ({ seed: 9n, step, q, lr: 1e-3, eps: 1e-2, weightDecay: 0, noise: 'gaussian' });

async function sameBits(fused: NativeEngine, copies: NativeEngine, b: ReturnType<typeof batch>, steps: NativeStepParams[]) {
  for (const p of steps) {
    const [f, c] = [await fused.step(b, p), await copies.step(b, p)];
    expect(f.skipped).toBe(false);
    for (const key of ['lossPlus', 'lossMinus', 'projectedGrad'] as const)
      expect(f[key].every((v, i) => Object.is(v, c[key][i])), `${key} of step ${p.step}: ${f[key]} vs ${c[key]}`).toBe(true);
  }
  for (const t of fused.tensorNames()) {
    const a = fused.getTensor(t.name);
    const z = copies.getTensor(t.name);
    expect(a.every((v, i) => Object.is(v, z[i])), t.name).toBe(true);
  }
}

describe('a pair perturbed as the GEMM packs it', () => {
  it('MeZO, two pairs a step, more scored rows than one block of the head (1,197): the bits of the copies', async () => {
    const [fused, copies] = [await load({}), await load({ SPILLWAY_CPU_PAIR_COPIES: '1', SPILLWAY_HEAD_WHOLE: '1' })];
    await sameBits(fused, copies, batch(3, 400), [0, 1].map((s) => params(s)));
  }, 120_000);

  it('one block of head rows (598), two pairs: the same bits', async () => {
    const [fused, copies] = [await load({}), await load({ SPILLWAY_CPU_PAIR_COPIES: '1', SPILLWAY_HEAD_WHOLE: '1' })];
    await sameBits(fused, copies, batch(2, 300), [0, 1].map((s) => params(s)));
  }, 120_000);

  it("the same bits on 1 and 3 threads (the bands of the pairs' products, and the head's last chunks split by rows among the threads)", async () => {
    const [one, three] = [await load({}, 1), await load({}, 3)];
    await sameBits(one, three, batch(2, 300), [0, 1].map((s) => params(s)));
  }, 120_000);

  it("a head block under the own GEMM's 16 rows (1,030 scored: 1,024 + 6) keeps the copies there, the same bits", async () => {
    const [fused, copies] = [await load({}), await load({ SPILLWAY_CPU_PAIR_COPIES: '1', SPILLWAY_HEAD_WHOLE: '1' })];
    await sameBits(fused, copies, batch(2, 516), [params(0, 1)]);
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
