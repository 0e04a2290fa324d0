// Dataset readers: JSON lines (or one JSON array of objects, as Alpaca files
// are), CSV (csv-parse) and Parquet (hyparquet), all yielding rows
// `{ line, values }` one at a time, in bounded memory: JSON files and CSV
// stream through (a row is held whole only up to MAX_ROW_BYTES), Parquet is
// read in slices of at most PARQUET_SLICE rows. Each JSON and CSV row comes
// with the bytes it was read from, so that an index can read it again alone
// (indexed.ts).
//
// `line` is the 1-based physical line where the row starts for JSONL/CSV
// (the CSV header is line 1), and the 1-based row number for Parquet
// (row index + 1). Errors are `DatasetError`s carrying file + line.

import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { parse as csvParse } from 'csv-parse';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
// hyparquet reads snappy and uncompressed pages itself; these add gzip, brotli, zstd, lz4 and lz4_raw.
import { compressors } from 'hyparquet-compressors';

export type DatasetFormat = 'jsonl' | 'csv' | 'parquet';

export interface DatasetRow {
  /** JSONL/CSV: 1-based line where the row starts; Parquet: 1-based row number. */
  line: number;
  values: Record<string, unknown>;
}

export class DatasetError extends Error {
  readonly file: string;
  /** 1-based line (JSONL/CSV) or row number (Parquet); 0 when the problem concerns the whole file. */
  readonly line: number;
  /** The column the problem concerns, when there is one. */
  readonly field?: string;
  /** Whether `line` counts text lines or Parquet rows. */
  readonly unit: 'line' | 'row';
  /** The message without the file, line and field in front. */
  readonly detail: string;

  constructor(file: string, line: number, detail: string, opts: { field?: string; unit?: 'line' | 'row' } = {}) {
    const unit = opts.unit ?? 'line';
    const where = line <= 0 ? file : unit === 'row' ? `${file}: row ${line}` : `${file}:${line}`;
    super(`${where}: ${opts.field !== undefined ? `field "${opts.field}": ` : ''}${detail}`);
    this.name = 'DatasetError';
    this.file = file;
    this.line = line;
    this.unit = unit;
    this.detail = detail;
    if (opts.field !== undefined) this.field = opts.field;
  }
}

/** An error about one row's content, located the way its reader counts (line or Parquet row). */
export function rowError(file: string, row: DatasetRow, detail: string, field?: string): DatasetError {
  return new DatasetError(file, row.line, detail, { field, unit: isParquetPath(file) ? 'row' : 'line' });
}

/** A short description of a value found where something else was expected. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing (field missing)';
  if (v === null) return 'null';
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  if (typeof v === 'object') return Array.isArray(v) ? 'an array' : 'an object';
  return `${typeof v} ${String(v)}`;
}

/** "file:line" (or "file:row N" for Parquet), as used in TokenizedExample.source. */
export function rowLocation(file: string, row: DatasetRow): string {
  return isParquetPath(file) ? `${file}:row ${row.line}` : `${file}:${row.line}`;
}

export function isParquetPath(file: string): boolean {
  return path.extname(file).toLowerCase() === '.parquet';
}

export function detectFormat(file: string): DatasetFormat {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.jsonl' || ext === '.json' || ext === '.ndjson') return 'jsonl';
  if (ext === '.csv') return 'csv';
  if (ext === '.parquet') return 'parquet';
  throw new DatasetError(file, 0, `unknown dataset format "${ext}" (expected .jsonl, .json, .csv or .parquet)`);
}

export interface ReadOptions {
  /** Override the format detected from the extension. */
  format?: DatasetFormat;
  /** Stop after this many rows. */
  limit?: number;
  /**
   * When given, a row the reader can step over (JSONL: a line that is not a JSON object; CSV: a
   * record with the wrong number of fields) is passed here and skipped instead of ending the read.
   */
  onBadRow?: (e: DatasetError) => void;
}

async function checkReadable(file: string): Promise<void> {
  try {
    const s = await stat(file);
    if (!s.isFile()) throw new Error('not a regular file');
  } catch (e) {
    throw new DatasetError(file, 0, `cannot read file: ${(e as Error).message}`);
  }
}

/**
 * The largest row a dataset may hold (16 MiB of text). A row is parsed and tokenised whole, and the
 * tokenizer needs about 20 bytes and a second of work per kilobyte of text: far longer rows (a whole
 * book in one cell) ran the engine host out of memory. No model's context needs more.
 */
