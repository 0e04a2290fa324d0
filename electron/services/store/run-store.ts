// The run store: one SQLite file, cached prepared statements, plain objects
// in and out. Metric rows normally arrive through MetricWriter in batches.
import type { Database as Db, Statement } from 'better-sqlite3';

import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { databaseFile, runsRoot } from '../paths.js';
import { keepWalCopy, openDatabase } from './database.js';
import type { OpenOptions } from './database.js';
import { stepRanges } from './recover.js';
import { readFlushedStep, readRunRecord, writeFlushedStep, writeRunRecord } from './run-files.js';
import type {
  ArtifactRecord,
  CheckpointRecord,
  EvalMetric,
  LogLine,
  NewRun,
  RunMetrics,
  RunPatch,
  RunRecord,
  RunStatus,
  StepIo,
  StepMetric,
  SystemSample,
  TierStat,
} from './types.js';

/** Log lines kept per run; older ones are pruned as new ones arrive. */
export const LOG_LINES_KEPT = 1000;

interface RunRow {
  id: string;
  name: string;
  model: string;
  dataset: string;
  task: string;
  config: string;
  status: RunStatus;
  created_at: number;
  started_at: number | null;
  ended_at: number | null;
  error: string | null;
  resumed_from: string | null;
  steps_planned: number;
  steps_done: number;
  final_metrics: string | null;
  folder: string;
  owner_pid: number | null;
  plan: string | null;
}

const RUN_COLUMNS: Record<keyof RunPatch, keyof RunRow> = {
  name: 'name',
  model: 'model',
  dataset: 'dataset',
  task: 'task',
  config: 'config',
  status: 'status',
  startedAt: 'started_at',
  endedAt: 'ended_at',
  error: 'error',
  resumedFrom: 'resumed_from',
  stepsPlanned: 'steps_planned',
  stepsDone: 'steps_done',
  finalMetrics: 'final_metrics',
  folder: 'folder',
  ownerPid: 'owner_pid',
  plan: 'plan',
};

/** Patch fields kept as JSON text. */
const JSON_COLUMNS = new Set<keyof RunPatch>(['config', 'finalMetrics', 'plan']);

const json = (v: unknown): string => JSON.stringify(v ?? null);

function toRun(r: RunRow): RunRecord {
  return {
    id: r.id,
    name: r.name,
    model: r.model,
    dataset: r.dataset,
    task: r.task,
    config: JSON.parse(r.config) as Record<string, unknown>,
    status: r.status,
    createdAt: r.created_at,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    error: r.error,
    resumedFrom: r.resumed_from,
    stepsPlanned: r.steps_planned,
    stepsDone: r.steps_done,
    finalMetrics: r.final_metrics === null ? null : (JSON.parse(r.final_metrics) as Record<string, unknown>),
    folder: r.folder,
    ownerPid: r.owner_pid,
    plan: r.plan === null || r.plan === undefined ? null : (JSON.parse(r.plan) as Record<string, unknown>),
  };
}

interface StepRow {
  step: number;
  time: number;
  loss: number | null;
  loss_plus: number | null;
  loss_minus: number | null;
  projected_grad: number | null;
  lr: number | null;
  step_ms: number | null;
  tokens_per_s: number | null;
  skipped: number;
  seed: string;
  h2d_bytes: number | null;
  d2h_bytes: number | null;
  ssd_read_bytes: number | null;
  ssd_write_bytes: number | null;
  io_wait_ms: number | null;
}

/** A step's I/O columns, or null when the step recorded none. */
function toStepIo(r: StepRow): StepIo | null {
  if (r.h2d_bytes === null && r.d2h_bytes === null && r.ssd_read_bytes === null && r.ssd_write_bytes === null && r.io_wait_ms === null) return null;
  return {
    h2dBytes: r.h2d_bytes ?? 0,
    d2hBytes: r.d2h_bytes ?? 0,
    ssdReadBytes: r.ssd_read_bytes ?? 0,
    ssdWriteBytes: r.ssd_write_bytes ?? 0,
    waitMs: r.io_wait_ms ?? 0,
  };
}

const toStep = (r: StepRow): StepMetric => ({
  step: r.step,
  time: r.time,
  loss: r.loss,
  lossPlus: r.loss_plus,
  lossMinus: r.loss_minus,
  projectedGrad: r.projected_grad,
  lr: r.lr,
  stepMs: r.step_ms,
  tokensPerS: r.tokens_per_s,
  skipped: r.skipped !== 0,
  seed: r.seed,
  io: toStepIo(r),
});

