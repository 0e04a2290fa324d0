// config.json -> ModelConfig, with the Hugging Face keys and defaults of each
// supported architecture. Dimensions (hidden size, layers, heads, MLP width,
// vocabulary, positions for learned-position models) are required: the
// transformers defaults for them describe some base model, never the
// checkpoint at hand, so a config without them is treated as broken.

import * as path from 'node:path';
import type { Activation, ArchFamily, ModelConfig } from './types.js';
import { ModelError } from './errors.js';

export const SUPPORTED_ARCHITECTURES = [
  'OPTForCausalLM',
  'GPT2LMHeadModel',
  'LlamaForCausalLM',
  'MistralForCausalLM',
  'Qwen2ForCausalLM',
] as const;

export type SupportedArchitecture = (typeof SUPPORTED_ARCHITECTURES)[number];

const MODEL_TYPE_TO_ARCH: Record<string, SupportedArchitecture> = {
  opt: 'OPTForCausalLM',
  gpt2: 'GPT2LMHeadModel',
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
};

export function familyOf(arch: SupportedArchitecture): ArchFamily {
  switch (arch) {
    case 'OPTForCausalLM':
      return 'opt';
    case 'GPT2LMHeadModel':
      return 'gpt2';
    default:
      return 'llama';
  }
}

/** Extra facts about a config the tensor mapper needs but ModelConfig omits. */
export interface ConfigExtras {
  /** OPT `enable_bias` (all linear layers have biases). */
  linearBias: boolean;
  /** q/k/v projections have biases (Llama attention_bias, always for Qwen2). */
  qkvBias: boolean;
  /** o_proj has a bias (Llama attention_bias). */
  oBias: boolean;
  /** gate/up/down have biases (Llama mlp_bias). */
  mlpBias: boolean;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Picks the supported architecture a config.json describes, or throws. */
export function architectureOf(json: unknown, file: string): SupportedArchitecture {
  if (!isObject(json)) throw new ModelError(`${file} must hold a JSON object`, { file });
  const archs = json.architectures;
  const list = Array.isArray(archs) ? archs.filter((a): a is string => typeof a === 'string') : [];
  for (const a of list) {
    if ((SUPPORTED_ARCHITECTURES as readonly string[]).includes(a)) return a as SupportedArchitecture;
  }
  if (list.length === 0) {
    const mt = json.model_type;
    if (typeof mt === 'string' && Object.prototype.hasOwnProperty.call(MODEL_TYPE_TO_ARCH, mt)) {
      return MODEL_TYPE_TO_ARCH[mt];
    }
    throw new ModelError(
      `${file} names no architecture ("architectures" is missing${typeof mt === 'string' ? ` and model_type "${mt}" is not supported` : ''}); supported: ${SUPPORTED_ARCHITECTURES.join(', ')}`,
      { file, field: 'architectures', kind: typeof mt === 'string' ? 'unsupported' : 'invalid' },
    );
  }
  throw new ModelError(
    `unsupported architecture ${list.join(', ')} in ${file}; supported: ${SUPPORTED_ARCHITECTURES.join(', ')}`,
    { file, field: 'architectures', kind: 'unsupported' },
  );
}

/** Reads typed fields of one config.json, naming the file and field on error. */
class Fields {
  constructor(
    private readonly json: Record<string, unknown>,
    readonly file: string,
    readonly arch: string,
  ) {}

  has(key: string): boolean {
    return this.json[key] !== undefined && this.json[key] !== null;
  }

  raw(key: string): unknown {
    return this.json[key];
  }

  private bad(key: string, what: string): never {
    throw new ModelError(`${this.file}: field "${key}" ${what}`, { file: this.file, field: key });
  }

  unsupported(reason: string, field?: string): never {
    throw new ModelError(`${this.arch} in ${this.file}: ${reason}`, {
      file: this.file,
      field,
      kind: 'unsupported',
    });
  }

