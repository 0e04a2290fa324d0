// safetensors reader (header only) and writer.
//
// File layout: u64 LE header length N, N bytes of UTF-8 JSON, then the data
// section. The JSON maps tensor names to {dtype, shape, data_offsets: [b, e]}
// with offsets relative to the start of the data section, plus an optional
// "__metadata__" object of string -> string.
//
// The reader trusts nothing in the header: every length, offset and shape is
// checked against the file size before anything is returned, and only the
// header bytes are read.
//
// Dtypes: the engine handles F32, F16 and BF16. Tensors with any other dtype
// that safetensors defines (F64, I64, U8, BOOL, F8_E4M3, ...) are still
// bounds-checked and are returned in `unsupported` rather than `tensors`
// (unless `strictDtypes` is set, which makes them an error): checkpoints
// often carry such tensors that no unit needs (GPT-2's `attn.bias` causal
// mask buffers, for instance). The model loader raises "unsupported dtype"
// only when a unit needs one of them. A dtype string safetensors does not
// define at all is an error, since its size cannot be checked.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Dtype, TensorRef } from './types.js';
import { ModelError } from './errors.js';

export { ModelError } from './errors.js';

/** Largest header accepted (the Hugging Face reader uses the same limit). */
export const MAX_HEADER_BYTES = 100_000_000;

export const SUPPORTED_DTYPES: readonly Dtype[] = ['F32', 'F16', 'BF16'];

/** Bits per element of every dtype safetensors defines. */
const DTYPE_BITS: Record<string, number> = {
  BOOL: 8,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  F64: 64,
  I64: 64,
  U64: 64,
  C64: 64,
};

export function dtypeItemSize(dtype: Dtype): number {
  return DTYPE_BITS[dtype] / 8;
}

export function isSupportedDtype(d: string): d is Dtype {
  return d === 'F32' || d === 'F16' || d === 'BF16';
}

/** A tensor whose dtype safetensors defines but the engine cannot use. */
export interface UnsupportedDtypeTensor {
  name: string;
  dtype: string;
  shape: number[];
  file: string;
  offset: number;
  nbytes: number;
}

export interface SafetensorsHeader {
  /** Absolute path of the file. */
  file: string;
  fileSize: number;
  /** N, the JSON header length. */
  headerBytes: number;
  /** 8 + N: absolute offset of the data section. */
  dataStart: number;
  /** Tensors with a supported dtype, in file order; `transposed` is false. */
  tensors: TensorRef[];
  /** Tensors with a dtype the engine does not handle, in file order. */
  unsupported: UnsupportedDtypeTensor[];
  metadata: Record<string, string>;
}

export interface ReadHeaderOptions {
  /** Make any tensor with an unsupported dtype an error. Default false. */
  strictDtypes?: boolean;
}

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function fmtShape(shape: readonly unknown[]): string {
  return `[${shape.map((d) => String(d)).join(',')}]`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Reads and validates the header of a safetensors file. Reads only the
 * first 8 + N bytes.
 */
export async function readSafetensorsHeader(
  file: string,
  opts: ReadHeaderOptions = {},
): Promise<SafetensorsHeader> {
  const abs = path.resolve(file);
  let fh: import('node:fs/promises').FileHandle;
  try {
    fh = await fsp.open(abs, 'r');
  } catch (e) {
    throw new ModelError(`cannot open ${abs}: ${(e as Error).message}`, { file: abs, cause: e });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new ModelError(`${abs} is not a regular file`, { file: abs });
    const fileSize = st.size;
    if (fileSize < 8) {
      throw new ModelError(
        `${abs} is not a safetensors file: ${fileSize} bytes, shorter than the 8-byte header length`,
        { file: abs },
      );
    }
    const lenBuf = Buffer.alloc(8);
    await readExactly(fh, lenBuf, 0, abs);
    const n64 = lenBuf.readBigUInt64LE(0);
    if (n64 === 0n) {
      throw new ModelError(`${abs} is not a valid safetensors file: header length is 0`, { file: abs });
    }
    if (n64 > BigInt(MAX_HEADER_BYTES)) {
      throw new ModelError(
        `${abs} is not a valid safetensors file: header length ${n64} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit`,
        { file: abs },
      );
    }
    const n = Number(n64);
    if (8 + n > fileSize) {
      throw new ModelError(
        `${abs} is truncated or not a safetensors file: header length ${n} bytes but the file has only ${fileSize - 8} bytes after the length`,
        { file: abs },
      );
    }
    const headerBuf = Buffer.alloc(n);
    await readExactly(fh, headerBuf, 8, abs);
    return parseSafetensorsHeader(headerBuf, fileSize, abs, opts);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

async function readExactly(
  fh: import('node:fs/promises').FileHandle,
  buf: Buffer,
  position: number,
  file: string,
): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) {
      throw new ModelError(`${file}: unexpected end of file while reading the header`, { file });
    }
    done += bytesRead;
  }
}

