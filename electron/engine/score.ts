// Scoring without training: per-example loss (mean token NLL over the scored
// tokens) and accuracy of a model on a dataset.
import type { TaskTemplate } from '../data/index.js';
import { TRAIN_DEFAULTS, loadForTraining, scoreExamples } from './trainer.js';
import type { TrainEvent } from './trainer.js';

export interface ScoreOptions {
  model: string;
  data: string;
  task: TaskTemplate;
  threads: number;
  maxLength?: number;
  batchSize: number;
}

export interface ScoredExample {
  type: 'example';
  index: number;
  source: string;
  loss: number;
  scored_tokens: number;
  correct: boolean | null;
  candidate_scores: number[] | null;
}

export interface ScoreSummary {
  type: 'summary';
  examples: number;
  loss: number;
  accuracy: number | null;
  wall_s: number;
}

export type ScoreEvent = ScoredExample | ScoreSummary | TrainEvent;

export async function scoreDataset(o: ScoreOptions, emit: (e: ScoreEvent) => void): Promise<ScoreSummary> {
  const t0 = Date.now();
  const { engine, train: examples } = await loadForTraining(
    {
      ...TRAIN_DEFAULTS,
      model: o.model,
      train: o.data,
      task: o.task,
      threads: o.threads,
      maxLength: o.maxLength,
      batchSize: o.batchSize,
      evalFraction: 0,
      zeroShot: false,
    },
    emit,
  );
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
        scored_tokens: chunk.scoredTokens[i],
        correct: chunk.correct[i] < 0 ? null : chunk.correct[i] === 1,
        candidate_scores: ex.kind === 'classify' ? chunk.candidateScores.slice(seq, seq + n) : null,
      });
      seq += n;
      index++;
    });
  }
  const summary: ScoreSummary = { type: 'summary', examples: examples.length, loss: r.loss, accuracy: r.accuracy, wall_s: (Date.now() - t0) / 1000 };
  emit(summary);
  return summary;
}
