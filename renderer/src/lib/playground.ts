// The Playground's conversations, as plain data: what each pane sends (its
// own replies, everyone's user turns, the system turn) and how a pick in the
// model list reads.
import type { ChatTurn, GenerateResult, GenerationSource } from '../../../electron/common/contract.ts';

export interface Turn {
  role: 'user' | 'assistant';
  content: string;
  /** An assistant reply still being written. */
  pending?: boolean;
  finish?: GenerateResult['finishReason'];
  /** "42 tokens · 31.0 tok/s", once written. */
  stats?: string;
}

/** The conversation a pane sends: the system turn (when set), then its turns so far (a reply being written left out). */
export function messagesOf(system: string, turns: readonly Turn[]): ChatTurn[] {
  const head: ChatTurn[] = system.trim() ? [{ role: 'system', content: system }] : [];
  return [...head, ...turns.filter((t) => !t.pending).map((t) => ({ role: t.role, content: t.content }))];
}

/** A model list entry's value: "model:<dir>" or "run:<id>". */
export function sourceKey(s: GenerationSource): string {
  return 'model' in s ? `model:${s.model}` : `run:${s.runId}`;
}

export function sourceOf(key: string): GenerationSource | null {
  if (key.startsWith('model:') && key.length > 6) return { model: key.slice(6) };
  if (key.startsWith('run:') && key.length > 4) return { runId: key.slice(4) };
  return null;
}

/** Why a reply ended, in words (nothing for the model's own end). */
export function finishWords(f: GenerateResult['finishReason']): string {
  switch (f) {
    case 'eos':
      return '';
    case 'length':
      return 'cut at the token limit';
    case 'stop':
      return 'ended at a stop string';
    case 'stopped':
      return 'stopped';
  }
}
