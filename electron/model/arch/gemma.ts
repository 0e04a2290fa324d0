// Gemma 2 (Gemma2ForCausalLM) and text-only Gemma 3 (Gemma3ForCausalLM,
// model_type gemma3_text): RMSNorms scaled by (1 + w), four per block around
// the attention and the MLP, embeddings times sqrt(hidden), a GeGLU MLP with
// the tanh GELU, scores scaled by query_pre_attn_scalar^-1/2 (256 unless the
// config says otherwise, whatever head_dim is), local (sliding-window) and
// global layers. Gemma 2 soft-caps attention scores and the final logits;
// Gemma 3 norms each q and k head and turns local layers with their own
// rotary base (rope_local_base_freq, or rope_parameters.sliding_attention).

import type { ArchFamily, LayerAttention, ModelConfig, RopeSpec, UnitSpec } from '../types.js';
import type { ArchitectureFamily } from './family.js';
import { ConfigFields, isObject, kvHeadsOf } from './fields.js';
import { type LayerType, layerTypesOf, windowedLayers } from './layers.js';
import { ropeOf, ropeTypeOf } from './rope.js';
import { type TensorPicker, decoderUnits } from './tensors.js';

interface Variant {
  family: ArchFamily;
  modelType: string;
  maxPos: number;
  /** transformers' defaults of the soft-caps (null: none). */
  attnSoftcap: number | null;
  finalSoftcap: number | null;
  /** Every n-th layer global, the others sliding (Gemma 2: 2; Gemma 3: sliding_window_pattern, 6). */
  pattern(f: ConfigFields): number;
}

const VARIANTS: Record<string, Variant> = {
  Gemma2ForCausalLM: { family: 'gemma2', modelType: 'gemma2', maxPos: 8192, attnSoftcap: 50, finalSoftcap: 30, pattern: () => 2 },
  Gemma3ForCausalLM: {
    family: 'gemma3',
    modelType: 'gemma3_text',
    maxPos: 131072,
    attnSoftcap: null,
    finalSoftcap: null,
    pattern: (f) => f.int('sliding_window_pattern', 6),
  },
};

/** A soft-cap: absent, the architecture's default; null, none. */
function softcap(f: ConfigFields, key: string, def: number | null): number | undefined {
  if (f.raw(key) === null) return undefined;
  const v = f.has(key) ? f.num(key, 1) : def;
  return v ?? undefined;
}

/** Refuses a RoPE scaling without its golden forward test here (the same rule as the other families). */
function defaultRope(f: ConfigFields, headDim: number, theta: number): RopeSpec {
  const { key, type } = ropeTypeOf(f);
  if (type !== 'default') f.unsupported(`${key} of type "${type}" is not supported yet`, key);
  return ropeOf(f, headDim, theta);
}

/**
 * Gemma 3's two rotary tables: [0] for global layers, [1] for local ones. transformers 5 writes
 * rope_parameters keyed by layer type; older configs give rope_theta (+ rope_scaling) for the
 * global layers and rope_local_base_freq for the local ones.
 */
function gemma3Ropes(f: ConfigFields, headDim: number): RopeSpec[] {
  const rp = f.raw('rope_parameters');
  if (isObject(rp) && ('full_attention' in rp || 'sliding_attention' in rp)) {
    return (['full_attention', 'sliding_attention'] as const).map((t, i) => {
      const sub = rp[t] ?? {};
      if (!isObject(sub)) f.invalid(`rope_parameters.${t}`, `must be an object, got ${JSON.stringify(sub)}`);
      const sf = new ConfigFields({ rope_parameters: sub }, `${f.file} (rope_parameters.${t})`, f.arch);
      return defaultRope(sf, headDim, i === 0 ? 1_000_000 : 10_000);
    });
  }
  const global = defaultRope(f, headDim, 1_000_000);
  const local: RopeSpec = { type: 'default', theta: f.num('rope_local_base_freq', 10_000), rotaryDim: headDim };
  return [global, local];
}

