// What differs from block to block of one model: which layers attend through a
// sliding window (config.json's `layer_types`, or a family's older keys) and
// which rotary table each uses. The engine reads it per block
// (ModelConfig.layerAttention, native LayerAttention).

import type { LayerAttention, ModelConfig } from '../types.js';
import type { ConfigFields } from './fields.js';

/** Learned positions (OPT, GPT-2): every block full causal, no rotary table. */
export function learnedPositions(layers: number): LayerAttention[] {
  return Array.from({ length: layers }, () => ({ window: 0, rope: -1 }));
}

/** Every block with the same window (0: full causal) and rotary table 0. */
export function uniformLayers(layers: number, window: number): LayerAttention[] {
  return Array.from({ length: layers }, () => ({ window, rope: 0 }));
}

export type LayerType = 'full_attention' | 'sliding_attention';

/**
 * `layer_types` as transformers 5 writes it (one entry per layer), or null when the config has
 * none. Refuses a list of the wrong length and the layer types the engine does not run.
 */
export function layerTypesOf(f: ConfigFields, layers: number): LayerType[] | null {
  const lt = f.raw('layer_types');
  if (lt === undefined || lt === null) return null;
  if (!Array.isArray(lt) || lt.length !== layers) {
    f.invalid('layer_types', `must list one type per layer (${layers}), got ${JSON.stringify(lt)}`);
  }
  return lt.map((t, i) => {
    if (t === 'full_attention' || t === 'sliding_attention') return t;
    return f.unsupported(`layer_types[${i}] is ${JSON.stringify(t)} (full_attention and sliding_attention are supported)`, 'layer_types');
  });
}

/**
 * Blocks that follow their layer types: sliding layers get `window`, full ones attend over the
 * whole sequence; all use rotary table 0. transformers fails on sliding layers without a window,
 * so such a config is refused here, naming why.
 */
export function windowedLayers(f: ConfigFields, types: LayerType[], window: number | null, why: string): LayerAttention[] {
  const sliding = types.filter((t) => t === 'sliding_attention').length;
  if (sliding > 0 && !window) {
    f.invalid('sliding_window', `is ${why}, but layer_types has ${sliding} sliding_attention layer${sliding === 1 ? '' : 's'}`);
  }
  return types.map((t) => ({ window: t === 'sliding_attention' ? window! : 0, rope: 0 }));
}

/**
 * The most tokens a sequence may have: max_position_embeddings, unless every rotary table
 * defines longer ones (dynamic NTK grows its base with the length; native rope_extends_past_max)
 * or the config states no limit (0).
 */
export function positionLimit(config: ModelConfig): number {
  const unbounded = config.ropes.length > 0 && config.ropes.every((r) => r.type === 'dynamic');
  return unbounded || !(config.maxPositions > 0) ? Infinity : config.maxPositions;
}
