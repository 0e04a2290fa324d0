// Llama (LlamaForCausalLM) and its variants Mistral (MistralForCausalLM),
// Ministral (MinistralForCausalLM), Qwen2 (Qwen2ForCausalLM) and SmolLM3
// (SmolLM3ForCausalLM): pre-RMSNorm blocks, rotary positions, grouped-query
// attention, a gated SiLU MLP. The variants differ in defaults, biases, which
// layers slide a window and which skip RoPE only; each is one entry of
// VARIANTS. Families whose block is Llama's plus a little (qwen3.ts, phi3.ts)
// read their config with parseLlamaConfig and name their tensors with llamaUnits.

import type { ArchFamily, LayerAttention, ModelConfig, RopeType, UnitSpec } from '../types.js';
import { ModelError } from '../errors.js';
import type { ArchitectureFamily } from './family.js';
import { type ConfigFields, headDimOf } from './fields.js';
import { layerTypesOf, uniformLayers, windowedLayers } from './layers.js';
import { ropeOf } from './rope.js';
import { type BlockRoles, type TensorPicker, decoderUnits } from './tensors.js';

export interface Biases {
  /** q/k/v projections (Llama attention_bias, always for Qwen2). */
  qkv: boolean;
  /** o_proj (Llama attention_bias). */
  o: boolean;
  /** gate/up/down (Llama mlp_bias). */
  mlp: boolean;
}

export interface Variant {
  modelType: string;
  /** transformers' defaults (LlamaConfig, MistralConfig, Qwen2Config, ...). */
  maxPos: number;
  bos: number | null;
  eos: number | null;
  /** tie_word_embeddings when the config does not say (false unless given). */
  tied?: boolean;
  /** head_dim when the config does not say (hidden / heads unless given). */
  headDim?: number;
  biases(f: ConfigFields): Biases;
  /** Each block's window and rotary table, as transformers' config class derives them. */
  layers(f: ConfigFields, layers: number): LayerAttention[];
  /** Older names of RoPE types the config class renames (rope.ts). */
  ropeAliases?: Record<string, RopeType>;
}

export const NO_BIASES: Biases = { qkv: false, o: false, mlp: false };

/** Llama's attention_bias (q, k, v and o) and mlp_bias. */
export function configBiases(f: ConfigFields): Biases {
  const attention = f.bool('attention_bias', false);
  return { qkv: attention, o: attention, mlp: f.bool('mlp_bias', false) };
}

/** sliding_window: null means none; absent, the architecture's default. */
export function slidingWindow(f: ConfigFields, def: number | null): number | null {
  if (def === null && !f.has('sliding_window')) return null;
  return f.raw('sliding_window') === null ? null : f.int('sliding_window', def ?? undefined);
}

