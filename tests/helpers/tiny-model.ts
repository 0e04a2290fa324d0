// A small random Llama-layout model carrying the demo tokenizer, made on the fly,
// so CLI and process tests do not depend on the demo model's training.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { writeSafetensors } from '../../electron/model/index.js';
import { ROOT } from './engine.js';

export const DEMO_TOKENIZER_DIR = join(ROOT, 'resources', 'models', 'spillway-demo');
export const DEMO_DATA = join(ROOT, 'resources', 'datasets');

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function makeTinyLlama(dir: string, opts: { vocab?: number; hidden?: number; layers?: number; seed?: number; maxPositions?: number } = {}): Promise<string> {
  const V = opts.vocab ?? 1408;
  const C = opts.hidden ?? 32;
  const L = opts.layers ?? 2;
  const I = 2 * C;
  const rand = rng(opts.seed ?? 1);
  const normal = (n: number, std: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (rand() + rand() + rand() - 1.5) * 2 * std;
    return a;
  };
  const ones = (n: number) => new Float32Array(n).fill(1);
  const tensors: { name: string; shape: number[]; data: Float32Array }[] = [
    { name: 'model.embed_tokens.weight', shape: [V, C], data: normal(V * C, 0.5) },
    { name: 'model.norm.weight', shape: [C], data: ones(C) },
  ];
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    tensors.push(
      { name: `${p}input_layernorm.weight`, shape: [C], data: ones(C) },
      { name: `${p}post_attention_layernorm.weight`, shape: [C], data: ones(C) },
      { name: `${p}self_attn.q_proj.weight`, shape: [C, C], data: normal(C * C, 0.15) },
      { name: `${p}self_attn.k_proj.weight`, shape: [C, C], data: normal(C * C, 0.15) },
      { name: `${p}self_attn.v_proj.weight`, shape: [C, C], data: normal(C * C, 0.15) },
      { name: `${p}self_attn.o_proj.weight`, shape: [C, C], data: normal(C * C, 0.15) },
      { name: `${p}mlp.gate_proj.weight`, shape: [I, C], data: normal(I * C, 0.15) },
      { name: `${p}mlp.up_proj.weight`, shape: [I, C], data: normal(I * C, 0.15) },
      { name: `${p}mlp.down_proj.weight`, shape: [C, I], data: normal(C * I, 0.15) },
    );
  }
  mkdirSync(dir, { recursive: true });
  await writeSafetensors(
    join(dir, 'model.safetensors'),
    tensors.map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape, data: new Uint8Array(t.data.buffer) })),
  );
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      vocab_size: V,
      hidden_size: C,
      intermediate_size: I,
      num_hidden_layers: L,
      num_attention_heads: 4,
      num_key_value_heads: 4,
      max_position_embeddings: opts.maxPositions ?? 256,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      tie_word_embeddings: true,
      bos_token_id: 1,
      eos_token_id: 2,
      torch_dtype: 'float32',
    }),
  );
  copyFileSync(join(DEMO_TOKENIZER_DIR, 'tokenizer.json'), join(dir, 'tokenizer.json'));
  copyFileSync(join(DEMO_TOKENIZER_DIR, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  return dir;
}
