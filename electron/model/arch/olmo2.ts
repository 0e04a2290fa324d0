// OLMo 2 (Olmo2ForCausalLM): no norm before attention or the MLP; each
// branch's output is RMS-normed before its residual, q and k are RMS-normed
// over the whole projection width before RoPE; grouped-query heads, a gated
// SiLU MLP, biases only with attention_bias, an untied head.

import type { ModelConfig, UnitSpec } from '../types.js';
import type { ArchitectureFamily } from './family.js';
import { type ConfigFields, headDimOf, kvHeadsOf } from './fields.js';
import { uniformLayers } from './layers.js';
import { ropeOf, ropeTypeOf } from './rope.js';
import { type TensorPicker, decoderUnits } from './tensors.js';

function parse(f: ConfigFields, arch: string) {
  const hidden = f.int('hidden_size');
  const layers = f.int('num_hidden_layers');
  const heads = f.int('num_attention_heads');
  const kvHeads = kvHeadsOf(f, heads);
  const headDim = f.has('head_dim') ? f.int('head_dim') : headDimOf(f, hidden, heads);
  const act = f.str('hidden_act', 'silu');
  if (act !== 'silu' && act !== 'swish') f.unsupported(`hidden_act "${act}" is not supported (silu only)`, 'hidden_act');
  const { key, type } = ropeTypeOf(f);
  if (type !== 'default') f.unsupported(`${key} of type "${type}" is not supported yet`, key);
  const rope = ropeOf(f, headDim);
  const config: ModelConfig = {
    hfArchitecture: arch,
    family: 'olmo2',
    vocabSize: f.int('vocab_size'),
    hidden,
    layers,
    heads,
    kvHeads,
    headDim,
    intermediate: f.int('intermediate_size'),
    maxPositions: f.int('max_position_embeddings', 2048),
    normEps: f.num('rms_norm_eps', 1e-5),
    norm: 'rmsnorm',
    activation: 'silu',
    positionOffset: 0,
    ropes: [rope],
    layerAttention: uniformLayers(layers, 0),
    tiedEmbeddings: f.bool('tie_word_embeddings', false),
    bosTokenId: f.tokenId('bos_token_id', null),
    eosTokenId: f.tokenId('eos_token_id', 50279),
  };
  return { config, units: (pk: TensorPicker) => units(config, f.bool('attention_bias', false), pk) };
}

function units(cfg: ModelConfig, bias: boolean, pk: TensorPicker): UnitSpec[] {
  const QD = cfg.heads * cfg.headDim;
  const KVD = cfg.kvHeads * cfg.headDim;
  return decoderUnits(cfg, pk, (b) => {
    b.attention(QD, KVD, bias);
    // q and k are normed over all their heads at once: weights as wide as the projections.
    b.qkNorms(QD, KVD);
    b.norm('post_attn_norm', 'post_attention_layernorm', false);
    b.gatedMlp(cfg.intermediate);
    b.norm('post_mlp_norm', 'post_feedforward_layernorm', false);
  });
}

export const olmo2: ArchitectureFamily = {
  family: 'olmo2',
  architectures: { Olmo2ForCausalLM: 'olmo2' },
  parse,
};
