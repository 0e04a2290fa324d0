// A run's data, checked before the run starts and read as it goes: the
// training file (and the held-out file) indexed in one pass that checks every
// row against the task template, the held-out split drawn over row numbers as
// it always was (split.ts), and the examples tokenised when a batch or an
// evaluation asks for them (indexed.ts). What only tokenising tells (a
// tokenizer that is not the model's, the size of the examples for the plan) is
// learnt from a sample: all of a small file, else its first rows and its
// longest.
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';

import { chatRenderer, DatasetIndex, ExampleSet, renderExample, rowConversation, splitIndexArrays, tokenizeExample, validateTemplate } from '../data/index.js';
import type { DatasetRow, SpillwayTokenizer, TaskTemplate, TokenizedExample } from '../data/index.js';
import type { ModelInfo } from '../model/index.js';
import { formatBytes } from './safe-write.js';

/** Tokenised examples kept per set (training, held-out): a small dataset stays whole, a large one costs this. */
export const EXAMPLE_CACHE_BYTES = 64 * 2 ** 20;
/** A training file up to this size is tokenised whole before the run starts (every row's tokens checked, exact plan figures): about 3 s of tokenising. */
export const TOKENIZE_WHOLE_BYTES = 4 * 2 ** 20;
/** Otherwise the sample: the first rows and the longest. */
const SAMPLE_FIRST = 256;
const SAMPLE_LONGEST = 16;

export interface TrainingData {
  train: ExampleSet;
  eval: ExampleSet;
  /** Mean tokens per training example (all its sequences), over the sample. */
  meanTokens: number;
  /** The longest sequence in the sample. */
  maxTokens: number;
  close(): Promise<void>;
}

export interface DataOptions {
  train: string;
  eval?: string;
  task: TaskTemplate;
  evalFraction: number;
  evalMax: number;
  seed: number;
  maxLength: number;
}

/** The row check of the index pass: what reading a row through the template can tell without tokenising it. */
function rowCheck(file: string, task: TaskTemplate): (row: DatasetRow) => void {
  return task.kind === 'chat' ? (row) => void rowConversation(row, task, file) : (row) => void renderExample(row, task, file);
}

/**
 * Indexes and checks the data of a run and returns its training and held-out example sets. Errors
 * name the file, line and field; `log` hears of progress on large files.
 */
/**
 * Rows of a file as the engine's examples: the task template and truncation, and a check that every
 * token is in the model's vocabulary (a tokenizer that is not the model's). One chat renderer for
 * the whole run: strftime_now reads one date for every row.
 */
export function exampleTokenizer(task: TaskTemplate, tokenizer: SpillwayTokenizer, info: ModelInfo, maxLength: number): (file: string) => (row: DatasetRow) => TokenizedExample {
  validateTemplate(task);
  const chat = task.kind === 'chat' ? chatRenderer(tokenizer, task) : undefined;
  const vocab = info.config.vocabSize;
  return (file) => (row) => {
    const ex = tokenizeExample(row, task, tokenizer, { file, maxLength, chat });
    for (const s of ex.sequences) {
      for (const t of s.tokens) {
        if (t >= vocab) throw new Error(`${ex.source}: token id ${t} is outside the model's vocabulary (${vocab}); the tokenizer does not belong to this model`);
      }
    }
    return ex;
  };
}

export async function prepareTrainingData(o: DataOptions, info: ModelInfo, tokenizer: SpillwayTokenizer, log: (message: string) => void): Promise<TrainingData> {
  const tokenizer_ = exampleTokenizer(o.task, tokenizer, info, o.maxLength);
  const index = async (file: string) => {
    const size = (await stat(file).catch(() => null))?.size ?? 0;
    return DatasetIndex.build(file, {
      check: rowCheck(file, o.task),
      onProgress: ({ rows, bytes, totalBytes }) =>
        log(`reading ${basename(file)}: ${rows} rows${totalBytes ? `, ${formatBytes(bytes)} of ${formatBytes(totalBytes)} (${Math.round((100 * bytes) / totalBytes)}%)` : ''}`),
      progressMs: size > 64 * 2 ** 20 ? 2000 : Infinity,
    });
  };
  const trainIndex = await index(o.train);
  const evalIndex = o.eval ? await index(o.eval).catch(async (e: unknown) => {
    await trainIndex.close();
    throw e;
  }) : null;
  const all = (n: number) => Uint32Array.from({ length: n }, (_, i) => i);
  let trainRows: Uint32Array;
  let evalRows: Uint32Array;
  if (evalIndex) {
    trainRows = all(trainIndex.count);
    evalRows = all(evalIndex.count);
  } else {
    ({ train: trainRows, eval: evalRows } = splitIndexArrays(trainIndex.count, o.evalFraction, o.seed));
  }
  if (o.evalMax > 0 && evalRows.length > o.evalMax) evalRows = evalRows.subarray(0, o.evalMax);
  const close = async () => {
    await trainIndex.close();
    await evalIndex?.close();
  };
  if (trainRows.length === 0) {
    await close();
    throw new Error(`${o.train} has no training examples`);
  }
  const train = new ExampleSet(trainIndex, trainRows, tokenizer_(o.train), EXAMPLE_CACHE_BYTES);
  const evalSet = new ExampleSet(evalIndex ?? trainIndex, evalRows, tokenizer_(o.eval ?? o.train), EXAMPLE_CACHE_BYTES);
  try {
    const whole = ((await stat(o.train).catch(() => null))?.size ?? Infinity) <= TOKENIZE_WHOLE_BYTES;
    const positions = whole ? [...Array(train.length).keys()] : sampleOf(trainIndex, trainRows);
    const sample = await train.get(positions);
    if (whole && evalRows.length) await evalSet.get([...Array(evalRows.length).keys()]);
    const lengths = sample.flatMap((ex) => ex.sequences.map((s) => s.tokens.length));
    return {
      train,
      eval: evalSet,
      meanTokens: sample.reduce((n, ex) => n + ex.sequences.reduce((m, s) => m + s.tokens.length, 0), 0) / Math.max(1, sample.length),
      maxTokens: Math.max(1, ...lengths),
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Positions in the training set of its first rows and of its longest (by bytes): what the sample tokenises. */
function sampleOf(index: DatasetIndex, trainRows: Uint32Array): number[] {
  const picked = new Set<number>();
  for (let p = 0; p < Math.min(SAMPLE_FIRST, trainRows.length); p++) picked.add(p);
  for (const p of index.longest(trainRows, SAMPLE_LONGEST)) picked.add(p);
  return [...picked];
}
