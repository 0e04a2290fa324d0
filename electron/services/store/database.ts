// Opening the database: its integrity checked first (PRAGMA quick_check on a
// read-only connection), then WAL, foreign keys, numbered migrations each in
// a transaction that sets PRAGMA user_version. A database written by a newer
// Spillway is refused untouched; a damaged or unreadable one is moved aside
// with a timestamp (never silently replaced), what SQLite can still read is
// copied into a new one, and the notice names both files and what was saved.
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

import Database from 'better-sqlite3';
import type { Database as Db } from 'better-sqlite3';

import { runsRoot } from '../paths.js';
import { MIGRATIONS } from './migrations/index.js';
import type { Migration } from './migrations/index.js';
import { salvage, stepRanges, type RecoveryReport } from './recover.js';

export class DatabaseTooNewError extends Error {
  constructor(readonly file: string, readonly fileVersion: number, readonly appVersion: number) {
    super(
      `${file} was written by a newer version of Spillway (schema version ${fileVersion}; this version knows up to ${appVersion}). ` +
        'Update Spillway, or choose another data folder (--data-dir or SPILLWAY_DATA_DIR); the file was left untouched.',
    );
    this.name = 'DatabaseTooNewError';
  }
}

export interface OpenedDatabase {
  db: Db;
  /** Things the person should be told, e.g. that a damaged file was moved aside and what was recovered. */
  notices: string[];
  /**
   * A copy of the write-ahead log as it was found at open (null when there was none worth keeping): the
   * store keeps it when its run folders show that the log lost committed rows, and deletes it otherwise.
   */
  walCopy: string | null;
  /** The file was damaged and this database was made from what could be read. */
  recovered: boolean;
}

export interface OpenOptions {
  /** The schema steps to apply (tests pass a prefix to build older files). */
  migrations?: readonly Migration[];
}

/** What `PRAGMA quick_check` found wrong, as SQLite's own corruption errors are shaped. */
export class DatabaseDamagedError extends Error {
  readonly code = 'SQLITE_CORRUPT';
  constructor(readonly problems: string[]) {
    super(problems.slice(0, 3).join('; ') + (problems.length > 3 ? `; and ${problems.length - 3} more` : ''));
    this.name = 'DatabaseDamagedError';
  }
}

const CORRUPTION_CODES = /^SQLITE_(NOTADB|CORRUPT)/;
/** The most problems quick_check lists before stopping (one is enough to know; a few say where). */
const QUICK_CHECK_LIMIT = 10;
/** A write-ahead log holds a 32-byte header, then frames: anything longer has rows not yet in the main file. */
const WAL_HEADER_BYTES = 32;

function isCorruption(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && CORRUPTION_CODES.test(code);
}

export function schemaVersion(db: Db): number {
  return db.pragma('user_version', { simple: true }) as number;
}

