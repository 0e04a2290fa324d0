// The planner's calibration, measured by the native engine and cached in the
// data folder as calibration.json, in three kinds of entries:
//   machine  copies, GEMM and update rates: per CPU model, GPU, compute device and thread count;
//   spill    the SSD tier through the engine's own O_DIRECT path: per spill folder and the
//            filesystem it is on (st_dev), so several folders are measured once each;
//   blocks   one transformer block's forward at a model shape and batch: per machine + shape.
// Everything is re-measured on demand (recalibrate).
import { access, constants, mkdir, readFile, realpath, rename, stat, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

import { engineThreads, loadNative } from './native.js';
import type { NativeBlockShape, NativeBlockTiming, NativeCalibration, NativeSsdCalibration } from './native.js';
import type { PlannerModel, PlannerRates } from './planner.js';
import type { Gemm } from '../common/options.js';

/** One spill folder's SSD calibration. */
export type SpillCalibration = NativeSsdCalibration & {
  /** The folder (absolute). */
  dir: string;
  /** st_dev of its filesystem; folders on one device share its bandwidth. null: the folder cannot be stat'ed. */
  fsDevice: string | null;
  /** ISO date of the measurement. */
  date: string;
  /** Measured on another folder of the same filesystem in the same request. */
  sharedWith?: string;
};

/** One block's forward at a shape, on this machine's compute device. */
export interface BlockCalibration extends NativeBlockTiming {
  shape: NativeBlockShape;
  date: string;
}

export interface Calibration extends NativeCalibration {
  machine: { cpu: string; gpu: string | null; spillDir: string | null };
  /** ISO date of the machine measurement (copies, GEMM, updates). */
  date: string;
  /** Per spill folder, in the order asked (the first one is also `ssd`). */
  spill?: SpillCalibration[];
  /** The block forward of the shape asked for, when one was. */
  block?: BlockCalibration;
}

interface MachineKey {
  cpu: string;
  gpu: string | null;
  /** 'cpu', 'cuda', 'cuda:N'. */
  device: string;
  threads: number;
  /** CUDA: the GEMM precision the backend runs with (--gemm, $SPILLWAY_GEMM); null on the CPU. */
  gemm?: Gemm | null;
}

/** The GEMM precision a calibration of `device` runs with: none on the CPU; $SPILLWAY_GEMM over the one asked for over fp32 on CUDA. */
const gemmOf = (device: string, asked?: Gemm): Gemm | null => (device === 'cpu' ? null : ((process.env.SPILLWAY_GEMM?.trim().toLowerCase() as Gemm | undefined) || asked || 'fp32'));

type MachineRates = Omit<NativeCalibration, 'ssd' | 'block' | 'parts'>;

interface CacheFile {
  version: 2;
  machines: { key: MachineKey; date: string; rates: MachineRates }[];
  spill: { cpu: string; entry: SpillCalibration }[];
  blocks: { key: MachineKey; entry: BlockCalibration }[];
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
    if (c.version === 2 && Array.isArray(c.machines) && Array.isArray(c.spill) && Array.isArray(c.blocks)) return c;
  } catch {
    // absent or unreadable (or the version 1 layout): measure again
  }
  return { version: 2, machines: [], spill: [], blocks: [] };
}

const writable = (dir: string) =>
  access(dir, constants.W_OK).then(
    () => true,
    () => false,
  );

/** st_dev of the folder's filesystem, or null. */
export async function fsDeviceOf(dir: string): Promise<string | null> {
  try {
    return String((await stat(dir)).dev);
  } catch {
    return null;
  }
}

/**
 * The filesystem holding `dir` as a person knows it: "/mnt/nvme (/dev/nvme0n1p2, ext4)", from the
 * mount with the longest mount point above it in /proc/self/mountinfo; null where that is not readable.
 */
