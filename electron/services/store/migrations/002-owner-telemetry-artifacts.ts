// The process supervising a run (so recovery leaves other live processes'
// runs alone), system samples and tier statistics from telemetry, and the
// artefacts a run leaves behind (saved models).
import type { Migration } from './types.js';

export const migration002: Migration = {
  version: 2,
  name: 'owner, telemetry, artefacts',
  up(db) {
    db.exec(`
      ALTER TABLE runs ADD COLUMN owner_pid INTEGER;

      CREATE TABLE system_samples (
        id INTEGER PRIMARY KEY,
        run_id TEXT REFERENCES runs (id) ON DELETE CASCADE,
        time INTEGER NOT NULL,
        cpu_percent REAL,
        ram_used_bytes INTEGER,
        gpu_percent REAL,
        gpu_mem_used_bytes INTEGER,
        payload TEXT NOT NULL
      ) STRICT;
      CREATE INDEX system_samples_run_time ON system_samples (run_id, time);

      CREATE TABLE tier_stats (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        time INTEGER NOT NULL,
        tier TEXT NOT NULL,
        resident_bytes INTEGER,
        read_bytes INTEGER,
        written_bytes INTEGER,
        payload TEXT NOT NULL
      ) STRICT;
      CREATE INDEX tier_stats_run_step ON tier_stats (run_id, step);

      CREATE TABLE artifacts (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('model')),
        path TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (run_id, path)
      ) STRICT;
    `);
  },
};
