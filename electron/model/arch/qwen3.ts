// Qwen3 (Qwen3ForCausalLM): Llama's block with an RMSNorm of each query and
// key head (q_norm, k_norm over head_dim) before RoPE, head_dim 128 unless the
// config says (not hidden / heads), attention_bias on q, k, v and o (false in
// the released models), and Qwen2's sliding windows.

import type { ArchitectureFamily } from './family.js';
import type { ConfigFields } from './fields.js';
import { type Variant, configBiases, llamaUnits, parseLlamaConfig, qwen2Layers } from './llama.js';
import type { TensorPicker } from './tensors.js';

const QWEN3: Variant = {
  modelType: 'qwen3',
  maxPos: 32768,
  bos: null,
  eos: null,
  headDim: 128,
  biases: configBiases,
  layers: qwen2Layers,
};

function parse(f: ConfigFields, arch: string) {
  const config = parseLlamaConfig(f, arch, QWEN3, 'qwen3');
  const biases = QWEN3.biases(f);
  const HD = config.headDim;
  return { config, units: (pk: TensorPicker) => llamaUnits(config, biases, pk, { more: (b) => b.qkNorms(HD, HD) }) };
}

export const qwen3: ArchitectureFamily = {
  family: 'qwen3',
  architectures: { Qwen3ForCausalLM: QWEN3.modelType },
  parse,
};
