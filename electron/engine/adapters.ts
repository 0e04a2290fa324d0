// Adapter runs (--train lora, loldu or tokens): what the engine is told to train, the peft adapter a run
// saves (adapter_config.json + adapter_model.safetensors, with the names and layout the peft
// library writes), the base with the adapter merged in, and the trained tensors a checkpoint keeps.
//
// A LoLDU adapter is saved as the LoRA it equals: W + P L_r diag(s z - D_r) U_r is W + B A with
// A = U_r, B = P L_r diag(s z - D_r) and alpha = r, so peft loads it as it is.
//
// Trainable tokens (the task's label words' rows of the embedding) are saved as peft's
// TRAINABLE_TOKENS adapter: its trainable_tokens_delta holds the rows themselves (the base's rows
// plus the engine's delta), one per adapted module (the embedding, and the head: tied, the same rows).
import { readFile } from 'node:fs/promises';

import type { TrainOptions } from '../common/options.js';
import { LABEL_WORD_TASKS, freezesBase } from '../common/options.js';
import { labelWordsOf, type TaskTemplate } from '../data/templates.js';
import type { SpillwayTokenizer } from '../data/tokenizer.js';
import { encodeSafetensors, readSafetensorsHeader } from '../model/index.js';
import { TRAINED_FILE } from './checkpoint.js';
import type { FolderFile } from './safe-write.js';
import type { NativeEngine, NativeTrainSpec } from './native.js';

/** Runs whose base is frozen and whose result is an adapter. */
export const isAdapterRun = (o: Pick<TrainOptions, 'trainable'>): boolean => freezesBase(o.trainable);

/** The adapter's name in messages. */
export const adapterName = (set: TrainOptions['trainable']): string =>
  set === 'lora' ? 'LoRA' : set === 'loldu' ? 'LoLDU' : set === 'tokens' ? 'trainable tokens' : set;

/**
 * The rows --train tokens trains: every token of the task's label words (as the prompt's candidates
 * are encoded, electron/data/templates.ts), each once, in order.
 */
export function labelTokenIds(task: TaskTemplate, tokenizer: SpillwayTokenizer): number[] {
  const words = labelWordsOf(task);
  if (!words) throw new Error(`--train tokens needs a task with label words (${LABEL_WORD_TASKS.join(', ')}), not ${task.kind}`);
  const ids: number[] = [];
  for (const w of words) {
    const enc = tokenizer.encode(w, { addSpecialTokens: false });
    if (!enc.length) throw new Error(`label word ${JSON.stringify(w)} encodes to no tokens`);
    for (const id of enc) if (!ids.includes(id)) ids.push(id);
  }
  return ids;
}

/** What Engine.load trains for these options (tokens: the rows labelTokenIds gives). */
export function trainSpecOf(o: Pick<TrainOptions, 'trainable' | 'rank' | 'loraAlpha' | 'targets' | 'sparseFraction' | 'seed'>, tokens?: number[]): NativeTrainSpec {
  return {
    kind: o.trainable,
    rank: o.rank,
    alpha: o.loraAlpha,
    targets: o.targets,
    fraction: o.sparseFraction,
    seed: o.seed,
    ...(o.trainable === 'tokens' ? { tokens: Int32Array.from(tokens ?? []) } : {}),
  };
}


/** One adapted matrix as a LoRA: its base weight's name, A (r, in), B (out, r). */
export interface LoraMatrix {
  /** The Hugging Face module, e.g. model.layers.0.self_attn.q_proj. */
  module: string;
  out: number;
  in: number;
  a: Float32Array;
  b: Float32Array;
}

export interface PeftLora {
  rank: number;
  alpha: number;
  matrices: LoraMatrix[];
}

const f32 = Math.fround;

function tensorMap(engine: NativeEngine) {
  return new Map(engine.trainableTensors().map((t) => [t.name, t]));
}

