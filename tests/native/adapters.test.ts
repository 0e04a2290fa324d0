// LoRA, LoLDU and trainable tokens against the real peft and transformers
// (tests/reference/peft_reference.py, in the venv): one MeZO step of a LoRA, and of trainable token
// rows, against the same step on the model peft builds (losses at +eps z and -eps z, the projected
// gradient, the updated A and B or rows' delta); the LoLDU factors against
// torch.linalg.lu; and a saved adapter (adapter_config.json + adapter_model.safetensors) loaded by
// PeftModel.from_pretrained, and the merged folder by AutoModelForCausalLM alone, giving the
// engine's token log-probs.
// Tolerances: losses within 1e-5 (float32 forwards of two implementations); the projected gradient
// within 1e-5 / eps; updated adapters within 1e-6 plus lr times that gradient error; LU factors
// within 1e-5 (the engine keeps them in float32); log-probs within 5e-5: the golden forward tests'
// 2e-5, widened because the adapted weight is rounded differently on each side (the engine merges
// W + B A once into float32; peft computes W x + B (A x)), and the trained deltas here are large.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { peftLora, peftTokens } from '../../electron/engine/adapters.js';
import { packBatch } from '../../electron/engine/batch.js';
import { loadNative } from '../../electron/engine/native.js';
import type { NativeEngine, NativeTrainSpec } from '../../electron/engine/native.js';
import { engineSpec } from '../../electron/engine/spec.js';
import { readSideFiles, saveRun } from '../../electron/engine/trainer.js';
import type { TokenizedExample } from '../../electron/data/types.js';
import { loadModelInfo } from '../../electron/model/index.js';
import { FIXTURE_MODELS, ROOT, maxAbsDiff } from '../helpers/engine.js';
import { venvPython } from '../helpers/python.js';

