// The CPU engine's forward pass against the PyTorch reference (tests/reference/models.py,
// checked against transformers itself). Tolerances: per-token log-probabilities within
// 2e-5 (observed <= 3e-6; float32 with logits up to |15|), example losses and candidate
// scores within 1e-5, and identical arg-max decisions.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { packBatch } from '../../electron/engine/batch.js';
import { FIXTURE_MODELS, GOLDEN, loadEngine, readJson, toExamples } from '../helpers/engine.js';
import type { GoldenExample } from '../helpers/engine.js';

interface ForwardGolden {
  magic: string;
  version: number;
  vocab_size: number;
  sequences: number[][];
  logits: number[][];
  examples: {
    batch: GoldenExample[];
    per_example: { loss: number; correct: boolean | null; scores: number[] | null }[];
    batch_loss: number;
  };
}

const MODELS = ['opt-tiny', 'gpt2-tiny', 'llama-tiny', 'llama-tiny-sharded', 'mistral-tiny', 'qwen2-tiny', 'qwen2-window-tiny', 'ministral-tiny',
  'gptneox-tiny', 'gptneox-seq-tiny', 'olmo2-tiny', 'opt350m-tiny',
  'gemma2-tiny', 'gemma3-tiny'];

function logSoftmaxAt(row: number[], target: number): number {
  const mx = Math.max(...row);
  let s = 0;
  for (const v of row) s += Math.exp(v - mx);
  return row[target] - mx - Math.log(s);
}

describe.each(MODELS)('forward pass of %s against the PyTorch reference', (name) => {
  const golden = readJson<ForwardGolden>(join(GOLDEN, `${name}.json`));

  it('has a golden file of the expected version', () => {
    expect(golden.magic).toBe('spillway-golden');
    expect(golden.version).toBe(1);
  });

  it('gives every token the reference log-probability', async () => {
    const engine = await loadEngine(join(FIXTURE_MODELS, name));
    const examples = golden.sequences.map((s) => ({
      kind: 'lm' as const,
      label: -1,
      source: 'golden',
      sequences: [{ tokens: s, scoreStart: 1, scoreEnd: s.length }],
    }));
    const r = await engine.score(packBatch(examples));
    const V = golden.vocab_size;
    let k = 0;
    let worst = 0;
    golden.sequences.forEach((seq, si) => {
      for (let p = 1; p < seq.length; p++) {
        const row = golden.logits[si].slice((p - 1) * V, p * V);
        worst = Math.max(worst, Math.abs(logSoftmaxAt(row, seq[p]) - r.tokenLogprobs[k++]));
      }
    });
    expect(k).toBe(r.tokenLogprobs.length);
    expect(worst).toBeLessThan(2e-5);
  });

  it('gives the reference losses for lm, completion and classify examples', async () => {
    const engine = await loadEngine(join(FIXTURE_MODELS, name));
    const r = await engine.score(packBatch(toExamples(golden.examples.batch)));
    golden.examples.per_example.forEach((ref, i) => {
      expect(Math.abs(r.exampleLoss[i] - ref.loss)).toBeLessThan(1e-5);
      expect(r.correct[i]).toBe(ref.correct === null ? -1 : ref.correct ? 1 : 0);
    });
    const refScores = golden.examples.per_example.flatMap((e) => e.scores ?? []);
    const classifySeqs = golden.examples.batch.flatMap((b, i) => (b.kind === 'classify' ? (b.candidates ?? []).map(() => i) : []));
    expect(classifySeqs.length).toBe(refScores.length);
    let seq = 0;
    const engineScores: number[] = [];
    golden.examples.batch.forEach((b) => {
      const n = b.kind === 'classify' ? (b.candidates ?? []).length : 1;
      if (b.kind === 'classify') engineScores.push(...r.candidateScores.slice(seq, seq + n));
      seq += n;
    });
    engineScores.forEach((s, i) => expect(Math.abs(s - refScores[i])).toBeLessThan(1e-5));
    expect(Math.abs(r.loss - golden.examples.batch_loss)).toBeLessThan(1e-5);
  });
});
