// RoPE in one place (native/src/arch/rope.cpp): for every scaling transformers
// defines, the engine's inverse frequencies and cos/sin scale against
// transformers' own ROPE_INIT_FUNCTIONS (tests/reference/rope_tables.py, in the
// venv), through the config parsing of electron/model/arch/rope.ts. Partial
// rotary (rotary dims < head dim) and both config forms (transformers 5's
// rope_parameters, transformers 4's rope_theta + rope_scaling with `type`).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { packBatch } from '../../electron/engine/batch.js';
import { loadNative } from '../../electron/engine/native.js';
import { engineSpec } from '../../electron/engine/spec.js';
import { ConfigFields } from '../../electron/model/arch/fields.js';
import { ropeOf } from '../../electron/model/arch/rope.js';
import { ModelError } from '../../electron/model/errors.js';
import { loadModelInfo } from '../../electron/model/index.js';
import type { RopeSpec } from '../../electron/model/types.js';
import { FIXTURE_MODELS, ROOT } from '../helpers/engine.js';
import { venvPython } from '../helpers/python.js';

// float32 frequencies from libm's powf here and torch's vectorised pow there differ by up to an
// ulp or two (1.4 seen): 5e-7 relative is ~4 ulps, far below what any scaling changes.
const FREQ_RTOL = 5e-7;
// The engine keeps the scale in float32; transformers computes it in float64.
const SCALE_RTOL = 1e-7;
// Token log-probs of a whole forward against transformers, as the golden forward tests allow.
const LOGPROB_ATOL = 2e-5;

interface Case {
  name: string;
  rope_parameters: Record<string, unknown>;
  head_dim: number;
  max_position_embeddings: number;
  seq_len: number;
}

// Phi-3-like longrope factors: distinct per pair so a shuffled or misaligned list shows.
const factors = (n: number, base: number) => Array.from({ length: n }, (_, i) => base + 0.37 * i + 0.01 * (i % 3));

const CASES: Case[] = [
  { name: 'default', rope_parameters: { rope_type: 'default', rope_theta: 10000 }, head_dim: 64, max_position_embeddings: 2048, seq_len: 16 },
  { name: 'default, theta 5e5, head 128', rope_parameters: { rope_type: 'default', rope_theta: 500000 }, head_dim: 128, max_position_embeddings: 8192, seq_len: 16 },
  { name: 'default, partial rotary 0.5', rope_parameters: { rope_type: 'default', rope_theta: 10000, partial_rotary_factor: 0.5 }, head_dim: 64, max_position_embeddings: 2048, seq_len: 16 },
  { name: 'linear x4', rope_parameters: { rope_type: 'linear', rope_theta: 10000, factor: 4 }, head_dim: 64, max_position_embeddings: 8192, seq_len: 16 },
  { name: 'linear x3, partial 0.25', rope_parameters: { rope_type: 'linear', rope_theta: 10000, factor: 3, partial_rotary_factor: 0.25 }, head_dim: 128, max_position_embeddings: 8192, seq_len: 16 },
  { name: 'dynamic x2 within max positions', rope_parameters: { rope_type: 'dynamic', rope_theta: 10000, factor: 2 }, head_dim: 64, max_position_embeddings: 256, seq_len: 200 },
  { name: 'dynamic x2 beyond max positions', rope_parameters: { rope_type: 'dynamic', rope_theta: 10000, factor: 2 }, head_dim: 64, max_position_embeddings: 256, seq_len: 1000 },
  { name: 'dynamic x4, partial 0.5, beyond', rope_parameters: { rope_type: 'dynamic', rope_theta: 500000, factor: 4, partial_rotary_factor: 0.5 }, head_dim: 128, max_position_embeddings: 512, seq_len: 3000 },
  { name: 'yarn x8', rope_parameters: { rope_type: 'yarn', rope_theta: 10000, factor: 8, original_max_position_embeddings: 512 }, head_dim: 64, max_position_embeddings: 4096, seq_len: 16 },
  { name: 'yarn x4, betas, no truncation', rope_parameters: { rope_type: 'yarn', rope_theta: 1000000, factor: 4, original_max_position_embeddings: 32768, beta_fast: 16, beta_slow: 2, truncate: false }, head_dim: 128, max_position_embeddings: 131072, seq_len: 16 },
  { name: 'yarn x40, mscale ratio', rope_parameters: { rope_type: 'yarn', rope_theta: 10000, factor: 40, original_max_position_embeddings: 4096, mscale: 1, mscale_all_dim: 0.707 }, head_dim: 64, max_position_embeddings: 163840, seq_len: 16 },
  { name: 'yarn x8, attention factor given', rope_parameters: { rope_type: 'yarn', rope_theta: 10000, factor: 8, original_max_position_embeddings: 512, attention_factor: 1.5 }, head_dim: 64, max_position_embeddings: 4096, seq_len: 16 },
  { name: 'yarn x8, partial 0.75', rope_parameters: { rope_type: 'yarn', rope_theta: 10000, factor: 8, original_max_position_embeddings: 512, partial_rotary_factor: 0.75 }, head_dim: 128, max_position_embeddings: 4096, seq_len: 16 },
  { name: 'longrope, short', rope_parameters: { rope_type: 'longrope', rope_theta: 10000, original_max_position_embeddings: 512, short_factor: factors(32, 1), long_factor: factors(32, 2) }, head_dim: 64, max_position_embeddings: 4096, seq_len: 512 },
  { name: 'longrope, long', rope_parameters: { rope_type: 'longrope', rope_theta: 10000, original_max_position_embeddings: 512, short_factor: factors(32, 1), long_factor: factors(32, 2) }, head_dim: 64, max_position_embeddings: 4096, seq_len: 513 },
  { name: 'longrope, attention factor given', rope_parameters: { rope_type: 'longrope', rope_theta: 10000, original_max_position_embeddings: 512, attention_factor: 1.25, short_factor: factors(32, 1), long_factor: factors(32, 2) }, head_dim: 64, max_position_embeddings: 4096, seq_len: 16 },
  { name: 'longrope, partial 0.75 (Phi-4-mini)', rope_parameters: { rope_type: 'longrope', rope_theta: 10000, original_max_position_embeddings: 4096, partial_rotary_factor: 0.75, short_factor: factors(48, 1), long_factor: factors(48, 3) }, head_dim: 128, max_position_embeddings: 131072, seq_len: 5000 },
  { name: 'llama3 (Llama 3.2 1B)', rope_parameters: { rope_type: 'llama3', rope_theta: 500000, factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 }, head_dim: 64, max_position_embeddings: 131072, seq_len: 16 },
  { name: 'llama3 (Llama 3.1 8B)', rope_parameters: { rope_type: 'llama3', rope_theta: 500000, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 }, head_dim: 128, max_position_embeddings: 131072, seq_len: 16 },
];

