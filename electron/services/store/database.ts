// Opening the database: WAL, foreign keys, numbered migrations each in a
// transaction that sets PRAGMA user_version. A database written by a newer
// Spillway is refused untouched; an unreadable file is moved aside with a
// timestamp (never silently replaced) and a fresh one started.
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';

import Database from 'better-sqlite3';
import type { Database as Db } from 'better-sqlite3';

import { MIGRATIONS } from './migrations/index.js';
import type { Migration } from './migrations/index.js';

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
  /** Things the person should be told, e.g. that a corrupt file was moved aside. */
  notices: string[];
}

export interface OpenOptions {
  /** The schema steps to apply (tests pass a prefix to build older files). */
  migrations?: readonly Migration[];
}

const CORRUPTION_CODES = /^SQLITE_(NOTADB|CORRUPT)/;

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
    db.transaction(() => {
      m.up(db);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
}

function openAndMigrate(file: string, migrations: readonly Migration[]): Db {
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    // Reading the schema touches every page of sqlite_master: a damaged file fails here.
    db.prepare('SELECT count(*) FROM sqlite_master').get();
    migrate(db, file, migrations);
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

function moveAside(file: string): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const aside = `${file}.corrupt-${stamp}`;
  renameSync(file, aside);
  for (const suffix of ['-wal', '-shm']) {
    if (existsSync(file + suffix)) renameSync(file + suffix, aside + suffix);
  }
  return aside;
}

export function openDatabase(file: string, options: OpenOptions = {}): OpenedDatabase {
  const migrations = options.migrations ?? MIGRATIONS;
  mkdirSync(dirname(file), { recursive: true });
  try {
    return { db: openAndMigrate(file, migrations), notices: [] };
  } catch (e) {
    if (!isCorruption(e)) throw e;
    const aside = moveAside(file);
    const notice = `the database ${file} could not be read (${(e as Error).message}); it was moved aside to ${aside} and a new, empty database was started`;
    return { db: openAndMigrate(file, migrations), notices: [notice] };
  }
}
