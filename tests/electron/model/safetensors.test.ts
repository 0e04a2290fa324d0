import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ModelError,
  readSafetensorsHeader,
  writeSafetensors,
} from '../../../electron/model/safetensors.js';
import { rawFile, tempDir, tensor } from './helpers.js';

let dir: string;
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

let counter = 0;
async function put(bytes: Uint8Array): Promise<string> {
  const f = path.join(dir, `f${counter++}.safetensors`);
  await fsp.writeFile(f, bytes);
  return f;
}

async function expectModelError(file: string, pattern: RegExp): Promise<ModelError> {
  let err: unknown;
  try {
    await readSafetensorsHeader(file);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ModelError);
  const me = err as ModelError;
  expect(me.name).toBe('ModelError');
  expect(me.message).toContain(file);
  expect(me.message).toMatch(pattern);
  return me;
}

const t = (dtype: string, shape: number[], b: number, e: number) => ({ dtype, shape, data_offsets: [b, e] });

describe('writeSafetensors / readSafetensorsHeader', () => {
  it('round-trips tensors, bytes equal', async () => {
    const f = path.join(dir, 'rt.safetensors');
    const tensors = [
      tensor('b.weight', [3, 5], 'F32'),
      tensor('a.bias', [7], 'F16'),
      tensor('c.scalar', [], 'BF16'),
      tensor('d.empty', [0, 4], 'F32'),
    ];
    await writeSafetensors(f, tensors, { note: 'hello' });
    await expect(fsp.access(`${f}.tmp`)).rejects.toThrow();
    const h = await readSafetensorsHeader(f);
    expect(h.metadata).toEqual({ format: 'pt', note: 'hello' });
    expect(h.dataStart % 8).toBe(0);
    expect(h.headerBytes % 8).toBe(0);
    expect(h.unsupported).toEqual([]);
    const bytes = await fsp.readFile(f);
    // Header text: valid JSON padded with spaces; tensors in name order.
    const headerText = bytes.subarray(8, h.dataStart).toString('utf8');
    expect(headerText).toMatch(/ *$/);
    const names = Object.keys(JSON.parse(headerText)).filter((k) => k !== '__metadata__');
    expect(names).toEqual(['a.bias', 'b.weight', 'c.scalar', 'd.empty']);
    expect(h.tensors.map((x) => x.name)).toEqual(['a.bias', 'b.weight', 'c.scalar', 'd.empty']);
    // Contiguous data, nothing after the last tensor.
    let expectOff = h.dataStart;
    for (const ref of h.tensors) {
      expect(ref.offset).toBe(expectOff);
      expectOff += ref.nbytes;
    }
    expect(expectOff).toBe(bytes.length);
    for (const src of tensors) {
      const ref = h.tensors.find((x) => x.name === src.name)!;
      expect(ref.dtype).toBe(src.dtype);
      expect(ref.shape).toEqual(src.shape);
      expect(ref.file).toBe(path.resolve(f));
      expect(ref.transposed).toBe(false);
      expect(Buffer.from(bytes.subarray(ref.offset, ref.offset + ref.nbytes)).equals(Buffer.from(src.data))).toBe(
        true,
      );
    }
  });

  it('writes {"format":"pt"} by default and overwrites atomically', async () => {
    const f = path.join(dir, 'default-meta.safetensors');
    await writeSafetensors(f, [tensor('x', [2])]);
    await writeSafetensors(f, [tensor('y', [3])]);
    const h = await readSafetensorsHeader(f);
    expect(h.metadata).toEqual({ format: 'pt' });
    expect(h.tensors.map((x) => x.name)).toEqual(['y']);
  });

  it('refuses data of the wrong length and duplicate names', async () => {
    const f = path.join(dir, 'bad-write.safetensors');
    const bad = { ...tensor('x', [2, 2]), shape: [3, 2] };
    await expect(writeSafetensors(f, [bad])).rejects.toThrow(/needs 24/);
    await expect(writeSafetensors(f, [tensor('x', [1]), tensor('x', [1])])).rejects.toThrow(/duplicate/);
    await expect(fsp.access(f)).rejects.toThrow();
  });

  it('reads only the header (large data section is not loaded)', async () => {
    const f = path.join(dir, 'big.safetensors');
    const fh = await fsp.open(f, 'w');
    const header = Buffer.from(JSON.stringify({ w: t('F32', [64, 1024, 1024], 0, 256 * 1024 * 1024) }));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    await fh.write(len);
    await fh.write(header);
    await fh.truncate(8 + header.length + 256 * 1024 * 1024); // sparse
    await fh.close();
    const h = await readSafetensorsHeader(f);
    expect(h.tensors[0].nbytes).toBe(256 * 1024 * 1024);
  });

  it('tolerates known unsupported dtypes unless strict', async () => {
    const f = await put(
      rawFile({ a: t('F32', [2], 0, 8), mask: t('U8', [1, 1, 2, 2], 8, 12), d: t('F64', [1], 16, 24) }, 24),
    );
    const h = await readSafetensorsHeader(f);
    expect(h.tensors.map((x) => x.name)).toEqual(['a']);
    expect(h.unsupported.map((x) => [x.name, x.dtype, x.offset - h.dataStart])).toEqual([
      ['mask', 'U8', 8],
      ['d', 'F64', 16],
    ]);
    await expect(readSafetensorsHeader(f, { strictDtypes: true })).rejects.toThrow(
      /unsupported dtype U8 for tensor "mask" in file .*f\d+\.safetensors/,
    );
  });
});

