// Each family against the real transformers: tiny models made, saved and run by
// transformers itself (tests/reference/hf_tiny.py, in the venv), scored by
// the engine from the folder transformers wrote, against transformers' per-token
// log-probabilities in float32 and in float64; then fine-tuned by the engine
// (three MeZO steps), saved, and loaded back into transformers, which must give
// the engine's log-probabilities of the fine-tuned weights. The readable
// reference (models.py) is held to transformers' logits on the same models.
//
// Tolerances: log-probs within 2e-5 of either precision (the golden forward
// tests' bound: float32 through a whole forward, logits up to |10|); the
// reference's logits within 1e-4 x max(1, max |logit|).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { packBatch } from '../../electron/engine/batch.js';
import { readSideFiles, saveFineTuned } from '../../electron/engine/trainer.js';
import { loadEngine } from '../helpers/engine.js';
import { transformersJobs } from '../helpers/python.js';

const LOGPROB_ATOL = 2e-5;
const LOGIT_RTOL = 1e-4;

interface Case {
  name: string;
  folder: string;
  sequences: number[][];
  logprobs32: number[][];
  logprobs64: number[][];
  ref_logit_diff32: number;
  ref_logit_diff64: number;
  max_logit: number;
}

const lmBatch = (seqs: number[][]) =>
  packBatch(seqs.map((t) => ({ kind: 'lm' as const, label: -1, source: 'hf', sequences: [{ tokens: t, scoreStart: 1, scoreEnd: t.length }] })));

const worst = (a: ArrayLike<number>, b: number[]) => {
  expect(a.length).toBe(b.length);
  return Math.max(...b.map((x, i) => Math.abs(x - a[i])));
};

describe('model families against transformers', () => {
  const [cases] = transformersJobs([{ op: 'families', out: mkdtempSync(join(tmpdir(), 'spw-hf-')) }]) as Case[][];
  const figures: string[] = [];

  // Every family fine-tuned (three MeZO steps) and saved by the engine, then scored by
  // transformers in one run: the engine's log-probabilities of the tuned weights beside
  // transformers' of the saved folders.
  const tuned = new Map<string, { engine: number[]; hf: number[] }>();
  beforeAll(async () => {
    const saved = mkdtempSync(join(tmpdir(), 'spw-hf-saved-'));
    const jobs = [];
    for (const c of cases) {
      const engine = await loadEngine(c.folder);
      const batch = lmBatch(c.sequences);
      for (let step = 0; step < 3; step++) {
        // A small step: these weights give projected gradients up to ~100, and at lr 1e-2 three
        // steps would move every weight by ~1, leaving logits in the hundreds.
        await engine.step(batch, { seed: 17n, step, q: 1, lr: 1e-3, eps: 1e-3, weightDecay: 0, noise: 'gaussian' });
      }
      tuned.set(c.name, { engine: Array.from((await engine.score(batch)).tokenLogprobs), hf: [] });
      const out = join(saved, c.name);
      await saveFineTuned(engine, await readSideFiles(c.folder), out, { status: 'completed' }, []);
      engine.close();
      jobs.push({ op: 'saved', dir: out, sequences: c.sequences });
    }
    const hf = transformersJobs(jobs) as { tokens: number[][] }[];
    cases.forEach((c, i) => (tuned.get(c.name)!.hf = hf[i].tokens.flat()));
  }, 600_000);
  afterAll(() => console.info(`families against transformers ${'(max |d logit| reference vs transformers f32 / f64; max |d log p| engine vs f32 / f64)'}\n${figures.join('\n')}`));

  describe.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    it('the readable reference gives transformers\' logits (float32 and float64)', () => {
      const tol = LOGIT_RTOL * Math.max(1, c.max_logit);
      expect(c.ref_logit_diff32).toBeLessThan(tol);
      expect(c.ref_logit_diff64).toBeLessThan(tol);
    });

    it('the engine gives transformers\' log-probabilities (float32 and float64)', async () => {
      const engine = await loadEngine(c.folder);
      const r = await engine.score(lmBatch(c.sequences));
      engine.close();
      const d32 = worst(r.tokenLogprobs, c.logprobs32.flat());
      const d64 = worst(r.tokenLogprobs, c.logprobs64.flat());
      figures.push(
        `  ${c.name.padEnd(24)} logit ${c.ref_logit_diff32.toExponential(1)} / ${c.ref_logit_diff64.toExponential(1)} (max |logit| ${c.max_logit.toFixed(1)}); log p ${d32.toExponential(1)} / ${d64.toExponential(1)}`,
      );
      expect(d32).toBeLessThan(LOGPROB_ATOL);
      expect(d64).toBeLessThan(LOGPROB_ATOL);
    });

    it('fine-tuned and saved by the engine, loads into transformers with the same log-probabilities', () => {
      const t = tuned.get(c.name)!;
      expect(worst(t.engine, t.hf)).toBeLessThan(LOGPROB_ATOL);
      // The steps moved the weights: the comparison is of the fine-tuned model, not the original.
      expect(worst(t.engine, c.logprobs32.flat())).toBeGreaterThan(100 * LOGPROB_ATOL);
    });
  });
});