  /** Positive integer; required when no default is given. */
  int(key: string, def?: number, min = 1): number {
    const v = this.json[key];
    if (v === undefined || v === null) {
      if (def === undefined) {
        throw new ModelError(`${this.file} is missing required field "${key}" (${this.arch})`, {
          file: this.file,
          field: key,
        });
      }
      return def;
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
      this.bad(key, `must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  /** Positive finite number. */
  num(key: string, def: number): number {
    const v = this.json[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      this.bad(key, `must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  bool(key: string, def: boolean): boolean {
    const v = this.json[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'boolean') this.bad(key, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  str(key: string, def: string): string {
    const v = this.json[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'string') this.bad(key, `must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  /** Token id: integer, null, or a list (first element taken, e.g. Llama 3 eos). */
  tokenId(key: string, def: number | null): number | null {
    let v = this.json[key];
    if (v === undefined) return def;
    if (Array.isArray(v)) v = v.length > 0 ? v[0] : null;
    if (v === null) return null;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      this.bad(key, `must be a token id, got ${JSON.stringify(this.json[key])}`);
    }
    return v;
  }

  activation(key: string, def: string): Activation {
    const a = this.str(key, def);
    switch (a) {
      case 'relu':
      case 'gelu':
      case 'gelu_new':
      case 'silu':
        return a;
      case 'gelu_pytorch_tanh':
      case 'gelu_fast':
        // Same tanh approximation as gelu_new.
        return 'gelu_new';
      case 'swish':
        return 'silu';
      default:
        return this.unsupported(`activation ${key}="${a}" is not supported (relu, gelu, gelu_new, silu)`, key);
    }
  }
}

/**
 * Parses config.json (already JSON-decoded) of the model in `dir`.
 * Throws ModelError (kind 'invalid' or 'unsupported') naming the file and field.
 */
export function parseModelConfig(json: unknown, dir: string): ModelConfig {
  return parseModelConfigEx(json, dir).config;
}

/** parseModelConfig plus the bias flags the tensor mapper needs. */
export function parseModelConfigEx(json: unknown, dir: string): { config: ModelConfig; extras: ConfigExtras } {
  const file = path.join(dir, 'config.json');
  const arch = architectureOf(json, file);
  const f = new Fields(json as Record<string, unknown>, file, arch);
  switch (familyOf(arch)) {
    case 'opt':
      return parseOpt(f, arch);
    case 'gpt2':
      return parseGpt2(f, arch);
    default:
      return parseLlama(f, arch);
  }
}

function headDimOf(f: Fields, hidden: number, heads: number, key = 'num_attention_heads'): number {
  if (hidden % heads !== 0) {
    throw new ModelError(`${f.file}: hidden size ${hidden} is not divisible by ${key}=${heads}`, {
      file: f.file,
      field: key,
    });
  }
  return hidden / heads;
}

function parseOpt(f: Fields, arch: SupportedArchitecture): { config: ModelConfig; extras: ConfigExtras } {
  const hidden = f.int('hidden_size');
  const layers = f.int('num_hidden_layers');
  const heads = f.int('num_attention_heads');
  const ffn = f.int('ffn_dim');
  const vocab = f.int('vocab_size');
  const maxPos = f.int('max_position_embeddings');
  if (!f.bool('do_layer_norm_before', true)) {
    f.unsupported(
      'do_layer_norm_before is false (post-LayerNorm OPT, e.g. opt-350m) is not supported',
      'do_layer_norm_before',
    );
  }
  const proj = f.int('word_embed_proj_dim', hidden);
  if (proj !== hidden) {
    f.unsupported(
      `word_embed_proj_dim ${proj} differs from hidden_size ${hidden} (project_in/project_out layers are not supported)`,
      'word_embed_proj_dim',
    );
  }
  if (f.bool('_remove_final_layer_norm', false)) {
    f.unsupported('_remove_final_layer_norm is true (no final LayerNorm) is not supported', '_remove_final_layer_norm');
  }
  if (!f.bool('layer_norm_elementwise_affine', true)) {
    f.unsupported('layer_norm_elementwise_affine is false is not supported', 'layer_norm_elementwise_affine');
  }
  const enableBias = f.bool('enable_bias', true);
  const config: ModelConfig = {
    hfArchitecture: arch,
    family: 'opt',
    vocabSize: vocab,
    hidden,
    layers,
    heads,
    kvHeads: heads,
    headDim: headDimOf(f, hidden, heads),
    intermediate: ffn,
    maxPositions: maxPos,
    normEps: 1e-5, // OPT uses nn.LayerNorm's default; there is no config key.
    norm: 'layernorm',
    activation: f.activation('activation_function', 'relu'),
    positionOffset: 2,
    ropeTheta: 0,
    slidingWindow: 0,
    tiedEmbeddings: f.bool('tie_word_embeddings', true),
    bosTokenId: f.tokenId('bos_token_id', 2),
    eosTokenId: f.tokenId('eos_token_id', 2),
  };
  return { config, extras: { linearBias: enableBias, qkvBias: enableBias, oBias: enableBias, mlpBias: enableBias } };
}

function parseGpt2(f: Fields, arch: SupportedArchitecture): { config: ModelConfig; extras: ConfigExtras } {
  const hidden = f.int('n_embd');
  const layers = f.int('n_layer');
  const heads = f.int('n_head');
  const vocab = f.int('vocab_size');
  const maxPos = f.int('n_positions');
  const inner = f.int('n_inner', 4 * hidden);
  if (f.bool('scale_attn_by_inverse_layer_idx', false)) {
    f.unsupported('scale_attn_by_inverse_layer_idx is true is not supported', 'scale_attn_by_inverse_layer_idx');
  }
  if (!f.bool('scale_attn_weights', true)) {
    f.unsupported('scale_attn_weights is false is not supported', 'scale_attn_weights');
  }
  if (f.bool('add_cross_attention', false)) {
    f.unsupported('add_cross_attention is true is not supported', 'add_cross_attention');
  }
  const config: ModelConfig = {
    hfArchitecture: arch,
    family: 'gpt2',
    vocabSize: vocab,
    hidden,
    layers,
    heads,
    kvHeads: heads,
    headDim: headDimOf(f, hidden, heads, 'n_head'),
    intermediate: inner,
    maxPositions: maxPos,
    normEps: f.num('layer_norm_epsilon', 1e-5),
    norm: 'layernorm',
    activation: f.activation('activation_function', 'gelu_new'),
    positionOffset: 0,
    ropeTheta: 0,
    slidingWindow: 0,
    tiedEmbeddings: f.bool('tie_word_embeddings', true),
    bosTokenId: f.tokenId('bos_token_id', 50256),
    eosTokenId: f.tokenId('eos_token_id', 50256),
  };
  return { config, extras: { linearBias: true, qkvBias: true, oBias: true, mlpBias: true } };
}

/** Llama-family defaults from transformers' LlamaConfig / MistralConfig / Qwen2Config. */
const LLAMA_DEFAULTS: Record<
  'LlamaForCausalLM' | 'MistralForCausalLM' | 'Qwen2ForCausalLM',
  { maxPos: number; bos: number | null; eos: number | null }
> = {
  LlamaForCausalLM: { maxPos: 2048, bos: 1, eos: 2 },
  MistralForCausalLM: { maxPos: 4096 * 32, bos: 1, eos: 2 },
  Qwen2ForCausalLM: { maxPos: 32768, bos: null, eos: null },
};

function ropeTypeOf(v: unknown): string | null {
  if (!isObject(v)) return null;
  const t = v.rope_type ?? v.type;
  return typeof t === 'string' ? t : null;
}

function parseLlama(f: Fields, arch: SupportedArchitecture): { config: ModelConfig; extras: ConfigExtras } {
  const defs = LLAMA_DEFAULTS[arch as keyof typeof LLAMA_DEFAULTS];
  const hidden = f.int('hidden_size');
  const layers = f.int('num_hidden_layers');
  const heads = f.int('num_attention_heads');
  const inter = f.int('intermediate_size');
  const vocab = f.int('vocab_size');
  const maxPos = f.int('max_position_embeddings', defs.maxPos);
  const kvHeads = f.int('num_key_value_heads', heads);
  if (heads % kvHeads !== 0) {
    throw new ModelError(
      `${f.file}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`,
      { file: f.file, field: 'num_key_value_heads' },
    );
  }
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

  // RoPE: rope_scaling (transformers < 5) or rope_parameters (transformers 5).
  let ropeTheta = f.num('rope_theta', 10000);
  const scaling = f.raw('rope_scaling');
  if (scaling !== undefined && scaling !== null) {
    const t = ropeTypeOf(scaling);
    if (t !== 'default') {
      f.unsupported(`rope_scaling of type "${t ?? JSON.stringify(scaling)}" is not supported`, 'rope_scaling');
    }
  }
  const params = f.raw('rope_parameters');
  if (isObject(params)) {
    const t = ropeTypeOf(params);
    if (t !== null && t !== 'default') {
      f.unsupported(`rope_parameters of type "${t}" is not supported`, 'rope_parameters');
    }
    const th = params.rope_theta;
    if (th !== undefined) {
      if (typeof th !== 'number' || !Number.isFinite(th) || th <= 0) {
        throw new ModelError(`${f.file}: rope_parameters.rope_theta must be a positive number`, {
          file: f.file,
          field: 'rope_parameters',
        });
      }
      ropeTheta = th;
    }
  }

  let slidingWindow = 0;
  let qkvBias = false;
  let oBias = false;
  let mlpBias = false;
  if (arch === 'LlamaForCausalLM') {
    qkvBias = oBias = f.bool('attention_bias', false);
    mlpBias = f.bool('mlp_bias', false);
  } else if (arch === 'MistralForCausalLM') {
    // MistralConfig: sliding_window defaults to 4096; null means full attention.
    const sw = f.raw('sliding_window');
    slidingWindow = sw === null ? 0 : f.int('sliding_window', 4096);
  } else {
    // Qwen2: q/k/v always carry a bias, o_proj never; no MLP biases.
    qkvBias = true;
    slidingWindow = qwen2SlidingWindow(f, layers);
  }

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
    ropeTheta,
    slidingWindow,
    tiedEmbeddings: f.bool('tie_word_embeddings', false),
    bosTokenId: f.tokenId('bos_token_id', defs.bos),
    eosTokenId: f.tokenId('eos_token_id', defs.eos),
  };
  return { config, extras: { linearBias: false, qkvBias, oBias, mlpBias } };
}

/**
 * Qwen2 applies its sliding window only when use_sliding_window is true, and
 * then only to layers >= max_window_layers (or per `layer_types` in newer
 * configs). ModelConfig has one window for all layers, so a mix is refused.
 */
function qwen2SlidingWindow(f: Fields, layers: number): number {
  const lt = f.raw('layer_types');
  let sliding: boolean[];
  if (Array.isArray(lt)) {
    if (lt.length !== layers) {
      throw new ModelError(`${f.file}: layer_types has ${lt.length} entries, expected ${layers}`, {
        file: f.file,
        field: 'layer_types',
      });
    }
    sliding = lt.map((t) => t === 'sliding_attention');
  } else {
    if (!f.bool('use_sliding_window', false)) return 0;
    const maxWindowLayers = f.int('max_window_layers', 28, 0);
    sliding = Array.from({ length: layers }, (_, i) => i >= maxWindowLayers);
  }
  const n = sliding.filter(Boolean).length;
  if (n === 0) return 0;
  const sw = f.raw('sliding_window');
  if (sw === null) return 0;
  const window = f.int('sliding_window', 4096);
  if (n !== layers) {
    f.unsupported(
      `sliding-window attention on ${n} of ${layers} layers (max_window_layers/layer_types) is not supported`,
      'use_sliding_window',
    );
  }
  return window;
}