export function migrate(db: Db, file: string, migrations: readonly Migration[]): void {
  const current = schemaVersion(db);
  const latest = migrations.length ? migrations[migrations.length - 1].version : 0;
  if (current > latest) throw new DatabaseTooNewError(file, current, latest);
  for (const m of migrations) {
    if (m.version <= current) continue;
    // Two processes opening a new file at once (a CLI run beside the app) both see version 0: the
    // write lock is taken first and the version read again under it, so the second skips what the
    // first applied instead of failing on "table runs already exists".
    db.transaction(() => {
      if (schemaVersion(db) >= m.version) return;
      m.up(db);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
}

/**
 * Checks an existing file on a read-only connection before anything writes to it: PRAGMA quick_check
 * reads every page and verifies each b-tree's structure and records (not index-to-table consistency,
 * which integrity_check adds at several times the cost). Read-only, so closing it never checkpoints
 * the write-ahead log into a damaged file: what is moved aside is what was found.
 */
function checkIntegrity(file: string): void {
  if (!existsSync(file)) return;
  let db: Db;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (e) {
    if (isCorruption(e)) throw e;
    // A read-only open can fail where a read-write one works (no -shm beside a -wal): the next open checks.
    return;
  }
  try {
    const rows = db.pragma(`quick_check(${QUICK_CHECK_LIMIT})`) as { quick_check: string }[];
    // One line per problem, without the banner SQLite puts before the first ("*** in database main ***").
    const problems = rows.map((r) => r.quick_check.replace(/\*\*\* in database \w+ \*\*\*/g, '').replace(/\s+/g, ' ').trim()).filter((m) => m && m !== 'ok');
    if (problems.length) throw new DatabaseDamagedError(problems);
  } finally {
    db.close();
  }
}

function openAndMigrate(file: string, migrations: readonly Migration[]): Db {
  const db = new Database(file);
  try {
    // First: switching to WAL and migrating wait for another process that holds the lock.
    db.pragma('busy_timeout = 5000');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    // Reading the schema touches every page of sqlite_master: a file that is not a database fails here.
    db.prepare('SELECT count(*) FROM sqlite_master').get();
    migrate(db, file, migrations);
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-');
}

function moveAside(file: string): string {
  const aside = `${file}.corrupt-${stamp()}`;
  renameSync(file, aside);
  for (const suffix of ['-wal', '-shm']) {
    if (existsSync(file + suffix)) renameSync(file + suffix, aside + suffix);
  }
  return aside;
}

/** Copies a write-ahead log that holds frames, before SQLite reads it (and drops whatever follows a damaged frame). */
function copyWal(file: string): string | null {
  const wal = `${file}-wal`;
  const st = statSync(wal, { throwIfNoEntry: false });
  if (!st || st.size <= WAL_HEADER_BYTES) return null;
  const copy = `${wal}.at-open-${process.pid}`;
  try {
    copyFileSync(wal, copy);
  } catch (e) {
    // Another process closed the database between the stat and the copy: SQLite checkpointed the
    // log into the file and removed it, so there is nothing left to keep.
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  return copy;
}

/** Moves a copied write-ahead log next to the database under a name that says why it was kept. */
export function keepWalCopy(file: string, copy: string): string {
  const kept = `${file}-wal.damaged-${stamp()}`;
  renameSync(copy, kept);
  return kept;
}

export function openDatabase(file: string, options: OpenOptions = {}): OpenedDatabase {
  const migrations = options.migrations ?? MIGRATIONS;
  mkdirSync(dirname(file), { recursive: true });
  // A recovery cut short leaves its unfinished copy: the damaged file it came from is still aside.
  rmSync(`${file}.recovering`, { force: true });
  const walCopy = copyWal(file);
  try {
    checkIntegrity(file);
    return { db: openAndMigrate(file, migrations), notices: [], walCopy, recovered: false };
  } catch (e) {
    if (walCopy) rmSync(walCopy, { force: true });
    if (!isCorruption(e)) throw e;
    return { ...recoverDatabase(file, e as Error, migrations), walCopy: null, recovered: true };
  }
}

/**
 * Moves the damaged file aside (with its write-ahead log), copies what SQLite can read into a new
 * database beside it, and opens that. The notice names both files and says what was recovered.
 */
function recoverDatabase(file: string, cause: Error, migrations: readonly Migration[]): { db: Db; notices: string[] } {
  const aside = moveAside(file);
  const fresh = `${file}.recovering`;
  const dst = openAndMigrate(fresh, migrations);
  let src: Db | null = null;
  try {
    src = new Database(aside, { readonly: true, fileMustExist: true });
    src.prepare('SELECT count(*) FROM sqlite_master').get();
  } catch {
    src?.close();
    src = null;
  }
  let report: RecoveryReport;
  try {
    report = salvage(src, dst, runsRoot(dirname(file)));
  } finally {
    src?.close();
    dst.close();
  }
  renameSync(fresh, file);
  const what = cause instanceof DatabaseDamagedError ? cause.message : `${cause.message}`;
  const notice =
    `the database ${file} is damaged (${what}); it was moved aside to ${aside}` +
    (src === null ? ' (not readable at all)' : '') +
    ` and a new database was made from what could still be read: ${describeRecovery(report)}`;
  return { db: openAndMigrate(file, migrations), notices: [notice] };
}

const TABLE_LABEL: Record<string, string> = {
  runs: 'runs',
  settings: 'settings',
  step_metrics: 'step rows',
  eval_metrics: 'evaluation rows',
  checkpoints: 'checkpoint records',
  logs: 'log lines',
  artifacts: 'saved-model records',
  system_samples: 'telemetry samples',
  tier_stats: 'tier statistics',
};

function describeRecovery(r: RecoveryReport): string {
  const parts: string[] = [];
  const copied = r.tables.filter((t) => t.copied > 0).map((t) => `${t.copied} ${TABLE_LABEL[t.table] ?? t.table}`);
  parts.push(copied.length ? `recovered ${copied.join(', ')}` : 'no rows could be read');
  if (r.rebuiltRuns.length) parts.push(`${r.rebuiltRuns.length} run${r.rebuiltRuns.length === 1 ? '' : 's'} rebuilt from ${r.rebuiltRuns.length === 1 ? 'its' : 'their'} run folder (${r.rebuiltRuns.join(', ')}; marked interrupted)`);
  const damaged = r.tables.filter((t) => t.unreadable > 0).map((t) => TABLE_LABEL[t.table] ?? t.table);
  if (damaged.length) parts.push(`unreadable pages skipped in ${damaged.join(', ')}`);
  for (const [id, steps] of r.missingSteps) parts.push(`run ${id} has no rows for step${steps.length === 1 ? '' : 's'} ${stepRanges(steps)}`);
  for (const d of r.droppedRuns) parts.push(`${d.rows} rows of run ${d.id} were dropped (its record was lost and its folder does not describe it)`);
  const refused = r.tables.filter((t) => t.dropped > 0).map((t) => `${t.dropped} ${TABLE_LABEL[t.table] ?? t.table}`);
  if (refused.length) parts.push(`damaged values refused: ${refused.join(', ')}`);
  return parts.join('; ');
}