const specOf = (c: Case): RopeSpec =>
  ropeOf(new ConfigFields({ rope_parameters: c.rope_parameters }, 'config.json', 'LlamaForCausalLM'), c.head_dim);

function reference(cases: Case[]): { inv_freq: number[]; attention_factor: number }[] {
  const out = execFileSync(venvPython(), [join(ROOT, 'tests', 'reference', 'rope_tables.py')], {
    input: JSON.stringify(cases),
    env: { ...process.env, OMP_NUM_THREADS: '1' },
    timeout: 120_000,
  });
  return JSON.parse(out.toString());
}

describe('RoPE frequencies and scalings against transformers', () => {
  const native = loadNative();
  const refs = reference(CASES);

  for (const [i, c] of CASES.entries()) {
    it(c.name, () => {
      const spec = specOf(c);
      const got = native.ropeTable(spec, c.max_position_embeddings, c.seq_len);
      const ref = refs[i];
      expect(got.invFreq.length).toBe(ref.inv_freq.length);
      for (let k = 0; k < ref.inv_freq.length; k++) {
        expect(Math.abs(got.invFreq[k] - ref.inv_freq[k])).toBeLessThanOrEqual(FREQ_RTOL * Math.abs(ref.inv_freq[k]));
      }
      expect(Math.abs(got.attentionScale - ref.attention_factor)).toBeLessThanOrEqual(SCALE_RTOL * ref.attention_factor);
    });
  }

  it('the scalings move the frequencies (so the comparisons above can fail)', () => {
    const plain = native.ropeTable(specOf(CASES[0]), 2048, 16).invFreq;
    for (const name of ['linear x4', 'yarn x8', 'llama3 (Llama 3.2 1B)', 'longrope, short']) {
      const c = CASES.find((x) => x.name === name)!;
      const scaled = native.ropeTable(specOf(c), c.max_position_embeddings, c.seq_len).invFreq;
      const moved = Array.from(scaled).some((x, k) => Math.abs(x - plain[k]) > 100 * FREQ_RTOL * plain[k]);
      expect(moved, name).toBe(true);
    }
    // Dynamic NTK and longrope depend on the pass's length.
    const dyn = CASES.find((x) => x.name === 'dynamic x2 within max positions')!;
    expect(native.ropeTable(specOf(dyn), 256, 200).invFreq).toEqual(native.ropeTable(specOf(CASES[0]), 2048, 16).invFreq);
    expect(native.ropeTable(specOf(dyn), 256, 1000).invFreq).not.toEqual(native.ropeTable(specOf(dyn), 256, 200).invFreq);
  });
});

