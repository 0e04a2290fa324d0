// Linux /proc and /sys readers for telemetry, written by hand.
//
// Why not a library: systeminformation (the usual choice) is not a dependency, and for the
// few numbers we need it would read the same files through far more code (and spawn
// processes for some metrics). /proc/stat, /proc/meminfo, /proc/<pid>/status and
// /proc/diskstats are stable kernel interfaces (Documentation/filesystems/proc.rst,
// Documentation/admin-guide/iostats.rst); reading them is a few synchronous reads of small
// in-memory files per sample (tens of microseconds). Parsers take text so tests can feed
// fixed samples; readers are thin wrappers over readFileSync.
//
// Limits: inside a container /proc/stat and /proc/meminfo show the host, not the cgroup's
// quota; Linux only (other systems fall back to os.cpus()/os.freemem() for CPU and memory).
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';

// ---------------------------------------------------------------- CPU: /proc/stat

/** Cumulative jiffies of one cpu line: busy and total (idle = idle + iowait). */
export interface CpuTimes {
  busy: number;
  total: number;
}

export interface ProcStat {
  total: CpuTimes;
  /** Indexed by cpu number; an offline core leaves a hole (undefined). */
  perCore: (CpuTimes | undefined)[];
}

function cpuTimes(fields: number[]): CpuTimes {
  // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already
  // counted in user and nice, so only the first eight make the total.
  const f = fields.slice(0, 8);
  while (f.length < 8) f.push(0);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = f[3] + f[4];
  return { busy: total - idle, total };
}

export function parseProcStat(text: string): ProcStat {
  let total: CpuTimes | null = null;
  const perCore: (CpuTimes | undefined)[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('cpu')) continue;
    const parts = line.trim().split(/\s+/);
    const fields = parts.slice(1).map(Number);
    if (fields.length < 4 || fields.some((x) => !Number.isFinite(x))) continue;
    if (parts[0] === 'cpu') total = cpuTimes(fields);
    else {
      const n = Number(parts[0].slice(3));
      if (Number.isInteger(n) && n >= 0) perCore[n] = cpuTimes(fields);
    }
  }
  if (!total) throw new Error('/proc/stat has no cpu line');
  return { total, perCore };
}

function busyFraction(a: CpuTimes | undefined, b: CpuTimes | undefined): number {
  if (!a || !b) return 0;
  const dt = b.total - a.total;
  if (dt <= 0) return 0;
  return Math.min(1, Math.max(0, (b.busy - a.busy) / dt));
}

/** Busy fractions between two readings; a core missing from either reading counts 0. */
export function cpuUsage(prev: ProcStat, cur: ProcStat): { total: number; perCore: number[] } {
  const n = Math.max(prev.perCore.length, cur.perCore.length);
  const perCore: number[] = [];
  for (let i = 0; i < n; i++) perCore.push(busyFraction(prev.perCore[i], cur.perCore[i]));
  return { total: busyFraction(prev.total, cur.total), perCore };
}

export function readProcStat(): ProcStat {
  return parseProcStat(readFileSync('/proc/stat', 'utf8'));
}

// ---------------------------------------------------------------- memory: /proc/meminfo, VmRSS

export interface MemInfo {
  totalBytes: number;
  availableBytes: number;
  usedBytes: number;
}

/** Values of a "Key:   123 kB" file, in bytes (a value without unit is kept as is). */
function kbFields(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([^:\s]+):\s+(\d+)(?:\s+(kB))?/.exec(line);
    if (m) out.set(m[1], Number(m[2]) * (m[3] ? 1024 : 1));
  }
  return out;
}

export function parseMeminfo(text: string): MemInfo {
  const f = kbFields(text);
  const total = f.get('MemTotal');
  if (total === undefined) throw new Error('/proc/meminfo has no MemTotal');
  // MemAvailable exists since Linux 3.14; before it, free + buffers + cache is the estimate.
  const available =
    f.get('MemAvailable') ?? (f.get('MemFree') ?? 0) + (f.get('Buffers') ?? 0) + (f.get('Cached') ?? 0);
  return { totalBytes: total, availableBytes: available, usedBytes: Math.max(0, total - available) };
}

export function readMeminfo(): MemInfo {
  return parseMeminfo(readFileSync('/proc/meminfo', 'utf8'));
}

/** VmRSS of a /proc/<pid>/status text in bytes; null for a kernel thread or zombie (no VmRSS). */
export function parseVmRss(text: string): number | null {
  return kbFields(text).get('VmRSS') ?? null;
}

export function readProcessRss(pid: number): number | null {
  return parseVmRss(readFileSync(`/proc/${pid}/status`, 'utf8'));
}

// ---------------------------------------------------------------- disk: /proc/diskstats

export interface DiskCounters {
  major: number;
  minor: number;
  name: string;
  readSectors: number;
  writeSectors: number;
  /** io_ticks: milliseconds the device had I/O in flight. */
  ioTicksMs: number;
}

/** diskstats always counts 512-byte sectors, whatever the device's own sector size. */
export const DISKSTATS_SECTOR_BYTES = 512;

export function parseDiskstats(text: string): Map<string, DiskCounters> {
  const out = new Map<string, DiskCounters>();
  for (const line of text.split('\n')) {
    const p = line.trim().split(/\s+/);
    if (p.length < 14) continue;
    // major minor name | reads merged sectors ms | writes merged sectors ms | in_flight io_ticks weighted ...
    out.set(p[2], {
      major: Number(p[0]),
      minor: Number(p[1]),
      name: p[2],
      readSectors: Number(p[5]),
      writeSectors: Number(p[9]),
      ioTicksMs: Number(p[12]),
    });
  }
  return out;
}