function parse(f: ConfigFields, arch: string) {
  const v = VARIANTS[arch];
  const hidden = f.int('hidden_size');
  const layers = f.int('num_hidden_layers');
  const heads = f.int('num_attention_heads');
  const kvHeads = kvHeadsOf(f, heads);
  // GemmaConfig's head_dim is 256 unless given, not hidden / heads.
  const headDim = f.int('head_dim', 256);
  const act = f.str('hidden_activation', f.str('hidden_act', 'gelu_pytorch_tanh'));
  if (act !== 'gelu_pytorch_tanh' && act !== 'gelu_new' && act !== 'gelu_fast') {
    f.unsupported(`hidden_activation "${act}" is not supported (gelu_pytorch_tanh only)`, 'hidden_activation');
  }
  if (f.bool('use_bidirectional_attention', false)) {
    f.unsupported('use_bidirectional_attention is not supported (causal language models only)', 'use_bidirectional_attention');
  }
  const window = f.raw('sliding_window') === null ? null : f.int('sliding_window', 4096);
  const pattern = v.pattern(f);
  const types: LayerType[] =
    layerTypesOf(f, layers) ??
    Array.from({ length: layers }, (_, i) => ((i + 1) % pattern !== 0 ? 'sliding_attention' : 'full_attention'));
  const ropes = v.family === 'gemma3' ? gemma3Ropes(f, headDim) : [defaultRope(f, headDim, 10_000)];
  // Gemma 3's local layers turn with table 1.
  const layerAttention: LayerAttention[] = windowedLayers(f, types, window, 'null').map((la, i) => ({
    ...la,
    rope: v.family === 'gemma3' && types[i] === 'sliding_attention' ? 1 : 0,
  }));
  const attnSoftcap = softcap(f, 'attn_logit_softcapping', v.attnSoftcap);
  const finalSoftcap = softcap(f, 'final_logit_softcapping', v.finalSoftcap);
  const config: ModelConfig = {
    hfArchitecture: arch,
    family: v.family,
    vocabSize: f.int('vocab_size'),
    hidden,
    layers,
    heads,
    kvHeads,
    headDim,
    intermediate: f.int('intermediate_size'),
    maxPositions: f.int('max_position_embeddings', v.maxPos),
    normEps: f.num('rms_norm_eps', 1e-6),
    norm: 'rmsnorm_plus1',
    activation: 'gelu_new',
    positionOffset: 0,
    ropes,
    layerAttention,
    tiedEmbeddings: f.bool('tie_word_embeddings', true),
    embedScale: Math.sqrt(hidden),
    queryPreAttnScalar: f.num('query_pre_attn_scalar', 256),
    ...(attnSoftcap ? { attnSoftcap } : {}),
    ...(finalSoftcap ? { finalSoftcap } : {}),
    bosTokenId: f.tokenId('bos_token_id', 2),
    eosTokenId: f.tokenId('eos_token_id', 1),
  };
  return { config, units: (pk: TensorPicker) => units(config, f.bool('attention_bias', false), pk) };
}

function units(cfg: ModelConfig, bias: boolean, pk: TensorPicker): UnitSpec[] {
  const HD = cfg.headDim;
  return decoderUnits(cfg, pk, (b) => {
    b.norm('attn_norm', 'input_layernorm', false);
    b.attention(cfg.heads * HD, cfg.kvHeads * HD, bias);
    // Gemma 3: one weight per head dim, shared by every head.
    if (cfg.family === 'gemma3') b.qkNorms(HD, HD);
    b.norm('post_attn_norm', 'post_attention_layernorm', false);
    b.norm('mlp_norm', 'pre_feedforward_layernorm', false);
    b.gatedMlp(cfg.intermediate);
    b.norm('post_mlp_norm', 'post_feedforward_layernorm', false);
  });
}

export const gemma2: ArchitectureFamily = {
  family: 'gemma2',
  architectures: { Gemma2ForCausalLM: 'gemma2' },
  parse,
};

export const gemma3: ArchitectureFamily = {
  family: 'gemma3',
  architectures: { Gemma3ForCausalLM: 'gemma3_text' },
  parse,
};
