// The addon runs one operation of an engine at a time: from the call that starts a step, a score or
// a decoding step until its promise settles (settling happens on the main thread, so the engine is
// busy for the whole synchronous turn after the call), every other operation is refused by name,
// and nothing is lost: once it settles, each works.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { packBatch } from '../../electron/engine/batch.js';
import { loadNative } from '../../electron/engine/native.js';
import type { NativeEngine } from '../../electron/engine/native.js';
import { engineSpec } from '../../electron/engine/spec.js';
import { loadModelInfo } from '../../electron/model/index.js';
import { FIXTURE_MODELS } from '../helpers/engine.js';

const BUSY = /the engine is busy with another operation/;
const engine: NativeEngine = new (loadNative().Engine)({ threads: 1 });
await engine.load(engineSpec(await loadModelInfo(join(FIXTURE_MODELS, 'llama-tiny'))));
afterAll(() => engine.close());

const batch = packBatch([{ kind: 'lm' as const, label: -1, source: 'busy', sequences: [{ tokens: [1, 17, 42, 99, 5], scoreStart: 1, scoreEnd: 5 }] }]);
const prompt = Int32Array.of(1, 17, 42);

describe('an engine with an operation in flight', () => {
  const others = (): [string, () => unknown][] => {
    const { name } = engine.tensorNames()[0];
    return [
      ['score', () => engine.score(batch)],
      ['step', () => engine.step(batch, { seed: 1n, step: 0, q: 1, lr: 1e-3, eps: 1e-3, weightDecay: 0, noise: 'gaussian' })],
      ['decodeBegin', () => engine.decodeBegin({ prompts: [prompt], maxNewTokens: 2 })],
      ['decodeNext', () => engine.decodeNext()],
      ['decodeEnd', () => engine.decodeEnd()],
      ['getTensor', () => engine.getTensor(name)],
      ['setTensor', () => engine.setTensor(name, new Float32Array(0))],
      ['close', () => engine.close()],
    ];
  };

  it.each([
    ['score', () => engine.score(batch)],
    ['step', () => engine.step(batch, { seed: 1n, step: 0, q: 1, lr: 0, eps: 1e-3, weightDecay: 0, noise: 'gaussian' })],
    ['decodeBegin', () => engine.decodeBegin({ prompts: [prompt], maxNewTokens: 3 })],
  ] as [string, () => Promise<unknown>][])('refuses every other operation while %s runs, and serves them after', async (_name, start) => {
    const running = start();
    for (const [other, call] of others()) expect(call, other).toThrow(BUSY);
    await running;
    await expect(engine.score(batch)).resolves.toBeDefined();
  });

  it('refuses while a decoding step runs', async () => {
    await engine.decodeBegin({ prompts: [prompt], maxNewTokens: 3 });
    const running = engine.decodeNext();
    for (const [other, call] of others()) expect(call, other).toThrow(BUSY);
    await running;
    engine.decodeEnd();
  });
});
