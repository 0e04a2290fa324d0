// Two engines that must give the same bits (one path against another: the head a chunk at a
// time or whole, a pair from the masters or from copies): the same steps on both, every result
// and every tensor compared exactly (Object.is: -0 and NaN count).
import { expect } from 'vitest';

import { packBatch } from '../../electron/engine/batch.js';
import type { TokenizedExample } from '../../electron/data/types.js';
import type { NativeEngine, NativeStepParams } from '../../electron/engine/native.js';

/** `n` LM examples of `len` tokens drawn below `vocab`, all but the first token scored. */
export function lmBatch(n: number, len: number, vocab: number) {
  let x = 4242;
  const next = () => (x = (x * 1103515245 + 12345) % 2 ** 31) % vocab;
  const examples: TokenizedExample[] = Array.from({ length: n }, (_, i) => ({
    kind: 'lm',
    label: -1,
    source: `ex${i}`,
    sequences: [{ tokens: Array.from({ length: len }, next), scoreStart: 1, scoreEnd: len }],
  }));
  return packBatch(examples);
}

/** Runs the same steps on both engines and compares every result and every tensor bit for bit. */
export async function expectSameBits(a: NativeEngine, b: NativeEngine, batch: ReturnType<typeof lmBatch>, steps: NativeStepParams[]) {
  for (const p of steps) {
    const [x, y] = [await a.step(batch, p), await b.step(batch, p)];
    expect(x.skipped).toBe(false);
    for (const key of ['lossPlus', 'lossMinus', 'projectedGrad'] as const)
      expect(x[key].every((v, i) => Object.is(v, y[key][i])), `${key} of step ${p.step}: ${x[key]} vs ${y[key]}`).toBe(true);
  }
  for (const t of a.tensorNames()) {
    const u = a.getTensor(t.name);
    const v = b.getTensor(t.name);
    expect(u.every((w, i) => Object.is(w, v[i])), t.name).toBe(true);
  }
}
