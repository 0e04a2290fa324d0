// What differs from block to block (ModelConfig.layerAttention, native
// LayerAttention read through BlockPass::run): each block's sliding window and
// its choice of rotary table, or none. The goldens of qwen2-window-tiny and
// ministral-tiny check per-layer windows against the reference and
// transformers (forward-golden.test.ts); these check the engine's side of the
// seam itself on llama-tiny with edited specs: a block follows its own entry,
// and nothing else.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { packBatch } from '../../electron/engine/batch.js';
import { loadNative } from '../../electron/engine/native.js';
import { engineSpec } from '../../electron/engine/spec.js';
import { loadModelInfo, positionLimit } from '../../electron/model/index.js';
import type { LayerAttention, ModelInfo, RopeSpec } from '../../electron/model/types.js';
import { FIXTURE_MODELS } from '../helpers/engine.js';

const model = join(FIXTURE_MODELS, 'llama-tiny');
const sequences = [
  [1, 17, 42, 99, 5, 63, 8, 120, 33, 2, 71, 14],
  [1, 9, 9, 81, 27, 100, 3, 56, 44, 12],
];
const batch = packBatch(
  sequences.map((t) => ({ kind: 'lm' as const, label: -1, source: 'layers', sequences: [{ tokens: t, scoreStart: 1, scoreEnd: t.length }] })),
);

const plain: RopeSpec = { type: 'default', theta: 10000, rotaryDim: 8 };
const linear: RopeSpec = { type: 'linear', theta: 10000, rotaryDim: 8, factor: 4 };

async function logprobs(edit: (c: ModelInfo['config']) => Partial<ModelInfo['config']>): Promise<number[]> {
  const info = await loadModelInfo(model);
  info.config = { ...info.config, ...edit(info.config) };
  const e = new (loadNative().Engine)({ threads: 2 });
  await e.load(engineSpec(info));
  const r = await e.score(batch);
  e.close();
  return Array.from(r.tokenLogprobs);
}

const layers = (...l: [number, number][]): LayerAttention[] => l.map(([window, rope]) => ({ window, rope }));

describe('per-block attention: windows and rotary tables', () => {
  it('a block uses the rotary table its entry names, and only that one', async () => {
    const base = await logprobs(() => ({}));
    expect(await logprobs(() => ({ ropes: [plain, linear], layerAttention: layers([0, 0], [0, 0]) }))).toEqual(base);
    const scaled = await logprobs(() => ({ ropes: [linear] }));
    expect(scaled).not.toEqual(base);
    expect(await logprobs(() => ({ ropes: [plain, linear], layerAttention: layers([0, 1], [0, 1]) }))).toEqual(scaled);
    const mixed = await logprobs(() => ({ ropes: [plain, linear], layerAttention: layers([0, 0], [0, 1]) }));
    expect(mixed).not.toEqual(base);
    expect(mixed).not.toEqual(scaled);
  });

  it('a block without a rotary table leaves q and k unturned', async () => {
    const base = await logprobs(() => ({}));
    const nope = await logprobs(() => ({ layerAttention: layers([0, -1], [0, 0]) }));
    const none = await logprobs(() => ({ layerAttention: layers([0, -1], [0, -1]) }));
    expect(nope).not.toEqual(base);
    expect(none).not.toEqual(nope);
    expect(none.every(Number.isFinite)).toBe(true);
  });

  it('a window wider than every sequence changes nothing; a narrow one on one block changes only that', async () => {
    const base = await logprobs(() => ({}));
    expect(await logprobs(() => ({ layerAttention: layers([12, 0], [12, 0]) }))).toEqual(base);
    const first = await logprobs(() => ({ layerAttention: layers([2, 0], [0, 0]) }));
    const second = await logprobs(() => ({ layerAttention: layers([0, 0], [2, 0]) }));
    expect(first).not.toEqual(base);
    expect(second).not.toEqual(base);
    expect(first).not.toEqual(second);
    // A window of 2 covers the first two tokens: their predictions are unchanged.
    expect(first[0]).toBe(base[0]);
  });

  it('refuses an entry naming a table the model lacks, and a missing entry', async () => {
    await expect(logprobs(() => ({ layerAttention: layers([0, 1], [0, 0]) }))).rejects.toThrow(/layer 0 names rotary table 1; the config has 1/);
    await expect(logprobs(() => ({ layerAttention: layers([0, 0]) }))).rejects.toThrow(/1 layer_attention entries for 2 layers/);
    await expect(logprobs(() => ({ layerAttention: layers([-1, 0], [0, 0]) }))).rejects.toThrow(/layer 0 has a negative sliding window/);
  });
});

describe('sequences past max_position_embeddings', () => {
  const long = Array.from({ length: 80 }, (_, i) => (i * 37 + 5) % 128);
  const longBatch = packBatch([{ kind: 'lm' as const, label: -1, source: 'long', sequences: [{ tokens: long, scoreStart: 1, scoreEnd: long.length }] }]);

  it('are refused where the rotary table stops at it, naming the limit', async () => {
    const info = await loadModelInfo(model);
    expect(positionLimit(info.config)).toBe(64);
    const e = new (loadNative().Engine)({ threads: 2 });
    await e.load(engineSpec(info));
    await expect(e.score(longBatch)).rejects.toThrow(/sequence 0 has 80 tokens; the model allows 64 \(max_position_embeddings\)/);
    e.close();
  });

  it('run under dynamic NTK, whose table grows with the length', async () => {
    const info = await loadModelInfo(model);
    info.config = { ...info.config, ropes: [{ type: 'dynamic', theta: 10000, rotaryDim: 8, factor: 2 }] };
    expect(positionLimit(info.config)).toBe(Infinity);
    const e = new (loadNative().Engine)({ threads: 2 });
    await e.load(engineSpec(info));
    const r = await e.score(longBatch);
    expect(Array.from(r.tokenLogprobs).every(Number.isFinite)).toBe(true);
    e.close();
  });
});
