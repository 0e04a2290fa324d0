// The architecture registry: config.json's "architectures" (or, without it,
// model_type) -> the family file that reads it. Adding a family: its file
// here, its block recipe in native/src/arch/, any new kernels, a golden fixture.

import { ModelError } from '../errors.js';
import type { ArchitectureFamily } from './family.js';
import { isObject } from './fields.js';
import { gemma2, gemma3 } from './gemma.js';
import { gpt2 } from './gpt2.js';
import { gptNeox } from './gpt_neox.js';
import { llama } from './llama.js';
import { olmo2 } from './olmo2.js';
import { opt } from './opt.js';

const FAMILIES: readonly ArchitectureFamily[] = [opt, gpt2, llama, gptNeox, olmo2, gemma2, gemma3];

const BY_ARCHITECTURE = new Map<string, ArchitectureFamily>(
  FAMILIES.flatMap((f) => Object.keys(f.architectures).map((a) => [a, f] as const)),
);
const BY_MODEL_TYPE = new Map<string, string>(
  FAMILIES.flatMap((f) => Object.entries(f.architectures).map(([a, t]) => [t, a] as const)),
);

/** Every architecture name Spillway loads. */
export const SUPPORTED_ARCHITECTURES: readonly string[] = [...BY_ARCHITECTURE.keys()];

/** The architecture a config.json names (the first supported one listed) and its family file, or throws. */
export function architectureOf(json: unknown, file: string): { arch: string; family: ArchitectureFamily } {
  if (!isObject(json)) throw new ModelError(`${file} must hold a JSON object`, { file });
  const archs = json.architectures;
  const list = Array.isArray(archs) ? archs.filter((a): a is string => typeof a === 'string') : [];
  for (const a of list) {
    const family = BY_ARCHITECTURE.get(a);
    if (family) return { arch: a, family };
  }
  if (list.length === 0) {
    const mt = json.model_type;
    const arch = typeof mt === 'string' ? BY_MODEL_TYPE.get(mt) : undefined;
    if (arch !== undefined) return { arch, family: BY_ARCHITECTURE.get(arch)! };
    throw new ModelError(
      `${file} names no architecture ("architectures" is missing${typeof mt === 'string' ? ` and model_type "${mt}" is not supported` : ''}); supported: ${SUPPORTED_ARCHITECTURES.join(', ')}`,
      { file, field: 'architectures', kind: typeof mt === 'string' ? 'unsupported' : 'invalid' },
    );
  }
  throw new ModelError(
    `unsupported architecture ${list.join(', ')} in ${file}; supported: ${SUPPORTED_ARCHITECTURES.join(', ')}`,
    { file, field: 'architectures', kind: 'unsupported' },
  );
}
