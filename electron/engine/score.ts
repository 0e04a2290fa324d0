// Scoring without training: per-example loss (mean token NLL over the scored
// tokens) and accuracy of a model on a dataset. The file streams through: rows
// are tokenised and scored a batch at a time and each example is reported as
// its batch is scored, so memory holds one batch and the first lines come at
// once, whatever the file's size.
import { ScoreOptions } from '../common/options.js';
import { loadTokenizer, readDataset } from '../data/index.js';
import type { TokenizedExample } from '../data/index.js';
import { loadModelInfo } from '../model/index.js';
import { trainingMaxLength } from './example-tokens.js';
import { exampleTokenizer } from './training-data.js';
import { openEngine, scoreExamples } from './trainer.js';
import type { TrainEvent } from './trainer.js';

export { ScoreOptions };

export interface ScoredExample {
  type: 'example';
  index: number;
  source: string;
  loss: number;
  scoredTokens: number;
  correct: boolean | null;
  candidateScores: number[] | null;
}

export interface ScoreSummary {
  type: 'summary';
  examples: number;
  loss: number;
  accuracy: number | null;
  wallS: number;
}

export type ScoreEvent = ScoredExample | ScoreSummary | TrainEvent;

/** The file's examples, `size` at a time, tokenised as they are read. */
async function* batchesOf(file: string, tokenize: (row: Parameters<ReturnType<ReturnType<typeof exampleTokenizer>>>[0]) => TokenizedExample, size: number): AsyncGenerator<TokenizedExample[]> {
  let batch: TokenizedExample[] = [];
  for await (const row of readDataset(file)) {
    batch.push(tokenize(row));
    if (batch.length === size) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length) yield batch;
}

export async function scoreDataset(options: ScoreOptions, emit: (e: ScoreEvent) => void): Promise<ScoreSummary> {
  const t0 = Date.now();
  const o = ScoreOptions.parse(options);
  const info = await loadModelInfo(o.model);
  if (!info.tokenizer) throw new Error(`${info.dir} has no tokenizer (tokenizer.json, or vocab.json + merges.txt)`);
  const tokenize = exampleTokenizer(o.task, await loadTokenizer(info.dir), info, trainingMaxLength(info, o.maxLength))(o.train);
  const { engine } = await openEngine(info, o, emit);
  let index = 0;
  let r: Awaited<ReturnType<typeof scoreExamples>>;
  try {
    r = await scoreExamples(engine, batchesOf(o.train, tokenize, o.batchSize), (examples, chunk) => {
      let seq = 0;
      examples.forEach((ex, i) => {
        const n = ex.sequences.length;
        emit({
          type: 'example',
          index: index++,
          source: ex.source,
          loss: chunk.exampleLoss[i],
          scoredTokens: chunk.scoredTokens[i],
          correct: chunk.correct[i] < 0 ? null : chunk.correct[i] === 1,
          candidateScores: ex.kind === 'classify' ? chunk.candidateScores.slice(seq, seq + n) : null,
        });
        seq += n;
      });
    });
  } finally {
    engine.close();
  }
  if (r.examples === 0) throw new Error(`${o.train} has no examples to score`);
  const summary: ScoreSummary = { type: 'summary', examples: r.examples, loss: r.loss, accuracy: r.accuracy, wallS: (Date.now() - t0) / 1000 };
  emit(summary);
  return summary;
}
