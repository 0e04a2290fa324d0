// Copying what SQLite can still read out of a damaged database into a fresh
// one, table by table. A damaged b-tree page stops a scan, but a seek to a
// key beyond it descends through the intact interior pages and reads on: so
// each table is read in key order, and at an error the reader looks for the
// first key past the damage (doubling the step, then halving back) and
// carries on from there. Rows whose run lost its own row are kept when the
// run's folder can say what the run was (run.json, else its newest
// checkpoint); otherwise they are dropped, and the summary says so.

import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import type { Database as Db, Statement } from 'better-sqlite3';

import { respellRuns } from './migrations/004-one-spelling.js';
import { readFlushedStep, readRunRecord, recordFromCheckpoints } from './run-files.js';

/** Tables in the order they are copied (runs first: the others refer to it). */
const TABLES = ['runs', 'settings', 'step_metrics', 'eval_metrics', 'checkpoints', 'logs', 'artifacts', 'system_samples', 'tier_stats'] as const;
/** Tables keyed (run_id, step) without a rowid: read run by run. */
const PER_RUN = new Set<string>(['step_metrics', 'eval_metrics']);
/** Tables whose rows belong to a run (run_id NOT NULL, or nullable for system_samples). */
const RUN_CHILDREN = ['step_metrics', 'eval_metrics', 'checkpoints', 'logs', 'artifacts', 'system_samples', 'tier_stats'] as const;

const KEY_FLOOR = -(2 ** 53);
const KEY_CEILING = 2 ** 53;

export interface TableRecovery {
  table: string;
  /** Rows copied into the new database. */
  copied: number;
  /** Read errors met (each is an unreadable stretch stepped over, or a table that could not be read at all). */
  unreadable: number;
  /** Rows read but refused by the new schema (a damaged value), or orphans dropped. */
  dropped: number;
}

export interface RecoveryReport {
  tables: TableRecovery[];
  /** Runs whose own row was lost and was rebuilt from the run folder. */
  rebuiltRuns: string[];
  /** Runs whose rows were dropped (how many): their row was lost and their folder says nothing. */
  droppedRuns: { id: string; rows: number }[];
  /** Per run: step numbers up to the last one known (its row, or its folder's flushed-step) that are missing. */
  missingSteps: Map<string, number[]>;
}

type Row = Record<string, unknown>;

/** Iterates rows of `select` (which takes the last key read and returns rows past it, `_k` ascending), stepping over damage. */
function* readAround(select: Statement, peek: Statement, args: unknown[], onError: () => void): Generator<Row> {
  let after = KEY_FLOOR;
  const works = (k: number) => {
    try {
      peek.get(...args, k);
      return true;
    } catch {
      return false;
    }
  };
  for (;;) {
    try {
      for (const row of select.iterate(...args, after) as IterableIterator<Row>) {
        after = row._k as number;
        yield row;
      }
      return;
    } catch {
      onError();
      // The first key past `after` from which a seek reads again.
      let step = 1;
      while (after + step < KEY_CEILING && !works(after + step)) step *= 2;
      if (after + step >= KEY_CEILING) return;
      let bad = after + step / 2;
      let good = after + step;
      if (step === 1) bad = after;
      while (good - bad > 1) {
        const mid = Math.floor((bad + good) / 2);
        if (works(mid)) good = mid;
        else bad = mid;
      }
      // The damaged stretch holds keys up to `good`; the next read starts past it.
      after = good;
    }
  }
}

function columnsOf(db: Db, table: string): string[] {
  try {
    return (db.prepare(`SELECT name FROM pragma_table_info('${table}')`).all() as { name: string }[]).map((c) => c.name);
  } catch {
    return [];
  }
}

/** Run ids a table mentions, as far as a forward and a backward scan can read. */
function runIdsIn(src: Db, table: string): Set<string> {
  const ids = new Set<string>();
  for (const order of ['ASC', 'DESC']) {
    try {
      for (const r of src.prepare(`SELECT run_id FROM ${table} ORDER BY run_id ${order}, step ${order}`).iterate() as IterableIterator<{ run_id: string }>) ids.add(r.run_id);
    } catch {
      // Read as far as the damage; the other direction reads from the other end.
    }
  }
  return ids;
}

/**
 * Copies every readable row of `src` into `dst` (a fresh database at the latest schema, foreign keys off
 * while copying). `runsDir` is the data folder's runs/, where lost run rows are looked for.
 */
