// Packs tokenised examples into the engine's flat batch layout.
import type { TokenizedExample } from '../data/types.js';
import type { NativeBatch } from './native.js';

export function packBatch(examples: TokenizedExample[]): NativeBatch {
  if (examples.length === 0) throw new Error('cannot pack an empty batch');
  let nseq = 0;
  let ntok = 0;
  for (const ex of examples) {
    nseq += ex.sequences.length;
    for (const s of ex.sequences) ntok += s.tokens.length;
  }
  const tokens = new Int32Array(ntok);
  const seqStart = new Int32Array(nseq + 1);
  const scoreStart = new Int32Array(nseq);
  const scoreEnd = new Int32Array(nseq);
  const exampleStart = new Int32Array(examples.length + 1);
  const exampleKind = new Int32Array(examples.length);
  const label = new Int32Array(examples.length);
  let si = 0;
  let ti = 0;
  examples.forEach((ex, ei) => {
    exampleStart[ei] = si;
    exampleKind[ei] = ex.kind === 'classify' ? 1 : 0;
    label[ei] = ex.kind === 'classify' ? ex.label : -1;
    for (const s of ex.sequences) {
      seqStart[si] = ti;
      tokens.set(s.tokens, ti);
      scoreStart[si] = s.scoreStart;
      scoreEnd[si] = s.scoreEnd;
      ti += s.tokens.length;
      si++;
    }
  });
  seqStart[nseq] = ti;
  exampleStart[examples.length] = nseq;
  return { tokens, seqStart, scoreStart, scoreEnd, exampleStart, exampleKind, label };
}

/** Number of tokens the forward pass processes for this batch. */
export function batchTokens(batch: NativeBatch): number {
  return batch.tokens.length;
}
