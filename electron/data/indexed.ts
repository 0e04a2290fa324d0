// Datasets read by index: one pass over the file checks every row and keeps
// where each lies (16 bytes a row), then rows are read again and tokenised
// only when a batch or an evaluation needs them, through a cache of bounded
// size. Memory follows the step, not the file: a 2 GB file costs its index and
// the examples in flight. The row numbering is the streaming reader's (every
// row of the file, in order), so the split and the batches are those of
// reading the file whole.
import { open, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';

import { parse as csvParseSync } from 'csv-parse/sync';

import { CSV_OPTIONS, csvRecordRow, DatasetError, detectFormat, jsonRowFrom, openParquet, parquetSlice, PARQUET_SLICE, readLocated } from './datasets.js';
import type { DatasetFormat, DatasetRow } from './datasets.js';
import type { TokenizedExample } from './types.js';

export interface IndexOptions {
  format?: DatasetFormat;
  /** Checks each row as the index passes it (the task template's fields); a throw ends the pass with its error. */
  check?: (row: DatasetRow) => void;
  /** Told how far the pass has come, at most every `progressMs`. */
  onProgress?: (p: { rows: number; bytes: number; totalBytes: number }) => void;
  progressMs?: number;
}

const CHUNK_BITS = 16;
const CHUNK = 1 << CHUNK_BITS;

/** A column of numbers in fixed chunks: grows without copying, and holds no spare room beyond its last chunk. */
class Column {
  private chunks: (Float64Array | Uint32Array)[] = [];
  length = 0;
  constructor(private readonly make: (n: number) => Float64Array | Uint32Array) {}
  push(v: number): void {
    if ((this.length & (CHUNK - 1)) === 0) this.chunks.push(this.make(CHUNK));
    this.chunks[this.length >> CHUNK_BITS][this.length & (CHUNK - 1)] = v;
    this.length++;
  }
  at(i: number): number {
    return this.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)];
  }
}

/** Parquet slices kept decoded: a batch's rows fall in a few of them, the next batch's likely in others. */
const PARQUET_SLICES_KEPT = 4;

/** Where every row of a dataset file lies, and the rows read back by number. */
export class DatasetIndex {
  private fh: FileHandle | null = null;
  private parquet: Awaited<ReturnType<typeof openParquet>> | null = null;
  private slices = new Map<number, DatasetRow[]>();

  private constructor(
    readonly file: string,
    readonly format: DatasetFormat,
    readonly count: number,
    /** Where each row's bytes start, how many there are (at most MAX_ROW_BYTES), and the line it starts on. */
    private readonly starts: Column,
    private readonly lengths: Column,
    private readonly lines: Column,
    private readonly header: string[] | null,
  ) {}

  /** One pass over the file: every row read, checked, and its place kept. Errors name the file and line. */
  static async build(file: string, o: IndexOptions = {}): Promise<DatasetIndex> {
    const format = o.format ?? detectFormat(file);
    const starts = new Column((n) => new Float64Array(n));
    const lengths = new Column((n) => new Uint32Array(n));
    const lines = new Column((n) => new Uint32Array(n));
    let header: string[] | null = null;
    let count = 0;
    const totalBytes = o.onProgress ? await stat(file).then((s) => s.size, () => 0) : 0;
    let told = Date.now();
    for await (const { row, start, end } of readLocated(file, { format, onHeader: (h) => (header = h) })) {
      o.check?.(row);
      count++;
      if (format !== 'parquet') {
        if (row.line > 0xffffffff) throw new DatasetError(file, row.line, 'more than 4294967295 lines: split the file');
        starts.push(start);
        lengths.push(end - start);
        lines.push(row.line);
      }
      if (o.onProgress && Date.now() - told >= (o.progressMs ?? 2000)) {
        told = Date.now();
        o.onProgress({ rows: count, bytes: Math.max(0, end), totalBytes });
      }
    }
    return new DatasetIndex(file, format, count, starts, lengths, lines, header);
  }

  /** Rows by number (0-based, file order), in the order asked. */
  async rows(indices: readonly number[]): Promise<DatasetRow[]> {
    for (const i of indices) if (!Number.isInteger(i) || i < 0 || i >= this.count) throw new RangeError(`row ${i} is outside ${this.file} (${this.count} rows)`);
    if (this.format === 'parquet') return this.parquetRows(indices);
    this.fh ??= await open(this.file, 'r');
    const out: DatasetRow[] = [];
    for (const i of indices) {
      const start = this.starts.at(i);
      const line = this.lines.at(i);
      const bytes = Buffer.allocUnsafe(this.lengths.at(i));
      let done = 0;
      while (done < bytes.length) {
        const { bytesRead } = await this.fh.read(bytes, done, bytes.length - done, start + done);
        if (bytesRead === 0) throw new DatasetError(this.file, line, 'the file is shorter than when it was read (changed since the run started)');
        done += bytesRead;
      }
      out.push(this.format === 'csv' ? this.csvRow(bytes, line) : jsonRowFrom(this.file, line, bytes));
    }
    return out;
  }