export function readDiskstats(): Map<string, DiskCounters> {
  return parseDiskstats(readFileSync('/proc/diskstats', 'utf8'));
}

/** Rates between two readings of one device, over intervalMs of wall time. */
export function diskRates(
  prev: DiskCounters,
  cur: DiskCounters,
  intervalMs: number,
): { readBytesPerS: number; writeBytesPerS: number; busy: number } {
  if (intervalMs <= 0) return { readBytesPerS: 0, writeBytesPerS: 0, busy: 0 };
  const perS = 1000 / intervalMs;
  // Counters are unsigned longs in the kernel; a wrap or device reset shows as a negative delta.
  const d = (a: number, b: number) => Math.max(0, b - a);
  return {
    readBytesPerS: d(prev.readSectors, cur.readSectors) * DISKSTATS_SECTOR_BYTES * perS,
    writeBytesPerS: d(prev.writeSectors, cur.writeSectors) * DISKSTATS_SECTOR_BYTES * perS,
    busy: Math.min(1, d(prev.ioTicksMs, cur.ioTicksMs) / intervalMs),
  };
}

// ---------------------------------------------------------------- which block device holds a folder

export interface BlockDevice {
  /** The whole device's kernel name: the diskstats line to read. */
  device: string;
  /** The partition holding the folder, or null. */
  partition: string | null;
  /** major:minor of the device the folder is on (the partition's when there is one). */
  majorMinor: string;
  label?: string;
}

export type BlockDeviceResult = { ok: true; device: BlockDevice } | { ok: false; reason: string };

/** major and minor of a Linux dev_t (glibc's gnu_dev_major/gnu_dev_minor encoding). */
export function devMajorMinor(dev: bigint): [number, number] {
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  return [major, minor];
}

/** The block device for major:minor through /sys/dev/block, or null when there is none. */
export function blockDeviceFor(major: number, minor: number, sys = '/sys'): BlockDevice | null {
  const link = join(sys, 'dev', 'block', `${major}:${minor}`);
  if (!existsSync(link)) return null;
  const dir = realpathSync(link);
  const name = basename(dir);
  // A partition's sysfs folder holds a 'partition' file and sits inside its disk's folder.
  const isPartition = existsSync(join(dir, 'partition'));
  const device = isPartition ? basename(dirname(dir)) : name;
  const out: BlockDevice = { device, partition: isPartition ? name : null, majorMinor: `${major}:${minor}` };
  try {
    const dm = readFileSync(join(sys, 'block', device, 'dm', 'name'), 'utf8').trim();
    if (dm) out.label = dm;
  } catch {
    // not device-mapper
  }
  return out;
}

export interface MountEntry {
  majorMinor: string;
  mountPoint: string;
  fsType: string;
  source: string;
  superOptions: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo octal. */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const left = line.slice(0, dash).split(' ');
    const right = line.slice(dash + 3).split(' ');
    if (left.length < 6 || right.length < 2) continue;
    out.push({
      majorMinor: left[2],
      mountPoint: unescapeMount(left[4]),
      fsType: right[0],
      source: unescapeMount(right[1]),
      superOptions: right[2] ?? '',
    });
  }
  return out;
}

/** The mount holding path: the longest mount point that contains it (the last one mounted wins a tie). */
export function mountFor(path: string, mounts: MountEntry[]): MountEntry | null {
  let best: MountEntry | null = null;
  for (const m of mounts) {
    const mp = m.mountPoint;
    const inside = mp === '/' || path === mp || path.startsWith(mp.endsWith(sep) ? mp : mp + sep);
    if (inside && (!best || mp.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

/**
 * The block device holding folder. st_dev names it directly for ext4/xfs on a disk or
 * partition, and for device-mapper (LVM, LUKS). btrfs and overlayfs give an anonymous st_dev
 * (major 0): then the mount's source (/dev/...) or overlay's upperdir tells. tmpfs, NFS and
 * the like have no block device: the result says so.
 */
export function resolveBlockDevice(folder: string, depth = 0): BlockDeviceResult {
  let real: string;
  let dev: bigint;
  try {
    real = realpathSync(resolve(folder));
    dev = statSync(real, { bigint: true }).dev;
  } catch (e) {
    return { ok: false, reason: `cannot stat ${folder}: ${(e as Error).message}` };
  }
  const [major, minor] = devMajorMinor(dev);
  const direct = blockDeviceFor(major, minor);
  if (direct) return { ok: true, device: direct };
  let mounts: MountEntry[];
  try {
    mounts = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
  } catch (e) {
    return { ok: false, reason: `${folder} is on device ${major}:${minor}, not a block device, and mountinfo is unreadable` };
  }
  const m = mountFor(real, mounts);
  if (!m) return { ok: false, reason: `${folder} is on device ${major}:${minor}, which is not a block device` };
  if (m.source.startsWith('/dev/')) {
    try {
      const src = statSync(m.source, { bigint: true });
      if (src.isBlockDevice()) {
        const [ma, mi] = devMajorMinor(src.rdev);
        const viaSource = blockDeviceFor(ma, mi);
        if (viaSource) return { ok: true, device: viaSource };
      }
    } catch {
      // a source path not visible here (another mount namespace): fall through
    }
  }
  if (m.fsType === 'overlay' && depth === 0) {
    const upper = /(?:^|,)upperdir=([^,]+)/.exec(m.superOptions)?.[1];
    if (upper && existsSync(upper)) return resolveBlockDevice(upper, depth + 1);
  }
  return { ok: false, reason: `${folder} is on ${m.fsType} (${m.source}), which has no block device` };
}

