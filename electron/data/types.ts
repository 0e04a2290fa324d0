// Tokenised examples: what the data layer produces and the engine scores.

export type TaskKind = 'classify' | 'lm' | 'completion' | 'chat';

export interface TokenSequence {
  tokens: number[];
  /** Scored span [scoreStart, scoreEnd): token p is predicted from position p-1, so scoreStart >= 1. */
  scoreStart: number;
  scoreEnd: number;
  /**
   * Several scored spans (chat: one per trained assistant reply), in order and disjoint; scoreStart
   * and scoreEnd are then the first span's start and the last span's end. Absent: the one span above.
   */
  spans?: Array<[number, number]>;
}

export interface TokenizedExample {
  kind: TaskKind;
  /**
   * classify: one sequence per candidate label word; lm / completion: exactly one; chat: one, or more
   * where the template renders an earlier reply differently once later turns follow (ENGINE-SPEC "Losses").
   */
  sequences: TokenSequence[];
  /** classify: index of the correct candidate; -1 otherwise. */
  label: number;
  /** Source location for error messages and previews, e.g. "train.jsonl:17". */
  source: string;
}
