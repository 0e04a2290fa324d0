// GPT-NeoX (GPTNeoXForCausalLM: Pythia, GPT-NeoX-20B): pre-LayerNorm blocks
// with biases, one fused query_key_value projection laid out per head
// ([heads, 3, head_dim]), rotary positions on the first rotary_pct of each
// head's dims, a GELU MLP, a parallel residual (use_parallel_residual) and an
// untied head, `embed_out` (`lm_head` under transformers 5's own names). Hub
// configs name the RoPE base and share rotary_emb_base and rotary_pct;
// transformers 5 writes them into rope_parameters. Older checkpoints carry
// the attention's mask and rotary buffers, which are not weights.

import type { ModelConfig, UnitSpec } from '../types.js';
import type { ArchitectureFamily } from './family.js';
import { type ConfigFields, headDimOf } from './fields.js';
import { uniformLayers } from './layers.js';
import { ropeOf, ropeTypeOf } from './rope.js';
import { type TensorPicker, blockRoles, headUnit } from './tensors.js';

function parse(f: ConfigFields, arch: string) {
  const hidden = f.int('hidden_size');
  const layers = f.int('num_hidden_layers');
  const heads = f.int('num_attention_heads');
  const headDim = headDimOf(f, hidden, heads);
  const { key, type } = ropeTypeOf(f);
  if (type !== 'default') f.unsupported(`${key} of type "${type}" is not supported yet`, key);
  // GPTNeoXConfig's defaults: a quarter of each head rotated, base 10000.
  const rope = ropeOf(f, headDim, { theta: 10000, partialRotaryFactor: 0.25, thetaAlias: 'rotary_emb_base', partialAlias: 'rotary_pct' });
  const bias = f.bool('attention_bias', true);
  const config: ModelConfig = {
    hfArchitecture: arch,
    family: 'gpt_neox',
    vocabSize: f.int('vocab_size'),
    hidden,
    layers,
    heads,
    kvHeads: heads,
    headDim,
    intermediate: f.int('intermediate_size'),
    maxPositions: f.int('max_position_embeddings', 2048),
    normEps: f.num('layer_norm_eps', 1e-5),
    norm: 'layernorm',
    activation: f.activation('hidden_act', 'gelu'),
    positionOffset: 0,
    ropes: [rope],
    layerAttention: uniformLayers(layers, 0),
    tiedEmbeddings: f.bool('tie_word_embeddings', false),
    parallelResidual: f.bool('use_parallel_residual', true),
    bosTokenId: f.tokenId('bos_token_id', 0),
    eosTokenId: f.tokenId('eos_token_id', 2),
  };
  return { config, units: (pk: TensorPicker) => units(config, bias, pk) };
}

function units(cfg: ModelConfig, bias: boolean, pk: TensorPicker): UnitSpec[] {
  const C = cfg.hidden;
  const I = cfg.intermediate;
  const p = 'gpt_neox.';
  const result: UnitSpec[] = [
    { kind: 'embed', index: -1, tensors: { tok: pk.need(`${p}embed_in.weight`, [cfg.vocabSize, C]) } },
  ];
  for (let i = 0; i < cfg.layers; i++) {
    const b = blockRoles(pk, `${p}layers.${i}.`, C);
    b.norm('attn_norm', 'input_layernorm', true);
    b.linear('qkv', 'attention.query_key_value', 3 * C, C, bias);
    b.linear('o', 'attention.dense', C, C, bias);
    b.norm('mlp_norm', 'post_attention_layernorm', true);
    b.linear('fc1', 'mlp.dense_h_to_4h', I, C, true);
    b.linear('fc2', 'mlp.dense_4h_to_h', C, I, true);
    result.push({ kind: 'block', index: i, tensors: b.tensors });
  }
  const lmHead = pk.has('lm_head.weight') && !pk.has('embed_out.weight') ? 'lm_head.weight' : 'embed_out.weight';
  result.push(headUnit(cfg, pk, `${p}final_layer_norm.weight`, `${p}final_layer_norm.bias`, lmHead));
  return result;
}

export const gptNeox: ArchitectureFamily = {
  family: 'gpt_neox',
  architectures: { GPTNeoXForCausalLM: 'gpt_neox' },
  parse,
  buffers: /(^|\.)layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)$/,
};