/** The engine's adapter as peft's LoRA (a LoLDU adapter folded into B). */
export function peftLora(engine: NativeEngine, o: Pick<TrainOptions, 'trainable' | 'rank' | 'loraAlpha'>): PeftLora {
  const ts = tensorMap(engine);
  const matrices: LoraMatrix[] = [];
  if (o.trainable === 'lora') {
    for (const [name, t] of ts) {
      const m = /^base_model\.model\.(.+)\.lora_A\.weight$/.exec(name);
      if (!m) continue;
      const bName = `base_model.model.${m[1]}.lora_B.weight`;
      const b = ts.get(bName);
      if (!b) throw new Error(`the engine has ${name} but no ${bName}`);
      matrices.push({ module: m[1], out: b.shape[0], in: t.shape[1], a: engine.getTensor(name), b: engine.getTensor(bName) });
    }
    return { rank: o.rank, alpha: o.loraAlpha, matrices };
  }
  for (const name of ts.keys()) {
    const m = /^(.+)\.loldu_z$/.exec(name);
    if (!m) continue;
    const get = (part: string) => engine.getTensor(`${m[1]}.loldu_${part}`);
    const [u, pl, negD, z, s] = [get('U'), get('PL'), get('neg_D'), get('z'), get('s')];
    const r = z.length;
    // v = s z - D_r as the engine forms it (s z first, then + (-D_r)), each step rounded to float32.
    const v = Array.from(z, (zk, k) => f32(f32(s[0] * zk) + negD[k]));
    const out = pl.length / r;
    const b = new Float32Array(out * r);
    for (let i = 0; i < out; i++) for (let k = 0; k < r; k++) b[i * r + k] = pl[i * r + k] * v[k];
    matrices.push({ module: m[1], out, in: u.length / r, a: u, b });
  }
  return { rank: o.rank, alpha: o.rank, matrices };
}

const bytesOf = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** adapter_config.json and adapter_model.safetensors as peft writes them for a causal LM. */
export function peftFiles(lora: PeftLora, baseModel: string): FolderFile[] {
  const targets = [...new Set(lora.matrices.map((m) => m.module.slice(m.module.lastIndexOf('.') + 1)))].sort();
  const config = {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: lora.alpha,
    lora_dropout: 0.0,
    modules_to_save: null,
    peft_type: 'LORA',
    r: lora.rank,
    rank_pattern: {},
    revision: null,
    target_modules: targets,
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: false,
  };
  const tensors = lora.matrices.flatMap((m) => [
    { name: `base_model.model.${m.module}.lora_A.weight`, dtype: 'F32' as const, shape: [lora.rank, m.in], data: bytesOf(m.a) },
    { name: `base_model.model.${m.module}.lora_B.weight`, dtype: 'F32' as const, shape: [m.out, lora.rank], data: bytesOf(m.b) },
  ]);
  return [
    { name: 'adapter_config.json', data: JSON.stringify(config, null, 2) + '\n' },
    { name: 'adapter_model.safetensors', data: encodeSafetensors(tensors, { format: 'pt' }, 'adapter_model.safetensors') },
  ];
}

/** W + alpha/r B A for every adapted weight (peft's merge), the other tensors as they are: a whole model's weights. */
export function mergedTensors(engine: NativeEngine, lora: PeftLora): { name: string; shape: number[]; data: Float32Array }[] {
  const byWeight = new Map(lora.matrices.map((m) => [`${m.module}.weight`, m]));
  const scale = lora.alpha / lora.rank;
  const r = lora.rank;
  return engine.tensorNames().map(({ name, shape }) => {
    const w = engine.getTensor(name);
    const m = byWeight.get(name);
    if (!m) return { name, shape, data: w };
    const row = new Float64Array(m.in);
    for (let i = 0; i < m.out; i++) {
      row.fill(0);
      for (let k = 0; k < r; k++) {
        const bik = m.b[i * r + k];
        if (bik === 0) continue;
        for (let j = 0; j < m.in; j++) row[j] += bik * m.a[k * m.in + j];
      }
      for (let j = 0; j < m.in; j++) w[i * m.in + j] = f32(w[i * m.in + j] + scale * row[j]);
    }
    return { name, shape, data: w };
  });
}

/** The trained tensors of the adapters (frozen parts are rebuilt from the base at load), for a checkpoint. */
export function trainedFile(engine: NativeEngine): FolderFile {
  const tensors = engine
    .trainableTensors()
    .filter((t) => !t.frozen)
    .map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape, data: bytesOf(engine.getTensor(t.name)) }));
  return { name: TRAINED_FILE, data: encodeSafetensors(tensors, { format: 'pt' }, TRAINED_FILE) };
}

