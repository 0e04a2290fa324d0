// Datasets read by index (indexed.ts) against the same files read whole: the same rows by number
// in every format, the same training batches step by step (the sampler's guarantee that a resumed
// or re-run training sees the same examples), a cache that stays within its bound, and rows over
// the size limit refused with their file and line.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parquetWriteFile } from 'hyparquet-writer';
import { beforeAll, describe, expect, it } from 'vitest';

import {
  batchIndices,
  DatasetError,
  DatasetIndex,
  ExampleSet,
  loadExamples,
  loadTokenizer,
  MAX_ROW_BYTES,
  readAllRows,
  readDataset,
  splitRows,
  tokenizeExample,
} from '../../../electron/data/index.js';
import type { SpillwayTokenizer } from '../../../electron/data/index.js';
import { prepareTrainingData } from '../../../electron/engine/training-data.js';
import { loadModelInfo } from '../../../electron/model/index.js';
import type { ModelInfo } from '../../../electron/model/index.js';
import { DEMO_DATA, DEMO_TOKENIZER_DIR } from '../../helpers/tiny-model.js';
import { tempDir } from './fixtures.js';

let dir: string;
let tokenizer: SpillwayTokenizer;
let info: ModelInfo;

const sentences = Array.from({ length: 300 }, (_, i) => `review ${i}: ${['fine', 'dull', 'a "quoted", comma', 'two\nlines', 'ünïcödé ✓'][i % 5]}`);

beforeAll(async () => {
  dir = await tempDir('spillway-indexed-');
  tokenizer = await loadTokenizer(DEMO_TOKENIZER_DIR);
  info = await loadModelInfo(DEMO_TOKENIZER_DIR);
});

async function everyFormat(): Promise<string[]> {
  const rows = sentences.map((s, i) => ({ sentence: s, label: i % 2 }));
  const jsonl = path.join(dir, 'rows.jsonl');
  // A BOM, blank lines and CRLF: rows are numbered past them as the streaming reader numbers them.
  await writeFile(jsonl, '\uFEFF' + rows.map((r, i) => JSON.stringify(r) + (i % 7 === 0 ? '\r\n\n' : '\n')).join(''));
  const array = path.join(dir, 'rows.json');
  await writeFile(array, '[\n' + rows.map((r) => '  ' + JSON.stringify(r, null, 1)).join(',\n') + '\n]\n');
  const csv = path.join(dir, 'rows.csv');
  await writeFile(csv, 'sentence,label\r\n' + rows.map((r) => `"${r.sentence.replaceAll('"', '""')}",${r.label}`).join('\r\n') + '\r\n');
  const parquet = path.join(dir, 'rows.parquet');
  parquetWriteFile({
    filename: parquet,
    columnData: [
      { name: 'sentence', data: rows.map((r) => r.sentence), type: 'STRING' },
      { name: 'label', data: rows.map((r) => BigInt(r.label)), type: 'INT64' },
    ],
    rowGroupSize: 64,
  });
  return [jsonl, array, csv, parquet];
}

