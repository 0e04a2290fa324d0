import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  cpuUsage,
  devMajorMinor,
  diskRates,
  mountFor,
  parseDiskstats,
  parseMeminfo,
  parseMountinfo,
  parseProcStat,
  parseVmRss,
  resolveBlockDevice,
} from '../../../../electron/services/telemetry/procfs.js';

// Inputs copied in shape from real machines (a 4-core desktop, an NVMe laptop).
const STAT_A = `cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0
cpu1 1335690 35990 516220 11830563 3486 0 3470 0 50393 0
cpu2 3798580 100000 1000000 10000000 4000 0 2000 0 50000 0
cpu3 3604603 121740 996443 11654628 3067 0 1850 0 51302 0
intr 1462898 20 9 0 0 0 0 0 0 1 0 0 0 0 0 0
ctxt 2567003
btime 1703000000
processes 27431
procs_running 2
procs_blocked 0
softirq 1221389 0 264231 11 117 89537 0 9 311347 0 556137
`;
// One second later: cpu0 fully busy (100 jiffies user), cpu1 idle, cpu2 half (50/50 with iowait), cpu3 offline.
const STAT_B = `cpu  10132253 290696 3084719 46828583 16733 0 25195 0 175628 0
cpu0 1393380 32966 572056 13343292 6130 0 17875 0 23933 0
cpu1 1335690 35990 516220 11830663 3486 0 3470 0 50393 0
cpu2 3798630 100000 1000000 10000000 4050 0 2000 0 50000 0
intr 1462999 20 9 0 0 0 0 0 0 1 0 0 0 0 0 0
ctxt 2567100
`;

const MEMINFO = `MemTotal:       32657320 kB
MemFree:         1893064 kB
MemAvailable:   20154528 kB
Buffers:          842900 kB
Cached:         16733380 kB
SwapCached:         1200 kB
Active:          9876543 kB
Inactive:       15432100 kB
SwapTotal:       2097148 kB
SwapFree:        2090000 kB
Dirty:              1024 kB
HugePages_Total:       0
HugePages_Free:        0
Hugepagesize:       2048 kB
`;

const STATUS = `Name:\tnode
Umask:\t0022
State:\tS (sleeping)
Tgid:\t41234
Pid:\t41234
PPid:\t41200
VmPeak:\t 1234560 kB
VmSize:\t 1200000 kB
VmHWM:\t  160000 kB
VmRSS:\t  150016 kB
RssAnon:\t   90000 kB
Threads:\t11
`;

const DISKSTATS_A = `   7       0 loop0 57 0 2380 25 0 0 0 0 0 36 25 0 0 0 0
 259       0 nvme0n1 503341 136129 48301754 104543 1317421 760283 92911170 1402332 0 1009260 1571350 0 0 0 0 94219 64474
 259       1 nvme0n1p1 361 1118 15396 88 2 0 2 0 0 84 88 0 0 0 0 0 0
 259       2 nvme0n1p2 502909 135011 48283010 104437 1317419 760283 92911168 1402331 0 1009156 1506769 0 0 0 0 0 0
 253       0 dm-0 637825 0 48281658 180592 2077711 0 92911168 3618012 0 1012068 3798604 0 0 0 0 0 0
`;
// 500 ms later on nvme0n1: +2048 sectors read, +8192 written, io_ticks +250 ms.
const DISKSTATS_B = `   7       0 loop0 57 0 2380 25 0 0 0 0 0 36 25 0 0 0 0
 259       0 nvme0n1 503400 136129 48303802 104600 1317500 760283 92919362 1402400 2 1009510 1571500 0 0 0 0 94219 64474
 259       1 nvme0n1p1 361 1118 15396 88 2 0 2 0 0 84 88 0 0 0 0 0 0
 259       2 nvme0n1p2 502968 135011 48285058 104494 1317498 760283 92919360 1402399 2 1009406 1506900 0 0 0 0 0 0
 253       0 dm-0 637884 0 48283706 180649 2077790 0 92919360 3618080 0 1012318 3798700 0 0 0 0 0 0
`;

describe('/proc/stat', () => {
  it('parses the total and per-core lines, leaving offline cores out', () => {
    const a = parseProcStat(STAT_A);
    expect(a.perCore.length).toBe(4);
    // user nice system idle iowait irq softirq steal: 8 fields, guest not added again
    expect(a.total.total).toBe(10132153 + 290696 + 3084719 + 46828483 + 16683 + 0 + 25195 + 0);
    expect(a.total.busy).toBe(a.total.total - 46828483 - 16683);
    const b = parseProcStat(STAT_B);
    expect(b.perCore.length).toBe(3);
    expect(b.perCore[3]).toBeUndefined();
  });

  it('computes busy fractions per core and in total', () => {
    const u = cpuUsage(parseProcStat(STAT_A), parseProcStat(STAT_B));
    expect(u.perCore).toHaveLength(4);
    expect(u.perCore[0]).toBeCloseTo(1, 6);
    expect(u.perCore[1]).toBeCloseTo(0, 6);
    expect(u.perCore[2]).toBeCloseTo(0.5, 6); // iowait is idle
    expect(u.perCore[3]).toBe(0); // offline in the second reading
    // total: +100 user, +100 idle, +50 iowait
    expect(u.total).toBeCloseTo(100 / 250, 6);
  });

  it('rejects text without a cpu line', () => {
    expect(() => parseProcStat('intr 1 2 3\n')).toThrow(/no cpu line/);
  });

  it('reads this machine', () => {
    const s = parseProcStat(execFileSync('cat', ['/proc/stat'], { encoding: 'utf8' }));
    expect(s.total.total).toBeGreaterThan(0);
    expect(s.perCore.filter(Boolean).length).toBeGreaterThanOrEqual(1);
  });
});

