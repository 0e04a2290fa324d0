// The forward pass of each fixture model against its PyTorch golden file (tests/fixtures/golden, made
// by tests/reference/make_fixtures.py), on one device and GEMM precision, with the tolerances of
// tests/native/forward-golden.test.ts: every token's log-probability within 2e-5, example losses
// within 1e-5, the same classification decisions. On a GPU this decides whether a reduced-precision
// GEMM mode (--gemm tf32) meets the golden tolerances, and so may be the GPU's default.
//   node native/tests/golden_compare.mjs ADDON.node SPECS.json [cuda|cpu] [fp32|tf32|bf16]
// (SPECS.json from `node native/tests/zo_step_compare.mjs make-specs`); exit status 1 when a tolerance is exceeded.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const TOL_LOGPROB = 2e-5;
const TOL_LOSS = 1e-5;
const [addonPath, specsPath, device = 'cuda', gemm = 'fp32'] = process.argv.slice(2);
const addon = createRequire(import.meta.url)(resolve(addonPath));
const specs = JSON.parse(readFileSync(specsPath, 'utf8'));
const root = process.cwd();
const MODELS = ['opt-tiny', 'gpt2-tiny', 'llama-tiny', 'llama-tiny-sharded', 'mistral-tiny', 'qwen2-tiny'];

function pack(seqs) {
  const tokens = [], seqStart = [0], scoreStart = [], scoreEnd = [], exampleStart = [0], exampleKind = [], label = [];
  for (const s of seqs) {
    for (const c of s.sequences) {
      tokens.push(...c.tokens);
      seqStart.push(tokens.length);
      scoreStart.push(c.scoreStart);
      scoreEnd.push(c.scoreEnd);
    }
    exampleStart.push(seqStart.length - 1);
    exampleKind.push(s.kind);
    label.push(s.label);
  }
  const i32 = (a) => Int32Array.from(a);
  return { tokens: i32(tokens), seqStart: i32(seqStart), scoreStart: i32(scoreStart), scoreEnd: i32(scoreEnd), exampleStart: i32(exampleStart), exampleKind: i32(exampleKind), label: i32(label) };
}

// The reference's example forms as the engine's kinds: 1 classify, 0 the others (lm, completion: scored spans).
function examples(batch) {
  return batch.map((b) =>
    b.kind === 'classify'
      ? { kind: 1, label: b.label ?? -1, sequences: b.candidates.map((c) => ({ tokens: c.tokens, scoreStart: c.span[0], scoreEnd: c.span[1] })) }
      : { kind: 0, label: -1, sequences: [{ tokens: b.tokens, scoreStart: b.span[0], scoreEnd: b.span[1] }] },
  );
}

function logSoftmaxAt(row, target) {
  let mx = -Infinity;
  for (const v of row) mx = Math.max(mx, v);
  let s = 0;
  for (const v of row) s += Math.exp(v - mx);
  return row[target] - mx - Math.log(s);
}

let ok = true;
let backend = '';
for (const name of MODELS) {
  const spec = specs[name];
  for (const u of spec.units) for (const t of Object.values(u.tensors)) t.file = resolve(root, t.file);
  const golden = JSON.parse(readFileSync(resolve(root, 'tests/fixtures/golden', `${name}.json`), 'utf8'));
  const e = new addon.Engine({ threads: 4, device, gemm });
  await e.load(spec);
  backend = e.info().backend;
  const lm = await e.score(pack(golden.sequences.map((s) => ({ kind: 0, label: -1, sequences: [{ tokens: s, scoreStart: 1, scoreEnd: s.length }] }))));
  const V = golden.vocab_size;
  let k = 0;
  let worst = 0;
  golden.sequences.forEach((seq, si) => {
    for (let p = 1; p < seq.length; p++) worst = Math.max(worst, Math.abs(logSoftmaxAt(golden.logits[si].slice((p - 1) * V, p * V), seq[p]) - lm.tokenLogprobs[k++]));
  });
  const ex = await e.score(pack(examples(golden.examples.batch)));
  e.close();
  let lossErr = 0;
  let decisions = true;
  golden.examples.per_example.forEach((ref, i) => {
    lossErr = Math.max(lossErr, Math.abs(ex.exampleLoss[i] - ref.loss));
    decisions &&= ex.correct[i] === (ref.correct === null ? -1 : ref.correct ? 1 : 0);
  });
  const pass = worst <= TOL_LOGPROB && lossErr <= TOL_LOSS && decisions && k === lm.tokenLogprobs.length;
  ok &&= pass;
  console.log(`${name.padEnd(20)} ${pass ? 'PASS' : 'FAIL'}  max |d log p| ${worst.toExponential(2)} (tol ${TOL_LOGPROB})  max |d loss| ${lossErr.toExponential(2)} (tol ${TOL_LOSS})  decisions ${decisions ? 'same' : 'DIFFER'}`);
}
console.log(`golden_compare ${device} gemm ${gemm} (${backend}): ${ok ? 'PASS' : 'FAIL'}`);
process.exit(ok ? 0 : 1);