/**
 * Validates the JSON header bytes (the N bytes after the length) of a file of
 * `fileSize` bytes. Exposed for tests and for callers that already hold the
 * bytes.
 */
export function parseSafetensorsHeader(
  headerBytes: Uint8Array,
  fileSize: number,
  file: string,
  opts: ReadHeaderOptions = {},
): SafetensorsHeader {
  const n = headerBytes.length;
  const dataStart = 8 + n;
  const dataLen = fileSize - dataStart;
  if (n === 0 || dataLen < 0) {
    throw new ModelError(`${file}: header length ${n} does not fit a ${fileSize}-byte file`, { file });
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new ModelError(`${file} is not a valid safetensors file: header is not valid UTF-8`, { file });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ModelError(
      `${file} is not a valid safetensors file: header is not valid JSON (${(e as Error).message})`,
      { file },
    );
  }
  if (!isObject(json)) {
    const what = Array.isArray(json) ? 'an array' : json === null ? 'null' : `a ${typeof json}`;
    throw new ModelError(
      `${file} is not a valid safetensors file: header must be a JSON object, got ${what}`,
      { file },
    );
  }

  const metadata: Record<string, string> = {};
  const tensors: TensorRef[] = [];
  const unsupported: UnsupportedDtypeTensor[] = [];
  const spans: { name: string; b: number; e: number }[] = [];

  for (const [name, raw] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (raw === null) continue;
      if (!isObject(raw)) {
        throw new ModelError(`${file}: "__metadata__" must be an object of strings`, { file });
      }
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') {
          throw new ModelError(`${file}: "__metadata__" value for "${k}" must be a string`, { file });
        }
        // defineProperty: a "__proto__" key must stay a plain entry.
        Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
      }
      continue;
    }
    const where = `tensor "${name}" in ${file}`;
    const bad = (what: string): never => {
      throw new ModelError(`invalid ${where}: ${what}`, { file, tensor: name });
    };
    if (name.length === 0) bad('empty tensor name');
    if (!isObject(raw)) bad('entry must be an object with dtype, shape and data_offsets');
    const entry = raw as Record<string, unknown>;
    const dtype = entry.dtype;
    if (typeof dtype !== 'string') bad('missing or non-string "dtype"');
    const dt = dtype as string;
    const bits = Object.prototype.hasOwnProperty.call(DTYPE_BITS, dt) ? DTYPE_BITS[dt] : undefined;
    if (bits === undefined) {
      throw new ModelError(
        `unknown dtype ${dt} for ${where} (safetensors dtypes: ${Object.keys(DTYPE_BITS).join(', ')})`,
        { file, tensor: name },
      );
    }
    const shape = entry.shape;
    if (!Array.isArray(shape)) bad('missing or non-array "shape"');
    const shp = shape as unknown[];
    for (const d of shp) {
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
        bad(`shape ${fmtShape(shp)} must hold non-negative integers`);
      }
    }
    const dims = shp as number[];
    const offs = entry.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2) bad('"data_offsets" must be [begin, end]');
    const [b, e] = offs as unknown[];
    if (typeof b !== 'number' || typeof e !== 'number' || !Number.isSafeInteger(b) || !Number.isSafeInteger(e)) {
      bad(`data_offsets ${fmtShape(offs as unknown[])} must be integers`);
    }
    const begin = b as number;
    const end = e as number;
    if (begin < 0 || end < begin) bad(`data_offsets [${begin},${end}] must satisfy 0 <= begin <= end`);
    const numel = numelOf(dims);
    const totalBits = numel * bits;
    if (!Number.isSafeInteger(totalBits) || totalBits % 8 !== 0) {
      bad(`shape ${fmtShape(dims)} of ${dt} is not a whole number of bytes or is too large`);
    }
    const nbytes = totalBits / 8;
    if (end - begin !== nbytes) {
      bad(
        `data_offsets [${begin},${end}] span ${end - begin} bytes but shape ${fmtShape(dims)} of ${dt} needs ${nbytes}`,
      );
    }
    if (end > dataLen) {
      bad(
        `data_offsets [${begin},${end}] run past the end of the file (data section is ${dataLen} bytes; file is truncated?)`,
      );
    }
    if (opts.strictDtypes && !isSupportedDtype(dt)) {
      throw new ModelError(
        `unsupported dtype ${dt} for tensor "${name}" in file ${file} (supported: ${SUPPORTED_DTYPES.join(', ')})`,
        { file, tensor: name, kind: 'unsupported' },
      );
    }
    spans.push({ name, b: begin, e: end });
    if (isSupportedDtype(dt)) {
      tensors.push({
        name,
        dtype: dt,
        shape: dims.slice(),
        file,
        offset: dataStart + begin,
        nbytes,
        transposed: false,
      });
    } else {
      unsupported.push({ name, dtype: dt, shape: dims.slice(), file, offset: dataStart + begin, nbytes });
    }
  }

  // Overlaps: sort by begin; zero-length tensors cannot overlap anything.
  const nonEmpty = spans.filter((s) => s.e > s.b).sort((x, y) => x.b - y.b || x.e - y.e);
  for (let i = 1; i < nonEmpty.length; i++) {
    const prev = nonEmpty[i - 1];
    const cur = nonEmpty[i];
    if (cur.b < prev.e) {
      throw new ModelError(
        `invalid tensors in ${file}: "${prev.name}" [${prev.b},${prev.e}] and "${cur.name}" [${cur.b},${cur.e}] overlap`,
        { file, tensor: cur.name },
      );
    }
  }

  tensors.sort((x, y) => x.offset - y.offset || (x.name < y.name ? -1 : 1));
  unsupported.sort((x, y) => x.offset - y.offset || (x.name < y.name ? -1 : 1));
  return { file, fileSize, headerBytes: n, dataStart, tensors, unsupported, metadata };
}

