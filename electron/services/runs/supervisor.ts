// The run supervisor: one engine process per run, every event recorded in
// the store (metrics batched) and fanned out to subscribers. A crash or kill
// of an engine marks its run failed with the reason; the supervisor, the
// database and the other runs carry on. Resume continues in the same run row.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';

import { DEFAULT_CHECKPOINT_EVERY } from '../../common/contract.js';
import { EngineCrashError, startEngineJob } from '../../engine/runner.js';
import { startRankJob } from '../../engine/ranks.js';
import type { EngineJob } from '../../engine/runner.js';
import { latestCheckpoint, parseTrainOptions, resumeState } from '../../engine/trainer.js';
import type { DoneEvent, EvalEvent, StepEvent, TrainEvent, TrainOptions } from '../../engine/trainer.js';
import { runCheckpointFolder, runFolder, runModelFolder } from '../paths.js';
import { MetricWriter } from '../store/metric-writer.js';
import type { MetricWriterOptions } from '../store/metric-writer.js';
import { RunStore } from '../store/run-store.js';
import type { EvalMetric, RunMetrics, RunPatch, RunRecord, StepMetric, SystemSample } from '../store/types.js';
import type { RunConfig, RunEvent, RunListener, StoredRunConfig } from './types.js';

/** An engine step event as the store keeps it (the event already has the contract's names; its end, `at`, is the row's time). */
function stepRecord(e: StepEvent): StepMetric {
  const { type: _type, times: _times, io, at, ...fields } = e;
  return { ...fields, time: at, io: io ?? null };
}

function evalRecord(e: EvalEvent): EvalMetric {
  const { type: _type, at, ...fields } = e;
  return { ...fields, time: at };
}

export { DEFAULT_CHECKPOINT_EVERY };
export const DEFAULT_STOP_GRACE_MS = 10_000;

export interface SupervisorOptions {
  store: RunStore;
  dataDir: string;
  /** Checkpoint every N steps unless a run's options say otherwise (default 100). */
  checkpointEvery?: number;
  /** How long stop() waits for the engine before killing it (default 10 s). */
  stopGraceMs?: number;
  writer?: MetricWriterOptions;
  /** Extra environment for the engine processes. */
  env?: NodeJS.ProcessEnv;
}

export interface StopOptions {
  /** Milliseconds before the forced kill; null waits for the engine indefinitely. */
  graceMs?: number | null;
}

interface ActiveRun {
  job: EngineJob;
  stopRequested: boolean;
  killTimer: NodeJS.Timeout | null;
  done: DoneEvent | null;
  finished: Promise<RunRecord>;
}

