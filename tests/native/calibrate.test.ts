// Calibration with the engine's own paths: positive, finite rates on this
// machine, a missing spill folder reported as unavailable, never thrown, one
// block's forward measured with the backend's kernels (or extrapolated for a
// big shape), and the cache per machine, spill folder and block shape.
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { blockShapeOf, calibration, cachedCalibration, calibrationFile, ratesOf } from '../../electron/engine/calibration.js';
import { loadNative } from '../../electron/engine/native.js';
import type { NativeBlockShape } from '../../electron/engine/native.js';

const positive = (x: number) => Number.isFinite(x) && x > 0;

describe('calibrate', () => {
  it('measures copies, GEMM, updates and the SSD through the spill file, and removes the file', async () => {
    const spill = mkdtempSync(join(tmpdir(), 'spw-cal-'));
    const c = await loadNative().calibrate({ spillDir: spill, bytes: 16 * 2 ** 20, threads: 2 });
    expect(c.backend).toBe('cpu');
    for (const x of [c.h2dBytesPerS, c.d2hBytesPerS, c.gemmFlopsPerS, c.cpuUpdateElemsPerS]) expect(positive(x)).toBe(true);
    // On the CPU backend the compute device is the host: the device update rate is the host's.
    expect(c.deviceUpdateElemsPerS).toBe(c.cpuUpdateElemsPerS);
    expect(c.hostThreads).toBe(Math.min(2, availableParallelism()));
    expect(c.block).toBeUndefined();
    expect(c.ssd.available).toBe(true);
    if (!c.ssd.available) return;
    expect(c.ssd.fileBytes).toBe(16 * 2 ** 20);
    expect(positive(c.ssd.readBytesPerS) && positive(c.ssd.writeBytesPerS)).toBe(true);
    expect(c.ssd.byRequest.map((r) => r.requestBytes)).toEqual([2 ** 20, 4 * 2 ** 20, 16 * 2 ** 20]);
    expect(c.ssd.readBytesPerS).toBe(Math.max(...c.ssd.byRequest.map((r) => r.readBytesPerS)));
    expect(readdirSync(spill)).toEqual([]);
  });

  it('reports a missing spill folder as unavailable with the reason', async () => {
    const c = await loadNative().calibrate({ spillDir: '/nonexistent-spill-folder', bytes: 8 * 2 ** 20, threads: 1 });
    expect(c.ssd).toEqual({ available: false, reason: expect.stringMatching(/spill folder \/nonexistent-spill-folder is not usable: No such file/) });
    expect(positive(c.h2dBytesPerS)).toBe(true);
  });

  it('caches per machine and spill folder in the data folder, and re-measures on demand', async () => {
    const data = mkdtempSync(join(tmpdir(), 'spw-cal-data-'));
    const spill = mkdtempSync(join(tmpdir(), 'spw-cal-'));
    expect(await cachedCalibration(data, spill)).toBeNull();
    const first = await calibration({ dataDir: data, spillDir: spill, bytes: 8 * 2 ** 20, threads: 1 });
    expect(existsSync(calibrationFile(data))).toBe(true);
    expect(first.machine).toMatchObject({ spillDir: spill, gpu: null });
    expect(first.machine.cpu.length).toBeGreaterThan(0);
    expect(await calibration({ dataDir: data, spillDir: spill })).toEqual(first);
    const again = await calibration({ dataDir: data, spillDir: spill, bytes: 8 * 2 ** 20, threads: 1, recalibrate: true });
    expect(again.date >= first.date).toBe(true);
    expect(await cachedCalibration(data, spill)).toEqual(again);
  });
  // An OPT-like block: q, k, v, o with biases, fc1/fc2 with biases, two layer norms.
  const C = 256;
  const shape = (sequences: number): NativeBlockShape => ({ hidden: C, intermediate: 4 * C, heads: 4, sequences, seqLen: 64 });

  it('measures one block forward with the backend kernels; 4× the tokens takes longer', async () => {
    const native = loadNative();
    // The least of a few calibrations (each already the median of its repetitions): robust to a busy machine.
    const fastest = async (s: NativeBlockShape) => {
      let best = Infinity;
      for (let i = 0; i < 3; i++) {
        const c = await native.calibrate({ threads: 2, parts: ['block'], block: s });
        expect(c.parts).toEqual(['block']);
        const b = c.block!;
        expect(b.source).toBe('measured');
        expect(b.parameters).toBe(12 * C * C + 13 * C);
        expect(b.tokens).toBe(s.sequences * s.seqLen);
        for (const x of [b.forwardMs, b.perturbMs, b.zoMs]) expect(positive(x)).toBe(true);
        expect(b.zoMs).toBeCloseTo(b.perturbMs + 2 * b.forwardMs, 9);
        expect(b.reps).toBeGreaterThanOrEqual(3);
        expect(c.seconds).toBeLessThan(2);
        best = Math.min(best, b.forwardMs);
      }
      return best;
    };
    const one = await fastest(shape(1));
    const four = await fastest(shape(4));
    expect(four).toBeGreaterThan(one);
  });

  it('extrapolates a block too big to run from a smaller one of the same kind, and says how', async () => {
    // A Llama-7B block at 2 × 1024 tokens: 202M parameters.
    const big: NativeBlockShape = { hidden: 4096, intermediate: 11008, heads: 32, kvHeads: 8, gated: true, norm: 'rmsnorm', rope: true, bias: false, activation: 'silu', sequences: 2, seqLen: 1024 };
    const t0 = Date.now();
    const c = await loadNative().calibrate({ threads: 2, parts: ['block'], block: big });
    expect(Date.now() - t0).toBeLessThan(10_000);
    const b = c.block!;
    expect(b.source).toBe('extrapolated');
    expect(b.parameters).toBe(2 * 4096 + 4096 * 4096 * 2 + 2 * 4096 * 1024 + 3 * 4096 * 11008);
    expect(b.proxy!.headDim).toBe(128);
    expect(b.proxy!.heads).toBeLessThan(32);
    expect(positive(b.gemmFlopsPerS!)).toBe(true);
    expect(b.detail).toMatch(/scaled it: projections by FLOPs at [\d.]+ GFLOP\/s/);
    // The projections alone are 2 × tokens × their parameters FLOPs at that rate.
    const projections = 2 * 2048 * (4096 * 4096 * 2 + 2 * 4096 * 1024 + 3 * 4096 * 11008);
    expect(b.forwardMs).toBeGreaterThanOrEqual((1000 * projections) / b.gemmFlopsPerS! - 1e-6);
  });

  it('reports a block that cannot run as failed, with the reason, and the planner falls back on FLOPs', async () => {
    const c = await loadNative().calibrate({ threads: 1, parts: ['block'], block: { hidden: 64, intermediate: 128, heads: 3, kvHeads: 2, sequences: 1, seqLen: 8 } });
    expect(c.block).toMatchObject({ source: 'failed', detail: expect.stringMatching(/heads must be a multiple of kv_heads/) });
  });

  it('caches the host update rate and the block per machine and shape; the planner gets the measured block', async () => {
    const data = mkdtempSync(join(tmpdir(), 'spw-cal-data-'));
    const block = blockShapeOf({ hidden: 64, heads: 4, intermediate: 256, vocabSize: 100, tiedEmbeddings: true, family: 'opt' }, 2, 16)!;
    const first = await calibration({ dataDir: data, threads: 2, block });
    expect(positive(first.cpuUpdateElemsPerS)).toBe(true);
    expect(first.updateElems).toBeGreaterThanOrEqual(16 * 2 ** 20);
    expect(first.block).toMatchObject({ source: 'measured', shape: block, tokens: 32 });
    const again = await calibration({ dataDir: data, threads: 2, block });
    expect(again.cpuUpdateElemsPerS).toBe(first.cpuUpdateElemsPerS);
    expect(again).toEqual(first);
    expect(await cachedCalibration(data, null, 'cpu', { threads: 2, block })).toEqual(first);
    // Another shape on the same machine: the machine's rates come from the cache, the block is measured.
    const other = await calibration({ dataDir: data, threads: 2, block: { ...block, sequences: 4 } });
    expect(other.date).toBe(first.date);
    expect(other.cpuUpdateElemsPerS).toBe(first.cpuUpdateElemsPerS);
    expect(other.block!.tokens).toBe(64);
    const r = ratesOf(first);
    expect(r).toMatchObject({ blockForwardMs: first.block!.zoMs, blockSource: 'measured', deviceUpdateElemsPerS: first.cpuUpdateElemsPerS, hostThreads: 2 });
  });

  it('calibrates several spill folders, once per filesystem, and caches each folder', async () => {
    const data = mkdtempSync(join(tmpdir(), 'spw-cal-data-'));
    const a = mkdtempSync(join(tmpdir(), 'spw-cal-a-'));
    const b = mkdtempSync(join(tmpdir(), 'spw-cal-b-'));
    const c = await calibration({ dataDir: data, spillDirs: [a, b], bytes: 8 * 2 ** 20, threads: 1 });
    expect(c.spill!.map((s) => s.dir)).toEqual([a, b]);
    expect(c.spill![0].fsDevice).not.toBeNull();
    expect(c.spill![1].fsDevice).toBe(c.spill![0].fsDevice);
    // Same filesystem: the second folder takes the first one's measurement.
    expect(c.spill![1]).toMatchObject({ sharedWith: a, available: true });
    expect(c.machine.spillDir).toBe(a);
    expect(c.ssd).toMatchObject({ available: true });
    expect(await cachedCalibration(data, [a, b], 'cpu', { threads: 1 })).toEqual(c);
    expect(ratesOf(c).spill!.map((s) => s.device)).toEqual([c.spill![0].fsDevice, c.spill![0].fsDevice]);
    expect(readdirSync(a)).toEqual([]);
  });
});
