// Dataset readers: JSON lines (or one JSON array of objects, as Alpaca files
// are), CSV (csv-parse) and Parquet (hyparquet), all yielding rows
// `{ line, values }` one at a time (bounded memory: JSONL/CSV are streamed;
// Parquet is read in slices of at most PARQUET_SLICE rows; a JSON array is read whole).
//
// `line` is the 1-based physical line where the row starts for JSONL/CSV
// (the CSV header is line 1), and the 1-based row number for Parquet
// (row index + 1). Errors are `DatasetError`s carrying file + line.

import { createReadStream } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
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

/** Whether a JSON file holds one array of rows (Alpaca's form) rather than JSON lines: its first character is '['. */
async function isJsonArrayFile(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const buf = Buffer.alloc(4096);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    return /^\uFEFF?\s*\[/.test(buf.subarray(0, bytesRead).toString('utf8'));
  } finally {
    await handle.close();
  }
}

/**
 * A file holding one JSON array of objects. Each element's line is where it starts; the elements are
 * found by scanning (strings and nesting tracked), so one malformed element is reported and skipped
 * (with onBadRow) without losing the rest. The file is read whole: an array has no streaming form.
 */
async function* readJsonArray(file: string, onBadRow?: (e: DatasetError) => void): AsyncGenerator<DatasetRow> {
  const text = (await readFile(file, 'utf8')).replace(/^\uFEFF/, '');
  let i = text.indexOf('[') + 1;
  let line = 1 + countNewlines(text, 0, i);
  const skipSpace = () => {
    while (i < text.length && /\s/.test(text[i])) {
      if (text[i] === '\n') line++;
      i++;
    }
  };
  const bad = (at: number, detail: string) => {
    const e = new DatasetError(file, at, detail);
    if (!onBadRow) throw e;
    onBadRow(e);
  };
  skipSpace();
  if (text[i] === ']') i++;
  else {
    for (;;) {
      skipSpace();
      const start = i;
      const startLine = line;
      let depth = 0;
      let inString = false;
      for (; i < text.length; i++) {
        const c = text[i];
        if (c === '\n') line++;
        if (inString) {
          if (c === '\\') i++;
          else if (c === '"') inString = false;
        } else if (c === '"') inString = true;
        else if (c === '{' || c === '[') depth++;
        else if (c === '}' || c === ']') {
          if (depth === 0) break;
          depth--;
        } else if (c === ',' && depth === 0) break;
      }
      if (i >= text.length) throw new DatasetError(file, startLine, 'the JSON array is not closed (no "]" after this element)');
      let value: unknown;
      try {
        value = JSON.parse(text.slice(start, i));
        if (value === null || typeof value !== 'object' || Array.isArray(value)) {
          bad(startLine, `expected a JSON object, got ${Array.isArray(value) ? 'an array' : JSON.stringify(value)}`);
        } else {
          yield { line: startLine, values: value as Record<string, unknown> };
        }
      } catch (e) {
        if (e instanceof DatasetError) throw e;
        bad(startLine, `invalid JSON: ${(e as Error).message}`);
      }
      if (text[i++] === ']') break;
    }
  }
  skipSpace();
  if (i < text.length) throw new DatasetError(file, line, 'unexpected text after the JSON array');
}

function countNewlines(text: string, from: number, to: number): number {
  let n = 0;
  for (let k = from; k < to; k++) if (text.charCodeAt(k) === 10) n++;
  return n;
}

