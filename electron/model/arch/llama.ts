// Llama (LlamaForCausalLM) and its variants Mistral (MistralForCausalLM),
// Ministral (MinistralForCausalLM) and Qwen2 (Qwen2ForCausalLM): pre-RMSNorm
// blocks, rotary positions, grouped-query attention, a gated SiLU MLP. The
// variants differ in defaults, biases and which layers slide a window only;
// each is one entry of VARIANTS.

import type { LayerAttention, ModelConfig, TensorRef, UnitSpec } from '../types.js';
import { ModelError } from '../errors.js';
import type { ArchitectureFamily } from './family.js';
import { type ConfigFields, headDimOf } from './fields.js';
import { layerTypesOf, uniformLayers, windowedLayers } from './layers.js';
import { ropeOf, ropeTypeOf } from './rope.js';
import { type TensorPicker, headUnit } from './tensors.js';

interface Biases {
  /** q/k/v projections (Llama attention_bias, always for Qwen2). */
  qkv: boolean;
  /** o_proj (Llama attention_bias). */
  o: boolean;
  /** gate/up/down (Llama mlp_bias). */
  mlp: boolean;
}

interface Variant {
  modelType: string;
  /** transformers' defaults (LlamaConfig, MistralConfig, Qwen2Config). */
  maxPos: number;
  bos: number | null;
  eos: number | null;
  biases(f: ConfigFields): Biases;
  /** Each block's window, as transformers' config class derives it. */
  layers(f: ConfigFields, layers: number): LayerAttention[];
}

const NO_BIASES: Biases = { qkv: false, o: false, mlp: false };

/** sliding_window: null means none; absent, the architecture's default. */
function slidingWindow(f: ConfigFields, def: number): number | null {
  return f.raw('sliding_window') === null ? null : f.int('sliding_window', def);
}

const VARIANTS: Record<string, Variant> = {
  LlamaForCausalLM: {
    modelType: 'llama',
    maxPos: 2048,
    bos: 1,
    eos: 2,
    biases: (f) => {
      const attention = f.bool('attention_bias', false);
      return { qkv: attention, o: attention, mlp: f.bool('mlp_bias', false) };
    },
    layers: (_f, layers) => uniformLayers(layers, 0),
  },
  MistralForCausalLM: {
    modelType: 'mistral',
    maxPos: 4096 * 32,
    bos: 1,
    eos: 2,
    biases: () => NO_BIASES,
    // MistralConfig: one window for every layer (transformers ignores layer_types here: that is Ministral).
    layers: (f, layers) => uniformLayers(layers, slidingWindow(f, 4096) ?? 0),
  },
  MinistralForCausalLM: {
    modelType: 'ministral',
    maxPos: 4096 * 32,
    bos: 1,
    eos: 2,
    biases: () => NO_BIASES,
    // MinistralConfig: layer_types, by default every layer sliding when there is a window.
    layers: (f, layers) => {
      const window = slidingWindow(f, 4096);
      const types = layerTypesOf(f, layers) ?? Array.from({ length: layers }, () => (window ? 'sliding_attention' : 'full_attention'));
      return windowedLayers(f, types, window, 'null');
    },
  },
  Qwen2ForCausalLM: {
    modelType: 'qwen2',
    maxPos: 32768,
    bos: null,
    eos: null,
    // q/k/v always carry a bias, o_proj never; no MLP biases.
    biases: () => ({ qkv: true, o: false, mlp: false }),
    layers: qwen2Layers,
  },
};

