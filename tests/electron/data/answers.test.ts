// Exact match and token F1 of generated answers against SQuAD's own rules (tests/reference/
// answers.py: normalize_answer and the F1 of the official evaluation script), on answers with
// punctuation, articles, case, repeated and non-ASCII words, and empty ones.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { answerScores, exactMatch, normalizeAnswer, tokenF1 } from '../../../electron/data/answers.js';
import { ROOT } from '../../helpers/engine.js';

const PAIRS: [string, string][] = [
  ['The Eiffel Tower', 'eiffel tower'],
  ['  an Apple, a day!', 'apple day'],
  ['Denver Broncos', 'The Denver Broncos won'],
  ['the the cat cat', 'cat'],
  ['théâtre a an', 'Théâtre'],
  ['Thea and Anna', 'thea anna'],
  ['1,000 (approx.)', '1000 approx'],
  ['', ''],
  ['', 'something'],
  ['nothing alike', 'entirely different'],
  ['naïve-approach a-b', 'naiveapproach ab'],
  ['Ça va, l’été', 'ça va l’été'],
];

describe('answer scores', () => {
  it('normalise, match and score F1 as the SQuAD script does', () => {
    const ref = JSON.parse(
      execFileSync('/usr/bin/python3', [join(ROOT, 'tests', 'reference', 'answers.py')], { input: JSON.stringify(PAIRS), encoding: 'utf8' }),
    ) as [string, number, number][];
    PAIRS.forEach(([p, r], i) => {
      expect(normalizeAnswer(p), p).toBe(ref[i][0]);
      expect(exactMatch(p, r), p).toBe(ref[i][1]);
      expect(tokenF1(p, r)).toBeCloseTo(ref[i][2], 12);
    });
  });

  it('averages over answers, taking the best reference of each', () => {
    const s = answerScores([
      { prediction: 'Paris', references: ['paris', 'Paris, France'] },
      { prediction: 'in 1999', references: ['1999'] },
    ]);
    expect(s.exactMatch).toBe(0.5);
    expect(s.f1).toBeCloseTo((1 + 2 / 3) / 2, 12);
  });
});