/** Puts a checkpoint's trained tensors back into an engine loaded with the same options. */
export async function restoreTrained(engine: NativeEngine, file: string): Promise<void> {
  const header = await readSafetensorsHeader(file);
  const bytes = await readFile(file);
  const expected = new Set(engine.trainableTensors().filter((t) => !t.frozen).map((t) => t.name));
  for (const t of header.tensors) {
    if (t.dtype !== 'F32') throw new Error(`${file}: ${t.name} is ${t.dtype}, expected F32`);
    if (!expected.delete(t.name)) throw new Error(`${file}: ${t.name} is not a trained tensor of this run's adapters`);
    const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset + t.offset, bytes.byteOffset + t.offset + t.nbytes));
    engine.setTensor(t.name, data);
  }
  if (expected.size) throw new Error(`${file} lacks ${[...expected][0]}${expected.size > 1 ? ` and ${expected.size - 1} more` : ''}: it was saved with other adapter options`);
}

/** Trained rows of the embedding (and of an untied head): each module's rows as peft keeps them. */
export interface PeftTokens {
  tokens: number[];
  /** module (e.g. model.embed_tokens, lm_head) -> its rows, base plus delta [tokens, width]. */
  rows: { module: string; weight: string; width: number; data: Float32Array }[];
}

/** The engine's token deltas as peft's trainable tokens (the base's rows plus each delta). */
export function peftTokens(engine: NativeEngine): PeftTokens {
  const rows: PeftTokens['rows'] = [];
  let tokens: number[] = [];
  for (const t of engine.trainableTensors()) {
    const m = /^base_model\.model\.(.+)\.token_rows_delta$/.exec(t.name);
    if (!m) continue;
    tokens = t.rows ?? [];
    const weight = `${m[1]}.weight`;
    const base = engine.getTensor(weight);
    const delta = engine.getTensor(t.name);
    const width = t.shape[1];
    if (t.shape[0] !== tokens.length) throw new Error(`the engine's ${t.name} has ${t.shape[0]} rows for ${tokens.length} tokens`);
    const data = new Float32Array(tokens.length * width);
    // The engine adds the delta to the row in float32: the same sum.
    for (let j = 0; j < tokens.length; j++) for (let c = 0; c < width; c++) data[j * width + c] = f32(base[tokens[j] * width + c] + delta[j * width + c]);
    rows.push({ module: m[1], weight, width, data });
  }
  if (!rows.length) throw new Error('the engine has no trained token rows');
  return { tokens, rows };
}

/**
 * adapter_config.json and adapter_model.safetensors as peft 0.21 writes a TRAINABLE_TOKENS adapter:
 * with a tied head it keeps the rows under the embedding and under lm_head alike.
 */
export function peftTokenFiles(t: PeftTokens, baseModel: string, tiedHead: string | null): FolderFile[] {
  const leaf = (m: string) => m.slice(m.lastIndexOf('.') + 1);
  const config = {
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    inference_mode: true,
    init_weights: true,
    peft_type: 'TRAINABLE_TOKENS',
    revision: null,
    target_modules: [...new Set(t.rows.map((r) => leaf(r.module)))].sort(),
    task_type: null,
    token_indices: t.tokens,
  };
  const tensors = t.rows.flatMap((r) => [r.module, ...(tiedHead ? [tiedHead] : [])].map((module) => ({
    name: `base_model.model.${module}.trainable_tokens_delta`,
    dtype: 'F32' as const,
    shape: [t.tokens.length, r.width],
    data: bytesOf(r.data),
  })));
  return [
    { name: 'adapter_config.json', data: JSON.stringify(config, null, 2) + '\n' },
    { name: 'adapter_model.safetensors', data: encodeSafetensors(tensors, { format: 'pt' }, 'adapter_model.safetensors') },
  ];
}

/** The whole model with the trained rows in place (peft's merge of trainable tokens). */
export function mergedTokenTensors(engine: NativeEngine, t: PeftTokens): { name: string; shape: number[]; data: Float32Array }[] {
  const byWeight = new Map(t.rows.map((r) => [r.weight, r]));
  return engine.tensorNames().map(({ name, shape }) => {
    const w = engine.getTensor(name);
    const r = byWeight.get(name);
    if (r) for (let j = 0; j < t.tokens.length; j++) w.set(r.data.subarray(j * r.width, (j + 1) * r.width), t.tokens[j] * r.width);
    return { name, shape, data: w };
  });
}