function parse(f: ConfigFields, arch: string) {
  const variant = VARIANTS[arch];
  const hidden = f.int('hidden_size');
  const layers = f.int('num_hidden_layers');
  const heads = f.int('num_attention_heads');
  const inter = f.int('intermediate_size');
  const vocab = f.int('vocab_size');
  const maxPos = f.int('max_position_embeddings', variant.maxPos);
  const kvHeads = f.int('num_key_value_heads', heads);
  if (heads % kvHeads !== 0) {
    throw new ModelError(
      `${f.file}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`,
      { file: f.file, field: 'num_key_value_heads' },
    );
  }
  const layerAttention = variant.layers(f, layers);
  const headDim = f.has('head_dim') ? f.int('head_dim') : headDimOf(f, hidden, heads);
  if (headDim % 2 !== 0) {
    throw new ModelError(`${f.file}: head_dim ${headDim} must be even for rotary embeddings`, {
      file: f.file,
      field: 'head_dim',
    });
  }
  const act = f.str('hidden_act', 'silu');
  if (act !== 'silu' && act !== 'swish') {
    f.unsupported(`hidden_act "${act}" is not supported (silu only)`, 'hidden_act');
  }
  // The engine computes every RoPE scaling (checked against transformers' own tables); a model
  // loads with one once its forward is checked end to end against a reference (issue 11).
  const { key, type } = ropeTypeOf(f);
  if (type !== 'default') f.unsupported(`${key} of type "${type}" is not supported yet`, key);
  const rope = ropeOf(f, headDim);
  const biases = variant.biases(f);
  const config: ModelConfig = {
    hfArchitecture: arch,
    family: 'llama',
    vocabSize: vocab,
    hidden,
    layers,
    heads,
    kvHeads,
    headDim,
    intermediate: inter,
    maxPositions: maxPos,
    normEps: f.num('rms_norm_eps', 1e-6),
    norm: 'rmsnorm',
    activation: 'silu',
    positionOffset: 0,
    ropes: [rope],
    layerAttention,
    tiedEmbeddings: f.bool('tie_word_embeddings', false),
    bosTokenId: f.tokenId('bos_token_id', variant.bos),
    eosTokenId: f.tokenId('eos_token_id', variant.eos),
  };
  return { config, units: (pk: TensorPicker) => units(config, biases, pk) };
}

function units(cfg: ModelConfig, biases: Biases, pk: TensorPicker): UnitSpec[] {
  const C = cfg.hidden;
  const I = cfg.intermediate;
  const QD = cfg.heads * cfg.headDim;
  const KVD = cfg.kvHeads * cfg.headDim;
  const result: UnitSpec[] = [
    { kind: 'embed', index: -1, tensors: { tok: pk.need('model.embed_tokens.weight', [cfg.vocabSize, C]) } },
  ];
  for (let i = 0; i < cfg.layers; i++) {
    const l = `model.layers.${i}.`;
    const t: Record<string, TensorRef> = {};
    const lin = (role: string, name: string, out: number, inp: number, bias: boolean) => {
      t[`${role}_w`] = pk.need(`${l}${name}.weight`, [out, inp]);
      if (bias) t[`${role}_b`] = pk.need(`${l}${name}.bias`, [out]);
    };
    t.attn_norm_w = pk.need(`${l}input_layernorm.weight`, [C]);
    lin('q', 'self_attn.q_proj', QD, C, biases.qkv);
    lin('k', 'self_attn.k_proj', KVD, C, biases.qkv);
    lin('v', 'self_attn.v_proj', KVD, C, biases.qkv);
    lin('o', 'self_attn.o_proj', C, QD, biases.o);
    t.mlp_norm_w = pk.need(`${l}post_attention_layernorm.weight`, [C]);
    lin('gate', 'mlp.gate_proj', I, C, biases.mlp);
    lin('up', 'mlp.up_proj', I, C, biases.mlp);
    lin('down', 'mlp.down_proj', C, I, biases.mlp);
    result.push({ kind: 'block', index: i, tensors: t });
  }
  result.push(headUnit(cfg, pk, 'model.norm.weight', null));
  return result;
}

/**
 * Qwen2 slides its window only when use_sliding_window is true, and then on the layers
 * layer_types names (by default those from max_window_layers on).
 */
function qwen2Layers(f: ConfigFields, layers: number): LayerAttention[] {
  const window = f.bool('use_sliding_window', false) ? slidingWindow(f, 4096) : null;
  const maxWindowLayers = f.int('max_window_layers', 28, 0);
  const types =
    layerTypesOf(f, layers) ??
    Array.from({ length: layers }, (_, i) => (window && i >= maxWindowLayers ? 'sliding_attention' : 'full_attention'));
  return windowedLayers(f, types, window, window === null && !f.bool('use_sliding_window', false) ? 'unused (use_sliding_window is false)' : 'null');
}

export const llama: ArchitectureFamily = {
  family: 'llama',
  architectures: Object.fromEntries(Object.entries(VARIANTS).map(([arch, v]) => [arch, v.modelType])),
  parse,
};