async function* readJsonl(file: string, onBadRow?: (e: DatasetError) => void): AsyncGenerator<DatasetRow> {
  if (await isJsonArrayFile(file)) {
    yield* readJsonArray(file, onBadRow);
    return;
  }
  const stream = createReadStream(file, { encoding: 'utf8' });
  const rl = createInterface({ input: stream, crlfDelay: Infinity });
  let lineNo = 0;
  try {
    for await (const raw of rl) {
      lineNo++;
      const text = lineNo === 1 ? raw.replace(/^\uFEFF/, '') : raw;
      if (text.trim() === '') continue;
      let value: unknown;
      let bad: DatasetError | null = null;
      try {
        value = JSON.parse(text);
      } catch (e) {
        bad = new DatasetError(file, lineNo, `invalid JSON: ${(e as Error).message}`);
      }
      if (!bad && (value === null || typeof value !== 'object' || Array.isArray(value))) {
        bad = new DatasetError(file, lineNo, `expected a JSON object, got ${Array.isArray(value) ? 'an array' : JSON.stringify(value)}`);
      }
      if (bad) {
        if (!onBadRow) throw bad;
        onBadRow(bad);
        continue;
      }
      yield { line: lineNo, values: value as Record<string, unknown> };
    }
  } finally {
    rl.close();
    stream.destroy();
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

async function* readCsv(file: string, onBadRow?: (e: DatasetError) => void): AsyncGenerator<DatasetRow> {
  const stream = createReadStream(file);
  const lines = new LineIndex();
  stream.on('data', (chunk) => lines.push(chunk as Buffer));
  // With onBadRow, ragged records reach the check below (and are skipped) instead of ending the parse.
  const parser = stream.pipe(csvParse({ bom: true, info: true, skip_empty_lines: true, relax_column_count: onBadRow !== undefined }));
  let header: string[] | null = null;
  let prevEnd = 0;
  try {
    for await (const item of parser as AsyncIterable<CsvInfoRecord>) {
      const line = lines.recordStartLine(prevEnd);
      prevEnd = item.info.bytes;
      if (header === null) {
        header = item.record;
        const dup = header.find((h, i) => header!.indexOf(h) !== i);
        if (dup !== undefined) throw new DatasetError(file, line, `duplicate column name ${JSON.stringify(dup)} in the header`);
        continue;
      }
      if (item.record.length !== header.length) {
        const bad = new DatasetError(file, line, `CSV record has ${item.record.length} fields; the header has ${header.length}`);
        if (!onBadRow) throw bad;
        onBadRow(bad);
        continue;
      }
      const values: Record<string, unknown> = {};
      header.forEach((h, i) => (values[h] = item.record[i]));
      yield { line, values };
    }
  } catch (e) {
    if (e instanceof DatasetError) throw e;
    const err = e as Error & { lines?: number };
    throw new DatasetError(file, typeof err.lines === 'number' ? err.lines : 0, `CSV error: ${err.message}`);
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

async function* readParquet(file: string): AsyncGenerator<DatasetRow> {
  let buffer;
  let metadata;
  try {
    buffer = await asyncBufferFromFile(file);
    metadata = await parquetMetadataAsync(buffer);
  } catch (e) {
    throw new DatasetError(file, 0, `invalid Parquet file: ${(e as Error).message}`, { unit: 'row' });
  }
  const total = Number(metadata.num_rows);
  for (let start = 0; start < total; start += PARQUET_SLICE) {
    const end = Math.min(total, start + PARQUET_SLICE);
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({ file: buffer, metadata, rowStart: start, rowEnd: end, compressors });
    } catch (e) {
      throw new DatasetError(file, start + 1, `cannot decode Parquet rows ${start}..${end - 1}: ${(e as Error).message}`, {
        unit: 'row',
      });
    }
    for (let i = 0; i < rows.length; i++) {
      const values: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(rows[i])) values[k] = plainValue(v);
      yield { line: start + i + 1, values };
    }
  }
}

/** Stream the rows of a dataset file. */
export async function* readDataset(file: string, options: ReadOptions = {}): AsyncGenerator<DatasetRow> {
  const format = options.format ?? detectFormat(file);
  await checkReadable(file);
  const limit = options.limit ?? Infinity;
  if (limit <= 0) return;
  const source = format === 'jsonl' ? readJsonl(file, options.onBadRow) : format === 'csv' ? readCsv(file, options.onBadRow) : readParquet(file);
  let count = 0;
  for await (const row of source) {
    yield row;
    if (++count >= limit) break;
  }
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
    const buffer = await asyncBufferFromFile(file);
    const metadata = await parquetMetadataAsync(buffer);
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