// ---------------------------------------------------------------------------
// Writer

export interface WriteTensor {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Raw little-endian bytes, numel * itemsize long. */
  data: Uint8Array;
}

/**
 * Writes a safetensors file atomically: `file.tmp` is written, fsynced and
 * renamed over `file`. Tensors are sorted by name and stored back to back
 * (the Hugging Face reader rejects gaps between tensors); the header is
 * padded with spaces so that the data section starts 8-byte aligned.
 * Metadata defaults to {"format": "pt"}, which `transformers` expects.
 */
export async function writeSafetensors(
  file: string,
  tensors: readonly WriteTensor[],
  metadata?: Record<string, string>,
): Promise<void> {
  const bytes = encodeSafetensors(tensors, metadata, file);
  const abs = path.resolve(file);
  const tmp = `${abs}.tmp`;
  let fh: import('node:fs/promises').FileHandle | null = null;
  try {
    fh = await fsp.open(tmp, 'w');
    for (const chunk of bytes) {
      let done = 0;
      while (done < chunk.length) {
        const { bytesWritten } = await fh.write(chunk, done, chunk.length - done);
        done += bytesWritten;
      }
    }
    await fh.sync();
    await fh.close();
    fh = null;
    await fsp.rename(tmp, abs);
  } catch (e) {
    if (fh) await fh.close().catch(() => undefined);
    await fsp.unlink(tmp).catch(() => undefined);
    throw e;
  }
  // Make the rename durable; best effort (not every platform can fsync a dir).
  try {
    const dh = await fsp.open(path.dirname(abs), 'r');
    await dh.sync().catch(() => undefined);
    await dh.close();
  } catch {
    /* ignore */
  }
}

/** The file's bytes as chunks: length, header, then each tensor's data. */
export function encodeSafetensors(
  tensors: readonly WriteTensor[],
  metadata: Record<string, string> | undefined,
  file = '<memory>',
): Uint8Array[] {
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  const meta: Record<string, string> = { format: 'pt', ...(metadata ?? {}) };
  for (const [k, v] of Object.entries(meta)) {
    if (typeof v !== 'string') {
      throw new ModelError(`cannot write ${file}: metadata value for "${k}" must be a string`, { file });
    }
  }
  header.__metadata__ = meta;
  let offset = 0;
  const seen = new Set<string>();
  for (const t of sorted) {
    if (!t.name || t.name === '__metadata__') {
      throw new ModelError(`cannot write ${file}: invalid tensor name "${t.name}"`, { file, tensor: t.name });
    }
    if (seen.has(t.name)) {
      throw new ModelError(`cannot write ${file}: duplicate tensor "${t.name}"`, { file, tensor: t.name });
    }
    seen.add(t.name);
    if (!isSupportedDtype(t.dtype)) {
      throw new ModelError(`cannot write ${file}: unsupported dtype ${String(t.dtype)} for tensor "${t.name}"`, {
        file,
        tensor: t.name,
      });
    }
    for (const d of t.shape) {
      if (!Number.isSafeInteger(d) || d < 0) {
        throw new ModelError(`cannot write ${file}: tensor "${t.name}" has invalid shape ${fmtShape(t.shape)}`, {
          file,
          tensor: t.name,
        });
      }
    }
    const nbytes = numelOf(t.shape) * dtypeItemSize(t.dtype);
    if (t.data.byteLength !== nbytes) {
      throw new ModelError(
        `cannot write ${file}: tensor "${t.name}" has ${t.data.byteLength} bytes of data, shape ${fmtShape(t.shape)} of ${t.dtype} needs ${nbytes}`,
        { file, tensor: t.name },
      );
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + nbytes] };
    offset += nbytes;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  }
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length), 0);
  return [len, json, ...sorted.map((t) => t.data)];
}
