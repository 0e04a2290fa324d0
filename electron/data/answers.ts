// Scoring generated answers against reference answers, as MeZO reports SQuAD
// and DROP: exact match and token F1 after SQuAD's answer normalisation
// (lower case, ASCII punctuation removed, the articles a / an / the removed,
// whitespace collapsed). An empty answer scores F1 1 against an empty
// reference and 0 against any other (SQuAD v2's rule).

const PUNCTUATION = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~');

/** SQuAD's normalize_answer. */
export function normalizeAnswer(s: string): string {
  const lower = s.toLowerCase();
  const noPunct = [...lower].filter((c) => !PUNCTUATION.has(c)).join('');
  // Python's \b: between a word character (any letter, digit or _) and anything else.
  const noArticles = noPunct.replace(/(?<![\p{L}\p{N}_])(a|an|the)(?![\p{L}\p{N}_])/gu, ' ');
  return noArticles.split(/\s+/).filter(Boolean).join(' ');
}

export function exactMatch(prediction: string, reference: string): number {
  return normalizeAnswer(prediction) === normalizeAnswer(reference) ? 1 : 0;
}

export function tokenF1(prediction: string, reference: string): number {
  const p = normalizeAnswer(prediction).split(' ').filter(Boolean);
  const r = normalizeAnswer(reference).split(' ').filter(Boolean);
  if (p.length === 0 || r.length === 0) return p.length === r.length ? 1 : 0;
  const counts = new Map<string, number>();
  for (const t of r) counts.set(t, (counts.get(t) ?? 0) + 1);
  let same = 0;
  for (const t of p) {
    const n = counts.get(t) ?? 0;
    if (n > 0) {
      same++;
      counts.set(t, n - 1);
    }
  }
  if (same === 0) return 0;
  const precision = same / p.length;
  const recall = same / r.length;
  return (2 * precision * recall) / (precision + recall);
}

/** Mean exact match and F1 of predictions against their references (several references: the best of each). */
export function answerScores(pairs: { prediction: string; references: string[] }[]): { exactMatch: number; f1: number } {
  if (pairs.length === 0) return { exactMatch: 0, f1: 0 };
  let em = 0;
  let f1 = 0;
  for (const { prediction, references } of pairs) {
    em += Math.max(...references.map((r) => exactMatch(prediction, r)));
    f1 += Math.max(...references.map((r) => tokenF1(prediction, r)));
  }
  return { exactMatch: em / pairs.length, f1: f1 / pairs.length };
}
