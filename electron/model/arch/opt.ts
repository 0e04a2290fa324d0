// OPT (OPTForCausalLM): pre-LayerNorm blocks, learned positions offset by 2,
// separate q/k/v projections, a plain MLP (fc1, activation, fc2). Hub
// checkpoints name their tensors `model.decoder.*` or, saved from OPTModel,
// `decoder.*`.

import type { ModelConfig, TensorRef, UnitSpec } from '../types.js';
import type { ArchitectureFamily } from './family.js';
import { type ConfigFields, headDimOf } from './fields.js';
import { learnedPositions } from './layers.js';
import { type TensorPicker, headUnit, pickPrefix } from './tensors.js';

function parse(f: ConfigFields, arch: string) {
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
    bosTokenId: f.tokenId('bos_token_id', 2),
    eosTokenId: f.tokenId('eos_token_id', 2),
  };
  return { config, units: (pk: TensorPicker) => units(config, bias, pk) };
}

function units(cfg: ModelConfig, bias: boolean, pk: TensorPicker): UnitSpec[] {
  const C = cfg.hidden;
  const F = cfg.intermediate;
  const p = pickPrefix(pk, ['model.decoder.', 'decoder.'], 'embed_tokens.weight');
  const result: UnitSpec[] = [
    {
      kind: 'embed',
      index: -1,
      tensors: {
        tok: pk.need(`${p}embed_tokens.weight`, [cfg.vocabSize, C]),
        pos: pk.need(`${p}embed_positions.weight`, [cfg.maxPositions + cfg.positionOffset, C]),
      },
    },
  ];
  for (let i = 0; i < cfg.layers; i++) {
    const l = `${p}layers.${i}.`;
    const t: Record<string, TensorRef> = {};
    const lin = (role: string, name: string, out: number, inp: number) => {
      t[`${role}_w`] = pk.need(`${l}${name}.weight`, [out, inp]);
      if (bias) t[`${role}_b`] = pk.need(`${l}${name}.bias`, [out]);
    };
    t.attn_norm_w = pk.need(`${l}self_attn_layer_norm.weight`, [C]);
    t.attn_norm_b = pk.need(`${l}self_attn_layer_norm.bias`, [C]);
    lin('q', 'self_attn.q_proj', C, C);
    lin('k', 'self_attn.k_proj', C, C);
    lin('v', 'self_attn.v_proj', C, C);
    lin('o', 'self_attn.out_proj', C, C);
    t.mlp_norm_w = pk.need(`${l}final_layer_norm.weight`, [C]);
    t.mlp_norm_b = pk.need(`${l}final_layer_norm.bias`, [C]);
    lin('fc1', 'fc1', F, C);
    lin('fc2', 'fc2', C, F);
    result.push({ kind: 'block', index: i, tensors: t });
  }
  result.push(headUnit(cfg, pk, `${p}final_layer_norm.weight`, `${p}final_layer_norm.bias`));
  return result;
}

export const opt: ArchitectureFamily = {
  family: 'opt',
  architectures: { OPTForCausalLM: 'opt' },
  parse,
};
