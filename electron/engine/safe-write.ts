// Crash- and disk-full-safe writes of whole folders (checkpoints, saved models).
// Every file is written into a hidden temporary sibling of the destination and
// fsynced, the temporary folder is fsynced and renamed into place, and the
// parent folder is fsynced. On any write error (ENOSPC, EDQUOT, EIO, ...) the
// temporary is removed and the destination is left exactly as it was; the
// error names the destination, the bytes needed and the bytes free.
import { mkdir, open, readdir, rename, rm, stat, statfs } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

import { pathExists } from '../node/files.js';

/** A file's contents: text (UTF-8), bytes, or bytes in chunks written back to back. */
export type FileData = string | Uint8Array | readonly Uint8Array[];

export interface FolderFile {
  /** A path inside the folder: a name, or sub/name (the subfolder is made). */
  name: string;
  data: FileData;
}

/** 1536 → "1.5 KiB"; binary units, one decimal. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return 'unknown';
  if (n < 1024) return `${Math.max(0, Math.round(n))} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

export interface FreeSpace {
  /** Bytes an unprivileged writer may still use (f_bavail × f_bsize). */
  free: number;
  blockSize: number;
  /** Free inodes (f_ffree). */
  freeInodes: number;
  /** Device of the filesystem (to tell whether two folders share it). */
  dev: number;
  /** The existing folder that was asked (path itself or its nearest existing ancestor). */
  at: string;
}

/** Free space on the filesystem that holds path (or would hold it, for a path not created yet); null when unknown. */
export async function freeSpace(path: string): Promise<FreeSpace | null> {
  let p = resolve(path);
  for (;;) {
    try {
      const st = await stat(p);
      const fs = await statfs(p);
      return { free: Number(fs.bavail) * Number(fs.bsize), blockSize: Number(fs.bsize) || 4096, freeInodes: Number(fs.ffree), dev: Number(st.dev), at: p };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const up = dirname(p);
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || up === p) return null;
      p = up;
    }
  }
}

/** The bytes files of these sizes take on disk, rounded up to whole blocks, plus a block for their folder. */
export function diskBytes(sizes: readonly number[], blockSize = 4096): number {
  const bs = Math.max(512, blockSize);
  return sizes.reduce((n, s) => n + Math.ceil(s / bs) * bs, 0) + bs;
}

export function byteLength(data: FileData): number {
  if (typeof data === 'string') return Buffer.byteLength(data, 'utf8');
  if (data instanceof Uint8Array) return data.byteLength;
  return data.reduce((n, c) => n + c.byteLength, 0);
}

const REASONS: Record<string, string> = {
  ENOSPC: 'disk full',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large for the filesystem',
  EIO: 'I/O error',
  EROFS: 'read-only filesystem',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
};

/** A folder that could not be written: why, where, how much it needed and how much was free. */
export class DiskWriteError extends Error {
  constructor(
    message: string,
    /** The errno code: ENOSPC, EDQUOT, EIO, ... */
    readonly code: string,
    /** The destination folder. */
    readonly path: string,
    readonly neededBytes: number,
    /** Free bytes on the destination's filesystem after the failed write was cleaned up; null when unknown. */
    readonly freeBytes: number | null,
    /** Refused before writing anything (the free space was known to be short). */
    readonly early: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DiskWriteError';
  }
}

/** "disk full at /x (needs 12.3 MiB, 1.1 MiB free)"; noInodes: the filesystem ran out of inodes, not bytes. */
export function diskMessage(code: string, path: string, needed: number, free: number | null, noInodes = false): string {
  const reason = code === 'ENOSPC' && noInodes ? 'disk full (no free inodes)' : (REASONS[code] ?? `write error (${code})`);
  return `${reason} at ${path} (needs ${formatBytes(needed)}, ${free === null ? 'unknown' : formatBytes(free)} free)`;
}

