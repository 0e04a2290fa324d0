// GPT-2 (GPT2LMHeadModel): pre-LayerNorm blocks, learned positions, one fused
// q|k|v Conv1D and Conv1D MLP weights stored [in, out], gelu_new. Hub
// checkpoints name their tensors `transformer.*` or, saved from GPT2Model,
// without the prefix; older ones also carry the attention's causal-mask
// buffers (`attn.bias`, `attn.masked_bias`), which are not weights.

import type { ModelConfig, UnitSpec } from '../types.js';
import type { ArchitectureFamily } from './family.js';
import { type ConfigFields, headDimOf } from './fields.js';
import { learnedPositions } from './layers.js';
import { type TensorPicker, headUnit, pickPrefix } from './tensors.js';

function parse(f: ConfigFields, arch: string) {
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
    ropes: [],
    layerAttention: learnedPositions(layers),
    tiedEmbeddings: f.bool('tie_word_embeddings', true),
    bosTokenId: f.tokenId('bos_token_id', 50256),
    eosTokenId: f.tokenId('eos_token_id', 50256),
  };
  return { config, units: (pk: TensorPicker) => units(config, pk) };
}

function units(cfg: ModelConfig, pk: TensorPicker): UnitSpec[] {
  const C = cfg.hidden;
  const F = cfg.intermediate;
  const p = pickPrefix(pk, ['transformer.', ''], 'wte.weight');
  const result: UnitSpec[] = [
    {
      kind: 'embed',
      index: -1,
      tensors: {
        tok: pk.need(`${p}wte.weight`, [cfg.vocabSize, C]),
        pos: pk.need(`${p}wpe.weight`, [cfg.maxPositions, C]),
      },
    },
  ];
  for (let i = 0; i < cfg.layers; i++) {
    const l = `${p}h.${i}.`;
    result.push({
      kind: 'block',
      index: i,
      tensors: {
        attn_norm_w: pk.need(`${l}ln_1.weight`, [C]),
        attn_norm_b: pk.need(`${l}ln_1.bias`, [C]),
        // Conv1D: stored [in, out].
        qkv_w: pk.need(`${l}attn.c_attn.weight`, [C, 3 * C], true),
        qkv_b: pk.need(`${l}attn.c_attn.bias`, [3 * C]),
        o_w: pk.need(`${l}attn.c_proj.weight`, [C, C], true),
        o_b: pk.need(`${l}attn.c_proj.bias`, [C]),
        mlp_norm_w: pk.need(`${l}ln_2.weight`, [C]),
        mlp_norm_b: pk.need(`${l}ln_2.bias`, [C]),
        fc1_w: pk.need(`${l}mlp.c_fc.weight`, [C, F], true),
        fc1_b: pk.need(`${l}mlp.c_fc.bias`, [F]),
        fc2_w: pk.need(`${l}mlp.c_proj.weight`, [F, C], true),
        fc2_b: pk.need(`${l}mlp.c_proj.bias`, [C]),
      },
    });
  }
  result.push(headUnit(cfg, pk, `${p}ln_f.weight`, `${p}ln_f.bias`));
  return result;
}

export const gpt2: ArchitectureFamily = {
  family: 'gpt2',
  architectures: { GPT2LMHeadModel: 'gpt2' },
  parse,
  buffers: /(^|\.)h\.\d+\.attn\.(masked_)?bias$/,
};