describe('/proc/meminfo and VmRSS', () => {
  it('parses kB into bytes; used = total - available', () => {
    const m = parseMeminfo(MEMINFO);
    expect(m.totalBytes).toBe(32657320 * 1024);
    expect(m.availableBytes).toBe(20154528 * 1024);
    expect(m.usedBytes).toBe((32657320 - 20154528) * 1024);
  });

  it('estimates available on kernels without MemAvailable', () => {
    const old = MEMINFO.replace(/^MemAvailable:.*\n/m, '');
    const m = parseMeminfo(old);
    expect(m.availableBytes).toBe((1893064 + 842900 + 16733380) * 1024);
  });

  it('parses VmRSS, null without it', () => {
    expect(parseVmRss(STATUS)).toBe(150016 * 1024);
    expect(parseVmRss('Name:\tkthreadd\nState:\tS (sleeping)\n')).toBeNull();
  });
});

describe('/proc/diskstats', () => {
  it('parses sectors and io_ticks by device name', () => {
    const d = parseDiskstats(DISKSTATS_A);
    expect([...d.keys()]).toEqual(['loop0', 'nvme0n1', 'nvme0n1p1', 'nvme0n1p2', 'dm-0']);
    const n = d.get('nvme0n1')!;
    expect(n).toMatchObject({ major: 259, minor: 0, readSectors: 48301754, writeSectors: 92911170, ioTicksMs: 1009260 });
  });

  it('turns deltas into bytes/s (512-byte sectors) and busy', () => {
    const a = parseDiskstats(DISKSTATS_A).get('nvme0n1')!;
    const b = parseDiskstats(DISKSTATS_B).get('nvme0n1')!;
    const r = diskRates(a, b, 500);
    expect(r.readBytesPerS).toBe(2048 * 512 * 2);
    expect(r.writeBytesPerS).toBe(8192 * 512 * 2);
    expect(r.busy).toBeCloseTo(0.5, 9);
    // a counter that went backwards (device reset) gives 0, not a negative rate; busy clamps at 1
    expect(diskRates(b, a, 500)).toEqual({ readBytesPerS: 0, writeBytesPerS: 0, busy: 0 });
    expect(diskRates(a, b, 100).busy).toBe(1);
  });
});

describe('block device of a folder', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-telemetry-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('decodes dev_t', () => {
    expect(devMajorMinor(65024n)).toEqual([254, 0]);
    expect(devMajorMinor(BigInt((259 << 8) | 2))).toEqual([259, 2]);
    // large minors use the high bits: makedev(8, 300)
    const dev = (8n << 8n) | (300n & 0xffn) | ((300n & ~0xffn) << 12n);
    expect(devMajorMinor(dev)).toEqual([8, 300]);
  });

  it('parses mountinfo (escaped spaces) and picks the longest mount point', () => {
    const text = `27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683656k
40 27 0:45 / /mnt/my\\040disk rw - btrfs /dev/nvme0n1p3 rw,subvol=/home
41 27 0:46 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw,lowerdir=/a,upperdir=/b/diff,workdir=/b/work
`;
    const m = parseMountinfo(text);
    expect(m).toHaveLength(4);
    expect(m[2].mountPoint).toBe('/mnt/my disk');
    expect(m[2].source).toBe('/dev/nvme0n1p3');
    expect(mountFor('/mnt/my disk/runs/a', m)?.fsType).toBe('btrfs');
    expect(mountFor('/mnt/my diskette', m)?.fsType).toBe('ext4');
    expect(mountFor('/dev/shm/x', m)?.fsType).toBe('tmpfs');
    expect(m[3].superOptions).toContain('upperdir=/b/diff');
  });

  it('maps a real temp folder to the device df names, or says why not', () => {
    const r = resolveBlockDevice(dir);
    const source = execFileSync('df', ['--output=source', dir], { encoding: 'utf8' }).trim().split('\n').pop()!.trim();
    if (source.startsWith('/dev/')) {
      expect(r.ok, JSON.stringify(r)).toBe(true);
      if (!r.ok) return;
      // df names the partition (or dm/mapper link); the result names it as partition, or as the device
      const kernelName = basename(realpathSync(source));
      expect(r.device.partition ?? r.device.device).toBe(kernelName);
      expect(existsSync(`/sys/block/${r.device.device}`)).toBe(true);
      // st_dev agrees (unless the filesystem uses anonymous device numbers, like btrfs)
      const [major, minor] = devMajorMinor(statSync(dir, { bigint: true }).dev);
      if (major !== 0) expect(r.device.majorMinor).toBe(`${major}:${minor}`);
    } else {
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.reason.length).toBeGreaterThan(0);
    }
  });

  it('gives a reason for tmpfs and for a missing folder', () => {
    const src = existsSync('/dev/shm')
      ? execFileSync('df', ['--output=fstype', '/dev/shm'], { encoding: 'utf8' }).trim().split('\n').pop()!.trim()
      : '';
    if (src === 'tmpfs') {
      const r = resolveBlockDevice('/dev/shm');
      expect(r).toEqual({ ok: false, reason: expect.stringMatching(/tmpfs.*no block device/) });
    }
    const missing = resolveBlockDevice(join(dir, 'nope'));
    expect(missing.ok).toBe(false);
    if (!missing.ok) expect(missing.reason).toMatch(/cannot stat/);
  });
});
