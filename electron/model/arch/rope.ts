// Rotary position embeddings as config.json describes them, in both of the
// forms transformers writes: `rope_theta` + `rope_scaling` (transformers 4,
// with `type` as an older alias of `rope_type`) and `rope_parameters`
// (transformers 5), with `partial_rotary_factor` and (Phi-3)
// `original_max_position_embeddings` possibly at the top level. The result is
// what the engine computes its frequencies from (native/src/arch/rope.cpp).

import type { RopeSpec, RopeType } from '../types.js';
import { type ConfigFields, isObject } from './fields.js';

const TYPES: readonly RopeType[] = ['default', 'linear', 'dynamic', 'yarn', 'longrope', 'llama3'];

/** The rope dict and the key it came from (rope_parameters or rope_scaling), for messages. */
function ropeDict(f: ConfigFields): { key: string; dict: Record<string, unknown> } {
  for (const key of ['rope_parameters', 'rope_scaling']) {
    const v = f.raw(key);
    if (v === undefined || v === null) continue;
    if (!isObject(v)) f.invalid(key, `must be an object, got ${JSON.stringify(v)}`);
    return { key, dict: v };
  }
  return { key: 'rope_parameters', dict: {} };
}

/** The RoPE type a config names and where; refuses a type transformers does not define. */
export function ropeTypeOf(f: ConfigFields): { key: string; type: RopeType } {
  const { key, dict } = ropeDict(f);
  const type = dict.rope_type ?? dict.type ?? 'default';
  if (typeof type !== 'string' || !(TYPES as readonly string[]).includes(type)) {
    f.unsupported(`${key} of type ${JSON.stringify(type)} is not supported (${TYPES.join(', ')})`, key);
  }
  return { key, type: type as RopeType };
}

/** An architecture's RoPE defaults, and the older top-level names some configs use. */
export interface RopeDefaults {
  /** rope_theta when the config gives none (10000). */
  theta?: number;
  /** partial_rotary_factor when the config gives none (1). */
  partialRotaryFactor?: number;
  /** Top-level names read when rope_theta / partial_rotary_factor are absent (GPT-NeoX: rotary_emb_base, rotary_pct). */
  thetaAlias?: string;
  partialAlias?: string;
}

/**
 * The model's RoPE: its type, base, rotated dims per head and the scaling's parameters.
 * `defaults` gives the architecture's (a number: its rope_theta default).
 */
export function ropeOf(f: ConfigFields, headDim: number, defaults: RopeDefaults | number = {}): RopeSpec {
  const d: RopeDefaults = typeof defaults === 'number' ? { theta: defaults } : defaults;
  const { key, dict } = ropeDict(f);
  const { type } = ropeTypeOf(f);
  const field = (k: string) => `${key}.${k}`;
  // A number in the dict, else at the top level of the config (under its own name, then the alias).
  const num = (k: string, opts: { topLevel?: boolean; integer?: boolean; alias?: string } = {}): number | undefined => {
    let v = dict[k];
    let where = field(k);
    for (const top of opts.topLevel ? [k, opts.alias] : []) {
      if (!(v === undefined || v === null) || top === undefined) break;
      v = f.raw(top);
      where = top;
    }
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (opts.integer && !Number.isSafeInteger(v))) {
      f.invalid(where, `must be a positive ${opts.integer ? 'integer' : 'number'}, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const need = (k: string, opts: { topLevel?: boolean; integer?: boolean } = {}): number => {
    const v = num(k, opts);
    if (v === undefined) f.invalid(field(k), `is required by RoPE scaling "${type}"`);
    return v;
  };
  const factors = (k: string, n: number): number[] => {
    const v = dict[k];
    if (!Array.isArray(v) || v.length !== n || v.some((x) => typeof x !== 'number' || !Number.isFinite(x) || x <= 0)) {
      f.invalid(field(k), `must list ${n} positive numbers (rotary dims / 2) for RoPE scaling "longrope"`);
    }
    return v as number[];
  };

  const theta = num('rope_theta', { topLevel: true, alias: d.thetaAlias }) ?? d.theta ?? 10000;
  const partial = num('partial_rotary_factor', { topLevel: true, alias: d.partialAlias }) ?? d.partialRotaryFactor ?? 1;
  if (partial > 1) f.invalid(field('partial_rotary_factor'), `must be at most 1, got ${partial}`);
  const rotaryDim = Math.floor(headDim * partial);
  if (rotaryDim < 2 || rotaryDim % 2 !== 0) {
    f.invalid(field('partial_rotary_factor'), `gives ${rotaryDim} rotary dims of a ${headDim}-dim head; RoPE needs an even number`);
  }
  const spec: RopeSpec = { type, theta, rotaryDim };
  const original = () => need('original_max_position_embeddings', { topLevel: true, integer: true });
  switch (type) {
    case 'default':
      break;
    case 'linear':
    case 'dynamic':
      spec.factor = need('factor');
      break;
    case 'llama3':
      spec.factor = need('factor');
      spec.lowFreqFactor = need('low_freq_factor');
      spec.highFreqFactor = need('high_freq_factor');
      if (spec.lowFreqFactor === spec.highFreqFactor) f.invalid(field('high_freq_factor'), 'must differ from low_freq_factor');
      spec.originalMaxPositions = original();
      break;
    case 'yarn': {
      spec.factor = need('factor');
      spec.originalMaxPositions = original();
      const optional = ['beta_fast', 'beta_slow', 'mscale', 'mscale_all_dim', 'attention_factor'] as const;
      const names = { beta_fast: 'betaFast', beta_slow: 'betaSlow', mscale: 'mscale', mscale_all_dim: 'mscaleAllDim', attention_factor: 'attentionFactor' } as const;
      for (const k of optional) {
        const v = num(k);
        if (v !== undefined) spec[names[k]] = v;
      }
      const truncate = dict.truncate;
      if (truncate !== undefined && truncate !== null) {
        if (typeof truncate !== 'boolean') f.invalid(field('truncate'), `must be true or false, got ${JSON.stringify(truncate)}`);
        spec.truncate = truncate;
      }
      break;
    }
    case 'longrope': {
      spec.originalMaxPositions = original();
      spec.shortFactor = factors('short_factor', rotaryDim / 2);
      spec.longFactor = factors('long_factor', rotaryDim / 2);
      const factor = num('factor');
      if (factor !== undefined) spec.factor = factor;
      const attention = num('attention_factor');
      if (attention !== undefined) spec.attentionFactor = attention;
      break;
    }
  }
  return spec;
}