function errnoCode(e: unknown): string | null {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : null;
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const TEMP_RE = /^\.(.+)\.(partial|old)-(\d+)$/;

/**
 * Cleans what writers that died mid-write left in a folder: temporaries of
 * dead processes are removed; a destination moved aside by a writer that died
 * before putting the new one in place is moved back.
 */
export async function sweepStaleTemporaries(parent: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(parent);
  } catch {
    return;
  }
  for (const n of names) {
    const m = TEMP_RE.exec(n);
    if (!m || processAlive(Number(m[3]))) continue;
    const p = join(parent, n);
    const dest = join(parent, m[1]);
    try {
      if (m[2] === 'old' && !(await pathExists(dest))) await rename(p, dest);
      else await rm(p, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
}

async function writeFileSynced(path: string, data: FileData): Promise<void> {
  let fh: FileHandle | null = null;
  try {
    fh = await open(path, 'wx');
    const chunks = typeof data === 'string' ? [Buffer.from(data, 'utf8')] : data instanceof Uint8Array ? [data] : data;
    for (const chunk of chunks) {
      let done = 0;
      while (done < chunk.byteLength) {
        const { bytesWritten } = await fh.write(chunk, done, chunk.byteLength - done);
        if (bytesWritten <= 0) throw Object.assign(new Error(`writing ${path} made no progress`), { code: 'ENOSPC' });
        done += bytesWritten;
      }
    }
    await fh.sync();
    await fh.close();
    fh = null;
  } finally {
    if (fh) await fh.close().catch(() => undefined);
  }
}

/** fsync a folder so that the entries created or renamed in it survive a crash (best effort where unsupported). */
export async function syncFolder(dir: string): Promise<void> {
  let dh: FileHandle | null = null;
  try {
    dh = await open(dir, 'r');
    await dh.sync();
  } catch (e) {
    const code = errnoCode(e);
    // Some filesystems cannot fsync a folder; only a real I/O failure matters.
    if (code === 'EIO' || code === 'ENOSPC' || code === 'EDQUOT') throw e;
  } finally {
    if (dh) await dh.close().catch(() => undefined);
  }
}

export interface WriteFolderOptions {
  /** The start of the error message: "checkpoint not written", "model not saved". */
  what: string;
  /** Appended to the error message after "; " (computed when the error happens). */
  note?: () => string | Promise<string>;
  /** Compare the free space with the bytes needed first, and refuse early (default true). */
  precheck?: boolean;
  /** Called when the precheck finds too little room: free some (return true to check again). */
  makeRoom?: (needed: number, free: number) => Promise<boolean>;
}

/**
 * Writes `files` as the folder `dest`, whole or not at all. An existing
 * `dest` is replaced only once the new folder is complete and durable (it is
 * moved aside, the new folder renamed in, and the old one removed). Returns
 * the bytes written. Throws DiskWriteError on a filesystem error, after
 * removing the temporary: dest and its siblings are untouched.
 */
export async function writeFolderAtomic(destIn: string, files: readonly FolderFile[], o: WriteFolderOptions): Promise<number> {
  const dest = resolve(destIn);
  const parent = dirname(dest);
  const base = basename(dest);
  const tmp = join(parent, `.${base}.partial-${process.pid}`);
  const aside = join(parent, `.${base}.old-${process.pid}`);
  const sizes = files.map((f) => byteLength(f.data));
  const total = sizes.reduce((a, b) => a + b, 0);
  let needed = diskBytes(sizes);

  const fail = async (code: string, early: boolean, cause?: unknown, noInodes = false): Promise<never> => {
    const fs = await freeSpace(parent);
    const note = o.note ? await Promise.resolve(o.note()).catch(() => '') : '';
    const msg = `${o.what}: ${diskMessage(code, dest, needed, fs?.free ?? null, noInodes)}${note ? `; ${note}` : ''}`;
    throw new DiskWriteError(msg, code, dest, needed, fs?.free ?? null, early, cause === undefined ? undefined : { cause });
  };

  try {
    await mkdir(parent, { recursive: true });
    await sweepStaleTemporaries(parent);
    await rm(tmp, { recursive: true, force: true });
  } catch (e) {
    const code = errnoCode(e);
    if (code) await fail(code, true, e);
    throw e;
  }

  if (o.precheck !== false) {
    for (let tries = 0; ; tries++) {
      const fs = await freeSpace(parent);
      if (!fs) break;
      needed = diskBytes(sizes, fs.blockSize);
      if (fs.free >= needed) break;
      if (tries === 0 && o.makeRoom && (await o.makeRoom(needed, fs.free))) continue;
      await fail('ENOSPC', true);
    }
  }

  let movedAside = false;
  try {
    await mkdir(tmp);
    const subfolders = [...new Set(files.map((f) => dirname(join(tmp, f.name))).filter((d) => d !== tmp))];
    for (const d of subfolders) await mkdir(d, { recursive: true });
    for (let i = 0; i < files.length; i++) await writeFileSynced(join(tmp, files[i].name), files[i].data);
    for (const d of subfolders) await syncFolder(d);
    await syncFolder(tmp);
    try {
      await rename(tmp, dest);
    } catch (e) {
      const code = errnoCode(e);
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOTDIR' && code !== 'EISDIR') throw e;
      // dest holds something: move it aside, put the new folder in, then drop the old one.
      await rm(aside, { recursive: true, force: true });
      await rename(dest, aside);
      movedAside = true;
      await rename(tmp, dest);
    }
    await syncFolder(parent);
  } catch (e) {
    const code = errnoCode(e);
    // Out of inodes rather than bytes? Only visible before the temporary is removed.
    const noInodes = code === 'ENOSPC' && (await freeSpace(parent))?.freeInodes === 0;
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    if (movedAside && !(await pathExists(dest))) await rename(aside, dest).catch(() => undefined);
    if (code) await fail(code, false, e, noInodes);
    throw e;
  }
  if (movedAside) await rm(aside, { recursive: true, force: true }).catch(() => undefined);
  return total;
}
