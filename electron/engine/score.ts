// Scoring without training: per-example loss (mean token NLL over the scored
// tokens) and accuracy of a model on a dataset.
import { ScoreOptions, TrainOptions, filled } from '../common/options.js';
import { loadForTraining, scoreExamples } from './trainer.js';
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

export async function scoreDataset(o: ScoreOptions, emit: (e: ScoreEvent) => void): Promise<ScoreSummary> {
  const t0 = Date.now();
  // The whole file is scored: nothing held out.
  const { engine, train: examples } = await loadForTraining(filled(TrainOptions.parse({ ...ScoreOptions.parse(o), evalFraction: 0, zeroShot: false })), emit);
  let r: Awaited<ReturnType<typeof scoreExamples>>;
  try {
    r = await scoreExamples(engine, examples, o.batchSize);
  } finally {
    engine.close();
  }
  let index = 0;
  for (const chunk of r.results) {
    let seq = 0;
    chunk.exampleLoss.forEach((loss, i) => {
      const ex = examples[index];
      const n = ex.sequences.length;
      emit({
        type: 'example',
        index,
        source: ex.source,
        loss,
        scoredTokens: chunk.scoredTokens[i],
        correct: chunk.correct[i] < 0 ? null : chunk.correct[i] === 1,
        candidateScores: ex.kind === 'classify' ? chunk.candidateScores.slice(seq, seq + n) : null,
      });
      seq += n;
      index++;
    });
  }
  const summary: ScoreSummary = { type: 'summary', examples: examples.length, loss: r.loss, accuracy: r.accuracy, wallS: (Date.now() - t0) / 1000 };
  emit(summary);
  return summary;
}