export async function mountOf(dir: string): Promise<string | null> {
  let path: string;
  let text: string;
  try {
    path = await realpath(dir);
    text = await readFile('/proc/self/mountinfo', 'utf8');
  } catch {
    return null;
  }
  // "36 25 254:0 / /mnt/nvme rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw": the mount point is field 5,
  // the type and source follow the " - "; spaces in paths are written \040.
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  let best: { point: string; type: string; source: string } | null = null;
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!right) continue;
    const point = unescape(left.split(' ')[4] ?? '');
    const [type, source] = right.split(' ');
    const inside = point === '/' || path === point || path.startsWith(point.endsWith('/') ? point : `${point}/`);
    if (point && inside && (!best || point.length >= best.point.length)) best = { point, type, source: unescape(source ?? '') };
  }
  return best ? `${best.point} (${best.source}, ${best.type})` : null;
}

const sameShape = (a: NativeBlockShape, b: NativeBlockShape) => JSON.stringify(canonShape(a)) === JSON.stringify(canonShape(b));
function canonShape(s: NativeBlockShape): Required<NativeBlockShape> {
  return {
    hidden: s.hidden,
    intermediate: s.intermediate,
    heads: s.heads,
    kvHeads: s.kvHeads ?? s.heads,
    headDim: s.headDim ?? Math.floor(s.hidden / s.heads),
    gated: s.gated ?? false,
    norm: s.norm ?? 'layernorm',
    rope: s.rope ?? false,
    bias: s.bias ?? true,
    activation: s.activation ?? 'relu',
    sequences: s.sequences,
    seqLen: s.seqLen,
    noise: s.noise ?? 'gaussian',
  };
}

/** The block shape the engine runs for this model at batch × seq tokens. */
export function blockShapeOf(config: PlannerModel['config'], batch: number, seq: number): NativeBlockShape | null {
  const c = config;
  if (!c.hidden || !c.heads || !c.intermediate || batch < 1 || seq < 1) return null;
  const family = c.family ?? 'opt';
  return canonShape({
    hidden: c.hidden,
    intermediate: c.intermediate,
    heads: c.heads,
    kvHeads: c.kvHeads ?? c.heads,
    headDim: c.headDim ?? Math.floor(c.hidden / c.heads),
    gated: family === 'llama',
    // Gemma's (1 + w) norm costs what an RMSNorm does.
    norm: c.norm === 'rmsnorm_plus1' ? 'rmsnorm' : (c.norm ?? (family === 'llama' ? 'rmsnorm' : 'layernorm')),
    rope: family === 'llama',
    bias: family !== 'llama',
    activation: c.activation ?? (family === 'llama' ? 'silu' : 'relu'),
    sequences: batch,
    seqLen: seq,
  });
}

export interface CalibrateRequest {
  /** Folder of calibration.json; null: measure without caching. */
  dataDir: string | null;
  /** One spill folder (the first of spillDirs when both are given). */
  spillDir?: string | null;
  /** Several spill folders: each is calibrated (cached per folder and filesystem). */
  spillDirs?: string[];
  /** 'cpu' (default) or 'cuda[:N]'. */
  device?: string;
  /** CUDA: the GEMM precision to calibrate with (default fp32). */
  gemm?: Gemm;
  /** Size of the SSD test file (default 256 MiB, capped by free space). */
  bytes?: number;
  /** The engine's thread count (default: engineThreads()). */
  threads?: number;
  /** Also the forward time of one block of this shape. */
  block?: NativeBlockShape | null;
  /** Measure even when a cached calibration for this machine exists. */
  recalibrate?: boolean;
}

const foldersOf = (spillDir: string | null | undefined, spillDirs: string[] | undefined): string[] =>
  (spillDirs?.length ? spillDirs : spillDir ? [spillDir] : []).map((d) => resolve(d));

function findMachine(cache: CacheFile, m: Calibration['machine'], device: string, threads: number | undefined, gemm: string | null) {
  const mine = cache.machines.filter((e) => e.key.cpu === m.cpu && e.key.gpu === m.gpu && e.key.device === device && (e.key.gemm ?? null) === gemm);
  if (threads !== undefined) return mine.find((e) => e.key.threads === threads) ?? null;
  // No thread count asked for: the engine's default, else any measured on this machine.
  return mine.find((e) => e.key.threads === engineThreads()) ?? mine[mine.length - 1] ?? null;
}

