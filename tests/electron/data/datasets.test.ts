import { describe, it, expect, beforeAll } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync } from 'hyparquet';
import { parquetWriteFile } from 'hyparquet-writer';
import {
  DatasetError,
  detectFormat,
  previewDataset,
  readAllRows,
  readDataset,
  PARQUET_SLICE,
} from '../../../electron/data/index.js';
import { tempDir } from './fixtures.js';

let dir: string;
beforeAll(async () => {
  dir = await tempDir();
});

async function errorOf(p: Promise<unknown>): Promise<DatasetError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(DatasetError);
  return e as DatasetError;
}

describe('format detection', () => {
  it('by extension', () => {
    expect(detectFormat('a/b.jsonl')).toBe('jsonl');
    expect(detectFormat('a/b.JSON')).toBe('jsonl');
    expect(detectFormat('b.csv')).toBe('csv');
    expect(detectFormat('b.parquet')).toBe('parquet');
    expect(() => detectFormat('b.txt')).toThrow(DatasetError);
  });

  it('missing file names the file', async () => {
    const f = path.join(dir, 'nope.jsonl');
    const e = await errorOf(readAllRows(f));
    expect(e.file).toBe(f);
    expect(e.message).toMatch(/nope\.jsonl: cannot read file/);
  });
});

describe('JSONL', () => {
  it('reads rows with 1-based line numbers, skipping blank lines', async () => {
    const f = path.join(dir, 'good.jsonl');
    await writeFile(f, '\uFEFF{"text":"a","label":0}\n\n{"text":"b\\nc","label":1}\r\n{"text":"d"}\n');
    const rows = await readAllRows(f);
    expect(rows).toEqual([
      { line: 1, values: { text: 'a', label: 0 } },
      { line: 3, values: { text: 'b\nc', label: 1 } },
      { line: 4, values: { text: 'd' } },
    ]);
    expect(await readAllRows(f, { limit: 2 })).toHaveLength(2);
  });

  it('a broken line gives file, line and the JSON problem', async () => {
    const f = path.join(dir, 'broken.jsonl');
    await writeFile(f, '{"text":"a"}\n{"text":"b"}\n{"text": "c",}\n{"text":"d"}\n');
    const seen: number[] = [];
    const e = await errorOf(
      (async () => {
        for await (const r of readDataset(f)) seen.push(r.line);
      })(),
    );
    expect(seen).toEqual([1, 2]); // streamed: good rows before the error came through
    expect(e.file).toBe(f);
    expect(e.line).toBe(3);
    expect(e.message).toMatch(/broken\.jsonl:3: invalid JSON: .+/);
  });

  it('non-object lines are rejected; a file holding one JSON array is read element by element', async () => {
    const f = path.join(dir, 'scalar.jsonl');
    await writeFile(f, '{"a":1}\n42\n');
    const e = await errorOf(readAllRows(f));
    expect(e.line).toBe(2);
    expect(e.message).toMatch(/expected a JSON object/);
    const g = path.join(dir, 'array.json');
    await writeFile(g, '\uFEFF [{"a":1},\n {"a": [2, {"b": "],"}]}]\n');
    expect(await readAllRows(g)).toEqual([
      { line: 1, values: { a: 1 } },
      { line: 2, values: { a: [2, { b: '],' }] } },
    ]);
    const h = path.join(dir, 'nested.json');
    await writeFile(h, '[[1, 2]]');
    expect((await errorOf(readAllRows(h))).message).toBe(`${h}:1: expected a JSON object, got an array`);
  });
});

describe('CSV', () => {
  it('handles quoting, escaped quotes, embedded newlines; line = where the record starts', async () => {
    const f = path.join(dir, 'q.csv');
    await writeFile(f, 'text,label\n"hello, ""world""",1\n\n"multi\nline",0\nplain,2\n');
    const rows = await readAllRows(f);
    expect(rows).toEqual([
      { line: 2, values: { text: 'hello, "world"', label: '1' } },
      { line: 4, values: { text: 'multi\nline', label: '0' } },
      { line: 6, values: { text: 'plain', label: '2' } },
    ]);
  });

  it('line numbers hold with CRLF, a BOM and quoted CRLF', async () => {
    const f = path.join(dir, 'crlf.csv');
    await writeFile(f, '\uFEFFtext,label\r\n"a\r\nb",1\r\n\r\nc,2');
    expect(await readAllRows(f)).toEqual([
      { line: 2, values: { text: 'a\r\nb', label: '1' } },
      { line: 5, values: { text: 'c', label: '2' } },
    ]);
  });

  it('line numbers hold across many stream chunks', async () => {
    const f = path.join(dir, 'big.csv');
    const n = 3000;
    const body = Array.from({ length: n }, (_, i) => `"row ${i}\nsecond line, with comma",${i % 2}`).join('\n');
    await writeFile(f, `text,label\n${body}\n`);
    const rows = await readAllRows(f);
    expect(rows).toHaveLength(n);
    rows.forEach((r, i) => {
      expect(r.line).toBe(2 + 2 * i);
      expect(r.values.text).toBe(`row ${i}\nsecond line, with comma`);
    });
  });

  it('errors give file and line', async () => {
    const f = path.join(dir, 'unclosed.csv');
    await writeFile(f, 'text,label\nok,1\n"never closed,0\n');
    const e = await errorOf(readAllRows(f));
    expect(e.file).toBe(f);
    expect(e.line).toBeGreaterThanOrEqual(3);
    expect(e.message).toMatch(/unclosed\.csv:\d+: CSV error: .*[Qq]uote/);

    const g = path.join(dir, 'ragged.csv');
    await writeFile(g, 'text,label\nok,1\ntoo,many,fields\n');
    const e2 = await errorOf(readAllRows(g));
    expect(e2.line).toBe(3);
  });

  it('preview lists the header columns', async () => {
    const f = path.join(dir, 'q.csv');
    const p = await previewDataset(f, 1);
    expect(p.format).toBe('csv');
    expect(p.columns).toEqual(['text', 'label']);
    expect(p.rows).toHaveLength(1);
    const h = path.join(dir, 'header-only.csv');
    await writeFile(h, 'a,b,c\n');
    expect((await previewDataset(h)).columns).toEqual(['a', 'b', 'c']);
  });
});

