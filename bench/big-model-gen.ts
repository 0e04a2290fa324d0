// Streams a deterministic random-initialised Llama-shaped Hugging Face folder
// of several GB to disk: sharded float32 safetensors + index + config.json +
// the demo tokenizer. Never holds more than one chunk of weights in memory
// (each tensor is generated and written CHUNK floats at a time).
//
// Weights ~ uniform(-a, a) with a = std * sqrt(3) (standard deviation `std`,
// 0.02 by default, like HF's initializer_range), from a per-tensor seeded
// mulberry32 stream (seed = FNV-1a(name) ^ run seed), so every tensor is
// reproducible on its own; norm weights are 1. Self-contained (node builtins
// only) so that it compiles without the rest of the project.
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export interface LlamaShape {
  vocab: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  maxPositions: number;
  tied: boolean;
}

/** About 6.2 GB in float32: a Llama-style 1.5B (untied head). */
export const BIG_LLAMA: LlamaShape = { vocab: 32000, hidden: 2048, intermediate: 5504, layers: 28, heads: 16, kvHeads: 16, maxPositions: 2048, tied: false };

export interface TensorPlan {
  name: string;
  shape: number[];
  init: 'normal' | 'ones';
}

export function llamaTensors(s: LlamaShape): TensorPlan[] {
  const C = s.hidden;
  const I = s.intermediate;
  const hd = C / s.heads;
  const kvd = s.kvHeads * hd;
  const out: TensorPlan[] = [{ name: 'model.embed_tokens.weight', shape: [s.vocab, C], init: 'normal' }];
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}.`;
    out.push(
      { name: `${p}input_layernorm.weight`, shape: [C], init: 'ones' },
      { name: `${p}self_attn.q_proj.weight`, shape: [C, C], init: 'normal' },
      { name: `${p}self_attn.k_proj.weight`, shape: [kvd, C], init: 'normal' },
      { name: `${p}self_attn.v_proj.weight`, shape: [kvd, C], init: 'normal' },
      { name: `${p}self_attn.o_proj.weight`, shape: [C, C], init: 'normal' },
      { name: `${p}post_attention_layernorm.weight`, shape: [C], init: 'ones' },
      { name: `${p}mlp.gate_proj.weight`, shape: [I, C], init: 'normal' },
      { name: `${p}mlp.up_proj.weight`, shape: [I, C], init: 'normal' },
      { name: `${p}mlp.down_proj.weight`, shape: [C, I], init: 'normal' },
    );
  }
  out.push({ name: 'model.norm.weight', shape: [C], init: 'ones' });
  if (!s.tied) out.push({ name: 'lm_head.weight', shape: [s.vocab, C], init: 'normal' });
  return out;
}

export const numel = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

export function parameterCount(s: LlamaShape): number {
  return llamaTensors(s).reduce((n, t) => n + numel(t.shape), 0);
}

export function llamaConfig(s: LlamaShape): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: s.vocab,
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    head_dim: s.hidden / s.heads,
    max_position_embeddings: s.maxPositions,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    rope_scaling: null,
    hidden_act: 'silu',
    attention_bias: false,
    mlp_bias: false,
    initializer_range: 0.02,
    tie_word_embeddings: s.tied,
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 3,
    torch_dtype: 'float32',
    use_cache: true,
  };
}

function fnv1a(name: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(name, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * Fills `out` with uniform(-a, a) from a mulberry32 stream; returns the next state.
 * (mulberry32: one 32-bit state, a few multiplies per value, ~10^8 values/s here.)
 */
export function fillUniform(out: Float32Array, n: number, state: number, a: number): number {
  let s = state | 0;
  const scale = a / 2147483648;
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = ((t ^ (t >>> 14)) | 0) * scale;
  }
  return s;
}

export interface GenerateOptions {
  dir: string;
  shape: LlamaShape;
  seed: number;
  std: number;
  /** Target shard size in bytes (a tensor never straddles shards). */
  shardBytes: number;
  /** Folder whose tokenizer.json / tokenizer_config.json are copied. */
  tokenizerDir: string;
  log?: (msg: string) => void;
}

export interface GeneratedModel {
  dir: string;
  reused: boolean;
  parameters: number;
  bytes: number;
  shards: string[];
  seconds: number;
}

const STAMP = 'big-model.json';
const CHUNK = 1 << 22; // 4 Mi floats = 16 MiB per write

function writeAll(fd: number, buf: Uint8Array): void {
  let done = 0;
  while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done);
}

/** Splits the tensors into shards of about shardBytes, in order. */
export function shardTensors(tensors: TensorPlan[], shardBytes: number): TensorPlan[][] {
  const shards: TensorPlan[][] = [[]];
  let used = 0;
  for (const t of tensors) {
    const b = numel(t.shape) * 4;
    if (used > 0 && used + b > shardBytes) {
      shards.push([]);
      used = 0;
    }
    shards[shards.length - 1].push(t);
    used += b;
  }
  return shards;
}

/** Makes (or reuses, when its stamp matches) the random model folder at o.dir. */
export function generateLlama(o: GenerateOptions): GeneratedModel {
  const t0 = Date.now();
  const tensors = llamaTensors(o.shape);
  const parameters = tensors.reduce((n, t) => n + numel(t.shape), 0);
  const groups = shardTensors(tensors, o.shardBytes);
  const names = groups.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(groups.length).padStart(5, '0')}.safetensors`);
  const stamp = JSON.stringify({ shape: o.shape, seed: o.seed, std: o.std, shardBytes: o.shardBytes, init: 'uniform-mulberry32', version: 1 });
  const stampFile = join(o.dir, STAMP);
  const expectedSizes = new Map<string, number>();
  const headers = groups.map((g) => {
    const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
    let off = 0;
    for (const t of g) {
      const nb = numel(t.shape) * 4;
      header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [off, off + nb] };
      off += nb;
    }
    let json = Buffer.from(JSON.stringify(header), 'utf8');
    const padded = Math.ceil(json.length / 8) * 8;
    if (padded !== json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
    return { json, dataBytes: off };
  });
  groups.forEach((_, i) => expectedSizes.set(names[i], 8 + headers[i].json.length + headers[i].dataBytes));
  const bytes = [...expectedSizes.values()].reduce((a, b) => a + b, 0);
  const intact = () =>
    existsSync(stampFile) &&
    readFileSync(stampFile, 'utf8') === stamp &&
    names.every((n) => existsSync(join(o.dir, n)) && statSync(join(o.dir, n)).size === expectedSizes.get(n)) &&
    ['config.json', 'model.safetensors.index.json', 'tokenizer.json'].every((f) => existsSync(join(o.dir, f)));
  if (intact()) return { dir: o.dir, reused: true, parameters, bytes, shards: names, seconds: (Date.now() - t0) / 1000 };

  rmSync(o.dir, { recursive: true, force: true });
  mkdirSync(o.dir, { recursive: true });
  const buf = new Float32Array(CHUNK);
  const bytesView = new Uint8Array(buf.buffer);
  const a = o.std * Math.sqrt(3);
  const weightMap: Record<string, string> = {};
  let written = 0;
  let lastLog = Date.now();
  for (let si = 0; si < groups.length; si++) {
    const file = join(o.dir, names[si]);
    const tmp = `${file}.partial`;
    const fd = openSync(tmp, 'w');
    try {
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(headers[si].json.length), 0);
      writeAll(fd, len);
      writeAll(fd, headers[si].json);
      for (const t of groups[si]) {
        weightMap[t.name] = names[si];
        const n = numel(t.shape);
        let state = (fnv1a(t.name) ^ Math.imul(o.seed | 0, 0x9e3779b9)) | 0;
        if (t.init === 'ones') buf.fill(1, 0, Math.min(n, CHUNK));
        for (let done = 0; done < n; ) {
          const k = Math.min(CHUNK, n - done);
          if (t.init === 'normal') state = fillUniform(buf, k, state, a);
          writeAll(fd, bytesView.subarray(0, k * 4));
          done += k;
          written += k * 4;
          if (o.log && Date.now() - lastLog > 5000) {
            lastLog = Date.now();
            o.log(`  generated ${(written / 1e9).toFixed(2)} / ${(bytes / 1e9).toFixed(2)} GB (${((written / 1e6) / ((Date.now() - t0) / 1000)).toFixed(0)} MB/s)`);
          }
        }
      }
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  }
  writeFileSync(
    join(o.dir, 'model.safetensors.index.json'),
    JSON.stringify({ metadata: { total_size: parameters * 4 }, weight_map: weightMap }, null, 2) + '\n',
  );
  writeFileSync(join(o.dir, 'config.json'), JSON.stringify(llamaConfig(o.shape), null, 2) + '\n');
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
    if (existsSync(join(o.tokenizerDir, f))) copyFileSync(join(o.tokenizerDir, f), join(o.dir, f));
  }
  writeFileSync(stampFile, stamp);
  return { dir: o.dir, reused: false, parameters, bytes, shards: names, seconds: (Date.now() - t0) / 1000 };
}
