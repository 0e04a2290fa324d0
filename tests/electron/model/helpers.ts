// Builders of tiny checkpoints for the model tests. Tensor names and shapes
// are written out here independently of electron/model/folder.ts.

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeSafetensors, type WriteTensor } from '../../../electron/model/safetensors.js';
import type { Dtype } from '../../../electron/model/types.js';

export async function tempDir(prefix = 'spillway-model-'): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

export function tensor(name: string, shape: number[], dtype: Dtype = 'F32', fill?: (i: number) => number): WriteTensor {
  const numel = shape.reduce((a, b) => a * b, 1);
  const item = dtype === 'F32' ? 4 : 2;
  const data = new Uint8Array(numel * item);
  const dv = new DataView(data.buffer);
  for (let i = 0; i < numel; i++) {
    const v = fill ? fill(i) : ((i * 2654435761) % 1000) / 1000 - 0.5;
    if (dtype === 'F32') dv.setFloat32(i * 4, v, true);
    else if (dtype === 'BF16') {
      const f = new DataView(new ArrayBuffer(4));
      f.setFloat32(0, v, true);
      dv.setUint16(i * 2, f.getUint16(2, true), true);
    } else dv.setUint16(i * 2, i & 0x3bff, true);
  }
  return { name, dtype, shape, data };
}

/** Name -> shape of every tensor of each family. */
export type Spec = [string, number[]][];

export const OPT_CONFIG = {
  architectures: ['OPTForCausalLM'],
  model_type: 'opt',
  hidden_size: 16,
  ffn_dim: 32,
  num_attention_heads: 4,
  num_hidden_layers: 2,
  max_position_embeddings: 24,
  vocab_size: 50,
  activation_function: 'relu',
  do_layer_norm_before: true,
  word_embed_proj_dim: 16,
  bos_token_id: 2,
  eos_token_id: 2,
};

export function optSpec(cfg = OPT_CONFIG, prefix = 'model.decoder.', lmHead = false): Spec {
  const C = cfg.hidden_size;
  const F = cfg.ffn_dim;
  const s: Spec = [
    [`${prefix}embed_tokens.weight`, [cfg.vocab_size, C]],
    [`${prefix}embed_positions.weight`, [cfg.max_position_embeddings + 2, C]],
  ];
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const l = `${prefix}layers.${i}.`;
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      s.push([`${l}self_attn.${p}.weight`, [C, C]], [`${l}self_attn.${p}.bias`, [C]]);
    }
    s.push([`${l}self_attn_layer_norm.weight`, [C]], [`${l}self_attn_layer_norm.bias`, [C]]);
    s.push([`${l}fc1.weight`, [F, C]], [`${l}fc1.bias`, [F]], [`${l}fc2.weight`, [C, F]], [`${l}fc2.bias`, [C]]);
    s.push([`${l}final_layer_norm.weight`, [C]], [`${l}final_layer_norm.bias`, [C]]);
  }
  s.push([`${prefix}final_layer_norm.weight`, [C]], [`${prefix}final_layer_norm.bias`, [C]]);
  if (lmHead) s.push(['lm_head.weight', [cfg.vocab_size, C]]);
  return s;
}

export const GPT2_CONFIG = {
  architectures: ['GPT2LMHeadModel'],
  model_type: 'gpt2',
  n_embd: 16,
  n_layer: 2,
  n_head: 4,
  n_positions: 32,
  vocab_size: 60,
  layer_norm_epsilon: 1e-5,
  activation_function: 'gelu_new',
};

export function gpt2Spec(cfg = GPT2_CONFIG, prefix = 'transformer.'): Spec {
  const C = cfg.n_embd;
  const F = 4 * C;
  const s: Spec = [
    [`${prefix}wte.weight`, [cfg.vocab_size, C]],
    [`${prefix}wpe.weight`, [cfg.n_positions, C]],
  ];
  for (let i = 0; i < cfg.n_layer; i++) {
    const l = `${prefix}h.${i}.`;
    s.push(
      [`${l}ln_1.weight`, [C]],
      [`${l}ln_1.bias`, [C]],
      [`${l}attn.c_attn.weight`, [C, 3 * C]],
      [`${l}attn.c_attn.bias`, [3 * C]],
      [`${l}attn.c_proj.weight`, [C, C]],
      [`${l}attn.c_proj.bias`, [C]],
      [`${l}ln_2.weight`, [C]],
      [`${l}ln_2.bias`, [C]],
      [`${l}mlp.c_fc.weight`, [C, F]],
      [`${l}mlp.c_fc.bias`, [F]],
      [`${l}mlp.c_proj.weight`, [F, C]],
      [`${l}mlp.c_proj.bias`, [C]],
    );
  }
  s.push([`${prefix}ln_f.weight`, [C]], [`${prefix}ln_f.bias`, [C]]);
  return s;
}

