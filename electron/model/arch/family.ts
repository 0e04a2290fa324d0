// What every architecture file exports. One file per family of forward pass
// (the engine's block recipe of the same name, native/src/arch/): it reads the
// family's config.json keys and defaults, names its tensors (with the Hub's
// name variants), maps them to units by role, and refuses what the engine does
// not run, saying why. index.ts maps config.json's "architectures" to the file.

import type { ArchFamily, ModelConfig, UnitSpec } from '../types.js';
import type { ConfigFields } from './fields.js';
import type { TensorPicker } from './tensors.js';

/** A config.json as its family reads it. */
export interface ParsedConfig {
  config: ModelConfig;
  /**
   * The checkpoint's tensors by unit and role, shapes checked against the config.
   * Roles: embeddings tok, pos; blocks <stem>_w / <stem>_b with the stems of
   * native/src/arch/params.cpp; the head norm_w, norm_b, lm_head (absent when tied).
   */
  units(pk: TensorPicker): UnitSpec[];
}

export interface ArchitectureFamily {
  /** The engine's block recipe for these architectures. */
  family: ArchFamily;
  /** Hugging Face class names (config.json "architectures") read by this file, each with its model_type. */
  architectures: Readonly<Record<string, string>>;
  /** Parses config.json of one of them; throws ModelError naming the field (kind 'unsupported': refused, and why). */
  parse(f: ConfigFields, arch: string): ParsedConfig;
  /** Checkpoint entries that are buffers rather than weights: never trained, never counted as unused. */
  buffers?: RegExp;
}
