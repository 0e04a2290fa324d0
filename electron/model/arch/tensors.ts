// The checkpoint's tensors as the architecture files pick them: by name, with
// the shape config.json implies, and errors that name the tensor and the file.

import type { ModelConfig, TensorRef, UnitSpec } from '../types.js';
import { ModelError } from '../errors.js';
import type { UnsupportedDtypeTensor } from '../safetensors.js';

/** A checkpoint's tensors (headers only), across its shards. */
export interface Checkpoint {
  tensors: TensorRef[];
  unsupported: Map<string, UnsupportedDtypeTensor>;
  weightFiles: string[];
  sizeOnDisk: number;
}

/** Tensor lookup with the shape checks and error messages the mapper needs. */
export class TensorPicker {
  private readonly byName = new Map<string, TensorRef>();
  readonly used = new Map<string, TensorRef>();

  constructor(
    readonly ck: Checkpoint,
    readonly dir: string,
    readonly arch: string,
  ) {
    for (const t of ck.tensors) this.byName.set(t.name, t);
  }

  has(name: string): boolean {
    return this.byName.has(name) || this.ck.unsupported.has(name);
  }

  /** The tensor, shape-checked; throws when missing, mis-shaped or of an unsupported dtype. */
  need(name: string, shape: number[], transposed = false): TensorRef {
    const u = this.ck.unsupported.get(name);
    if (u) {
      throw new ModelError(
        `unsupported dtype ${u.dtype} for tensor "${name}" in file ${u.file} (supported: F32, F16, BF16)`,
        { file: u.file, tensor: name, kind: 'unsupported' },
      );
    }
    const t = this.byName.get(name);
    if (!t) {
      throw new ModelError(`missing tensor "${name}" (required by ${this.arch}) in the weights of ${this.dir}`, {
        file: this.dir,
        tensor: name,
      });
    }
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelError(
        `tensor "${name}" in ${t.file} has shape [${t.shape.join(',')}], expected [${shape.join(',')}] from config.json`,
        { file: t.file, tensor: name },
      );
    }
    const ref: TensorRef = transposed ? { ...t, transposed: true } : t;
    this.used.set(name, ref);
    return ref;
  }
}

/**
 * A block's roles as a family names them: `linear(role, name, out, in, bias)` binds
 * `<role>_w` to `<prefix><name>.weight` [out, in] and, with bias, `<role>_b` to `.bias` [out];
 * `norm(role, name, bias)` a norm's [C] weight (and bias).
 */
export type BlockRoles = ReturnType<typeof blockRoles>;

/**
 * A block's roles as a family names them: `linear(role, name, out, in, bias)` binds
 * `<role>_w` to `<prefix><name>.weight` [out, in] and, with bias, `<role>_b` to `.bias` [out];
 * `norm(role, name, bias)` a norm's [C] weight (and bias).
 */
export function blockRoles(pk: TensorPicker, prefix: string, C: number) {
  const tensors: Record<string, TensorRef> = {};
  const linear = (role: string, name: string, out: number, inp: number, bias: boolean): void => {
    tensors[`${role}_w`] = pk.need(`${prefix}${name}.weight`, [out, inp]);
    if (bias) tensors[`${role}_b`] = pk.need(`${prefix}${name}.bias`, [out]);
  };
  return {
    tensors,
    linear,
    norm(role: string, name: string, bias: boolean): void {
      tensors[`${role}_w`] = pk.need(`${prefix}${name}.weight`, [C]);
      if (bias) tensors[`${role}_b`] = pk.need(`${prefix}${name}.bias`, [C]);
    },
    /** self_attn.{q,k,v,o}_proj of grouped-query heads (q and o NH*HD wide, k and v KV*HD). */
    attention(qd: number, kvd: number, bias: boolean, oBias = bias): void {
      linear('q', 'self_attn.q_proj', qd, C, bias);
      linear('k', 'self_attn.k_proj', kvd, C, bias);
      linear('v', 'self_attn.v_proj', kvd, C, bias);
      linear('o', 'self_attn.o_proj', C, qd, oBias);
    },
    /** self_attn.{q,k}_norm: RMSNorm weights of the queries and keys, `q` and `k` wide. */
    qkNorms(q: number, k: number): void {
      tensors.q_norm_w = pk.need(`${prefix}self_attn.q_norm.weight`, [q]);
      tensors.k_norm_w = pk.need(`${prefix}self_attn.k_norm.weight`, [k]);
    },
    /** mlp.{gate,up,down}_proj. */
    gatedMlp(I: number, bias = false): void {
      linear('gate', 'mlp.gate_proj', I, C, bias);
      linear('up', 'mlp.up_proj', I, C, bias);
      linear('down', 'mlp.down_proj', C, I, bias);
    },
  };
}

/**
 * The units of Llama's checkpoint layout, which the families after it keep: model.embed_tokens,
 * one block per layer under model.layers.<i>. (its roles bound by `block`), model.norm and,
 * untied, lm_head.
 */
export function decoderUnits(cfg: ModelConfig, pk: TensorPicker, block: (b: BlockRoles) => void): UnitSpec[] {
  const result: UnitSpec[] = [
    { kind: 'embed', index: -1, tensors: { tok: pk.need('model.embed_tokens.weight', [cfg.vocabSize, cfg.hidden]) } },
  ];
  for (let i = 0; i < cfg.layers; i++) {
    const l = `model.layers.${i}.`;
    const b = blockRoles(pk, l, cfg.hidden);
    block(b);
    result.push({ kind: 'block', index: i, tensors: b.tensors });
  }
  result.push(headUnit(cfg, pk, 'model.norm.weight', null));
  return result;
}

/** Returns the first prefix p for which `p + probe` exists. */
export function pickPrefix(pk: TensorPicker, prefixes: string[], probe: string): string {
  for (const p of prefixes) if (pk.has(p + probe)) return p;
  return prefixes[0];
}

/**
 * The final norm (none when `normW` is null), OPT's project_out (`proj`) and, untied, the LM
 * head (`lmHead`: its name in the checkpoint).
 */
export function headUnit(
  cfg: ModelConfig,
  pk: TensorPicker,
  normW: string | null,
  normB: string | null,
  lmHead = 'lm_head.weight',
  proj?: string,
): UnitSpec {
  const C = cfg.hidden;
  const E = cfg.embedDim ?? C;
  const tensors: Record<string, TensorRef> = {};
  if (normW) tensors.norm_w = pk.need(normW, [C]);
  if (normB) tensors.norm_b = pk.need(normB, [C]);
  if (proj) tensors.proj = pk.need(proj, [E, C]);
  // Tied: an lm_head.weight stored anyway is ignored (the engine uses embed.tok).
  if (!cfg.tiedEmbeddings) tensors.lm_head = pk.need(lmHead, [cfg.vocabSize, E]);
  return { kind: 'head', index: -1, tensors };
}