describe('onBadRow: report a bad row and read on', () => {
  it('JSONL: lines that are not JSON objects are reported with their line and skipped', async () => {
    const f = path.join(dir, 'some-bad.jsonl');
    await writeFile(f, '{"a":1}\n{"a":\n[1,2]\n{"a":4}\n');
    const bad: DatasetError[] = [];
    const rows = await readAllRows(f, { onBadRow: (e) => bad.push(e) });
    expect(rows.map((r) => r.line)).toEqual([1, 4]);
    expect(bad.map((e) => [e.line, e.detail.split(':')[0]])).toEqual([
      [2, 'invalid JSON'],
      [3, 'expected a JSON object, got an array'],
    ]);
  });

  it('CSV: ragged records are reported with their line and skipped', async () => {
    const f = path.join(dir, 'ragged-on.csv');
    await writeFile(f, 'text,label\nok,1\ntoo,many,fields\nfine,0\n');
    const bad: DatasetError[] = [];
    const rows = await readAllRows(f, { onBadRow: (e) => bad.push(e) });
    expect(rows.map((r) => r.values.text)).toEqual(['ok', 'fine']);
    expect(bad.map((e) => e.line)).toEqual([3]);
    expect(bad[0].detail).toBe('CSV record has 3 fields; the header has 2');
  });
});

describe('Parquet', () => {
  it('reads rows (INT64 as numbers) in slices; preview has schema and row count', async () => {
    const f = path.join(dir, 'data.parquet');
    const n = PARQUET_SLICE + 17;
    parquetWriteFile({
      filename: f,
      columnData: [
        { name: 'sentence', data: Array.from({ length: n }, (_, i) => `sentence ${i}`), type: 'STRING' },
        { name: 'label', data: Array.from({ length: n }, (_, i) => BigInt(i % 2)), type: 'INT64' },
        { name: 'score', data: Array.from({ length: n }, (_, i) => i / 2), type: 'DOUBLE' },
      ],
    });
    const rows = await readAllRows(f);
    expect(rows).toHaveLength(n);
    expect(rows[0]).toEqual({ line: 1, values: { sentence: 'sentence 0', label: 0, score: 0 } });
    expect(rows[n - 1]).toEqual({ line: n, values: { sentence: `sentence ${n - 1}`, label: (n - 1) % 2, score: (n - 1) / 2 } });
    rows.forEach((r, i) => expect(r.line).toBe(i + 1));

    const p = await previewDataset(f, 3);
    expect(p.format).toBe('parquet');
    expect(p.columns).toEqual(['sentence', 'label', 'score']);
    expect(p.totalRows).toBe(n);
    expect(p.rows.map((r) => r.values.sentence)).toEqual(['sentence 0', 'sentence 1', 'sentence 2']);
  });

  it('reads files a real writer compressed with each codec (pyarrow: snappy, gzip, brotli, lz4, zstd)', async () => {
    // Written by tests/fixtures/datasets/parquet/make_parquet.py, with the rows it wrote beside them.
    const fixtures = path.resolve(import.meta.dirname, '../../fixtures/datasets/parquet');
    const want = JSON.parse(await readFile(path.join(fixtures, 'rows.json'), 'utf8')) as { rows: Record<string, unknown>[] };
    const codecs = { snappy: 'SNAPPY', gzip: 'GZIP', brotli: 'BROTLI', lz4: 'LZ4_RAW', zstd: 'ZSTD' };
    for (const [name, codec] of Object.entries(codecs)) {
      const f = path.join(fixtures, `${name}.parquet`);
      const meta = await parquetMetadataAsync(await asyncBufferFromFile(f));
      expect(meta.row_groups.length).toBeGreaterThan(1);
      expect(meta.row_groups.flatMap((g) => g.columns.map((c) => c.meta_data?.codec))).toEqual(
        Array(meta.row_groups.length * 3).fill(codec),
      );
      const rows = await readAllRows(f);
      expect(rows.map((r) => r.values), name).toEqual(want.rows);
      expect((await previewDataset(f, 2)).totalRows).toBe(want.rows.length);
    }
  });

  it('a corrupt file gives a DatasetError naming it', async () => {
    const f = path.join(dir, 'corrupt.parquet');
    await writeFile(f, 'PAR1 definitely not parquet');
    const e = await errorOf(readAllRows(f));
    expect(e.file).toBe(f);
    expect(e.message).toMatch(/corrupt\.parquet: invalid Parquet file/);
  });
});

describe('previewDataset (JSONL)', () => {
  it('collects columns from the previewed rows', async () => {
    const f = path.join(dir, 'p.jsonl');
    await writeFile(f, '{"prompt":"a","completion":"b"}\n{"prompt":"c","completion":"d","extra":1}\n{"x":2}\n');
    const p = await previewDataset(f, 2);
    expect(p.rows).toHaveLength(2);
    expect(p.columns).toEqual(['prompt', 'completion', 'extra']);
    expect(p.totalRows).toBeUndefined();
  });
});