const VARIANTS: Record<string, Variant> = {
  LlamaForCausalLM: {
    modelType: 'llama',
    maxPos: 2048,
    bos: 1,
    eos: 2,
    biases: configBiases,
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
  SmolLM3ForCausalLM: {
    modelType: 'smollm3',
    maxPos: 32768,
    bos: 128000,
    eos: 128001,
    tied: true,
    biases: configBiases,
    layers: smolLM3Layers,
  },
};

/** The config of a Llama-shaped architecture as `variant` reads it, for the engine's `family`. */
export function parseLlamaConfig(f: ConfigFields, arch: string, variant: Variant, family: ArchFamily): ModelConfig {
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
  const headDim = f.has('head_dim') ? f.int('head_dim') : (variant.headDim ?? headDimOf(f, hidden, heads));
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
  return {
    hfArchitecture: arch,
    family,
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
    ropes: [ropeOf(f, headDim, { maxPositions: maxPos, aliases: variant.ropeAliases })],
    layerAttention,
    tiedEmbeddings: f.bool('tie_word_embeddings', variant.tied ?? false),
    bosTokenId: f.tokenId('bos_token_id', variant.bos),
    eosTokenId: f.tokenId('eos_token_id', variant.eos),
  };
}

function parse(f: ConfigFields, arch: string) {
  const variant = VARIANTS[arch];
  const config = parseLlamaConfig(f, arch, variant, 'llama');
  const biases = variant.biases(f);
  return { config, units: (pk: TensorPicker) => llamaUnits(config, biases, pk) };
}

/**
 * Llama's tensors by unit and role. `fused`: Phi-3's qkv_proj [q; k; v] and gate_up_proj
 * [gate; up] in place of the separate projections; `more` binds a family's own tensors in each
 * block.
 */
export function llamaUnits(
  cfg: ModelConfig,
  biases: Biases,
  pk: TensorPicker,
  opts: { fused?: boolean; more?: (b: BlockRoles) => void } = {},
): UnitSpec[] {
  const C = cfg.hidden;
  const I = cfg.intermediate;
  const QD = cfg.heads * cfg.headDim;
  const KVD = cfg.kvHeads * cfg.headDim;
  return decoderUnits(cfg, pk, (b) => {
    b.norm('attn_norm', 'input_layernorm', false);
    if (opts.fused) {
      b.linear('qkv', 'self_attn.qkv_proj', QD + 2 * KVD, C, biases.qkv);
      b.linear('o', 'self_attn.o_proj', C, QD, biases.o);
    } else {
      b.attention(QD, KVD, biases.qkv, biases.o);
    }
    b.norm('mlp_norm', 'post_attention_layernorm', false);
    if (opts.fused) {
      b.linear('gate_up', 'mlp.gate_up_proj', 2 * I, C, biases.mlp);
      b.linear('down', 'mlp.down_proj', C, I, biases.mlp);
    } else {
      b.gatedMlp(I, biases.mlp);
    }
    opts.more?.(b);
  });
}

/**
 * Qwen2 (and Qwen3) slide a window only when use_sliding_window is true, and then on the layers
 * layer_types names (by default those from max_window_layers on).
 */
export function qwen2Layers(f: ConfigFields, layers: number): LayerAttention[] {
  const window = f.bool('use_sliding_window', false) ? slidingWindow(f, 4096) : null;
  const maxWindowLayers = f.int('max_window_layers', 28, 0);
  const types =
    layerTypesOf(f, layers) ??
    Array.from({ length: layers }, (_, i) => (window && i >= maxWindowLayers ? 'sliding_attention' : 'full_attention'));
  return windowedLayers(f, types, window, window === null && !f.bool('use_sliding_window', false) ? 'unused (use_sliding_window is false)' : 'null');
}

/**
 * SmolLM3: no_rope_layers[i] is 1 where layer i turns q and k (by default all but every
 * no_rope_layer_interval-th); with use_sliding_window, the layers without RoPE slide the window
 * (or those layer_types names).
 */
function smolLM3Layers(f: ConfigFields, layers: number): LayerAttention[] {
  const interval = f.int('no_rope_layer_interval', 4);
  const raw = f.raw('no_rope_layers');
  let rope: boolean[];
  if (raw === undefined || raw === null) {
    rope = Array.from({ length: layers }, (_, i) => (i + 1) % interval !== 0);
  } else {
    if (!Array.isArray(raw) || raw.length !== layers || raw.some((x) => x !== 0 && x !== 1)) {
      f.invalid('no_rope_layers', `must list 0 or 1 for each of the ${layers} layers, got ${JSON.stringify(raw)}`);
    }
    rope = raw.map((x) => x === 1);
  }
  const window = slidingWindow(f, null);
  const types =
    layerTypesOf(f, layers) ??
    rope.map((r) => (f.bool('use_sliding_window', false) && window !== null && !r ? 'sliding_attention' : 'full_attention'));
  // transformers' mask slides on every sliding_attention layer once sliding_window is set, given
  // layer_types or not (use_sliding_window only decides the derived types).
  return types.map((t, i) => ({ window: t === 'sliding_attention' && window ? window : 0, rope: rope[i] ? 0 : -1 }));
}

export const llama: ArchitectureFamily = {
  family: 'llama',
  architectures: Object.fromEntries(Object.entries(VARIANTS).map(([arch, v]) => [arch, v.modelType])),
  parse,
};
