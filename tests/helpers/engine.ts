// Shared helpers for tests that drive the real native engine.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { TokenizedExample } from '../../electron/data/types.js';
import { engineSpec } from '../../electron/engine/spec.js';
import { loadNative, packageRoot } from '../../electron/engine/native.js';
import type { NativeEngine } from '../../electron/engine/native.js';
import { loadModelInfo, readSafetensorsHeader } from '../../electron/model/index.js';

export const ROOT = packageRoot();
export const FIXTURE_MODELS = join(ROOT, 'tests', 'fixtures', 'models');
export const GOLDEN = join(ROOT, 'tests', 'fixtures', 'golden');

export async function loadEngine(modelDir: string, threads = 2): Promise<NativeEngine> {
  const info = await loadModelInfo(modelDir);
  const engine = new (loadNative().Engine)({ threads });
  await engine.load(engineSpec(info));
  return engine;
}

export interface GoldenExample {
  kind: 'lm' | 'completion' | 'classify';
  tokens?: number[];
  span?: [number, number];
  label?: number;
  candidates?: { tokens: number[]; span: [number, number] }[];
}

/** Converts the reference's example form into the engine's. */
export function toExamples(batch: GoldenExample[]): TokenizedExample[] {
  return batch.map((b) =>
    b.kind === 'classify'
      ? {
          kind: 'classify' as const,
          label: b.label ?? -1,
          source: 'golden',
          sequences: (b.candidates ?? []).map((c) => ({ tokens: c.tokens, scoreStart: c.span[0], scoreEnd: c.span[1] })),
        }
      : {
          kind: b.kind,
          label: -1,
          source: 'golden',
          sequences: [{ tokens: b.tokens ?? [], scoreStart: (b.span ?? [1, 1])[0], scoreEnd: (b.span ?? [1, 1])[1] }],
        },
  );
}

export function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

/** Reads every float32 tensor of a safetensors file. */
export async function readF32Tensors(file: string): Promise<Map<string, Float32Array>> {
  const header = await readSafetensorsHeader(file);
  const bytes = readFileSync(file);
  const out = new Map<string, Float32Array>();
  for (const t of header.tensors) {
    if (t.dtype !== 'F32') throw new Error(`${t.name} is ${t.dtype}, expected F32`);
    const copy = new Uint8Array(bytes.subarray(t.offset, t.offset + t.nbytes));
    out.set(t.name, new Float32Array(copy.buffer));
  }
  return out;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