export const LLAMA_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 16,
  intermediate_size: 40,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
  vocab_size: 70,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  hidden_act: 'silu',
  tie_word_embeddings: false,
} as Record<string, unknown>;

export function llamaSpec(
  cfg: Record<string, unknown> = LLAMA_CONFIG,
  opts: { qkvBias?: boolean; oBias?: boolean; mlpBias?: boolean; lmHead?: boolean } = {},
): Spec {
  const C = cfg.hidden_size as number;
  const I = cfg.intermediate_size as number;
  const H = cfg.num_attention_heads as number;
  const KV = (cfg.num_key_value_heads as number | undefined) ?? H;
  const HD = (cfg.head_dim as number | undefined) ?? C / H;
  const s: Spec = [['model.embed_tokens.weight', [cfg.vocab_size as number, C]]];
  for (let i = 0; i < (cfg.num_hidden_layers as number); i++) {
    const l = `model.layers.${i}.`;
    s.push([`${l}input_layernorm.weight`, [C]], [`${l}post_attention_layernorm.weight`, [C]]);
    s.push(
      [`${l}self_attn.q_proj.weight`, [H * HD, C]],
      [`${l}self_attn.k_proj.weight`, [KV * HD, C]],
      [`${l}self_attn.v_proj.weight`, [KV * HD, C]],
      [`${l}self_attn.o_proj.weight`, [C, H * HD]],
    );
    if (opts.qkvBias) {
      s.push(
        [`${l}self_attn.q_proj.bias`, [H * HD]],
        [`${l}self_attn.k_proj.bias`, [KV * HD]],
        [`${l}self_attn.v_proj.bias`, [KV * HD]],
      );
    }
    if (opts.oBias) s.push([`${l}self_attn.o_proj.bias`, [C]]);
    s.push([`${l}mlp.gate_proj.weight`, [I, C]], [`${l}mlp.up_proj.weight`, [I, C]], [`${l}mlp.down_proj.weight`, [C, I]]);
    if (opts.mlpBias) s.push([`${l}mlp.gate_proj.bias`, [I]], [`${l}mlp.up_proj.bias`, [I]], [`${l}mlp.down_proj.bias`, [C]]);
  }
  s.push(['model.norm.weight', [C]]);
  if (opts.lmHead ?? !(cfg.tie_word_embeddings ?? false)) s.push(['lm_head.weight', [cfg.vocab_size as number, C]]);
  return s;
}

export function specTensors(spec: Spec, dtype: Dtype = 'F32'): WriteTensor[] {
  return spec.map(([n, s]) => tensor(n, s, dtype));
}

export function numel(spec: Spec): number {
  return spec.reduce((a, [, s]) => a + s.reduce((x, y) => x * y, 1), 0);
}

/** Writes config.json + model.safetensors (+ tokenizer.json) into `dir`. */
export async function writeModel(
  dir: string,
  config: unknown,
  tensors: WriteTensor[],
  opts: { tokenizer?: 'tokenizer.json' | 'vocab+merges' | null } = {},
): Promise<string> {
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  const tok = opts.tokenizer === undefined ? 'tokenizer.json' : opts.tokenizer;
  if (tok === 'tokenizer.json') await fsp.writeFile(path.join(dir, 'tokenizer.json'), '{}');
  if (tok === 'vocab+merges') {
    await fsp.writeFile(path.join(dir, 'vocab.json'), '{}');
    await fsp.writeFile(path.join(dir, 'merges.txt'), '#version: 0.2\n');
  }
  return dir;
}

/** Raw safetensors bytes with an arbitrary header object/string and data length. */
export function rawFile(header: unknown, dataBytes: number, opts: { headerLen?: bigint } = {}): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(opts.headerLen ?? BigInt(json.length), 0);
  return Buffer.concat([len, json, Buffer.alloc(dataBytes)]);
}