const native = loadNative();
const tmp = mkdtempSync(join(tmpdir(), 'spillway-adapters-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function reference<T>(jobs: unknown[]): T[] {
  const out = execFileSync(venvPython(), [join(ROOT, 'tests', 'reference', 'peft_reference.py')], {
    input: JSON.stringify(jobs),
    env: { ...process.env, OMP_NUM_THREADS: '1' },
    timeout: 300_000,
    maxBuffer: 64 << 20,
  });
  return JSON.parse(out.toString()) as T[];
}

async function load(model: string, train: NativeTrainSpec): Promise<NativeEngine> {
  const engine = new native.Engine({ threads: 2 });
  await engine.load(engineSpec(await loadModelInfo(model)), undefined, train);
  return engine;
}

/** Fixed pseudo-random token sequences (vocabulary 128). */
function sequences(n: number, length: number, seed: number): number[][] {
  let x = seed;
  const next = () => (x = (x * 1103515245 + 12345) % 2 ** 31) % 128;
  return Array.from({ length: n }, () => Array.from({ length }, next));
}

const lmBatch = (seqs: number[][], span: [number, number]) =>
  packBatch(seqs.map((tokens, i): TokenizedExample => ({ kind: 'lm', label: -1, source: `ex${i}`, sequences: [{ tokens, scoreStart: span[0], scoreEnd: span[1] }] })));

/** The engine's log p(token t | tokens < t), t = 1 .. T-1, one single-token example each. */
async function engineLogprobs(engine: NativeEngine, seq: number[]): Promise<number[]> {
  const examples: TokenizedExample[] = seq.slice(1).map((_, i) => ({ kind: 'lm', label: -1, source: `t${i + 1}`, sequences: [{ tokens: seq.slice(0, i + 2), scoreStart: i + 1, scoreEnd: i + 2 }] }));
  return (await engine.score(packBatch(examples))).exampleLoss.map((l) => -l);
}

interface StepRef {
  loss_plus: number;
  loss_minus: number;
  projected_grad: number;
  updated: Record<string, number[]>;
}

/**
 * Step 2 of a run (two steps first, so that every trained tensor already moved) against the same
 * step in the reference: `job` names the reference's kind and its own fields.
 */
async function stepAgainstReference(engine: NativeEngine, seqs: number[][], span: [number, number], job: Record<string, unknown>) {
  const train = lmBatch(seqs, span);
  const lr = 0.05;
  const eps = 1e-2;
  for (let step = 0; step < 2; step++) await engine.step(train, { seed: 21n, step, q: 1, lr, eps, weightDecay: 0, noise: 'gaussian' });
  const names = engine.trainableTensors().filter((t) => !t.frozen).map((t) => t.name);
  const before = Object.fromEntries(names.map((n) => [n, Array.from(engine.getTensor(n))]));
  const step = 2;
  const seed = native.stepSeed(21n, step, 0);
  const noise = Object.fromEntries(names.map((n) => [n, Array.from(native.noise({ seed, id: native.fnv1a32(n), start: 0, count: before[n].length, kind: 'gaussian' }))]));
  const r = await engine.step(train, { seed: 21n, step, q: 1, lr, eps, weightDecay: 0, noise: 'gaussian' });
  const [ref] = reference<StepRef>([{ ...job, lr, eps, adapter: before, noise, batch: seqs.map((tokens) => ({ tokens, span })) }]);
  expect(r.seeds).toEqual([seed]);
  expect(Math.abs(r.lossPlus[0] - ref.loss_plus)).toBeLessThan(1e-5);
  expect(Math.abs(r.lossMinus[0] - ref.loss_minus)).toBeLessThan(1e-5);
  // The step moves the loss by far more than the tolerance: the comparison has something to see.
  expect(Math.abs(ref.loss_plus - ref.loss_minus)).toBeGreaterThan(1e-3);
  const gTol = 1e-5 / eps;
  expect(Math.abs(r.projectedGrad[0] - ref.projected_grad)).toBeLessThan(gTol);
  for (const n of names) {
    expect(maxAbsDiff(before[n], ref.updated[n]), n).toBeGreaterThan(1e-4);
    expect(maxAbsDiff(engine.getTensor(n), ref.updated[n]), n).toBeLessThan(1e-6 + lr * gTol * 6);
  }
}

describe.each(['llama-tiny', 'qwen2-tiny'])('adapters on %s against peft', (name) => {
  const model = join(FIXTURE_MODELS, name);

  it('a MeZO step of a LoRA: losses, projected gradient, updated A and B', async () => {
    const rank = 4;
    const alpha = 8;
    const engine = await load(model, { kind: 'lora', rank, alpha, targets: ['q', 'v'], seed: 9 });
    await stepAgainstReference(engine, sequences(4, 10, 77), [4, 10], { kind: 'lora_step', model, rank, alpha, targets: ['q_proj', 'v_proj'] });
    engine.close();
  });

  it('a MeZO step of trainable tokens: losses, projected gradient, updated rows', async () => {
    const rows = [5, 9, 17];
    const engine = await load(model, { kind: 'tokens', tokens: Int32Array.from(rows) });
    const tied = name === 'qwen2-tiny';
    // One delta for the embedding, and one for an untied head.
    expect(engine.trainableTensors().map((t) => t.name)).toEqual(
      tied ? ['base_model.model.model.embed_tokens.token_rows_delta'] : ['base_model.model.model.embed_tokens.token_rows_delta', 'base_model.model.lm_head.token_rows_delta'],
    );
    expect(engine.trainableTensors()[0].rows).toEqual(rows);
    // The sequences hold the trained rows (the embedding's side moves too), and the span scores them.
    const seqs = sequences(4, 10, 77).map((s, i) => s.map((t, k) => (k % 3 === i % 3 ? rows[k % rows.length] : t)));
    await stepAgainstReference(engine, seqs, [4, 10], { kind: 'tokens_step', model, modules: tied ? ['model.embed_tokens'] : ['model.embed_tokens', 'lm_head'], rows });
    engine.close();
  });

  it.each(['lora', 'loldu', 'tokens'] as const)('a saved %s adapter loads into peft, and the merged folder into transformers, with the engine\'s log-probs', async (kind) => {
    const spec: NativeTrainSpec =
      kind === 'lora' ? { kind, rank: 4, alpha: 8, targets: ['q', 'v', 'o'], seed: 2 } : kind === 'loldu' ? { kind, rank: 4, targets: ['q', 'v'] } : { kind, tokens: Int32Array.from([7, 3]) };
    const engine = await load(model, spec);
    const train = lmBatch(sequences(4, 10, 5), [2, 10]);
    for (let step = 0; step < 4; step++) await engine.step(train, { seed: 3n, step, q: 1, lr: kind === 'lora' ? 0.05 : kind === 'loldu' ? 0.5 : 5, eps: 1e-2, weightDecay: 0, noise: 'gaussian' });
    const out = join(tmp, `${name}-${kind}`);
    const o = { trainable: kind, rank: 4, loraAlpha: 8, merge: true };
    await saveRun(engine, await readSideFiles(model), out, {}, [], o);
    const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    if (kind === 'tokens') {
      expect(config).toMatchObject({ peft_type: 'TRAINABLE_TOKENS', token_indices: [7, 3], target_modules: name === 'qwen2-tiny' ? ['embed_tokens'] : ['embed_tokens', 'lm_head'] });
      // The rows moved: peft's rows (base + delta) differ from the base's.
      const t = peftTokens(engine);
      const delta = engine.getTensor(engine.trainableTensors()[0].name);
      expect(t.tokens).toEqual([7, 3]);
      expect(Math.max(...delta.map(Math.abs))).toBeGreaterThan(1e-3);
    } else {
      expect(config).toMatchObject({ peft_type: 'LORA', r: 4, task_type: 'CAUSAL_LM', lora_alpha: kind === 'lora' ? 8 : 4 });
      // The adapter is not the identity: it changes the base's log-probs by more than the tolerance.
      expect(Math.max(...peftLora(engine, o).matrices.map((m) => Math.max(...m.b.map(Math.abs))))).toBeGreaterThan(1e-3);
    }
    // Each holds the trained rows of the tokens case (what its embedding side moves).
    const seqs = sequences(3, 12, 31).map((q) => q.map((t, k) => (k === 2 ? 7 : k === 5 ? 3 : t)));
    const [base, adapted, merged] = reference<number[][]>([
      { kind: 'logprobs', model, adapter: null, sequences: seqs },
      { kind: 'logprobs', model, adapter: out, sequences: seqs },
      { kind: 'logprobs', model: join(out, 'merged'), adapter: null, sequences: seqs },
    ]);
    for (const [i, seq] of seqs.entries()) {
      const mine = await engineLogprobs(engine, seq);
      expect(maxAbsDiff(mine, adapted[i])).toBeLessThan(5e-5);
      expect(maxAbsDiff(mine, merged[i])).toBeLessThan(5e-5);
      expect(maxAbsDiff(adapted[i], base[i])).toBeGreaterThan(1e-3);
    }
    engine.close();
  });
});

describe('LoLDU factors', () => {
  it('are the first r steps of LU with partial pivoting, as torch.linalg.lu gives them', async () => {
    const model = join(FIXTURE_MODELS, 'llama-tiny');
    const full = await load(model, { kind: 'full' });
    const engine = await load(model, { kind: 'loldu', rank: 6, targets: ['q', 'v'] });
    const jobs = [];
    const mine = [];
    for (const m of ['model.layers.0.self_attn.q_proj', 'model.layers.1.self_attn.v_proj']) {
      const w = full.getTensor(`${m}.weight`);
      const shape = full.tensorNames().find((t) => t.name === `${m}.weight`)!.shape;
      jobs.push({ kind: 'lu', rank: 6, matrix: Array.from({ length: shape[0] }, (_, i) => Array.from(w.subarray(i * shape[1], (i + 1) * shape[1]))) });
      mine.push({ pl: engine.getTensor(`${m}.loldu_PL`), d: engine.getTensor(`${m}.loldu_neg_D`).map((x) => -x), u: engine.getTensor(`${m}.loldu_U`) });
    }
    const refs = reference<{ pl: number[][]; d: number[]; u: number[][] }>(jobs);
    refs.forEach((ref, i) => {
      expect(maxAbsDiff(mine[i].pl, ref.pl.flat())).toBeLessThan(1e-5);
      expect(maxAbsDiff(mine[i].d, ref.d)).toBeLessThan(1e-5);
      expect(maxAbsDiff(mine[i].u, ref.u.flat())).toBeLessThan(1e-5);
    });
    full.close();
    engine.close();
  });
});