function newRunId(): string {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, '0');
  const stamp = `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
  return `${stamp}-${randomBytes(2).toString('hex')}`;
}

async function folderBytes(path: string): Promise<number> {
  const s = await stat(path).catch(() => null);
  if (!s) return 0;
  if (!s.isDirectory()) return s.size;
  let total = 0;
  for (const name of await readdir(path)) total += await folderBytes(join(path, name));
  return total;
}

/** Whether a process other than this one is alive (EPERM: alive, not ours). */
function otherProcessAlive(pid: number | null): boolean {
  if (pid === null || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class RunSupervisor {
  readonly store: RunStore;
  readonly dataDir: string;
  private readonly writer: MetricWriter;
  private readonly checkpointEvery: number;
  private readonly stopGraceMs: number;
  private readonly env: NodeJS.ProcessEnv | undefined;
  private readonly active = new Map<string, ActiveRun>();
  private readonly listeners = new Map<string, Set<RunListener>>();
  private closed = false;

  constructor(o: SupervisorOptions) {
    this.store = o.store;
    this.dataDir = o.dataDir;
    this.writer = new MetricWriter(o.store, o.writer);
    this.checkpointEvery = o.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY;
    this.stopGraceMs = o.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
    this.env = o.env;
  }

  /** Opens the store in dataDir and a supervisor over it. */
  static open(dataDir: string, o: Omit<SupervisorOptions, 'store' | 'dataDir'> = {}): RunSupervisor {
    return new RunSupervisor({ ...o, store: RunStore.open(dataDir), dataDir });
  }

  // -------------------------------------------------------- subscribers

  /** Listens to one run's events, or to every run's with '*'. Returns the unsubscribe. */
  subscribe(runId: string | '*', listener: RunListener): () => void {
    let set = this.listeners.get(runId);
    if (!set) {
      set = new Set();
      this.listeners.set(runId, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(runId) === set) this.listeners.delete(runId);
    };
  }

  private emit(e: RunEvent): void {
    for (const key of [e.runId, '*']) {
      for (const l of this.listeners.get(key) ?? []) {
        try {
          l(e);
        } catch (err) {
          process.emitWarning(`spillway: a run listener threw: ${(err as Error).message}`);
        }
      }
    }
  }

  // ------------------------------------------------------------ queries

  getRun(runId: string): RunRecord | null {
    return this.store.getRun(runId);
  }

  listRuns(): RunRecord[] {
    return this.store.listRuns();
  }

  /** Step and eval metrics after sinceStep, including rows not yet flushed. */
  getMetrics(runId: string, sinceStep = 0): RunMetrics {
    this.writer.flush();
    return this.store.getMetrics(runId, sinceStep);
  }

  /** Stores a telemetry sample with a run (batched like the metrics). */
  recordSystemSample(sample: SystemSample): void {
    if (!this.closed) this.writer.addSystemSample(sample);
  }

  isActive(runId: string): boolean {
    return this.active.has(runId);
  }

  /** The engine process of an active run (for diagnostics and tests). */
  enginePid(runId: string): number | undefined {
    return this.active.get(runId)?.job.child.pid;
  }

  /** Resolves with the run's row once its engine process has ended. */
  async waitFor(runId: string): Promise<RunRecord> {
    const a = this.active.get(runId);
    if (a) return a.finished;
    const run = this.store.getRun(runId);
    if (!run) throw new Error(`no run with id ${runId}`);
    return run;
  }

  // ---------------------------------------------------------- lifecycle

  /** Creates the run's row and folder and starts its engine process. */
  async start(config: RunConfig): Promise<RunRecord> {
    this.assertOpen();
    const given = parseTrainOptions(config.options);
    const id = newRunId();
    const folder = runFolder(this.dataDir, id);
    const ownModelFolder = given.out === undefined && config.saveModel !== false;
    const options: TrainOptions = {
      ...given,
      checkpointDir: given.checkpointDir ?? runCheckpointFolder(this.dataDir, id),
      checkpointEvery: given.checkpointEvery ?? this.checkpointEvery,
      out: ownModelFolder ? runModelFolder(this.dataDir, id) : given.out,
    };
    await mkdir(runCheckpointFolder(this.dataDir, id), { recursive: true });
    await mkdir(runModelFolder(this.dataDir, id), { recursive: true });
    const stored: StoredRunConfig = { options, ownModelFolder };
    const run = this.store.createRun({
      id,
      name: config.name ?? `${basename(options.model)} on ${basename(options.train)}`,
      model: options.model,
      dataset: options.train,
      task: options.task.kind,
      config: stored as unknown as Record<string, unknown>,
      status: 'running',
      startedAt: Date.now(),
      resumedFrom: options.resumeFrom ?? null,
      stepsPlanned: options.steps,
      folder,
      ownerPid: process.pid,
    });
    this.launch(id, options);
    return run;
  }

  /**
   * Continues a stopped, failed or interrupted run from its latest checkpoint,
   * in the same run row: metrics past the checkpoint are dropped (the engine
   * recomputes them), resumed_from records the checkpoint folder.
   */
  async resume(runId: string): Promise<RunRecord> {
    this.assertOpen();
    const run = this.store.getRun(runId);
    if (!run) throw new Error(`no run with id ${runId}`);
    if (this.active.has(runId) || run.status === 'running') throw new Error(`run ${runId} is already running`);
    if (run.status === 'completed') throw new Error(`run ${runId} has completed; there is nothing to resume`);
    const stored = run.config as unknown as StoredRunConfig;
    const dir = stored.options.checkpointDir as string;
    const checkpoint = await latestCheckpoint(dir);
    if (!checkpoint) throw new Error(`run ${runId} has no checkpoint to resume from (none in ${dir})`);
    const { steps_done: step } = await resumeState(checkpoint);
    if (stored.ownModelFolder && stored.options.out) {
      // A stopped run saved a partial model there; the resumed run writes the whole one.
      await rm(stored.options.out, { recursive: true, force: true });
      await mkdir(stored.options.out, { recursive: true });
    }
    const resumed = this.store.transaction(() => {
      this.store.deleteMetricsAfter(runId, step);
      this.store.removeArtifacts(runId, 'model');
      return this.store.updateRun(runId, {
        status: 'running',
        resumedFrom: checkpoint,
        endedAt: null,
        error: null,
        finalMetrics: null,
        stepsDone: step,
        ownerPid: process.pid,
      });
    });
    // The engine never prunes the checkpoint it resumed from, and reads its files once.
    this.launch(runId, { ...stored.options, resumeFrom: checkpoint });
    return resumed;
  }

  private launch(runId: string, options: TrainOptions): void {
    // The engine caches its calibration (offload 'auto') in this data folder, where the plan method reads it.
    const env = { SPILLWAY_DATA_DIR: this.dataDir, ...this.env };
    const onEvent = (e: unknown) => this.onEngineEvent(runId, e as TrainEvent);
    // Several ranks: mpirun starts them (rank 0 owns the checkpoints, the seed log and the model; its events are the run's).
    const job =
      options.ranks > 1
        ? startRankJob({ type: 'train', options }, onEvent, { ranks: options.ranks, hostfile: options.hostfile, timeoutMs: options.rankTimeout * 1000, env })
        : startEngineJob({ type: 'train', options }, onEvent, { env });
    const a: ActiveRun = { job, stopRequested: false, killTimer: null, done: null, finished: Promise.resolve(null as unknown as RunRecord) };
    a.finished = job.done.then(
      () => this.finish(runId, a, null),
      (e: unknown) => this.finish(runId, a, e as Error),
    );
    this.active.set(runId, a);
    this.emit({ runId, type: 'status', status: 'running', error: null });
  }

  private onEngineEvent(runId: string, e: TrainEvent): void {
    const now = Date.now();
    try {
      switch (e.type) {
        case 'step':
          this.writer.addStep(runId, stepRecord(e));
          break;
        case 'eval':
          this.writer.addEval(runId, evalRecord(e));
          break;
        case 'log':
          this.writer.addLog(runId, { time: now, level: 'info', message: e.message });
          break;
        case 'checkpoint':
          this.store.addCheckpoint({ runId, step: e.step, path: e.path, bytes: e.bytes, createdAt: now });
          this.forgetPrunedCheckpoints(runId);
          break;
        case 'done': {
          const a = this.active.get(runId);
          if (a) a.done = e;
          break;
        }
        case 'start':
          // The plan the engine placed the blocks by: the GUI sets its predictions beside the measured I/O.
          this.store.updateRun(runId, { plan: (e.plan as unknown as Record<string, unknown> | undefined) ?? null });
          this.writer.addLog(runId, {
            time: now,
            level: 'info',
            message: `${e.model} (${e.architecture}, ${e.parameters} parameters) on ${e.backend} x ${e.threads} threads; ${e.trainExamples} training / ${e.evalExamples} held-out examples`,
          });
          break;
      }
    } catch (err) {
      process.emitWarning(`spillway: recording a ${e.type} event of run ${runId} failed: ${(err as Error).message}`);
    }
    this.emit({ ...e, runId });
  }

  /** The engine keeps the two newest checkpoint folders; rows follow the disk. */
  private forgetPrunedCheckpoints(runId: string): void {
    for (const c of this.store.checkpoints(runId)) {
      if (!existsSync(c.path)) this.store.removeCheckpoint(runId, c.step);
    }
  }

  private async finish(runId: string, a: ActiveRun, err: Error | null): Promise<RunRecord> {
    if (a.killTimer) clearTimeout(a.killTimer);
    this.writer.flush();
    const patch: RunPatch = { endedAt: Date.now(), ownerPid: null };
    const lines: string[] = err instanceof EngineCrashError ? err.lastLines : [];
    if (!err) {
      const d = a.done;
      patch.status = d?.status ?? 'completed';
      patch.error = null;
      if (d) {
        patch.stepsDone = d.steps;
        patch.finalMetrics = {
          steps: d.steps,
          finalLoss: d.finalLoss,
          eval: d.eval,
          zeroShot: d.zeroShot,
          skippedSteps: d.skippedSteps,
          out: d.out,
          wallS: d.wallS,
        };
      }
      if (d?.out) this.store.addArtifact({ runId, kind: 'model', path: d.out, bytes: await folderBytes(d.out), createdAt: Date.now() });
    } else {
      // A kill we asked for is a stop; anything else is a failure. Either way the reason is kept.
      patch.status = a.stopRequested ? 'stopped' : 'failed';
      patch.error = err.message;
      patch.stepsDone = this.store.lastStep(runId);
    }
    const run = this.store.transaction(() => {
      if (lines.length) this.store.addLogs(runId, lines.map((message) => ({ time: Date.now(), level: 'error' as const, message })));
      this.forgetPrunedCheckpoints(runId);
      return this.store.updateRun(runId, patch);
    });
    this.active.delete(runId);
    this.emit({ runId, type: 'status', status: run.status, error: run.error });
    return run;
  }

  /**
   * Asks the engine to stop after the current step (it checkpoints on stop);
   * kills it when it has not ended after the grace period. Resolves with the
   * run's final row (status stopped).
   */
  async stop(runId: string, o: StopOptions = {}): Promise<RunRecord> {
    const a = this.active.get(runId);
    if (!a) return this.notActive(runId);
    a.stopRequested = true;
    a.job.stop();
    const grace = o.graceMs === undefined ? this.stopGraceMs : o.graceMs;
    if (grace !== null && !a.killTimer) a.killTimer = setTimeout(() => a.job.kill('SIGKILL'), grace);
    return a.finished;
  }

  /** Ends the engine at once (no checkpoint); the run is recorded as stopped. */
  async kill(runId: string): Promise<RunRecord> {
    const a = this.active.get(runId);
    if (!a) return this.notActive(runId);
    a.stopRequested = true;
    a.job.kill('SIGKILL');
    return a.finished;
  }

  /** Asks the engine for a checkpoint after the current step. */
  checkpointNow(runId: string): void {
    const a = this.active.get(runId);
    if (!a) throw new Error(`run ${runId} is not running in this process`);
    a.job.checkpoint();
  }

  private notActive(runId: string): RunRecord {
    const run = this.store.getRun(runId);
    if (!run) throw new Error(`no run with id ${runId}`);
    if (run.status === 'running' && otherProcessAlive(run.ownerPid)) {
      throw new Error(`run ${runId} is supervised by another process (pid ${run.ownerPid}); stop it there`);
    }
    return run;
  }

  /**
   * At startup: runs still marked running whose supervising process is gone
   * become interrupted (resumable). Runs of other live processes (a CLI
   * training beside the app) are left alone.
   */
  recover(): RunRecord[] {
    const recovered: RunRecord[] = [];
    for (const run of this.store.runsWithStatus('running')) {
      if (this.active.has(run.id) || otherProcessAlive(run.ownerPid)) continue;
      const r = this.store.updateRun(run.id, {
        status: 'interrupted',
        error: `the process supervising this run${run.ownerPid ? ` (pid ${run.ownerPid})` : ''} ended while it was running`,
        stepsDone: this.store.lastStep(run.id),
        ownerPid: null,
      });
      recovered.push(r);
      this.emit({ runId: r.id, type: 'status', status: r.status, error: r.error });
    }
    return recovered;
  }

  /** The files a delete would remove: the run's folder, checkpoints and saved model. */
  runFiles(runId: string): string[] {
    const run = this.store.getRun(runId);
    if (!run) throw new Error(`no run with id ${runId}`);
    const paths = new Set<string>([run.folder]);
    for (const c of this.store.checkpoints(runId)) paths.add(c.path);
    for (const a of this.store.artifacts(runId)) paths.add(a.path);
    return [...paths].filter((p) => existsSync(p));
  }

  /** Removes a run that is not running: its files, then its rows. Returns the paths removed. */
  async deleteRun(runId: string): Promise<string[]> {
    const run = this.store.getRun(runId);
    if (!run) throw new Error(`no run with id ${runId}`);
    if (this.active.has(runId) || (run.status === 'running' && otherProcessAlive(run.ownerPid))) {
      throw new Error(`run ${runId} is running; stop it before deleting it`);
    }
    const paths = this.runFiles(runId);
    for (const p of paths) await rm(p, { recursive: true, force: true });
    this.writer.discard(runId);
    this.store.deleteRun(runId);
    return paths;
  }

  /** Stops every active run (cooperatively, with the grace period), flushes and closes the store. */
  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.all([...this.active.keys()].map((id) => this.stop(id)));
    this.closed = true;
    this.writer.close();
    this.store.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('the run supervisor is closed');
  }
}
