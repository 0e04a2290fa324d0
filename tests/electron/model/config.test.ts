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

  it('OPT-350m: post-LN blocks without a final norm, project_in/out; _remove_final_layer_norm', () => {
    const c = parseModelConfig({ ...OPT_CONFIG, do_layer_norm_before: false, word_embed_proj_dim: 8 }, DIR);
    expect(c).toMatchObject({ postNorm: true, finalNorm: false, embedDim: 8, hidden: 16 });
    // Pre-LN with its final norm removed; no projection when the widths agree.
    const r = parseModelConfig({ ...OPT_CONFIG, _remove_final_layer_norm: true, word_embed_proj_dim: 16 }, DIR);
    expect(r).toMatchObject({ finalNorm: false });
    expect(r.postNorm).toBeUndefined();
    expect(r.embedDim).toBeUndefined();
    fails({ ...OPT_CONFIG, activation_function: 'tanh' }, /activation_function="tanh"/, 'unsupported');
    fails({ ...OPT_CONFIG, layer_norm_elementwise_affine: false }, /layer_norm_elementwise_affine/, 'unsupported');
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

  it('GPT-NeoX: Hub keys (rotary_pct, rotary_emb_base), transformers 5 rope_parameters, defaults', () => {
    const neox = {
      architectures: ['GPTNeoXForCausalLM'], model_type: 'gpt_neox', hidden_size: 64, num_attention_heads: 4,
      num_hidden_layers: 2, intermediate_size: 256, vocab_size: 100, rotary_pct: 0.5, rotary_emb_base: 500,
    };
    const c = parseModelConfig(neox, DIR);
    expect(c).toMatchObject({
      family: 'gpt_neox', headDim: 16, norm: 'layernorm', activation: 'gelu', normEps: 1e-5, maxPositions: 2048,
      tiedEmbeddings: false, parallelResidual: true, ropes: [{ type: 'default', theta: 500, rotaryDim: 8 }],
    });
    // GPTNeoXConfig's defaults: a quarter of the head rotated, base 10000.
    const { rotary_pct: _p, rotary_emb_base: _b, ...plain } = neox;
    expect(parseModelConfig(plain, DIR).ropes).toEqual([{ type: 'default', theta: 10000, rotaryDim: 4 }]);
    // transformers 5 writes rope_parameters; it wins over the older keys.
    const v5 = { ...plain, use_parallel_residual: false, rope_parameters: { rope_type: 'default', rope_theta: 250, partial_rotary_factor: 1 } };
    expect(parseModelConfig({ ...v5, rotary_pct: 0.25 }, DIR)).toMatchObject({ parallelResidual: false, ropes: [{ theta: 250, rotaryDim: 16 }] });
    fails({ ...neox, rotary_pct: 0.1 }, /gives 1 rotary dims of a 16-dim head/);
    fails({ ...neox, rotary_pct: 'half' }, /"rotary_pct" must be a positive number/);
    fails({ ...plain, rope_parameters: { rope_type: 'linear', factor: 2 } }, /rope_parameters of type "linear" is not supported yet/, 'unsupported');
  });

  it('Gemma 2: transformers\' defaults (head_dim 256, query_pre_attn_scalar 256, soft-caps 50 / 30, every second layer global)', () => {
    const gemma = {
      architectures: ['Gemma2ForCausalLM'], model_type: 'gemma2', hidden_size: 64, num_attention_heads: 4,
      num_key_value_heads: 2, num_hidden_layers: 4, intermediate_size: 128, vocab_size: 100,
    };
    expect(parseModelConfig(gemma, DIR)).toMatchObject({
      family: 'gemma2', headDim: 256, norm: 'rmsnorm_plus1', normEps: 1e-6, activation: 'gelu_new', tiedEmbeddings: true,
      embedScale: 8, queryPreAttnScalar: 256, attnSoftcap: 50, finalSoftcap: 30, bosTokenId: 2, eosTokenId: 1,
      ropes: [{ type: 'default', theta: 10000, rotaryDim: 256 }],
      layerAttention: [{ window: 4096, rope: 0 }, { window: 0, rope: 0 }, { window: 4096, rope: 0 }, { window: 0, rope: 0 }],
    });
    const off = parseModelConfig({ ...gemma, attn_logit_softcapping: null, final_logit_softcapping: null, head_dim: 16 }, DIR);
    expect(off.attnSoftcap).toBeUndefined();
    expect(off.finalSoftcap).toBeUndefined();
    expect(off.headDim).toBe(16);
    fails({ ...gemma, hidden_activation: 'silu' }, /hidden_activation "silu" is not supported/, 'unsupported');
    fails({ ...gemma, sliding_window: null }, /sliding_window" is null, but layer_types has 2 sliding_attention layers/);
  });

  it('Gemma 3 (text): two rotary bases in either config form, local layers by sliding_window_pattern or layer_types', () => {
    const gemma = {
      architectures: ['Gemma3ForCausalLM'], model_type: 'gemma3_text', hidden_size: 64, num_attention_heads: 4,
      num_key_value_heads: 1, num_hidden_layers: 7, intermediate_size: 128, vocab_size: 100, head_dim: 16,
      sliding_window: 512, rope_theta: 1e6, rope_local_base_freq: 1e4,
    };
    const c = parseModelConfig(gemma, DIR);
    expect(c).toMatchObject({ family: 'gemma3', ropes: [{ theta: 1e6 }, { theta: 1e4 }] });
    expect(c.attnSoftcap).toBeUndefined();
    // Every sixth layer global (transformers' sliding_window_pattern 6), with table 0; local ones table 1.
    expect(c.layerAttention.map((l) => `${l.window}/${l.rope}`)).toEqual(['512/1', '512/1', '512/1', '512/1', '512/1', '0/0', '512/1']);
    const v5 = {
      ...gemma, rope_theta: undefined, rope_local_base_freq: undefined,
      layer_types: ['full_attention', 'sliding_attention', 'full_attention', 'sliding_attention', 'full_attention', 'sliding_attention', 'full_attention'],
      rope_parameters: { full_attention: { rope_type: 'default', rope_theta: 5e5 }, sliding_attention: { rope_type: 'default', rope_theta: 100 } },
    };
    const c5 = parseModelConfig(v5, DIR);
    expect(c5.ropes.map((r) => r.theta)).toEqual([5e5, 100]);
    expect(c5.layerAttention.slice(0, 2)).toEqual([{ window: 0, rope: 0 }, { window: 512, rope: 1 }]);
    fails({ ...v5, rope_parameters: { ...v5.rope_parameters, full_attention: { rope_type: 'linear', factor: 8 } } }, /of type "linear" is not supported yet/, 'unsupported');
    fails({ ...gemma, use_bidirectional_attention: true }, /use_bidirectional_attention is not supported/, 'unsupported');
  });

  it('OLMo 2: defaults, GQA, explicit head_dim', () => {
    const olmo = {
      architectures: ['Olmo2ForCausalLM'], model_type: 'olmo2', hidden_size: 64, num_attention_heads: 4,
      num_key_value_heads: 2, num_hidden_layers: 2, intermediate_size: 128, vocab_size: 100, rope_theta: 500000,
    };
    expect(parseModelConfig(olmo, DIR)).toMatchObject({
      family: 'olmo2', kvHeads: 2, headDim: 16, norm: 'rmsnorm', normEps: 1e-5, activation: 'silu', tiedEmbeddings: false,
      bosTokenId: null, eosTokenId: 50279, ropes: [{ type: 'default', theta: 500000, rotaryDim: 16 }],
    });
    expect(parseModelConfig({ ...olmo, head_dim: 8 }, DIR)).toMatchObject({ headDim: 8, ropes: [{ rotaryDim: 8 }] });
    fails({ ...olmo, num_key_value_heads: 3 }, /not a multiple of num_key_value_heads 3/);
    fails({ ...olmo, hidden_act: 'gelu' }, /hidden_act "gelu" is not supported/, 'unsupported');
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
