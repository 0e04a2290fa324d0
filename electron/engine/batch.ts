// Packs tokenised examples into the engine's flat batch layout.
import type { TokenSequence, TokenizedExample } from '../data/types.js';
import type { NativeBatch } from './native.js';

function spansOf(s: TokenSequence): ReadonlyArray<readonly [number, number]> {
  return s.spans ?? [[s.scoreStart, s.scoreEnd]];
}

export function packBatch(examples: TokenizedExample[]): NativeBatch {
  if (examples.length === 0) throw new Error('cannot pack an empty batch');
  let nseq = 0;
  let ntok = 0;
  let nspans = 0;
  for (const ex of examples) {
    nseq += ex.sequences.length;
    for (const s of ex.sequences) {
      ntok += s.tokens.length;
      nspans += spansOf(s).length;
    }
  }
  // The span offsets travel only when some sequence has several spans, so other batches stay as they were.
  const multi = nspans !== nseq;
  const tokens = new Int32Array(ntok);
  const seqStart = new Int32Array(nseq + 1);
  const scoreStart = new Int32Array(nspans);
  const scoreEnd = new Int32Array(nspans);
  const seqSpans = new Int32Array(nseq + 1);
  const exampleStart = new Int32Array(examples.length + 1);
  const exampleKind = new Int32Array(examples.length);
  const label = new Int32Array(examples.length);
  let si = 0;
  let ti = 0;
  let ki = 0;
  examples.forEach((ex, ei) => {
    exampleStart[ei] = si;
    exampleKind[ei] = ex.kind === 'classify' ? 1 : 0;
    label[ei] = ex.kind === 'classify' ? ex.label : -1;
    for (const s of ex.sequences) {
      seqStart[si] = ti;
      seqSpans[si] = ki;
      tokens.set(s.tokens, ti);
      for (const [a, b] of spansOf(s)) {
        scoreStart[ki] = a;
        scoreEnd[ki] = b;
        ki++;
      }
      ti += s.tokens.length;
      si++;
    }
  });
  seqStart[nseq] = ti;
  seqSpans[nseq] = ki;
  exampleStart[examples.length] = nseq;
  return { tokens, seqStart, scoreStart, scoreEnd, ...(multi ? { seqSpans } : {}), exampleStart, exampleKind, label };
}

/** Number of tokens the forward pass processes for this batch. */
export function batchTokens(batch: NativeBatch): number {
  return batch.tokens.length;
}