interface EvalRow {
  step: number;
  time: number;
  loss: number | null;
  accuracy: number | null;
  examples: number;
  eval_ms: number | null;
  exact_match: number | null;
  f1: number | null;
}

const toEval = (r: EvalRow): EvalMetric => ({
  step: r.step,
  time: r.time,
  loss: r.loss,
  accuracy: r.accuracy,
  examples: r.examples,
  evalMs: r.eval_ms,
  exactMatch: r.exact_match,
  f1: r.f1,
});

/** SQLite stores NaN as NULL; say so explicitly rather than rely on the driver. */
const finite = (x: number | null | undefined): number | null => (x === null || x === undefined || Number.isNaN(x) ? null : x);

/** A byte count for an INTEGER column of a STRICT table (rounded; null when not finite). */
const bytes = (x: number | null | undefined): number | null => (typeof x === 'number' && Number.isFinite(x) ? Math.round(x) : null);

export class RunStore {
  private readonly statements = new Map<string, Statement>();
  /** Run folders by id, for the flushed-step notes the metric writer asks for. */
  private readonly folders = new Map<string, string>();

  constructor(
    readonly db: Db,
    readonly file: string,
    readonly notices: string[] = [],
  ) {}

  /**
   * Opens (creating and migrating) the store in a data folder, then compares it with the run folders:
   * rows the folders recorded as committed but the database lacks (a damaged or lost write-ahead log)
   * are reported, and runs whose row is missing are registered again from their run.json.
   */
  static open(dataDir: string, options: OpenOptions = {}): RunStore {
    const file = databaseFile(dataDir);
    const { db, notices, walCopy, recovered } = openDatabase(file, options);
    const store = new RunStore(db, file, notices);
    // After a recovery its notice already names the missing steps: the folders' notes are only brought in line.
    const lost = store.compareWithRunFolders(runsRoot(dataDir), !recovered);
    if (walCopy && lost.length) {
      const kept = keepWalCopy(file, walCopy);
      notices.push(
        `the database ${file} lacks rows its run folders recorded as committed (${lost.join('; ')}): its write-ahead log was damaged or lost ` +
          `(SQLite keeps the transactions before the first damaged frame and drops the rest). The log as found was kept as ${kept}.`,
      );
    } else {
      if (walCopy) rmSync(walCopy, { force: true });
      if (lost.length) notices.push(`the database ${file} lacks rows its run folders recorded as committed (${lost.join('; ')}); no write-ahead log was left to keep.`);
    }
    return store;
  }

  /** What the run folders know that the database does not; returns one phrase per loss. */
  private compareWithRunFolders(runsDir: string, report: boolean): string[] {
    const lost: string[] = [];
    const known = new Set<string>();
    for (const run of this.listRuns()) {
      known.add(run.id);
      const flushed = readFlushedStep(run.folder);
      const last = this.lastStep(run.id);
      if (flushed === null || flushed <= last) continue;
      if (!report) {
        writeFlushedStep(run.folder, last);
        continue;
      }
      const range = stepRanges(Array.from({ length: flushed - last }, (_, i) => last + 1 + i));
      lost.push(`run ${run.id}: steps ${range}`);
      this.addLogs(run.id, [{ time: Date.now(), level: 'error', message: `the metrics of steps ${range} were written but are missing from the database (its write-ahead log was damaged or lost)` }]);
      writeFlushedStep(run.folder, last);
    }
    for (const id of existsSync(runsDir) ? readdirSync(runsDir) : []) {
      if (known.has(id) || this.getRun(id)) continue;
      const record = readRunRecord(join(runsDir, id));
      if (!record || record.id !== id) continue;
      this.createRun({ ...record, status: 'interrupted' });
      this.updateRun(id, { error: 'its record was missing from the database; registered again from its run folder (its metrics and status are unknown)' });
      lost.push(`run ${id}: its record (registered again from ${join(runsDir, id, 'run.json')})`);
    }
    return lost;
  }

  private stmt(sql: string): Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  close(): void {
    this.statements.clear();
    if (this.db.open) this.db.close();
  }

  // ---------------------------------------------------------------- runs

