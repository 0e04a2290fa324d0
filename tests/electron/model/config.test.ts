import { describe, expect, it } from 'vitest';
import { parseModelConfig, SUPPORTED_ARCHITECTURES } from '../../../electron/model/config.js';
import { ModelError } from '../../../electron/model/errors.js';
import { GPT2_CONFIG, LLAMA_CONFIG, OPT_CONFIG } from './helpers.js';

const DIR = '/models/tiny';

function fails(json: unknown, pattern: RegExp, kind?: 'invalid' | 'unsupported'): ModelError {
  let err: unknown;
  try {
    parseModelConfig(json, DIR);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ModelError);
  const me = err as ModelError;
  expect(me.message).toContain('/models/tiny/config.json');
  expect(me.message).toMatch(pattern);
  if (kind) expect(me.kind).toBe(kind);
  return me;
}

describe('parseModelConfig', () => {
  it('OPT', () => {
    const c = parseModelConfig(OPT_CONFIG, DIR);
    expect(c).toEqual({
      hfArchitecture: 'OPTForCausalLM',
      family: 'opt',
      vocabSize: 50,
      hidden: 16,
      layers: 2,
      heads: 4,
      kvHeads: 4,
      headDim: 4,
      intermediate: 32,
      maxPositions: 24,
      normEps: 1e-5,
      norm: 'layernorm',
      activation: 'relu',
      positionOffset: 2,
      ropes: [],
      layerAttention: [{ window: 0, rope: -1 }, { window: 0, rope: -1 }],
      tiedEmbeddings: true,
      bosTokenId: 2,
      eosTokenId: 2,
    });
    expect(parseModelConfig({ ...OPT_CONFIG, tie_word_embeddings: false }, DIR).tiedEmbeddings).toBe(false);
  });

  it('OPT post-LN, project_in/out and other variants are unsupported', () => {
    const me = fails({ ...OPT_CONFIG, do_layer_norm_before: false }, /do_layer_norm_before is false/, 'unsupported');
    expect(me.field).toBe('do_layer_norm_before');
    fails({ ...OPT_CONFIG, word_embed_proj_dim: 8 }, /word_embed_proj_dim 8 differs from hidden_size 16/, 'unsupported');
    fails({ ...OPT_CONFIG, activation_function: 'tanh' }, /activation_function="tanh"/, 'unsupported');
    fails({ ...OPT_CONFIG, _remove_final_layer_norm: true }, /_remove_final_layer_norm/, 'unsupported');
  });

  it('GPT-2 with defaults', () => {
    const { activation_function: _a, layer_norm_epsilon: _e, ...cfg } = GPT2_CONFIG;
    const c = parseModelConfig(cfg, DIR);
    expect(c).toMatchObject({
      family: 'gpt2',
      hidden: 16,
      layers: 2,
      heads: 4,
      headDim: 4,
      intermediate: 64,
      maxPositions: 32,
      vocabSize: 60,
      normEps: 1e-5,
      activation: 'gelu_new',
      positionOffset: 0,
      tiedEmbeddings: true,
      bosTokenId: 50256,
      eosTokenId: 50256,
    });
    expect(parseModelConfig({ ...GPT2_CONFIG, n_inner: 40 }, DIR).intermediate).toBe(40);
    expect(parseModelConfig({ ...GPT2_CONFIG, activation_function: 'gelu_pytorch_tanh' }, DIR).activation).toBe(
      'gelu_new',
    );
  });

  it('Llama with GQA, defaults and token-id lists', () => {
    const c = parseModelConfig({ ...LLAMA_CONFIG, eos_token_id: [7, 8] }, DIR);
    expect(c).toMatchObject({
      hfArchitecture: 'LlamaForCausalLM',
      family: 'llama',
      heads: 4,
      kvHeads: 2,
      headDim: 4,
      intermediate: 40,
      norm: 'rmsnorm',
      normEps: 1e-6,
      activation: 'silu',
      ropes: [{ type: 'default', theta: 10000, rotaryDim: 4 }],
      layerAttention: [{ window: 0, rope: 0 }, { window: 0, rope: 0 }],
      tiedEmbeddings: false,
      positionOffset: 0,
      bosTokenId: 1,
      eosTokenId: 7,
    });
    const { num_key_value_heads: _k, rope_theta: _r, tie_word_embeddings: _t, ...min } = LLAMA_CONFIG;
    const d = parseModelConfig({ ...min, head_dim: 8 }, DIR);
    expect(d.kvHeads).toBe(4);
    expect(d.headDim).toBe(8);
    expect(d.ropes[0].theta).toBe(10000);
    expect(d.tiedEmbeddings).toBe(false);
  });

  it('rope_scaling: null/absent/default ok, anything else unsupported with its type', () => {
    expect(parseModelConfig({ ...LLAMA_CONFIG, rope_scaling: null }, DIR).ropes[0].theta).toBe(10000);
    fails({ ...LLAMA_CONFIG, rope_scaling: { rope_type: 'llama3', factor: 8 } }, /rope_scaling of type "llama3"/, 'unsupported');
    fails({ ...LLAMA_CONFIG, rope_scaling: { type: 'linear', factor: 2 } }, /"linear"/, 'unsupported');
    // transformers 5 style
    expect(
      parseModelConfig({ ...LLAMA_CONFIG, rope_parameters: { rope_type: 'default', rope_theta: 500000 } }, DIR)
        .ropes[0].theta,
    ).toBe(500000);
    fails({ ...LLAMA_CONFIG, rope_parameters: { rope_type: 'yarn', rope_theta: 1 } }, /"yarn"/, 'unsupported');
  });

  it('hidden_act must be silu', () => {
    fails({ ...LLAMA_CONFIG, hidden_act: 'gelu' }, /hidden_act "gelu"/, 'unsupported');
  });

  const windows = (json: Record<string, unknown>) => parseModelConfig(json, DIR).layerAttention.map((l) => l.window);

  it('Mistral: one sliding window for every layer (default 4096, null = none), layer_types ignored as transformers does', () => {
    const base = { ...LLAMA_CONFIG, architectures: ['MistralForCausalLM'], model_type: 'mistral' };
    expect(windows(base)).toEqual([4096, 4096]);
    expect(windows({ ...base, sliding_window: 32 })).toEqual([32, 32]);
    expect(windows({ ...base, sliding_window: null })).toEqual([0, 0]);
    expect(windows({ ...base, sliding_window: 32, layer_types: ['full_attention', 'sliding_attention'] })).toEqual([32, 32]);
  });

  it('Ministral: the window on the layers layer_types names (all of them by default)', () => {
    const base = { ...LLAMA_CONFIG, architectures: ['MinistralForCausalLM'], model_type: 'ministral', sliding_window: 32 };
    expect(parseModelConfig(base, DIR).hfArchitecture).toBe('MinistralForCausalLM');
    expect(windows(base)).toEqual([32, 32]);
    expect(windows({ ...base, layer_types: ['sliding_attention', 'full_attention'] })).toEqual([32, 0]);
    expect(windows({ ...base, sliding_window: null })).toEqual([0, 0]);
    fails({ ...base, sliding_window: null, layer_types: ['sliding_attention', 'full_attention'] }, /"sliding_window" is null, but layer_types has 1 sliding_attention layer/, 'invalid');
    fails({ ...base, layer_types: ['sliding_attention'] }, /"layer_types" must list one type per layer \(2\)/, 'invalid');
    fails({ ...base, layer_types: ['chunked_attention', 'full_attention'] }, /layer_types\[0\] is "chunked_attention"/, 'unsupported');
  });

  it('Qwen2 defaults, and windows only with use_sliding_window, from max_window_layers on or per layer_types', () => {
    const base = {
      ...LLAMA_CONFIG,
      architectures: ['Qwen2ForCausalLM'],
      model_type: 'qwen2',
      sliding_window: 32,
      max_window_layers: 28,
    };
    delete (base as Record<string, unknown>).tie_word_embeddings;
    const c = parseModelConfig(base, DIR);
    expect(c.layerAttention).toEqual([{ window: 0, rope: 0 }, { window: 0, rope: 0 }]);
    expect(c.tiedEmbeddings).toBe(false);
    expect(c.bosTokenId).toBe(null);
    expect(windows({ ...base, use_sliding_window: true, max_window_layers: 0 })).toEqual([32, 32]);
    // max_window_layers >= layers: no layer slides
    expect(windows({ ...base, use_sliding_window: true })).toEqual([0, 0]);
    expect(windows({ ...base, use_sliding_window: true, max_window_layers: 1 })).toEqual([0, 32]);
    expect(windows({ ...base, use_sliding_window: true, layer_types: ['sliding_attention', 'full_attention'] })).toEqual([32, 0]);
    // transformers drops the window without use_sliding_window and then fails on sliding layers
    fails({ ...base, layer_types: ['sliding_attention', 'sliding_attention'] }, /use_sliding_window is false/, 'invalid');
  });

  it('missing required fields name the field and file', () => {
    const { hidden_size: _h, ...noHidden } = OPT_CONFIG;
    const me = fails(noHidden, /missing required field "hidden_size"/, 'invalid');
    expect(me.field).toBe('hidden_size');
    const { n_layer: _l, ...noLayers } = GPT2_CONFIG;
    fails(noLayers, /missing required field "n_layer"/);
    const { intermediate_size: _i, ...noInter } = LLAMA_CONFIG;
    fails(noInter, /missing required field "intermediate_size"/);
    const { vocab_size: _v, ...noVocab } = LLAMA_CONFIG;
    fails(noVocab, /"vocab_size"/);
  });

  it('bad values', () => {
    fails({ ...OPT_CONFIG, hidden_size: 'big' }, /"hidden_size" must be an integer/);
    fails({ ...OPT_CONFIG, num_attention_heads: 3 }, /not divisible by num_attention_heads=3/);
    fails({ ...LLAMA_CONFIG, num_key_value_heads: 3 }, /not a multiple of num_key_value_heads 3/);
    fails({ ...LLAMA_CONFIG, rms_norm_eps: -1 }, /rms_norm_eps/);
    fails('not an object', /must hold a JSON object/);
  });

  it('unknown architecture lists the supported ones', () => {
    const me = fails({ architectures: ['BertForMaskedLM'], hidden_size: 8 }, /unsupported architecture BertForMaskedLM/, 'unsupported');
    for (const a of SUPPORTED_ARCHITECTURES) expect(me.message).toContain(a);
    fails({ hidden_size: 8 }, /names no architecture.*OPTForCausalLM/);
  });

  it('falls back to model_type when architectures is absent', () => {
    const { architectures: _a, ...cfg } = GPT2_CONFIG;
    expect(parseModelConfig(cfg, DIR).hfArchitecture).toBe('GPT2LMHeadModel');
  });
});

describe('parseModelConfig: hostile inputs', () => {
  it('model_type naming an Object.prototype key is not an architecture', () => {
    fails({ model_type: 'constructor' }, /model_type "constructor" is not supported/);
    fails({ architectures: ['toString'] }, /unsupported architecture toString/);
  });
});
