// Makes fine-tuned folders with the engine (a few MeZO steps on each fixture
// model and on the demo), and records the engine's log-probabilities of some
// token sequences under the fine-tuned weights, so that
// check_saved_with_transformers.py can load each folder with the real
// `transformers` and compare. Usage (after npm run build):
//   node tests/reference/save_for_transformers.mjs OUT_DIR
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(new URL('../..', import.meta.url).pathname);
const { loadModelInfo } = await import(join(root, 'dist/electron/model/index.js'));
const { engineSpec } = await import(join(root, 'dist/electron/engine/spec.js'));
const { packBatch } = await import(join(root, 'dist/electron/engine/batch.js'));
const { loadNative } = await import(join(root, 'dist/electron/engine/native.js'));
const { readSideFiles, saveFineTuned } = await import(join(root, 'dist/electron/engine/trainer.js'));

const out = resolve(process.argv[2] ?? '.spillway-tmp/saved');
mkdirSync(out, { recursive: true });
const models = ['opt-tiny', 'gpt2-tiny', 'llama-tiny', 'mistral-tiny', 'qwen2-tiny'].map((n) => [n, join(root, 'tests/fixtures/models', n)]);
models.push(['spillway-demo', join(root, 'resources/models/spillway-demo')]);
const manifest = [];
for (const [name, dir] of models) {
  const info = await loadModelInfo(dir);
  const V = info.config.vocabSize;
  const seqs = [[1, 5, 9, 14, 3, 7, 11], [2, 8, 6, 4, 12, 10, 13, 15, 5, 3]].map((s) => s.map((t) => t % V));
  const batch = packBatch(seqs.map((s) => ({ kind: 'lm', label: -1, source: name, sequences: [{ tokens: s, scoreStart: 1, scoreEnd: s.length }] })));
  const engine = new (loadNative().Engine)({ threads: 2 });
  await engine.load(engineSpec(info));
  for (let step = 0; step < 3; step++) {
    await engine.step(batch, { seed: 11n, step, q: 1, lr: 1e-2, eps: 1e-3, weightDecay: 0, noise: 'gaussian' });
  }
  const r = await engine.score(batch);
  const folder = join(out, name);
  await saveFineTuned(engine, await readSideFiles(dir), folder, { status: 'completed' }, []);
  manifest.push({ name, folder: name, sequences: seqs, logprobs: Array.from(r.tokenLogprobs) });
}
writeFileSync(join(out, 'manifest.json'), JSON.stringify(manifest));
console.log(`wrote ${manifest.length} fine-tuned folders to ${out}`);