export const MAX_ROW_BYTES = 16 * 2 ** 20;

function oversized(file: string, line: number, bytes: number, partial: boolean, unit: 'line' | 'row' = 'line'): DatasetError {
  const limit = `${MAX_ROW_BYTES} bytes (${MAX_ROW_BYTES / 2 ** 20} MiB)`;
  const what = partial ? `the row is longer than ${limit}, the most a row may hold` : `the row is ${bytes} bytes, longer than the ${limit} a row may hold`;
  return new DatasetError(file, line, `${what}: split or shorten it`, { unit });
}

/** A row's bytes and where they lie: [start, end) in the file, and the 1-based line it starts on. */
interface RowSpan {
  line: number;
  start: number;
  end: number;
  bytes: Buffer;
}

/** A row and the bytes [start, end) it was read from (-1 for Parquet, whose rows are found by number). */
export interface LocatedRow {
  row: DatasetRow;
  start: number;
  end: number;
}

const READ_CHUNK = 1 << 20;
const NL = 0x0a;

/** The bytes of a file, chunk by chunk, with each chunk's offset. */
async function* fileChunks(file: string, from = 0): AsyncGenerator<{ at: number; bytes: Buffer }> {
  const fh = await open(file, 'r');
  try {
    let at = from;
    for (;;) {
      const buf = Buffer.allocUnsafe(READ_CHUNK);
      const { bytesRead } = await fh.read(buf, 0, READ_CHUNK, at);
      if (bytesRead === 0) return;
      yield { at, bytes: buf.subarray(0, bytesRead) };
      at += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

/** Where a file's rows start past a UTF-8 byte order mark, and whether it holds one JSON array (Alpaca's form) rather than JSON lines. */
async function jsonLayout(file: string): Promise<{ bom: number; array: boolean }> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(4096);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const head = buf.subarray(0, bytesRead);
    const bom = head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? 3 : 0;
    return { bom, array: /^\s*\[/.test(head.subarray(bom).toString('utf8')) };
  } finally {
    await fh.close();
  }
}

/** Collects one row's bytes across chunks, up to MAX_ROW_BYTES (beyond that it only counts them). */
class RowBytes {
  private parts: Buffer[] = [];
  length = 0;
  add(b: Buffer): void {
    if (this.length + b.length <= MAX_ROW_BYTES) this.parts.push(b);
    else this.parts = [];
    this.length += b.length;
  }
  get over(): boolean {
    return this.length > MAX_ROW_BYTES;
  }
  take(): Buffer {
    const b = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts);
    this.parts = [];
    this.length = 0;
    return b;
  }
}

const isBlank = (b: Buffer) => {
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return false;
  }
  return true;
};

/** JSON lines: every line that is not blank is a row. Lines longer than MAX_ROW_BYTES are refused (reported and skipped with onBadRow). */
async function* jsonLineSpans(file: string, bom: number, onBadRow?: (e: DatasetError) => void): AsyncGenerator<RowSpan> {
  let line = 1;
  let start = bom;
  const row = new RowBytes();
  const finish = (end: number): RowSpan | null => {
    const over = row.over;
    const length = row.length;
    const bytes = over ? Buffer.alloc(0) : row.take();
    if (over) {
      row.take();
      const e = oversized(file, line, length, false);
      if (!onBadRow) throw e;
      onBadRow(e);
      return null;
    }
    return isBlank(bytes) ? null : { line, start, end, bytes };
  };
  for await (const { at, bytes } of fileChunks(file, bom)) {
    let from = 0;
    for (;;) {
      const nl = bytes.indexOf(NL, from);
      if (nl < 0) {
        row.add(bytes.subarray(from));
        if (row.over && !onBadRow) throw oversized(file, line, row.length, true);
        break;
      }
      row.add(bytes.subarray(from, nl));
      const span = finish(at + nl);
      if (span) yield span;
      line++;
      from = nl + 1;
      start = at + from;
    }
  }
  const span = finish(start + row.length);
  if (span) yield span;
}

/**
 * A file holding one JSON array of objects: each element is a row, found by scanning the bytes
 * (strings and nesting tracked; the delimiters are ASCII, so UTF-8 text cannot fake one), with the
 * line it starts on. The file streams through: memory holds one element.
 */