  /** Of the rows at these positions, the positions of the `k` longest in bytes (none for Parquet, whose rows have no bytes of their own). */
  longest(rows: Uint32Array, k: number): number[] {
    if (this.format === 'parquet' || k <= 0) return [];
    const top: { p: number; bytes: number }[] = [];
    for (let p = 0; p < rows.length; p++) {
      const bytes = this.lengths.at(rows[p]);
      if (top.length === k && bytes <= top[k - 1].bytes) continue;
      top.push({ p, bytes });
      top.sort((a, b) => b.bytes - a.bytes);
      if (top.length > k) top.pop();
    }
    return top.map((t) => t.p);
  }

  private csvRow(bytes: Buffer, line: number): DatasetRow {
    let records: string[][];
    try {
      records = csvParseSync(bytes, { ...CSV_OPTIONS, relax_column_count: true }) as string[][];
    } catch (e) {
      throw new DatasetError(this.file, line, `CSV error: ${(e as Error).message} (the file changed since the run started?)`);
    }
    if (records.length !== 1) throw new DatasetError(this.file, line, 'the record no longer reads as one (the file changed since the run started?)');
    return csvRecordRow(this.file, this.header ?? [], records[0], line);
  }

  private async parquetRows(indices: readonly number[]): Promise<DatasetRow[]> {
    this.parquet ??= await openParquet(this.file);
    const out: DatasetRow[] = [];
    for (const i of indices) {
      const s = Math.floor(i / PARQUET_SLICE);
      let slice = this.slices.get(s);
      if (!slice) {
        slice = await parquetSlice(this.file, this.parquet, s * PARQUET_SLICE, Math.min(this.count, (s + 1) * PARQUET_SLICE));
        if (this.slices.size >= PARQUET_SLICES_KEPT) this.slices.delete(this.slices.keys().next().value as number);
      }
      this.slices.delete(s);
      this.slices.set(s, slice);
      out.push(slice[i - s * PARQUET_SLICE]);
    }
    return out;
  }

  async close(): Promise<void> {
    this.slices.clear();
    await this.fh?.close();
    this.fh = null;
  }
}

/** Bytes a tokenised example holds on the heap, roughly: a boxed array slot per token and a little per sequence. */
function exampleBytes(ex: TokenizedExample): number {
  return ex.sequences.reduce((n, s) => n + 8 * s.tokens.length + 160, 200);
}

/**
 * The examples of a subset of a file's rows (the training or the held-out rows), tokenised as they
 * are asked for and kept in a least-recently-used cache of at most `cacheBytes`. A small dataset
 * ends up cached whole, as when it was read whole; a large one costs the cache.
 */
export class ExampleSet {
  private cache = new Map<number, TokenizedExample>();
  private cached = 0;

  constructor(
    readonly index: DatasetIndex,
    /** Row numbers in the file, by position in this set. */
    private readonly rows: Uint32Array,
    private readonly tokenize: (row: DatasetRow) => TokenizedExample,
    private readonly cacheBytes: number,
  ) {}

  get length(): number {
    return this.rows.length;
  }

  /** What the cache holds now, by the estimate it is bounded with. */
  get cachedBytes(): number {
    return this.cached;
  }

  /** Examples by position in the set, in the order asked. */
  async get(positions: readonly number[]): Promise<TokenizedExample[]> {
    const missing = [...new Set(positions.filter((p) => !this.cache.has(p)))];
    const read = missing.length ? await this.index.rows(missing.map((p) => this.rows[p])) : [];
    const fresh = new Map<number, TokenizedExample>();
    missing.forEach((p, k) => fresh.set(p, this.tokenize(read[k])));
    const out = positions.map((p) => {
      const hit = this.cache.get(p);
      if (hit) {
        this.cache.delete(p);
        this.cache.set(p, hit);
        return hit;
      }
      return fresh.get(p) as TokenizedExample;
    });
    for (const [p, ex] of fresh) this.keep(p, ex);
    return out;
  }

  private keep(p: number, ex: TokenizedExample): void {
    const bytes = exampleBytes(ex);
    if (bytes > this.cacheBytes) return;
    this.cache.set(p, ex);
    this.cached += bytes;
    for (const [q, old] of this.cache) {
      if (this.cached <= this.cacheBytes) break;
      this.cache.delete(q);
      this.cached -= exampleBytes(old);
    }
  }

  /** The set in order, `size` examples at a time. */
  async *chunks(size: number, limit = this.length): AsyncGenerator<TokenizedExample[]> {
    const n = Math.min(limit, this.length);
    for (let i = 0; i < n; i += size) yield this.get(Array.from({ length: Math.min(size, n - i) }, (_, k) => i + k));
  }
}
