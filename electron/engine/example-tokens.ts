// Mean tokens per training example: what a step really computes (batch × the
// mean), for the planner's compute term. Shared by training (trainer.ts) and
// the New run plan (services/api.ts), so both tokenize the data the same way.
import { loadExamples, loadTokenizer } from '../data/index.js';
import type { TaskTemplate, TokenizedExample } from '../data/index.js';
import { loadModelInfo } from '../model/index.js';
import type { ModelInfo } from '../model/index.js';
import { positionLimit } from '../model/index.js';

/** Mean tokens per example over all its sequences (one per candidate label word); 0 for no examples. */
export function meanExampleTokens(examples: readonly TokenizedExample[]): number {
  return examples.reduce((n, ex) => n + ex.sequences.reduce((m, s) => m + s.tokens.length, 0), 0) / Math.max(1, examples.length);
}

/**
 * The max length training truncates to: --max-length when given, else max_position_embeddings; capped
 * by the positions the model defines (past max_position_embeddings for dynamic NTK RoPE). Not finite
 * when neither says.
 */
export function trainingMaxLength(info: ModelInfo, maxLength?: number): number {
  const limit = positionLimit(info.config);
  return Math.min(maxLength ?? (info.config.maxPositions > 0 ? info.config.maxPositions : limit), limit);
}

/**
 * Tokenizes a training file as training does (the model's tokenizer, the task template, truncation to
 * `maxLength`) and returns its mean tokens per example and the number of examples.
 */
export async function datasetMeanTokens(o: {
  model: string | ModelInfo;
  train: string;
  task: TaskTemplate;
  maxLength?: number;
}): Promise<{ meanTokens: number; examples: number }> {
  const info = typeof o.model === 'string' ? await loadModelInfo(o.model) : o.model;
  if (!info.tokenizer) throw new Error(`${info.dir} has no tokenizer (tokenizer.json, or vocab.json + merges.txt)`);
  const tokenizer = await loadTokenizer(info.dir);
  const examples = await loadExamples(o.train, o.task, tokenizer, { maxLength: trainingMaxLength(info, o.maxLength) });
  return { meanTokens: meanExampleTokens(examples), examples: examples.length };
}