async function* jsonArraySpans(file: string, bom: number): AsyncGenerator<RowSpan> {
  let line = 1;
  let state: 'open' | 'before' | 'in' | 'after' | 'closed' = 'open';
  let depth = 0;
  let inString = false;
  let escaped = false;
  let start = 0;
  let startLine = 0;
  const row = new RowBytes();
  const space = (c: number) => c === 0x20 || c === 0x09 || c === 0x0d || c === NL;
  const unexpected = (c: number, where: string) => new DatasetError(file, line, `unexpected ${JSON.stringify(String.fromCharCode(c))} ${where}`);
  for await (const { at, bytes } of fileChunks(file, bom)) {
    let rowFrom = state === 'in' ? 0 : -1;
    for (let i = 0; i < bytes.length; i++) {
      const c = bytes[i];
      if (state === 'in') {
        if (inString) {
          if (escaped) escaped = false;
          else if (c === 0x5c) escaped = true;
          else if (c === 0x22) inString = false;
        } else if (c === 0x22) inString = true;
        else if (c === 0x7b || c === 0x5b) depth++;
        else if ((c === 0x7d || c === 0x5d) && depth > 0) depth--;
        else if ((c === 0x5d || c === 0x2c) && depth === 0) {
          row.add(bytes.subarray(rowFrom, i));
          if (row.over) throw oversized(file, startLine, row.length, false);
          yield { line: startLine, start, end: at + i, bytes: row.take() };
          state = c === 0x2c ? 'before' : 'closed';
          rowFrom = -1;
        }
      } else if (space(c)) {
        // between elements
      } else if (state === 'open') {
        if (c !== 0x5b) throw unexpected(c, 'where the JSON array should start');
        state = 'before';
      } else if (state === 'before' && c === 0x5d) {
        state = 'closed';
      } else if (state === 'before') {
        state = 'in';
        start = at + i;
        startLine = line;
        rowFrom = i;
        depth = 0;
        inString = false;
        escaped = false;
        if (c === 0x22) inString = true;
        else if (c === 0x7b || c === 0x5b) depth = 1;
      } else {
        throw unexpected(c, state === 'closed' ? 'after the JSON array' : 'between the elements of the JSON array');
      }
      if (c === NL) line++;
    }
    if (state === 'in') {
      row.add(bytes.subarray(rowFrom));
      if (row.over) throw oversized(file, startLine, row.length, true);
    }
  }
  if (state === 'in') throw new DatasetError(file, startLine, 'the JSON array is not closed (no "]" after this element)');
  if ((state as string) !== 'closed') throw new DatasetError(file, line, 'the JSON array is not closed (no "]")');
}