describe('DatasetIndex', () => {
  it('reads back each row by number, in any order, as the streaming reader gave it, in every format', async () => {
    for (const file of await everyFormat()) {
      const whole = await readAllRows(file);
      expect(whole, file).toHaveLength(sentences.length);
      const index = await DatasetIndex.build(file);
      expect(index.count).toBe(whole.length);
      const order = [299, 0, 150, 7, 7, 298, 64, 63, 1];
      expect(await index.rows(order), file).toEqual(order.map((i) => whole[i]));
      expect(await index.rows([...whole.keys()]), file).toEqual(whole);
      await expect(index.rows([300])).rejects.toThrow(/row 300 is outside/);
      await index.close();
    }
  });

  it('checks each row as it passes and stops at the first bad one, with its line', async () => {
    const file = path.join(dir, 'bad-label.jsonl');
    await writeFile(file, '{"sentence":"a","label":0}\n{"sentence":"b"}\n');
    const check = (row: { values: Record<string, unknown>; line: number }) => {
      if (row.values.label === undefined) throw new DatasetError(file, row.line, 'no label', { field: 'label' });
    };
    await expect(DatasetIndex.build(file, { check })).rejects.toThrow(`${file}:2: field "label": no label`);
  });

  it('refuses a row over the size limit with its file and line, and reads on past it when asked to report', async () => {
    const big = 'x'.repeat(MAX_ROW_BYTES + 10);
    const jsonl = path.join(dir, 'oversized.jsonl');
    await writeFile(jsonl, `{"text":"a"}\n{"text":"${big}"}\n{"text":"c"}\n`);
    await expect(DatasetIndex.build(jsonl)).rejects.toThrow(`${jsonl}:2: the row is ${MAX_ROW_BYTES + 21} bytes, longer than the ${MAX_ROW_BYTES} bytes (16 MiB) a row may hold: split or shorten it`);
    const bad: DatasetError[] = [];
    const rows = [];
    for await (const r of readDataset(jsonl, { onBadRow: (e) => bad.push(e) })) rows.push(r.line);
    expect(rows).toEqual([1, 3]);
    expect(bad.map((e) => e.line)).toEqual([2]);

    const array = path.join(dir, 'oversized.json');
    await writeFile(array, `[{"text":"a"},\n{"text":"${big}"}]`);
    await expect(DatasetIndex.build(array)).rejects.toThrow(new RegExp(`${array}:2: the row is (longer than|\\d+ bytes)`));
    const csv = path.join(dir, 'oversized.csv');
    await writeFile(csv, `text\na\n"${big}"\n`);
    await expect(DatasetIndex.build(csv)).rejects.toThrow(new RegExp(`${csv}:3: the row is (longer than|\\d+ bytes)`));
  });

  it('says so when the file changed under a run', async () => {
    const file = path.join(dir, 'shrinks.jsonl');
    await writeFile(file, '{"a":1}\n{"a":2}\n');
    const index = await DatasetIndex.build(file);
    await writeFile(file, '{"a":1}\n');
    await expect(index.rows([1])).rejects.toThrow(`${file}:2: the file is shorter than when it was read`);
    await index.close();
  });
});

describe('training data read by index', () => {
  it('gives every step the examples reading the file whole gave it (split, sampler, tokens)', async () => {
    const file = path.join(DEMO_DATA, 'sentiment-demo', 'train.jsonl');
    const task = { kind: 'sst2' as const };
    for (const [evalFraction, seed, batch] of [[0.1, 3, 16], [0, 0, 5], [0.25, 9, 64]] as const) {
      const all = await loadExamples(file, task, tokenizer, { maxLength: 64 });
      const whole = splitRows(all, { evalFraction, seed });
      const data = await prepareTrainingData({ train: file, task, evalFraction, evalMax: 0, seed, maxLength: 64 }, info, tokenizer, () => {});
      expect(data.train.length).toBe(whole.train.length);
      expect(data.eval.length).toBe(whole.eval.length);
      for (let step = 0; step < 60; step++) {
        const idx = batchIndices(seed, step, Math.min(batch, whole.train.length), whole.train.length);
        expect(await data.train.get(idx), `step ${step}`).toEqual(idx.map((i) => whole.train[i]));
      }
      const evals = [];
      for await (const chunk of data.eval.chunks(7)) evals.push(...chunk);
      expect(evals).toEqual(whole.eval);
      await data.close();
    }
  });

  it('keeps at most its cache bound of tokenised examples', async () => {
    const file = path.join(DEMO_DATA, 'sentiment-demo', 'train.jsonl');
    const index = await DatasetIndex.build(file);
    const rows = Uint32Array.from({ length: index.count }, (_, i) => i);
    const tokenize = (row: Parameters<typeof tokenizeExample>[0]) => tokenizeExample(row, { kind: 'sst2' }, tokenizer, { file, maxLength: 64 });
    const set = new ExampleSet(index, rows, tokenize, 20_000);
    for (let step = 0; step < 40; step++) {
      const got = await set.get(batchIndices(1, step, 16, rows.length));
      expect(got).toHaveLength(16);
      expect(set.cachedBytes).toBeLessThanOrEqual(20_000);
    }
    expect(set.cachedBytes).toBeGreaterThan(0);
    await index.close();
  });
});
