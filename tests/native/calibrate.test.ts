// Calibration with the engine's own paths: positive, finite rates on this
// machine, and a missing spill folder reported as unavailable, never thrown.
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { calibration, cachedCalibration, calibrationFile } from '../../electron/engine/calibration.js';
import { loadNative } from '../../electron/engine/native.js';

const positive = (x: number) => Number.isFinite(x) && x > 0;

describe('calibrate', () => {
  it('measures copies, GEMM, updates and the SSD through the spill file, and removes the file', async () => {
    const spill = mkdtempSync(join(tmpdir(), 'spw-cal-'));
    const c = await loadNative().calibrate({ spillDir: spill, bytes: 16 * 2 ** 20, threads: 2 });
    expect(c.backend).toBe('cpu');
    for (const x of [c.h2dBytesPerS, c.d2hBytesPerS, c.gemmFlopsPerS, c.cpuUpdateElemsPerS]) expect(positive(x)).toBe(true);
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
});