  createRun(r: NewRun): RunRecord {
    const createdAt = r.createdAt ?? Date.now();
    this.stmt(
      `INSERT INTO runs (id, name, model, dataset, task, config, status, created_at, started_at, resumed_from, steps_planned, folder, owner_pid, plan)
       VALUES (@id, @name, @model, @dataset, @task, @config, @status, @created_at, @started_at, @resumed_from, @steps_planned, @folder, @owner_pid, @plan)`,
    ).run({
      id: r.id,
      name: r.name,
      model: r.model,
      dataset: r.dataset,
      task: r.task,
      config: json(r.config),
      status: r.status ?? 'created',
      created_at: createdAt,
      started_at: r.startedAt ?? null,
      resumed_from: r.resumedFrom ?? null,
      steps_planned: r.stepsPlanned,
      folder: r.folder,
      owner_pid: r.ownerPid ?? null,
      plan: r.plan ? json(r.plan) : null,
    });
    // After the commit: a run.json the database does not know of means the row was lost, never the reverse.
    writeRunRecord({ ...r, createdAt });
    this.folders.set(r.id, r.folder);
    return this.getRun(r.id) as RunRecord;
  }

  getRun(id: string): RunRecord | null {
    const row = this.stmt('SELECT * FROM runs WHERE id = ?').get(id) as RunRow | undefined;
    return row ? toRun(row) : null;
  }

  /** A run by its id or an unambiguous prefix of it (what people type). */
  /** The run whose id is `part`, else the one run whose id contains it (anywhere: the random tail is the memorable part). */
  findRun(part: string): RunRecord {
    const exact = this.getRun(part);
    if (exact) return exact;
    const shown = 5;
    const rows = this.stmt('SELECT * FROM runs WHERE instr(id, @p) > 0 ORDER BY created_at DESC, id DESC LIMIT @n').all({ p: part, n: shown + 1 }) as RunRow[];
    if (rows.length === 0) throw new Error(`no run with id ${JSON.stringify(part)} or containing it (spillway runs list shows them)`);
    if (rows.length > 1) {
      const ids = rows.slice(0, shown).map((r) => `${r.id} (${r.name})`);
      throw new Error(`${JSON.stringify(part)} is in ${rows.length > shown ? `more than ${shown}` : rows.length} run ids: ${ids.join(', ')}${rows.length > shown ? ', …' : ''}; give more of the one you mean`);
    }
    return toRun(rows[0]);
  }

  /** Newest first. */
  listRuns(): RunRecord[] {
    return (this.stmt('SELECT * FROM runs ORDER BY created_at DESC, id DESC').all() as RunRow[]).map(toRun);
  }

  runsWithStatus(status: RunStatus): RunRecord[] {
    return (this.stmt('SELECT * FROM runs WHERE status = ? ORDER BY created_at').all(status) as RunRow[]).map(toRun);
  }

  updateRun(id: string, patch: RunPatch): RunRecord {
    const keys = Object.keys(patch) as (keyof RunPatch)[];
    if (keys.length) {
      const sets = keys.map((k) => `${RUN_COLUMNS[k]} = @${RUN_COLUMNS[k]}`).join(', ');
      const values: Record<string, unknown> = { id };
      for (const k of keys) {
        const v = patch[k];
        values[RUN_COLUMNS[k]] = JSON_COLUMNS.has(k) ? (v === null || v === undefined ? null : json(v)) : v;
      }
      this.stmt(`UPDATE runs SET ${sets} WHERE id = @id`).run(values);
    }
    const run = this.getRun(id);
    if (!run) throw new Error(`no run with id ${id}`);
    return run;
  }

  /** Removes the run and, by cascade, every row that belongs to it. */
  deleteRun(id: string): boolean {
    this.folders.delete(id);
    return this.stmt('DELETE FROM runs WHERE id = ?').run(id).changes > 0;
  }

  /** Notes in the run's folder the last step whose metrics are committed (call after the commit). */
  noteFlushed(runId: string, step: number): void {
    let folder = this.folders.get(runId);
    if (folder === undefined) {
      folder = this.getRun(runId)?.folder;
      if (folder === undefined) return;
      this.folders.set(runId, folder);
    }
    writeFlushedStep(folder, step);
  }

  // ------------------------------------------------------------- metrics