/** One JSON row from its bytes: an object, else an error naming the file and line. */
function parseJsonRow(file: string, line: number, bytes: Buffer): DatasetRow {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new DatasetError(file, line, `invalid JSON: ${(e as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new DatasetError(file, line, `expected a JSON object, got ${Array.isArray(value) ? 'an array' : JSON.stringify(value)}`);
  }
  return { line, values: value as Record<string, unknown> };
}

/** The rows of a JSON lines or JSON array file with their spans; a row that does not parse is reported and skipped with onBadRow. */
async function* jsonRows(file: string, onBadRow?: (e: DatasetError) => void): AsyncGenerator<LocatedRow> {
  const { bom, array } = await jsonLayout(file);
  for await (const span of array ? jsonArraySpans(file, bom) : jsonLineSpans(file, bom, onBadRow)) {
    let row: DatasetRow;
    try {
      row = parseJsonRow(file, span.line, span.bytes);
    } catch (e) {
      if (!onBadRow || !(e instanceof DatasetError)) throw e;
      onBadRow(e);
      continue;
    }
    yield { row, start: span.start, end: span.end };
  }
}

interface CsvInfoRecord {
  record: string[];
  info: { bytes: number };
}

/**
 * Counts '\n' bytes in the stream as it passes, so that a CSV record's byte
 * offset (csv-parse's info.bytes) can be turned into the line where it starts.
 * Chunks behind the cursor are dropped, so memory stays bounded by what the
 * parser has buffered.
 */
class LineIndex {
  private chunks: Buffer[] = [];
  private offset = 0; // bytes consumed before chunks[0]
  private inChunk = 0; // cursor within chunks[0]
  private newlines = 0; // '\n' bytes before the cursor

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
  }

  private peek(): number | undefined {
    while (this.chunks.length > 0 && this.inChunk >= this.chunks[0].length) {
      this.offset += this.chunks[0].length;
      this.chunks.shift();
      this.inChunk = 0;
    }
    return this.chunks.length > 0 ? this.chunks[0][this.inChunk] : undefined;
  }

  private advance(): void {
    if (this.peek() === 0x0a) this.newlines++;
    this.inChunk++;
  }

  /** 1-based line of the first byte at or after `byteOffset` that is not CR/LF. */
  recordStartLine(byteOffset: number): number {
    while (this.offset + this.inChunk < byteOffset && this.peek() !== undefined) this.advance();
    for (let b = this.peek(); b === 0x0a || b === 0x0d; b = this.peek()) this.advance();
    return this.newlines + 1;
  }
}

/** csv-parse's options for a file's records (a record read again alone takes the same, less the BOM and the record limit's message). */
export const CSV_OPTIONS = { skip_empty_lines: true, max_record_size: MAX_ROW_BYTES } as const;

/** A CSV record as a row: the header's names over its fields (a record of another length is an error at its line). */
export function csvRecordRow(file: string, header: readonly string[], record: readonly string[], line: number): DatasetRow {
  if (record.length !== header.length) throw new DatasetError(file, line, `CSV record has ${record.length} fields; the header has ${header.length}`);
  const values: Record<string, unknown> = {};
  header.forEach((h, i) => (values[h] = record[i]));
  return { line, values };
}

/** The rows of a CSV file with their spans; the header comes first through onHeader. */
async function* csvRows(file: string, onBadRow?: (e: DatasetError) => void, onHeader?: (h: string[]) => void): AsyncGenerator<LocatedRow> {
  const stream = createReadStream(file);
  const lines = new LineIndex();
  stream.on('data', (chunk) => lines.push(chunk as Buffer));
  // With onBadRow, ragged records reach the check below (and are skipped) instead of ending the parse.
  const parser = stream.pipe(csvParse({ ...CSV_OPTIONS, bom: true, info: true, relax_column_count: onBadRow !== undefined }));
  let header: string[] | null = null;
  let prevEnd = 0;
  try {
    for await (const item of parser as AsyncIterable<CsvInfoRecord>) {
      const line = lines.recordStartLine(prevEnd);
      const start = prevEnd;
      prevEnd = item.info.bytes;
      if (header === null) {
        header = item.record;
        const dup = header.find((h, i) => header!.indexOf(h) !== i);
        if (dup !== undefined) throw new DatasetError(file, line, `duplicate column name ${JSON.stringify(dup)} in the header`);
        onHeader?.(header);
        continue;
      }
      let row: DatasetRow;
      try {
        row = csvRecordRow(file, header, item.record, line);
      } catch (e) {
        if (!onBadRow) throw e;
        onBadRow(e as DatasetError);
        continue;
      }
      yield { row, start, end: prevEnd };
    }
  } catch (e) {
    if (e instanceof DatasetError) throw e;
    const err = e as Error & { lines?: number; code?: string };
    const line = typeof err.lines === 'number' ? err.lines : 0;
    if (err.code === 'CSV_MAX_RECORD_SIZE') throw oversized(file, lines.recordStartLine(prevEnd), MAX_ROW_BYTES, true);
    throw new DatasetError(file, line, `CSV error: ${err.message}`);
  } finally {
    stream.destroy();
  }
}

/** Rows read per hyparquet call: bounds memory for large files. */
export const PARQUET_SLICE = 4096;

function plainValue(v: unknown): unknown {
  if (typeof v === 'bigint') {
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : v;
  }
  return v;
}

/** A Parquet file's reader and metadata; errors name the file. */
export async function openParquet(file: string) {
  try {
    const buffer = await asyncBufferFromFile(file);
    return { buffer, metadata: await parquetMetadataAsync(buffer) };
  } catch (e) {
    throw new DatasetError(file, 0, `invalid Parquet file: ${(e as Error).message}`, { unit: 'row' });
  }
}

/** Roughly the bytes a value's text takes (strings by length, nested values summed): what a Parquet row is bounded by. */
function textSize(v: unknown): number {
  if (typeof v === 'string') return v.length;
  if (Array.isArray(v)) return v.reduce((n: number, x) => n + textSize(x), 0);
  if (v && typeof v === 'object' && !(v instanceof Date)) return Object.values(v).reduce((n: number, x) => n + textSize(x), 0);
  return 8;
}

/** Rows [start, end) of a Parquet file (0-based), numbered from 1; a row larger than MAX_ROW_BYTES is an error at its number. */
export async function parquetSlice(file: string, pq: Awaited<ReturnType<typeof openParquet>>, start: number, end: number): Promise<DatasetRow[]> {
  let rows: Record<string, unknown>[];
  try {
    rows = await parquetReadObjects({ file: pq.buffer, metadata: pq.metadata, rowStart: start, rowEnd: end, compressors });
  } catch (e) {
    throw new DatasetError(file, start + 1, `cannot decode Parquet rows ${start}..${end - 1}: ${(e as Error).message}`, { unit: 'row' });
  }
  return rows.map((r, i) => {
    const values: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(r)) values[k] = plainValue(v);
    const size = textSize(values);
    if (size > MAX_ROW_BYTES) throw oversized(file, start + i + 1, size, false, 'row');
    return { line: start + i + 1, values };
  });
}

async function* parquetRows(file: string): AsyncGenerator<LocatedRow> {
  const pq = await openParquet(file);
  const total = Number(pq.metadata.num_rows);
  for (let start = 0; start < total; start += PARQUET_SLICE) {
    for (const row of await parquetSlice(file, pq, start, Math.min(total, start + PARQUET_SLICE))) yield { row, start: -1, end: -1 };
  }
}

export interface LocateOptions extends ReadOptions {
  /** CSV: told the header before the first row. */
  onHeader?: (header: string[]) => void;
}

/** Stream the rows of a dataset file with the bytes each was read from (what an index of the file keeps). */
export async function* readLocated(file: string, options: LocateOptions = {}): AsyncGenerator<LocatedRow> {
  const format = options.format ?? detectFormat(file);
  await checkReadable(file);
  const limit = options.limit ?? Infinity;
  if (limit <= 0) return;
  const source = format === 'jsonl' ? jsonRows(file, options.onBadRow) : format === 'csv' ? csvRows(file, options.onBadRow, options.onHeader) : parquetRows(file);
  let count = 0;
  for await (const located of source) {
    yield located;
    if (++count >= limit) break;
  }
}

/** Stream the rows of a dataset file. */
export async function* readDataset(file: string, options: ReadOptions = {}): AsyncGenerator<DatasetRow> {
  for await (const { row } of readLocated(file, options)) yield row;
}

/** One row of a JSON lines or JSON array file, read again from its bytes. */
export function jsonRowFrom(file: string, line: number, bytes: Buffer): DatasetRow {
  return parseJsonRow(file, line, bytes);
}

export async function readAllRows(file: string, options: ReadOptions = {}): Promise<DatasetRow[]> {
  const rows: DatasetRow[] = [];
  for await (const row of readDataset(file, options)) rows.push(row);
  return rows;
}

export interface DatasetPreview {
  file: string;
  format: DatasetFormat;
  /** Column names: from the header / schema, else the union of the previewed rows' keys. */
  columns: string[];
  rows: DatasetRow[];
  /** Known without a full scan only for Parquet. */
  totalRows?: number;
}

/** The first `n` rows of a dataset plus its columns, for the GUI. */
export async function previewDataset(file: string, n = 5, options: { format?: DatasetFormat } = {}): Promise<DatasetPreview> {
  const format = options.format ?? detectFormat(file);
  const rows = await readAllRows(file, { format, limit: n });
  const preview: DatasetPreview = { file, format, columns: [], rows };
  if (format === 'parquet') {
    const { metadata } = await openParquet(file);
    preview.totalRows = Number(metadata.num_rows);
    preview.columns = parquetSchema(metadata).children.map((c) => c.element.name);
  } else if (format === 'csv' && rows.length > 0) {
    preview.columns = Object.keys(rows[0].values); // csv-parse keeps the header's order
  } else if (format === 'csv') {
    preview.columns = await csvHeader(file);
  } else {
    const seen = new Set<string>();
    for (const r of rows) for (const k of Object.keys(r.values)) seen.add(k);
    preview.columns = [...seen];
  }
  return preview;
}

/** The header record of a CSV file (read from its first 64 KiB only). */
async function csvHeader(file: string): Promise<string[]> {
  const parser = createReadStream(file, { start: 0, end: 65535 }).pipe(
    csvParse({ bom: true, to_line: 1, relax_quotes: true, relax_column_count: true }),
  );
  try {
    for await (const rec of parser as AsyncIterable<string[]>) return rec;
  } catch {
    // fall through: an unreadable header has no columns
  }
  return [];
}
