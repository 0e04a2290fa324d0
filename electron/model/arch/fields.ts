// Typed reads of one config.json for the architecture files: every error names
// the file and the field, and says whether the config is broken ('invalid') or
// describes something Spillway does not run ('unsupported').

import type { Activation } from '../types.js';
import { ModelError } from '../errors.js';

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads typed fields of one config.json, naming the file and field on error. */
export class ConfigFields {
  constructor(
    private readonly json: Record<string, unknown>,
    readonly file: string,
    readonly arch: string,
  ) {}

  has(key: string): boolean {
    return this.json[key] !== undefined && this.json[key] !== null;
  }

  raw(key: string): unknown {
    return this.json[key];
  }

  /** The config is broken: field `key` and what is wrong with it. */
  invalid(key: string, what: string): never {
    throw new ModelError(`${this.file}: field "${key}" ${what}`, { file: this.file, field: key });
  }

  unsupported(reason: string, field?: string): never {
    throw new ModelError(`${this.arch} in ${this.file}: ${reason}`, {
      file: this.file,
      field,
      kind: 'unsupported',
    });
  }

  /** Positive integer; required when no default is given. */
  int(key: string, def?: number, min = 1): number {
    const v = this.json[key];
    if (v === undefined || v === null) {
      if (def === undefined) {
        throw new ModelError(`${this.file} is missing required field "${key}" (${this.arch})`, {
          file: this.file,
          field: key,
        });
      }
      return def;
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
      this.invalid(key, `must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  /** Positive finite number. */
  num(key: string, def: number): number {
    const v = this.json[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      this.invalid(key, `must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  bool(key: string, def: boolean): boolean {
    const v = this.json[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'boolean') this.invalid(key, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  str(key: string, def: string): string {
    const v = this.json[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'string') this.invalid(key, `must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  /** Token id: integer, null, or a list (first element taken, e.g. Llama 3 eos). */
  tokenId(key: string, def: number | null): number | null {
    let v = this.json[key];
    if (v === undefined) return def;
    if (Array.isArray(v)) v = v.length > 0 ? v[0] : null;
    if (v === null) return null;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      this.invalid(key, `must be a token id, got ${JSON.stringify(this.json[key])}`);
    }
    return v;
  }

  activation(key: string, def: string): Activation {
    const a = this.str(key, def);
    switch (a) {
      case 'relu':
      case 'gelu':
      case 'gelu_new':
      case 'silu':
        return a;
      case 'gelu_pytorch_tanh':
      case 'gelu_fast':
        // Same tanh approximation as gelu_new.
        return 'gelu_new';
      case 'swish':
        return 'silu';
      default:
        return this.unsupported(`activation ${key}="${a}" is not supported (relu, gelu, gelu_new, silu)`, key);
    }
  }
}

/** hidden / heads, which must divide. */
export function headDimOf(f: ConfigFields, hidden: number, heads: number, key = 'num_attention_heads'): number {
  if (hidden % heads !== 0) {
    throw new ModelError(`${f.file}: hidden size ${hidden} is not divisible by ${key}=${heads}`, {
      file: f.file,
      field: key,
    });
  }
  return hidden / heads;
}

/** num_key_value_heads (default: heads), which must divide num_attention_heads. */
export function kvHeadsOf(f: ConfigFields, heads: number): number {
  const kvHeads = f.int('num_key_value_heads', heads);
  if (heads % kvHeads !== 0) {
    throw new ModelError(`${f.file}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`, {
      file: f.file,
      field: 'num_key_value_heads',
    });
  }
  return kvHeads;
}