  insertStepMetrics(runId: string, rows: readonly StepMetric[]): void {
    const s = this.stmt(
      `INSERT OR REPLACE INTO step_metrics (run_id, step, time, loss, loss_plus, loss_minus, projected_grad, lr, step_ms, tokens_per_s, skipped, seed,
         h2d_bytes, d2h_bytes, ssd_read_bytes, ssd_write_bytes, io_wait_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    for (const m of rows) {
      const io = m.io ?? null;
      s.run(
        runId, m.step, m.time, finite(m.loss), finite(m.lossPlus), finite(m.lossMinus), finite(m.projectedGrad), finite(m.lr), finite(m.stepMs), finite(m.tokensPerS), m.skipped ? 1 : 0, m.seed,
        io ? bytes(io.h2dBytes) : null, io ? bytes(io.d2hBytes) : null, io ? bytes(io.ssdReadBytes) : null, io ? bytes(io.ssdWriteBytes) : null, io ? finite(io.waitMs) : null,
      );
    }
  }

  insertEvalMetrics(runId: string, rows: readonly EvalMetric[]): void {
    const s = this.stmt(
      'INSERT OR REPLACE INTO eval_metrics (run_id, step, time, loss, accuracy, examples, eval_ms, exact_match, f1) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    for (const m of rows) s.run(runId, m.step, m.time, finite(m.loss), finite(m.accuracy), m.examples, finite(m.evalMs), finite(m.exactMatch), finite(m.f1));
  }

  /** Step and eval metrics after `sinceStep` (0: all), in step order. */
  getMetrics(runId: string, sinceStep = 0): RunMetrics {
    const steps = (this.stmt('SELECT * FROM step_metrics WHERE run_id = ? AND step > ? ORDER BY step').all(runId, sinceStep) as StepRow[]).map(toStep);
    // Evals at step N describe the weights after N steps, so "since N" excludes them;
    // from the beginning includes the zero-shot eval at step 0.
    const evalsAfter = sinceStep <= 0 ? -1 : sinceStep;
    const evals = (this.stmt('SELECT * FROM eval_metrics WHERE run_id = ? AND step > ? ORDER BY step').all(runId, evalsAfter) as EvalRow[]).map(toEval);
    return { steps, evals };
  }

  advanceStepsDone(runId: string, step: number): void {
    this.stmt('UPDATE runs SET steps_done = max(steps_done, ?) WHERE id = ?').run(step, runId);
  }

  lastEval(runId: string): EvalMetric | null {
    const row = this.stmt('SELECT * FROM eval_metrics WHERE run_id = ? ORDER BY step DESC LIMIT 1').get(runId) as EvalRow | undefined;
    return row ? toEval(row) : null;
  }

  lastStep(runId: string): number {
    const row = this.stmt('SELECT max(step) AS step FROM step_metrics WHERE run_id = ?').get(runId) as { step: number | null };
    return row.step ?? 0;
  }

  /** The steps up to `upTo` that have a row, in order. */
  stepNumbers(runId: string, upTo: number): number[] {
    return (this.stmt('SELECT step FROM step_metrics WHERE run_id = ? AND step <= ? ORDER BY step').all(runId, upTo) as { step: number }[]).map((r) => r.step);
  }

  /** Forgets metrics past a checkpoint that a resumed run will recompute. */
  deleteMetricsAfter(runId: string, step: number): void {
    this.stmt('DELETE FROM step_metrics WHERE run_id = ? AND step > ?').run(runId, step);
    this.stmt('DELETE FROM eval_metrics WHERE run_id = ? AND step > ?').run(runId, step);
    this.stmt('DELETE FROM checkpoints WHERE run_id = ? AND step > ?').run(runId, step);
    this.noteFlushed(runId, Math.min(step, this.lastStep(runId)));
  }

  // -------------------------------------------------- checkpoints, files

  addCheckpoint(c: CheckpointRecord): void {
    this.stmt('INSERT OR REPLACE INTO checkpoints (run_id, step, path, bytes, created_at) VALUES (?, ?, ?, ?, ?)').run(c.runId, c.step, c.path, c.bytes, c.createdAt);
  }

  removeCheckpoint(runId: string, step: number): void {
    this.stmt('DELETE FROM checkpoints WHERE run_id = ? AND step = ?').run(runId, step);
  }

  checkpoints(runId: string): CheckpointRecord[] {
    return (this.stmt('SELECT run_id AS runId, step, path, bytes, created_at AS createdAt FROM checkpoints WHERE run_id = ? ORDER BY step').all(runId) as CheckpointRecord[]);
  }

  addArtifact(a: ArtifactRecord): void {
    this.stmt('INSERT OR REPLACE INTO artifacts (run_id, kind, path, bytes, created_at) VALUES (?, ?, ?, ?, ?)').run(a.runId, a.kind, a.path, a.bytes, a.createdAt);
  }

  removeArtifacts(runId: string, kind: ArtifactRecord['kind']): void {
    this.stmt('DELETE FROM artifacts WHERE run_id = ? AND kind = ?').run(runId, kind);
  }

  artifacts(runId: string): ArtifactRecord[] {
    return this.stmt('SELECT run_id AS runId, kind, path, bytes, created_at AS createdAt FROM artifacts WHERE run_id = ? ORDER BY id').all(runId) as ArtifactRecord[];
  }

  // ---------------------------------------------------------------- logs

  addLogs(runId: string, lines: readonly LogLine[]): void {
    const s = this.stmt('INSERT INTO logs (run_id, time, level, message) VALUES (?, ?, ?, ?)');
    for (const l of lines) s.run(runId, l.time, l.level, l.message);
    this.stmt(
      `DELETE FROM logs WHERE run_id = @run AND id <= (SELECT id FROM logs WHERE run_id = @run ORDER BY id DESC LIMIT 1 OFFSET ${LOG_LINES_KEPT})`,
    ).run({ run: runId });
  }

  /** The last `limit` log lines of a run, oldest first. */
  logs(runId: string, limit = 100): LogLine[] {
    const rows = this.stmt('SELECT time, level, message FROM logs WHERE run_id = ? ORDER BY id DESC LIMIT ?').all(runId, limit) as LogLine[];
    return rows.reverse();
  }

  // ----------------------------------------------------------- telemetry

  insertSystemSamples(rows: readonly SystemSample[]): void {
    const s = this.stmt(
      'INSERT INTO system_samples (run_id, time, cpu_percent, ram_used_bytes, gpu_percent, gpu_mem_used_bytes, payload) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    for (const r of rows) s.run(r.runId, r.time, finite(r.cpuPercent), finite(r.ramUsedBytes), finite(r.gpuPercent), finite(r.gpuMemUsedBytes), json(r.payload));
  }

  systemSamples(runId: string | null, sinceTime = 0): SystemSample[] {
    const rows = this.stmt(
      `SELECT run_id, time, cpu_percent, ram_used_bytes, gpu_percent, gpu_mem_used_bytes, payload FROM system_samples
       WHERE run_id IS ? AND time > ? ORDER BY time, id`,
    ).all(runId, sinceTime) as { run_id: string | null; time: number; cpu_percent: number | null; ram_used_bytes: number | null; gpu_percent: number | null; gpu_mem_used_bytes: number | null; payload: string }[];
    return rows.map((r) => ({
      runId: r.run_id,
      time: r.time,
      cpuPercent: r.cpu_percent,
      ramUsedBytes: r.ram_used_bytes,
      gpuPercent: r.gpu_percent,
      gpuMemUsedBytes: r.gpu_mem_used_bytes,
      payload: JSON.parse(r.payload) as unknown,
    }));
  }

  insertTierStats(rows: readonly TierStat[]): void {
    const s = this.stmt(
      'INSERT INTO tier_stats (run_id, step, time, tier, resident_bytes, read_bytes, written_bytes, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    for (const r of rows) s.run(r.runId, r.step, r.time, r.tier, finite(r.residentBytes), finite(r.readBytes), finite(r.writtenBytes), json(r.payload));
  }

  tierStats(runId: string, sinceStep = 0): TierStat[] {
    const rows = this.stmt(
      'SELECT run_id, step, time, tier, resident_bytes, read_bytes, written_bytes, payload FROM tier_stats WHERE run_id = ? AND step > ? ORDER BY step, id',
    ).all(runId, sinceStep) as { run_id: string; step: number; time: number; tier: string; resident_bytes: number | null; read_bytes: number | null; written_bytes: number | null; payload: string }[];
    return rows.map((r) => ({
      runId: r.run_id,
      step: r.step,
      time: r.time,
      tier: r.tier,
      residentBytes: r.resident_bytes,
      readBytes: r.read_bytes,
      writtenBytes: r.written_bytes,
      payload: JSON.parse(r.payload) as unknown,
    }));
  }

  // ------------------------------------------------------------ settings

  getSetting<T = unknown>(key: string): T | undefined {
    const row = this.stmt('SELECT value FROM settings WHERE key = ?').get(key) as { value: string } | undefined;
    return row ? (JSON.parse(row.value) as T) : undefined;
  }

  setSetting(key: string, value: unknown): void {
    this.stmt('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, json(value));
  }

  deleteSetting(key: string): void {
    this.stmt('DELETE FROM settings WHERE key = ?').run(key);
  }
}
