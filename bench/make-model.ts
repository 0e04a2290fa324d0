// Writes a deterministic random OPT-125M-shaped Hugging Face model folder
// (config.json + model.safetensors, float32, tied embeddings) for the benchmarks.
// Weights ~ N(0, 0.02) from a seeded PRNG, LayerNorm weights 1, biases 0.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { loadModelInfo, writeSafetensors } from '../electron/model/index.js';
import type { WriteTensor } from '../electron/model/index.js';

export interface OptShape {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  ffn: number;
  maxPositions: number;
}

export const OPT_125M: OptShape = { vocab: 50272, hidden: 768, layers: 12, heads: 12, ffn: 3072, maxPositions: 2048 };

export function optConfig(s: OptShape): Record<string, unknown> {
  return {
    _remove_final_layer_norm: false,
    activation_dropout: 0.0,
    activation_function: 'relu',
    architectures: ['OPTForCausalLM'],
    attention_dropout: 0.0,
    bos_token_id: 2,
    do_layer_norm_before: true,
    dropout: 0.0,
    enable_bias: true,
    eos_token_id: 2,
    ffn_dim: s.ffn,
    hidden_size: s.hidden,
    init_std: 0.02,
    layer_norm_elementwise_affine: true,
    layerdrop: 0.0,
    max_position_embeddings: s.maxPositions,
    model_type: 'opt',
    num_attention_heads: s.heads,
    num_hidden_layers: s.layers,
    pad_token_id: 1,
    prefix: '</s>',
    tie_word_embeddings: true,
    torch_dtype: 'float32',
    use_cache: true,
    vocab_size: s.vocab,
    word_embed_proj_dim: s.hidden,
  };
}

/** xoshiro128** seeded through splitmix32: fast, deterministic, 32-bit only. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare: number | null = null;

  constructor(seed: number) {
    let x = seed >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
  }

  u32(): number {
    const r = Math.imul(((Math.imul(this.s1, 5) << 7) | (Math.imul(this.s1, 5) >>> 25)) >>> 0, 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = ((this.s3 << 11) | (this.s3 >>> 21)) >>> 0;
    this.s0 >>>= 0;
    this.s1 >>>= 0;
    this.s2 >>>= 0;
    return r;
  }

  /** Uniform in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 4294967296) * n);
  }

  /** Standard normal (Box-Muller, both outputs used). */
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    const u1 = (this.u32() + 1) / 4294967297;
    const u2 = this.u32() / 4294967296;
    const r = Math.sqrt(-2 * Math.log(u1));
    this.spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  }
}

function tensor(name: string, shape: number[], fill: (a: Float32Array) => void): WriteTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  fill(a);
  return { name, dtype: 'F32', shape, data: new Uint8Array(a.buffer, a.byteOffset, a.byteLength) };
}

/** The tensors of an OPT model in Hugging Face naming (tied head: no lm_head.weight). */
export function optTensors(s: OptShape, seed: number, std = 0.02): WriteTensor[] {
  const rng = new Rng(seed);
  const normal = (a: Float32Array) => {
    for (let i = 0; i < a.length; i++) a[i] = std * rng.normal();
  };
  const ones = (a: Float32Array) => a.fill(1);
  const zeros = (_a: Float32Array) => undefined;
  const C = s.hidden;
  const p = 'model.decoder.';
  const out: WriteTensor[] = [
    tensor(`${p}embed_tokens.weight`, [s.vocab, C], normal),
    tensor(`${p}embed_positions.weight`, [s.maxPositions + 2, C], normal),
  ];
  for (let i = 0; i < s.layers; i++) {
    const l = `${p}layers.${i}.`;
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      out.push(tensor(`${l}self_attn.${proj}.weight`, [C, C], normal));
      out.push(tensor(`${l}self_attn.${proj}.bias`, [C], zeros));
    }
    out.push(tensor(`${l}self_attn_layer_norm.weight`, [C], ones));
    out.push(tensor(`${l}self_attn_layer_norm.bias`, [C], zeros));
    out.push(tensor(`${l}fc1.weight`, [s.ffn, C], normal));
    out.push(tensor(`${l}fc1.bias`, [s.ffn], zeros));
    out.push(tensor(`${l}fc2.weight`, [C, s.ffn], normal));
    out.push(tensor(`${l}fc2.bias`, [C], zeros));
    out.push(tensor(`${l}final_layer_norm.weight`, [C], ones));
    out.push(tensor(`${l}final_layer_norm.bias`, [C], zeros));
  }
  out.push(tensor(`${p}final_layer_norm.weight`, [C], ones));
  out.push(tensor(`${p}final_layer_norm.bias`, [C], zeros));
  return out;
}

const STAMP = 'bench-model.json';

/**
 * Makes (or reuses) the random OPT model folder at `dir`. A folder is reused
 * when its stamp records the same shape and seed.
 */
export async function makeOptModel(dir: string, s: OptShape = OPT_125M, seed = 1234): Promise<{ dir: string; reused: boolean }> {
  const stamp = JSON.stringify({ shape: s, seed, std: 0.02, version: 1 });
  const stampFile = join(dir, STAMP);
  if (existsSync(stampFile) && existsSync(join(dir, 'model.safetensors')) && readFileSync(stampFile, 'utf8') === stamp) {
    return { dir, reused: true };
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(optConfig(s), null, 2) + '\n');
  await writeSafetensors(join(dir, 'model.safetensors'), optTensors(s, seed));
  writeFileSync(stampFile, stamp);
  // Check the folder loads as a Spillway model.
  const info = await loadModelInfo(dir);
  if (info.config.family !== 'opt' || info.config.layers !== s.layers) {
    throw new Error(`${dir}: unexpected model info (${info.config.family}, ${info.config.layers} layers)`);
  }
  return { dir, reused: false };
}