function findBlock(cache: CacheFile, key: MachineKey, shape: NativeBlockShape) {
  return cache.blocks.find((e) => sameKey(e.key, key) && sameShape(e.entry.shape, shape))?.entry ?? null;
}

const sameKey = (a: MachineKey, b: MachineKey) =>
  a.cpu === b.cpu && a.gpu === b.gpu && a.device === b.device && a.threads === b.threads && (a.gemm ?? null) === (b.gemm ?? null);

async function findSpill(cache: CacheFile, cpu: string, dir: string): Promise<SpillCalibration | null> {
  const dev = await fsDeviceOf(dir);
  return cache.spill.find((e) => e.cpu === cpu && e.entry.dir === dir && e.entry.fsDevice === dev)?.entry ?? null;
}

function assemble(
  machine: { key: MachineKey; date: string; rates: MachineRates },
  m: Calibration['machine'],
  spill: SpillCalibration[],
  block: BlockCalibration | null,
): Calibration {
  const first = spill[0];
  const ssd: NativeSsdCalibration = first
    ? first.available
      ? { available: true, direct: first.direct, fileBytes: first.fileBytes, readBytesPerS: first.readBytesPerS, writeBytesPerS: first.writeBytesPerS, byRequest: first.byRequest }
      : { available: false, reason: first.reason }
    : { available: false, reason: 'no spill folder given' };
  return {
    ...machine.rates,
    ssd,
    machine: { ...m, spillDir: first ? first.dir : null },
    date: machine.date,
    ...(spill.length ? { spill } : {}),
    ...(block ? { block } : {}),
  };
}

/**
 * The cached calibration for this machine and spill folder(s), or null when any part of it
 * (the machine, a folder) has not been measured. A block figure is added when one is cached.
 */
export async function cachedCalibration(
  dataDir: string,
  spillDir: string | string[] | null,
  device = 'cpu',
  o: { threads?: number; block?: NativeBlockShape | null; gemm?: Gemm } = {},
): Promise<Calibration | null> {
  const dirs = Array.isArray(spillDir) ? foldersOf(null, spillDir) : foldersOf(spillDir, undefined);
  const m = machineOf(device, dirs[0] ?? null);
  const cache = await readCache(calibrationFile(dataDir));
  const machine = findMachine(cache, m, device, o.threads, gemmOf(device, o.gemm));
  if (!machine) return null;
  const spill: SpillCalibration[] = [];
  for (const d of dirs) {
    const e = await findSpill(cache, m.cpu, d);
    if (!e) return null;
    spill.push(e);
  }
  const block = o.block ? findBlock(cache, machine.key, o.block) : null;
  return assemble(machine, m, spill, block);
}