export function salvage(src: Db | null, dst: Db, runsDir: string): RecoveryReport {
  const report: RecoveryReport = { tables: [], rebuiltRuns: [], droppedRuns: [], missingSteps: new Map() };
  let present = new Set<string>();
  try {
    if (src) present = new Set((src.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name));
  } catch {
    // The schema itself is unreadable: nothing can be copied, runs are rebuilt from their folders.
  }
  const folders = existsSync(runsDir) ? readdirSync(runsDir).filter((n) => !n.startsWith('.')) : [];
  const knownRuns = new Set<string>(folders);

  dst.pragma('foreign_keys = OFF');
  const copy = dst.transaction(() => {
    for (const table of TABLES) {
      const t: TableRecovery = { table, copied: 0, unreadable: 0, dropped: 0 };
      report.tables.push(t);
      if (!src || !present.has(table)) {
        if (src && present.size === 0) t.unreadable++;
        continue;
      }
      const want = new Set(columnsOf(dst, table));
      const cols = columnsOf(src, table).filter((c) => want.has(c));
      if (cols.length === 0) {
        t.unreadable++;
        continue;
      }
      const list = cols.map((c) => `"${c}"`).join(', ');
      const insert = dst.prepare(`INSERT OR IGNORE INTO ${table} (${list}) VALUES (${cols.map(() => '?').join(', ')})`);
      const put = (row: Row) => {
        try {
          t.copied += insert.run(...cols.map((c) => row[c])).changes;
        } catch {
          t.dropped++;
        }
      };
      const onError = () => t.unreadable++;
      try {
        if (PER_RUN.has(table)) {
          const select = src.prepare(`SELECT step AS _k, ${list} FROM ${table} WHERE run_id = ? AND step > ? ORDER BY step`);
          const peek = src.prepare(`SELECT step FROM ${table} WHERE run_id = ? AND step > ? ORDER BY step LIMIT 1`);
          const ids = new Set([...knownRuns, ...runIdsIn(src, table)]);
          // Without a rowid, interior pages hold rows too: the one between two leaves is reached only by a scan
          // that climbs back to it, so each run is also read backwards from its end until the damage.
          const backwards = src.prepare(`SELECT ${list} FROM ${table} WHERE run_id = ? ORDER BY step DESC`);
          for (const id of [...ids].sort()) {
            for (const row of readAround(select, peek, [id], onError)) put(row);
            try {
              for (const row of backwards.iterate(id) as IterableIterator<Row>) put(row);
            } catch {
              // Stopped at the damage, which the forward read counted.
            }
          }
        } else {
          const select = src.prepare(`SELECT rowid AS _k, ${list} FROM ${table} WHERE rowid > ? ORDER BY rowid`);
          const peek = src.prepare(`SELECT rowid FROM ${table} WHERE rowid > ? ORDER BY rowid LIMIT 1`);
          for (const row of readAround(select, peek, [], onError)) {
            put(row);
            if (table === 'runs' && typeof row.id === 'string') knownRuns.add(row.id);
          }
        }
      } catch {
        t.unreadable++;
      }
    }
    rebuildLostRuns(dst, runsDir, folders, report);
    // Rows from a file older than schema version 4, and runs rebuilt from folders written before it,
    // take the spelling the new file's readers expect.
    respellRuns(dst);
  });
  copy();
  dst.pragma('foreign_keys = ON');
  for (const r of dst.prepare('SELECT id, steps_done, folder FROM runs').all() as { id: string; steps_done: number; folder: string }[]) {
    const upTo = Math.max(r.steps_done, readFlushedStep(r.folder) ?? 0);
    const have = new Set((dst.prepare('SELECT step FROM step_metrics WHERE run_id = ?').all(r.id) as { step: number }[]).map((x) => x.step));
    const missing: number[] = [];
    for (let s = 1; s <= upTo; s++) if (!have.has(s)) missing.push(s);
    if (missing.length) report.missingSteps.set(r.id, missing);
  }
  return report;
}

/** "3, 7–9, 12" */
export function stepRanges(steps: readonly number[], max = 6): string {
  const ranges: string[] = [];
  for (let i = 0; i < steps.length; ) {
    let j = i;
    while (j + 1 < steps.length && steps[j + 1] === steps[j] + 1) j++;
    ranges.push(i === j ? `${steps[i]}` : `${steps[i]}–${steps[j]}`);
    i = j + 1;
  }
  return ranges.length > max ? `${ranges.slice(0, max).join(', ')}, …` : ranges.join(', ');
}

/** Rows whose run lost its row: the run is rebuilt from its folder, or its rows are dropped. */
function rebuildLostRuns(dst: Db, runsDir: string, folders: string[], report: RecoveryReport): void {
  const have = new Set((dst.prepare('SELECT id FROM runs').all() as { id: string }[]).map((r) => r.id));
  const wanted = new Set<string>(folders.filter((f) => !have.has(f)));
  for (const table of RUN_CHILDREN) {
    for (const r of dst.prepare(`SELECT DISTINCT run_id FROM ${table} WHERE run_id IS NOT NULL`).all() as { run_id: string }[]) {
      if (!have.has(r.run_id)) wanted.add(r.run_id);
    }
  }
  const insertRun = dst.prepare(
    `INSERT INTO runs (id, name, model, dataset, task, config, status, created_at, error, steps_planned, steps_done, folder)
     VALUES (@id, @name, @model, @dataset, @task, @config, 'interrupted', @createdAt, @error, @stepsPlanned, @stepsDone, @folder)`,
  );
  for (const id of [...wanted].sort()) {
    const folder = join(runsDir, id);
    const record = readRunRecord(folder) ?? recordFromCheckpoints(folder);
    if (!record || record.id !== id) {
      const rows = RUN_CHILDREN.reduce((n, table) => n + dst.prepare(`DELETE FROM ${table} WHERE run_id = ?`).run(id).changes, 0);
      if (rows > 0) report.droppedRuns.push({ id, rows });
      continue;
    }
    const last = dst.prepare('SELECT max(step) AS s FROM step_metrics WHERE run_id = ?').get(id) as { s: number | null };
    insertRun.run({
      ...record,
      config: JSON.stringify(record.config),
      error: 'its record was lost when the database was damaged; rebuilt from its run folder (its status and final metrics are unknown)',
      stepsDone: last.s ?? 0,
    });
    report.rebuiltRuns.push(id);
  }
}
