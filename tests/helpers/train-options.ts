// Options for the short training runs the tests drive: the demo sentiment data with the sst2
// template on a tiny model, one thread, no zero-shot evaluation, nothing held out. Each test
// file sets what it is about (steps, seed, tiers, checkpoints) on top.
import { join } from 'node:path';

import { TrainOptions, filled } from '../../electron/common/options.js';
import type { TrainOptionsInput } from '../../electron/common/options.js';
import { DEMO_DATA } from './tiny-model.js';

export const DEMO_TRAIN = join(DEMO_DATA, 'sentiment-demo', 'train.jsonl');

/** The options as the schema reads them (defaults filled): what the supervisor and the engine host receive. */
export function demoTrainOptions(model: string, over: Partial<TrainOptionsInput> = {}): TrainOptions {
  return filled(TrainOptions.parse({
    model,
    train: DEMO_TRAIN,
    task: { kind: 'sst2' },
    batchSize: 4,
    lr: 1e-2,
    threads: 1,
    zeroShot: false,
    evalFraction: 0,
    ...over,
  }));
}