describe('readSafetensorsHeader rejects malformed files', () => {
  it('missing file', async () => {
    await expectModelError(path.join(dir, 'nope.safetensors'), /cannot open/);
  });

  it('file shorter than 8 bytes', async () => {
    await expectModelError(await put(new Uint8Array([1, 2, 3])), /shorter than the 8-byte/);
    await expectModelError(await put(new Uint8Array(0)), /0 bytes/);
  });

  it('header length 0', async () => {
    await expectModelError(await put(rawFile('', 16)), /header length is 0/);
  });

  it('header length larger than the file', async () => {
    const bytes = rawFile({ a: t('F32', [1], 0, 4) }, 4);
    await expectModelError(await put(bytes.subarray(0, 20)), /truncated/);
    await expectModelError(await put(rawFile('{}', 0, { headerLen: 5000n })), /header length 5000/);
  });

  it('oversized header claim (> 100 MB)', async () => {
    await expectModelError(await put(rawFile('{}', 0, { headerLen: 200_000_000n })), /exceeds the 100000000-byte limit/);
    await expectModelError(await put(rawFile('{}', 0, { headerLen: 0xffffffffffffffffn })), /exceeds/);
  });

  it('non-UTF-8 header', async () => {
    const bytes = rawFile('{"a":1}', 0);
    bytes[9] = 0xff;
    await expectModelError(await put(bytes), /not valid UTF-8/);
  });

  it('non-JSON header', async () => {
    await expectModelError(await put(rawFile('{"a": [1, 2', 0)), /not valid JSON/);
    await expectModelError(await put(rawFile('hello world', 0)), /not valid JSON/);
  });

  it('non-object JSON header', async () => {
    await expectModelError(await put(rawFile('[1,2,3]', 0)), /must be a JSON object, got an array/);
    await expectModelError(await put(rawFile('null', 0)), /got null/);
    await expectModelError(await put(rawFile('42', 0)), /got a number/);
  });

  it('malformed entries', async () => {
    const me = await expectModelError(await put(rawFile({ w: 5 }, 0)), /tensor "w"/);
    expect(me.tensor).toBe('w');
    await expectModelError(await put(rawFile({ w: { shape: [1], data_offsets: [0, 4] } }, 4)), /"dtype"/);
    await expectModelError(await put(rawFile({ w: { dtype: 'F32', data_offsets: [0, 4] } }, 4)), /"shape"/);
    await expectModelError(await put(rawFile({ w: t('F32', [-1], 0, 4) }, 4)), /non-negative integers/);
    await expectModelError(await put(rawFile({ w: t('F32', [1.5], 0, 4) }, 4)), /non-negative integers/);
    await expectModelError(await put(rawFile({ w: { dtype: 'F32', shape: [1], data_offsets: [0] } }, 4)), /\[begin, end\]/);
    await expectModelError(await put(rawFile({ w: t('F32', [1], 8, 4) }, 8)), /0 <= begin <= end/);
    await expectModelError(await put(rawFile({ w: t('F32', [1], -4, 0) }, 8)), /0 <= begin <= end/);
    await expectModelError(await put(rawFile({ __metadata__: { a: 1 } }, 0)), /__metadata__/);
  });

  it('unknown dtype', async () => {
    const me = await expectModelError(await put(rawFile({ w: t('Q4_K', [4], 0, 2) }, 2)), /unknown dtype Q4_K for tensor "w"/);
    expect(me.tensor).toBe('w');
  });

  it('data_offsets outside the file', async () => {
    await expectModelError(await put(rawFile({ w: t('F32', [4], 0, 16) }, 12)), /run past the end of the file/);
    await expectModelError(await put(rawFile({ a: t('F32', [1], 0, 4), w: t('F32', [4], 8, 24) }, 20)), /"w".*past the end/);
  });

  it('offsets inconsistent with shape * itemsize', async () => {
    await expectModelError(await put(rawFile({ w: t('F32', [2, 3], 0, 12) }, 24)), /span 12 bytes but shape \[2,3\] of F32 needs 24/);
    await expectModelError(await put(rawFile({ w: t('BF16', [4], 0, 16) }, 16)), /needs 8/);
  });

  it('overlapping tensors', async () => {
    const me = await expectModelError(
      await put(rawFile({ a: t('F32', [4], 0, 16), b: t('F32', [2], 12, 20) }, 20)),
      /"a" \[0,16\] and "b" \[12,20\] overlap/,
    );
    expect(me.tensor).toBe('b');
    // Identical spans overlap too; empty tensors never do.
    await expectModelError(await put(rawFile({ a: t('F32', [1], 0, 4), b: t('F32', [1], 0, 4) }, 4)), /overlap/);
    const ok = await readSafetensorsHeader(
      await put(rawFile({ a: t('F32', [1], 0, 4), e: t('F32', [0], 2, 2) }, 4)),
    );
    expect(ok.tensors.length).toBe(2);
  });

  it('random garbage never crashes (only ModelError)', async () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / 2 ** 24;
    const base = rawFile({ __metadata__: { format: 'pt' }, a: t('F32', [2, 2], 0, 16), b: t('F16', [3], 16, 22) }, 22);
    for (let i = 0; i < 200; i++) {
      const bytes = Buffer.from(base);
      const flips = 1 + Math.floor(rnd() * 4);
      for (let k = 0; k < flips; k++) bytes[Math.floor(rnd() * bytes.length)] = Math.floor(rnd() * 256);
      const cut = rnd() < 0.3 ? Math.floor(rnd() * bytes.length) : bytes.length;
      const f = await put(bytes.subarray(0, cut));
      try {
        await readSafetensorsHeader(f);
      } catch (e) {
        expect(e).toBeInstanceOf(ModelError);
      }
    }
  });
});

describe('readSafetensorsHeader: odd keys', () => {
  it('keeps a "__proto__" metadata key as a plain entry', async () => {
    const f = await put(rawFile('{"__metadata__":{"__proto__":"x","format":"pt"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4));
    const h = await readSafetensorsHeader(f);
    expect(Object.getPrototypeOf(h.metadata)).toBe(Object.prototype);
    expect(Object.keys(h.metadata).sort()).toEqual(['__proto__', 'format']);
  });
});