describe('RoPE config forms', () => {
  const fields = (json: Record<string, unknown>) => new ConfigFields(json, 'config.json', 'LlamaForCausalLM');

  it('reads transformers 4 rope_theta + rope_scaling (type alias) like rope_parameters', () => {
    const v4 = ropeOf(fields({ rope_theta: 500000, rope_scaling: { type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } }), 128);
    const v5 = ropeOf(fields({ rope_parameters: { rope_type: 'llama3', rope_theta: 500000, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } }), 128);
    expect(v4).toEqual(v5);
    expect(v4).toEqual({ type: 'llama3', theta: 500000, rotaryDim: 128, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 });
    // Phi-3: partial_rotary_factor and original_max_position_embeddings at the top level.
    const phi = ropeOf(fields({ rope_theta: 10000, partial_rotary_factor: 0.75, original_max_position_embeddings: 4096, rope_scaling: { type: 'longrope', short_factor: factors(48, 1), long_factor: factors(48, 2) } }), 128);
    expect(phi).toMatchObject({ type: 'longrope', rotaryDim: 96, originalMaxPositions: 4096 });
    expect(ropeOf(fields({}), 64)).toEqual({ type: 'default', theta: 10000, rotaryDim: 64 });
  });

  it('names the field of a scaling that lacks what it needs', () => {
    const bad = (json: Record<string, unknown>, re: RegExp) => {
      let err: unknown;
      try {
        ropeOf(fields(json), 64);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ModelError);
      expect((err as ModelError).message).toMatch(re);
    };
    bad({ rope_scaling: { type: 'linear' } }, /rope_scaling\.factor" is required by RoPE scaling "linear"/);
    bad({ rope_parameters: { rope_type: 'yarn', factor: 4 } }, /original_max_position_embeddings/);
    bad({ rope_parameters: { rope_type: 'longrope', original_max_position_embeddings: 8, short_factor: [1, 2], long_factor: factors(32, 1) } }, /short_factor" must list 32 positive numbers/);
    bad({ rope_parameters: { rope_type: 'ntk-by-parts' } }, /rope_parameters of type "ntk-by-parts" is not supported/);
    bad({ rope_parameters: { rope_type: 'default', partial_rotary_factor: 0.3 } }, /19 rotary dims of a 64-dim head/);
  });

  it('the engine refuses a rope it cannot compute, naming the field', () => {
    const r = (rope: RopeSpec) => () => loadNative().ropeTable(rope, 4096, 16);
    expect(r({ type: 'longrope', theta: 10000, rotaryDim: 64, originalMaxPositions: 512, shortFactor: [1], longFactor: [1] })).toThrow(/short_factor and long_factor need 32 entries/);
    expect(r({ type: 'llama3', theta: 10000, rotaryDim: 64, factor: 8, originalMaxPositions: 8192 })).toThrow(/low_freq_factor and high_freq_factor/);
    expect(r({ type: 'default', theta: 10000, rotaryDim: 63 })).toThrow(/rotary dims 63 must be even/);
    const longrope = { type: 'longrope', theta: 10000, rotaryDim: 64, originalMaxPositions: 512, longFactor: Array(32).fill(1) };
    expect(r({ ...longrope, shortFactor: 'short' as never })).toThrow(/field 'shortFactor' must be an array of numbers/);
    expect(r({ ...longrope, shortFactor: [...Array(31).fill(1), 'one'] as never })).toThrow(/field 'shortFactor' must be an array of numbers/);
  });
});

// The rotary kernel with a scaled table (frequencies and the cos/sin scale) through a whole
// forward: llama-tiny scored by the engine with other rope parameters, against transformers'
// LlamaForCausalLM loaded with the same (tests/reference/rope_logprobs.py).
describe('scaled RoPE through the engine, against transformers', () => {
  const model = join(FIXTURE_MODELS, 'llama-tiny');
  const sequences = [
    [1, 17, 42, 99, 5, 63, 8, 120, 33, 2, 71, 14],
    [1, 9, 9, 81, 27, 100, 3, 56, 44, 12],
    [1, 64, 127, 0, 38, 90, 21],
  ];
  const longrope = (original: number) => ({
    rope_type: 'longrope', rope_theta: 10000, original_max_position_embeddings: original,
    short_factor: [1.0, 1.7, 2.9, 4.1], long_factor: [1.3, 2.2, 5.0, 9.5],
  });
  const cases: [string, Record<string, unknown>][] = [
    ['default', { rope_type: 'default', rope_theta: 10000 }],
    ['linear x4', { rope_type: 'linear', rope_theta: 10000, factor: 4 }],
    ['llama3', { rope_type: 'llama3', rope_theta: 10000, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 32 }],
    ['yarn x4 (cos/sin scaled by 1.139)', { rope_type: 'yarn', rope_theta: 10000, factor: 4, original_max_position_embeddings: 16 }],
    ['longrope, long factors (cos/sin scaled)', longrope(4)],
    ['longrope, short factors (cos/sin scaled)', longrope(16)],
  ];

  const refs: number[][][] = JSON.parse(
    execFileSync(venvPython(), [join(ROOT, 'tests', 'reference', 'rope_logprobs.py')], {
      input: JSON.stringify(cases.map(([, rope_parameters]) => ({ model, rope_parameters, sequences }))),
      env: { ...process.env, OMP_NUM_THREADS: '1' },
      stdio: ['pipe', 'pipe', 'ignore'],
      timeout: 300_000,
    }).toString(),
  );

  const engineLogprobs = async (rope_parameters: Record<string, unknown>): Promise<number[]> => {
    const info = await loadModelInfo(model);
    const rope = ropeOf(new ConfigFields({ rope_parameters }, 'config.json', 'LlamaForCausalLM'), info.config.headDim);
    info.config = { ...info.config, ropes: [rope] };
    const e = new (loadNative().Engine)({ threads: 2 });
    await e.load(engineSpec(info));
    const r = await e.score(
      packBatch(sequences.map((t) => ({ kind: 'lm' as const, label: -1, source: 'rope', sequences: [{ tokens: t, scoreStart: 1, scoreEnd: t.length }] }))),
    );
    e.close();
    return Array.from(r.tokenLogprobs);
  };

  let plain: number[] = [];
  for (const [i, [name, params]] of cases.entries()) {
    it(name, async () => {
      const ref = refs[i].flat();
      const got = await engineLogprobs(params);
      expect(got.length).toBe(ref.length);
      const worst = Math.max(...got.map((x, i) => Math.abs(x - ref[i])));
      expect(worst).toBeLessThan(LOGPROB_ATOL);
      if (name === 'default') plain = got;
      else expect(Math.max(...got.map((x, i) => Math.abs(x - plain[i])))).toBeGreaterThan(100 * LOGPROB_ATOL);
    });
  }
});

// Dynamic NTK past max_position_embeddings (llama-tiny: 64): the base grows with the pass's
// longest sequence, so each sequence is its own pass here and a fresh model in transformers.
describe('dynamic NTK past max_position_embeddings, against transformers', () => {
  const model = join(FIXTURE_MODELS, 'llama-tiny');
  const rope_parameters = { rope_type: 'dynamic', rope_theta: 10000, factor: 2 };
  const sequences = [40, 80, 120].map((n) => Array.from({ length: n }, (_, i) => (i * 37 + n) % 128));
  const refs: number[][] = JSON.parse(
    execFileSync(venvPython(), [join(ROOT, 'tests', 'reference', 'rope_logprobs.py')], {
      input: JSON.stringify([{ model, rope_parameters, sequences }]),
      env: { ...process.env, OMP_NUM_THREADS: '1' },
      stdio: ['pipe', 'pipe', 'ignore'],
      timeout: 300_000,
    }).toString(),
  )[0];

  const score = async (seq: number[], dynamic: boolean): Promise<number[]> => {
    const info = await loadModelInfo(model);
    if (dynamic) info.config = { ...info.config, ropes: [ropeOf(new ConfigFields({ rope_parameters }, 'config.json', 'LlamaForCausalLM'), info.config.headDim)] };
    else info.config = { ...info.config, maxPositions: 1000 };
    const e = new (loadNative().Engine)({ threads: 2 });
    await e.load(engineSpec(info));
    const r = await e.score(packBatch([{ kind: 'lm' as const, label: -1, source: 'ntk', sequences: [{ tokens: seq, scoreStart: 1, scoreEnd: seq.length }] }]));
    e.close();
    return Array.from(r.tokenLogprobs);
  };

  for (const [i, seq] of sequences.entries()) {
    it(`${seq.length} tokens`, async () => {
      const got = await score(seq, true);
      expect(got.length).toBe(refs[i].length);
      expect(Math.max(...got.map((x, k) => Math.abs(x - refs[i][k])))).toBeLessThan(LOGPROB_ATOL);
      // Within max_position_embeddings the table is plain RoPE's; past it, the grown base's.
      const plain = await score(seq, false);
      if (seq.length <= 64) expect(got).toEqual(plain);
      else expect(Math.max(...got.map((x, k) => Math.abs(x - plain[k])))).toBeGreaterThan(100 * LOGPROB_ATOL);
    });
  }
});
