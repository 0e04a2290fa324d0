// Runs and what a training run produces: step and eval metrics, checkpoints,
// log lines; plus the app's settings.
import type { Migration } from './types.js';

export const migration001: Migration = {
  version: 1,
  name: 'initial',
  up(db) {
    db.exec(`
      CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        model TEXT NOT NULL,
        dataset TEXT NOT NULL,
        task TEXT NOT NULL,
        config TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('created', 'running', 'completed', 'stopped', 'failed', 'interrupted')),
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        ended_at INTEGER,
        error TEXT,
        resumed_from TEXT,
        steps_planned INTEGER NOT NULL,
        steps_done INTEGER NOT NULL DEFAULT 0,
        final_metrics TEXT,
        folder TEXT NOT NULL
      ) STRICT;
      CREATE INDEX runs_created ON runs (created_at);
      CREATE INDEX runs_status ON runs (status);

      CREATE TABLE step_metrics (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        time INTEGER NOT NULL,
        loss REAL,
        loss_plus REAL,
        loss_minus REAL,
        projected_grad REAL,
        lr REAL,
        step_ms REAL,
        tokens_per_s REAL,
        skipped INTEGER NOT NULL,
        seed TEXT NOT NULL,
        PRIMARY KEY (run_id, step)
      ) STRICT, WITHOUT ROWID;

      CREATE TABLE eval_metrics (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        time INTEGER NOT NULL,
        loss REAL,
        accuracy REAL,
        examples INTEGER NOT NULL,
        eval_ms REAL,
        PRIMARY KEY (run_id, step)
      ) STRICT, WITHOUT ROWID;

      CREATE TABLE checkpoints (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        path TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (run_id, step)
      ) STRICT;

      CREATE TABLE logs (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        time INTEGER NOT NULL,
        level TEXT NOT NULL CHECK (level IN ('info', 'error')),
        message TEXT NOT NULL
      ) STRICT;
      CREATE INDEX logs_run ON logs (run_id, id);

      CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) STRICT;
    `);
  },
};
