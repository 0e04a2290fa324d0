// Phi-3 (Phi3ForCausalLM: Phi-3, Phi-3.5, Phi-4-mini): Llama's block with q, k
// and v fused into one qkv_proj [q; k; v] and gate and up into one
// gate_up_proj [gate; up], no biases, rotary positions on the first
// partial_rotary_factor of each head (Phi-4-mini: 3/4), longrope (older configs
// call it "su" or "yarn"), and one sliding_window for every layer when set.

import type { ArchitectureFamily } from './family.js';
import type { ConfigFields } from './fields.js';
import { type Variant, NO_BIASES, llamaUnits, parseLlamaConfig, slidingWindow } from './llama.js';
import { uniformLayers } from './layers.js';
import type { TensorPicker } from './tensors.js';

const PHI3: Variant = {
  modelType: 'phi3',
  maxPos: 4096,
  bos: 1,
  eos: 32000,
  biases: () => NO_BIASES,
  layers: (f, layers) => uniformLayers(layers, slidingWindow(f, null) ?? 0),
  ropeAliases: { su: 'longrope', yarn: 'longrope' },
};

function parse(f: ConfigFields, arch: string) {
  const config = parseLlamaConfig(f, arch, PHI3, 'phi3');
  return { config, units: (pk: TensorPicker) => llamaUnits(config, NO_BIASES, pk, { fused: true }) };
}

export const phi3: ArchitectureFamily = {
  family: 'phi3',
  architectures: { Phi3ForCausalLM: PHI3.modelType },
  parse,
};