/** The cached calibration, or a fresh measurement of what is missing (then cached). */
export async function calibration(req: CalibrateRequest): Promise<Calibration> {
  const dirs = foldersOf(req.spillDir, req.spillDirs);
  const device = req.device ?? 'cpu';
  const m = machineOf(device, dirs[0] ?? null);
  const native = loadNative();
  const file = req.dataDir ? calibrationFile(req.dataDir) : null;
  const cache = file && !req.recalibrate ? await readCache(file) : { version: 2 as const, machines: [], spill: [], blocks: [] };
  const shape = req.block ? canonShape(req.block) : null;

  // The machine's rates (and the block, in the same native call when it is missing too).
  const gemm = gemmOf(device, req.gemm);
  let machine = findMachine(cache, m, device, req.threads, gemm);
  const threads = req.threads ?? machine?.key.threads ?? engineThreads();
  let block: BlockCalibration | null = machine && shape ? findBlock(cache, machine.key, shape) : null;
  const fresh: { machine?: typeof machine; block?: BlockCalibration; spill: SpillCalibration[] } = { spill: [] };
  if (!machine || (shape && !block)) {
    const parts: ('machine' | 'block')[] = [];
    if (!machine) parts.push('machine');
    if (shape && !block) parts.push('block');
    const r = await native.calibrate({ device, threads, parts, ...(gemm ? { gemm } : {}), ...(shape && !block ? { block: shape } : {}) });
    const date = new Date().toISOString();
    if (!machine) {
      const { ssd: _s, block: _b, parts: _p, ...rates } = r;
      machine = fresh.machine = { key: { cpu: m.cpu, gpu: m.gpu, device, threads: r.hostThreads, gemm }, date, rates };
    }
    if (shape && !block && r.block) {
      block = { ...r.block, shape, date };
      if (r.block.source !== 'failed') fresh.block = block; // a failure is not cached
    }
  }

  // Each spill folder; folders on one filesystem are measured once per request.
  const spill: SpillCalibration[] = [];
  for (const dir of dirs) {
    const fsDevice = await fsDeviceOf(dir);
    let e = await findSpill(cache, m.cpu, dir);
    if (!e) {
      const sibling = fsDevice !== null ? spill.find((s) => s.fsDevice === fsDevice && !s.sharedWith) : undefined;
      if (sibling && sibling.available && (await writable(dir))) {
        e = { ...sibling, dir, sharedWith: sibling.dir };
      } else {
        const r = await native.calibrate({ spillDir: dir, bytes: req.bytes, device, threads, parts: ['ssd'] });
        e = { ...r.ssd, dir, fsDevice, date: new Date().toISOString() };
      }
      if (e.available) fresh.spill.push(e); // a folder that cannot be used is tried again next time
    }
    spill.push(e);
  }

  if (file && (fresh.machine || fresh.block || fresh.spill.length)) {
    const stored = await readCache(file);
    if (fresh.machine) {
      const k = fresh.machine.key;
      stored.machines = [...stored.machines.filter((e) => !sameKey(e.key, k)), fresh.machine];
    }
    if (fresh.block) {
      const b = fresh.block;
      stored.blocks = [...stored.blocks.filter((e) => !(sameKey(e.key, machine.key) && sameShape(e.entry.shape, b.shape))), { key: machine.key, entry: b }];
    }
    for (const s of fresh.spill) {
      stored.spill = [...stored.spill.filter((e) => !(e.cpu === m.cpu && e.entry.dir === s.dir)), { cpu: m.cpu, entry: s }];
    }
    await mkdir(dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(stored, null, 2) + '\n');
    await rename(tmp, file);
  }
  return assemble(machine, m, spill, block);
}

/** The planner's rates from a calibration. */
export function ratesOf(c: Calibration): PlannerRates {
  const spill = c.spill?.map((s) => ({
    readBytesPerS: s.available ? s.readBytesPerS : null,
    writeBytesPerS: s.available ? s.writeBytesPerS : null,
    ...(s.available ? {} : { unavailable: s.reason }),
    device: s.fsDevice,
  }));
  return {
    h2dBytesPerS: c.h2dBytesPerS,
    d2hBytesPerS: c.d2hBytesPerS,
    ssdReadBytesPerS: c.ssd.available ? c.ssd.readBytesPerS : null,
    ssdWriteBytesPerS: c.ssd.available ? c.ssd.writeBytesPerS : null,
    ...(c.ssd.available ? {} : { ssdUnavailable: c.ssd.reason }),
    ...(spill ? { spill } : {}),
    gemmFlopsPerS: c.gemmFlopsPerS,
    cpuUpdateElemsPerS: c.cpuUpdateElemsPerS,
    ...(c.deviceUpdateElemsPerS ? { deviceUpdateElemsPerS: c.deviceUpdateElemsPerS } : {}),
    hostThreads: c.hostThreads,
    ...(c.block && c.block.source !== 'failed' ? { blockForwardMs: c.block.zoMs, blockPerturbMs: c.block.perturbMs, blockSource: c.block.source, blockDetail: c.block.detail } : {}),
    date: c.date,
  };
}

export const defaultSpillDir = (): string => tmpdir();
