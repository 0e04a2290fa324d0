// Save -> load: the fine-tuned folder loads back into the engine with identical
// scores, carries the seed log, and loads into the independent PyTorch
// reference (tests/reference/models.py, faithful to transformers) with the same
// log-probabilities (float32 tolerance 2e-5).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { packBatch } from '../../electron/engine/batch.js';
import { readSideFiles, saveFineTuned } from '../../electron/engine/trainer.js';
import type { SeedLogEntry } from '../../electron/engine/trainer.js';
import { FIXTURE_MODELS, GOLDEN, ROOT, loadEngine, readJson, toExamples } from '../helpers/engine.js';
import type { GoldenExample } from '../helpers/engine.js';
import { debianPythonWith } from '../helpers/python.js';


describe.each(['opt-tiny', 'gpt2-tiny', 'qwen2-tiny', 'gptneox-tiny', 'olmo2-tiny', 'opt350m-tiny', 'gemma2-tiny', 'gemma3-tiny'])('saving a fine-tuned %s', (name) => {
  const golden = readJson<{ sequences: number[][]; examples: { batch: GoldenExample[] } }>(join(GOLDEN, `${name}.json`));
  const batch = packBatch(toExamples(golden.examples.batch));
  const lmBatch = packBatch(golden.sequences.map((s) => ({ kind: 'lm' as const, label: -1, source: 'seq', sequences: [{ tokens: s, scoreStart: 1, scoreEnd: s.length }] })));

  it('writes a folder that loads back with identical scores and a seed log', async () => {
    const src = join(FIXTURE_MODELS, name);
    const engine = await loadEngine(src);
    const log: SeedLogEntry[] = [];
    for (let step = 0; step < 3; step++) {
      const r = await engine.step(batch, { seed: 3n, step, q: 1, lr: 1e-2, eps: 1e-3, weightDecay: 0, noise: 'gaussian' });
      log.push({ step, seed: r.seeds[0].toString(), coef: 1e-2 * r.projectedGrad[0], projected_grad: r.projectedGrad[0], lr: 1e-2, skipped: r.skipped });
    }
    const out = join(mkdtempSync(join(tmpdir(), 'spw-save-')), 'tuned');
    await saveFineTuned(engine, await readSideFiles(src), out, { status: 'completed' }, log);

    expect(readdirSync(out).sort()).toEqual(['config.json', 'manifest.json', 'model.safetensors', 'seedlog.jsonl', 'spillway.json']);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config.torch_dtype).toBe('float32');
    const lines = readFileSync(join(out, 'seedlog.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as SeedLogEntry);
    expect(lines.map((l) => l.seed)).toEqual(log.map((l) => l.seed));

    const reloaded = await loadEngine(out);
    const a = await engine.score(lmBatch);
    const b = await reloaded.score(lmBatch);
    expect(Array.from(b.tokenLogprobs)).toEqual(Array.from(a.tokenLogprobs));
    const original = await (await loadEngine(src)).score(lmBatch);
    expect(Array.from(original.tokenLogprobs)).not.toEqual(Array.from(a.tokenLogprobs));

    const script = `
import json, sys
sys.path.insert(0, ${JSON.stringify(join(ROOT, 'tests', 'reference'))})
import torch, models
cfg, params = models.load_model(sys.argv[1])
out = []
for s in json.loads(sys.argv[2]):
    lp = torch.log_softmax(models.forward(cfg, params, s), dim=-1)
    out += [float(lp[p - 1, s[p]]) for p in range(1, len(s))]
print(json.dumps(out))`;
    const ref = JSON.parse(
      execFileSync(debianPythonWith('torch'), ['-c', script, out, JSON.stringify(golden.sequences)], { env: { ...process.env, OPENBLAS_NUM_THREADS: '1' } }).toString(),
    ) as number[];
    expect(ref.length).toBe(a.tokenLogprobs.length);
    ref.forEach((v, i) => expect(Math.abs(v - a.tokenLogprobs[i])).toBeLessThan(2e-5));
  });
});
