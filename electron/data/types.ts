// Tokenised examples: what the data layer produces and the engine scores.

export type TaskKind = 'classify' | 'lm' | 'completion';

export interface TokenSequence {
  tokens: number[];
  /** Scored span [scoreStart, scoreEnd): token p is predicted from position p-1, so scoreStart >= 1. */
  scoreStart: number;
  scoreEnd: number;
}

export interface TokenizedExample {
  kind: TaskKind;
  /** classify: one sequence per candidate label word; lm / completion: exactly one. */
  sequences: TokenSequence[];
  /** classify: index of the correct candidate; -1 otherwise. */
  label: number;
  /** Source location for error messages and previews, e.g. "train.jsonl:17". */
  source: string;
}
