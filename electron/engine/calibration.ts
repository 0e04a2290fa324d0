// The planner's calibration: measured once per machine (and spill folder) by
// the native engine, cached in the data folder as calibration.json, and
// re-measured on demand.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

import { loadNative } from './native.js';
import type { NativeCalibration } from './native.js';
import type { PlannerRates } from './planner.js';

export interface Calibration extends NativeCalibration {
  machine: { cpu: string; gpu: string | null; spillDir: string | null };
  /** ISO date of the measurement. */
  date: string;
}

interface CacheFile {
  version: 1;
  entries: Calibration[];
}

export const calibrationFile = (dataDir: string): string => join(dataDir, 'calibration.json');

export function machineOf(device: string, spillDir: string | null): Calibration['machine'] {
  let gpu: string | null = null;
  if (device !== 'cpu') {
    try {
      const r = loadNative().cudaDevices() as { devices?: { index: number; name: string }[] };
      const idx = device === 'cuda' ? 0 : Number(device.slice(5));
      gpu = r.devices?.find((d) => d.index === idx)?.name ?? null;
    } catch {
      gpu = null;
    }
  }
  return { cpu: cpus()[0]?.model ?? 'unknown', gpu, spillDir: spillDir ? resolve(spillDir) : null };
}

async function readCache(file: string): Promise<CacheFile> {
  try {
    const c = JSON.parse(await readFile(file, 'utf8')) as CacheFile;
    if (c.version === 1 && Array.isArray(c.entries)) return c;
  } catch {
    // absent or unreadable: measure again
  }
  return { version: 1, entries: [] };
}

const sameMachine = (a: Calibration['machine'], b: Calibration['machine']) => a.cpu === b.cpu && a.gpu === b.gpu && a.spillDir === b.spillDir;

export interface CalibrateRequest {
  /** Folder of calibration.json; null: measure without caching. */
  dataDir: string | null;
  spillDir?: string | null;
  /** 'cpu' (default) or 'cuda[:N]'. */
  device?: string;
  /** Size of the SSD test file (default 256 MiB, capped by free space). */
  bytes?: number;
  threads?: number;
  /** Measure even when a cached calibration for this machine exists. */
  recalibrate?: boolean;
}

/** The cached calibration for this machine and spill folder, or null. */
export async function cachedCalibration(dataDir: string, spillDir: string | null, device = 'cpu'): Promise<Calibration | null> {
  const m = machineOf(device, spillDir);
  return (await readCache(calibrationFile(dataDir))).entries.find((e) => sameMachine(e.machine, m)) ?? null;
}

/** The cached calibration, or a fresh measurement (then cached). */
export async function calibration(req: CalibrateRequest): Promise<Calibration> {
  const spillDir = req.spillDir ?? null;
  const device = req.device ?? 'cpu';
  if (req.dataDir && !req.recalibrate) {
    const hit = await cachedCalibration(req.dataDir, spillDir, device);
    if (hit) return hit;
  }
  const measured = await loadNative().calibrate({ spillDir: spillDir ?? undefined, bytes: req.bytes, device, threads: req.threads });
  const c: Calibration = { ...measured, machine: machineOf(device, spillDir), date: new Date().toISOString() };
  if (req.dataDir) {
    const file = calibrationFile(req.dataDir);
    const cache = await readCache(file);
    cache.entries = [...cache.entries.filter((e) => !sameMachine(e.machine, c.machine)), c];
    await mkdir(dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(cache, null, 2) + '\n');
    await rename(tmp, file);
  }
  return c;
}

/** The planner's rates from a calibration. */
export function ratesOf(c: Calibration): PlannerRates {
  return {
    h2dBytesPerS: c.h2dBytesPerS,
    d2hBytesPerS: c.d2hBytesPerS,
    ssdReadBytesPerS: c.ssd.available ? c.ssd.readBytesPerS : null,
    ssdWriteBytesPerS: c.ssd.available ? c.ssd.writeBytesPerS : null,
    ...(c.ssd.available ? {} : { ssdUnavailable: c.ssd.reason }),
    gemmFlopsPerS: c.gemmFlopsPerS,
    cpuUpdateElemsPerS: c.cpuUpdateElemsPerS,
    date: c.date,
  };
}

export const defaultSpillDir = (): string => tmpdir();
