// Opening the store: migrations from every earlier version, a newer file
// refused, a corrupt file moved aside, WAL and foreign keys on.
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';

import { databaseFile } from '../../../../electron/services/paths.js';
import { DatabaseTooNewError, MIGRATIONS, RunStore, SCHEMA_VERSION, openDatabase, schemaVersion } from '../../../../electron/services/store/index.js';

const tempDir = () => mkdtempSync(join(tmpdir(), 'spw-store-'));

const tables = (db: Database.Database) =>
  (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((r) => r.name);

describe('openDatabase', () => {
  it('creates a fresh database at the latest version, in WAL mode with foreign keys', () => {
    const dir = tempDir();
    const store = RunStore.open(dir);
    expect(store.file).toBe(databaseFile(dir));
    expect(schemaVersion(store.db)).toBe(SCHEMA_VERSION);
    expect(SCHEMA_VERSION).toBe(MIGRATIONS.length);
    expect(store.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(store.db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(tables(store.db)).toEqual(
      ['artifacts', 'checkpoints', 'eval_metrics', 'logs', 'runs', 'settings', 'step_metrics', 'system_samples', 'tier_stats'].sort(),
    );
    const strict = store.db.prepare("SELECT name FROM pragma_table_list WHERE schema = 'main' AND name NOT LIKE 'sqlite_%' AND strict = 0").all();
    expect(strict).toEqual([]);
    store.close();
  });

  it('upgrades a file from every earlier version, keeping its data', () => {
    for (let v = 1; v < SCHEMA_VERSION; v++) {
      const dir = tempDir();
      const old = openDatabase(databaseFile(dir), { migrations: MIGRATIONS.slice(0, v) }).db;
      expect(schemaVersion(old)).toBe(v);
      old.prepare(
        `INSERT INTO runs (id, name, model, dataset, task, config, status, created_at, steps_planned, folder)
         VALUES ('r1', 'old run', '/m', '/d.jsonl', 'sst2', '{"options":{}}', 'completed', 1, 10, '/runs/r1')`,
      ).run();
      old.prepare("INSERT INTO step_metrics (run_id, step, time, loss, skipped, seed) VALUES ('r1', 1, 2, 0.5, 0, '42')").run();
      old.prepare("INSERT INTO settings (key, value) VALUES ('theme', '\"dark\"')").run();
      old.close();

      const store = RunStore.open(dir);
      expect(schemaVersion(store.db)).toBe(SCHEMA_VERSION);
      const run = store.getRun('r1');
      expect(run).toMatchObject({ name: 'old run', status: 'completed', stepsPlanned: 10, ownerPid: null });
      expect(store.getMetrics('r1').steps).toEqual([expect.objectContaining({ step: 1, loss: 0.5, seed: '42', skipped: false })]);
      expect(store.getSetting('theme')).toBe('dark');
      store.insertSystemSamples([{ runId: 'r1', time: 5, cpuPercent: 12.5, payload: { cpu: 12.5 } }]);
      expect(store.systemSamples('r1')).toEqual([expect.objectContaining({ cpuPercent: 12.5, payload: { cpu: 12.5 } })]);
      store.close();
    }
  });

  it('refuses a database written by a newer Spillway and leaves it untouched', () => {
    const dir = tempDir();
    RunStore.open(dir).close();
    const raw = new Database(databaseFile(dir));
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    const before = readFileSync(databaseFile(dir));
    expect(() => RunStore.open(dir)).toThrow(DatabaseTooNewError);
    expect(() => RunStore.open(dir)).toThrow(/newer version of Spillway \(schema version 3; this version knows up to 2\)/);
    expect(readFileSync(databaseFile(dir)).equals(before)).toBe(true);
    expect(readdirSync(dir).filter((n) => n.includes('corrupt'))).toEqual([]);
  });

  it('moves a corrupt file aside with a timestamp and says so', () => {
    const dir = tempDir();
    const file = databaseFile(dir);
    const garbage = Buffer.from('this is not an SQLite database, just some bytes '.repeat(200));
    writeFileSync(file, garbage);
    const store = RunStore.open(dir);
    expect(store.notices).toHaveLength(1);
    expect(store.notices[0]).toMatch(/could not be read .* moved aside to .*spillway\.db\.corrupt-\d{4}-\d\d-\d\dT/);
    const aside = readdirSync(dir).filter((n) => n.startsWith('spillway.db.corrupt-'));
    expect(aside).toHaveLength(1);
    expect(readFileSync(join(dir, aside[0])).equals(garbage)).toBe(true);
    expect(schemaVersion(store.db)).toBe(SCHEMA_VERSION);
    expect(store.listRuns()).toEqual([]);
    store.close();
    expect(existsSync(file)).toBe(true);
  });
});
