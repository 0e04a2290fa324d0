// OPT (OPTForCausalLM): pre-LayerNorm blocks, learned positions offset by 2,
// separate q/k/v projections, a plain MLP (fc1, activation, fc2). OPT-350m
// is post-LayerNorm (do_layer_norm_before false) with no final norm, and its
// embeddings are narrower than the model (word_embed_proj_dim): project_in
// widens them, project_out narrows h before the head. Hub checkpoints name
// their tensors `model.decoder.*` or, saved from OPTModel, `decoder.*`.

import type { ModelConfig, UnitSpec } from '../types.js';
import type { ArchitectureFamily } from './family.js';
import { type ConfigFields, headDimOf } from './fields.js';
import { learnedPositions } from './layers.js';
import { type TensorPicker, blockRoles, headUnit, pickPrefix } from './tensors.js';

function parse(f: ConfigFields, arch: string) {
  const hidden = f.int('hidden_size');
  const layers = f.int('num_hidden_layers');
  const heads = f.int('num_attention_heads');
  const ffn = f.int('ffn_dim');
  const vocab = f.int('vocab_size');
  const maxPos = f.int('max_position_embeddings');
  const before = f.bool('do_layer_norm_before', true);
  const embedDim = f.int('word_embed_proj_dim', hidden);
  if (!f.bool('layer_norm_elementwise_affine', true)) {
    f.unsupported('layer_norm_elementwise_affine is false is not supported', 'layer_norm_elementwise_affine');
  }
  const bias = f.bool('enable_bias', true);
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
    ropes: [],
    layerAttention: learnedPositions(layers),
    tiedEmbeddings: f.bool('tie_word_embeddings', true),
    // OPTDecoder keeps its final norm only before-norm and not removed (_remove_final_layer_norm).
    ...(before ? {} : { postNorm: true }),
    ...(before && !f.bool('_remove_final_layer_norm', false) ? {} : { finalNorm: false }),
    ...(embedDim === hidden ? {} : { embedDim }),
    bosTokenId: f.tokenId('bos_token_id', 2),
    eosTokenId: f.tokenId('eos_token_id', 2),
  };
  return { config, units: (pk: TensorPicker) => units(config, bias, pk) };
}

function units(cfg: ModelConfig, bias: boolean, pk: TensorPicker): UnitSpec[] {
  const C = cfg.hidden;
  const E = cfg.embedDim ?? C;
  const F = cfg.intermediate;
  const p = pickPrefix(pk, ['model.decoder.', 'decoder.'], 'embed_tokens.weight');
  const result: UnitSpec[] = [
    {
      kind: 'embed',
      index: -1,
      tensors: {
        tok: pk.need(`${p}embed_tokens.weight`, [cfg.vocabSize, E]),
        pos: pk.need(`${p}embed_positions.weight`, [cfg.maxPositions + cfg.positionOffset, C]),
        ...(E === C ? {} : { proj: pk.need(`${p}project_in.weight`, [C, E]) }),
      },
    },
  ];
  for (let i = 0; i < cfg.layers; i++) {
    const b = blockRoles(pk, `${p}layers.${i}.`, C);
    b.norm('attn_norm', 'self_attn_layer_norm', true);
    b.linear('q', 'self_attn.q_proj', C, C, bias);
    b.linear('k', 'self_attn.k_proj', C, C, bias);
    b.linear('v', 'self_attn.v_proj', C, C, bias);
    b.linear('o', 'self_attn.out_proj', C, C, bias);
    b.norm('mlp_norm', 'final_layer_norm', true);
    b.linear('fc1', 'fc1', F, C, bias);
    b.linear('fc2', 'fc2', C, F, bias);
    result.push({ kind: 'block', index: i, tensors: b.tensors });
  }
  const norm = cfg.finalNorm === false ? null : `${p}final_layer_norm`;
  result.push(
    headUnit(cfg, pk, norm && `${norm}.weight`, norm && `${norm}.bias`, 'lm_head.weight', E === C ? undefined : `${p}project_out.weight`),
  );
  return result;
}

export const opt: ArchitectureFamily = {
  family: 'opt',
  architectures: { OPTForCausalLM: 'opt' },
  parse,
};
