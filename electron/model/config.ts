// config.json -> ModelConfig, read by the family file of its architecture
// (electron/model/arch/). Dimensions (hidden size, layers, heads, MLP width,
// vocabulary, positions for learned-position models) are required: the
// transformers defaults for them describe some base model, never the
// checkpoint at hand, so a config without them is treated as broken.

import * as path from 'node:path';
import type { ModelConfig } from './types.js';
import type { ArchitectureFamily, ParsedConfig } from './arch/family.js';
import { ConfigFields } from './arch/fields.js';
import { architectureOf } from './arch/index.js';

export { SUPPORTED_ARCHITECTURES } from './arch/index.js';

/**
 * Parses config.json (already JSON-decoded) of the model in `dir`.
 * Throws ModelError (kind 'invalid' or 'unsupported') naming the file and field.
 */
export function parseModelConfig(json: unknown, dir: string): ModelConfig {
  return readModelConfig(json, dir).config;
}

/** parseModelConfig, with the family file that read it and how its checkpoint maps to units. */
export function readModelConfig(json: unknown, dir: string): ParsedConfig & { family: ArchitectureFamily } {
  const file = path.join(dir, 'config.json');
  const { arch, family } = architectureOf(json, file);
  return { ...family.parse(new ConfigFields(json as Record<string, unknown>, file, arch), arch), family };
}
