// The run supervisor: one engine process per run, every event recorded in
// the store (metrics batched) and fanned out to subscribers. A crash or kill
// of an engine marks its run failed with the reason; the supervisor, the
// database and the other runs carry on. Resume continues in the same run row.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';

import { DEFAULT_CHECKPOINT_EVERY } from '../../common/contract.js';
import type { Device } from '../../common/contract.js';
import { listCheckpoints, latestCheckpoint, readCheckpointState, readSeedLog } from '../../engine/checkpoint.js';
import type { SeedLogEntry } from '../../engine/checkpoint.js';
import { EngineCrashError, startEngineJob } from '../../engine/runner.js';
import { startRankJob } from '../../engine/ranks.js';
import type { EngineJob } from '../../engine/runner.js';
import { parseTrainOptions } from '../../engine/trainer.js';
import type { DoneEvent, EvalEvent, StepEvent, TrainEvent, TrainOptions } from '../../engine/trainer.js';
import { runCheckpointFolder, runFolder, runModelFolder } from '../paths.js';
import { MetricWriter } from '../store/metric-writer.js';
import type { MetricWriterOptions } from '../store/metric-writer.js';
import { RunStore } from '../store/run-store.js';
import type { EvalMetric, RunMetrics, RunPatch, RunRecord, StepMetric, SystemSample } from '../store/types.js';
import { stepRanges } from '../store/recover.js';
import type { RunConfig, RunEvent, RunListener, StoredRunConfig } from './types.js';

/** An engine step event as the store keeps it (the event already has the contract's names; its end, `at`, is the row's time). */
function stepRecord(e: StepEvent): StepMetric {
  const { type: _type, times: _times, io, at, ...fields } = e;
  return { ...fields, time: at, io: io ?? null };
}

/**
 * The metrics rows of steps a checkpoint holds, rebuilt from its seed log (each entry keeps what its
 * step measured): the rows of steps that ran while nobody could record them (the supervising process
 * died before the engine's stop checkpoint). Steps whose entries predate that (no loss logged) are
 * left out: `lost` names them.
 */
export function stepRowsFromSeedLog(log: readonly SeedLogEntry[], steps: ReadonlySet<number>): { rows: StepMetric[]; lost: number[] } {
  const byStep = new Map<number, SeedLogEntry[]>();
  for (const e of log) if (steps.has(e.step + 1)) byStep.set(e.step + 1, [...(byStep.get(e.step + 1) ?? []), e]);
  const rows: StepMetric[] = [];
  const lost: number[] = [];
  const mean = (v: (number | null | undefined)[]) => v.reduce((a: number, b) => a + (b ?? Number.NaN), 0) / Math.max(1, v.length);
  for (const step of [...steps].sort((a, b) => a - b)) {
    const es = byStep.get(step);
    const first = es?.[0];
    if (!es || !first || first.loss === undefined || first.at === undefined) {
      lost.push(step);
      continue;
    }
    rows.push({
      step,
      time: first.at,
      loss: first.loss ?? null,
      lossPlus: mean(es.map((e) => e.loss_plus)),
      lossMinus: mean(es.map((e) => e.loss_minus)),
      projectedGrad: mean(es.map((e) => e.projected_grad)),
      lr: first.lr,
      stepMs: first.step_ms ?? null,
      tokensPerS: first.tokens !== undefined && first.step_ms ? (first.tokens / first.step_ms) * 1000 : null,
      skipped: first.skipped,
      seed: first.seed,
      io: null,
    });
  }
  return { rows, lost };
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

/** How a launch records its run once the engine says it can start (creates the row, or updates it for a resume). */
type OnReady = () => void;

interface ActiveRun {
  job: EngineJob;
  /** Events that came right after the run was recorded, before its starter could subscribe: delivered a turn later. */
  held: TrainEvent[] | null;
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

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

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
  /** Engines still checking their run, not yet recorded. */
  private readonly pending = new Set<EngineJob>();
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

  /** The telemetry samples kept with a run, oldest first, including those not yet flushed. */
  systemSamples(runId: string): SystemSample[] {
    this.writer.flush();
    return this.store.systemSamples(runId);
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

  /**
   * Starts a run's engine and records the run once the engine has checked it (options, folders,
   * model, every row of the data, the plan): a run that cannot start leaves no row and no folder
   * behind, and this rejects with the reason.
   */
  async start(config: RunConfig): Promise<RunRecord> {
    this.assertOpen();
    const given = parseTrainOptions(config.options);
    const id = config.id ?? newRunId();
    if (this.store.getRun(id)) throw new Error(`a run with id ${id} exists already`);
    const folder = runFolder(this.dataDir, id);
    const ownModelFolder = given.out === undefined && config.saveModel !== false;
    const options: TrainOptions = {
      ...given,
      runId: id,
      checkpointDir: given.checkpointDir ?? runCheckpointFolder(this.dataDir, id),
      checkpointEvery: given.checkpointEvery ?? this.checkpointEvery,
      out: ownModelFolder ? runModelFolder(this.dataDir, id) : given.out,
    };
    await mkdir(runCheckpointFolder(this.dataDir, id), { recursive: true });
    await mkdir(runModelFolder(this.dataDir, id), { recursive: true });
    const stored: StoredRunConfig = { options, ownModelFolder };
    let run: RunRecord | null = null;
    try {
      await this.launch(id, options, () => {
        run = this.store.createRun({
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
      });
    } catch (e) {
      await rm(folder, { recursive: true, force: true });
      throw e;
    }
    return run as unknown as RunRecord;
  }

  /**
   * The checkpoint a run would resume from: its newest own one (a folder shared with other runs
   * holds theirs too, never taken), or null.
   */
  async resumeCheckpoint(runId: string): Promise<string | null> {
    const run = this.store.getRun(runId);
    if (!run) return null;
    const dir = (run.config as unknown as StoredRunConfig).options.checkpointDir as string;
    return latestCheckpoint(dir, runId);
  }

  /** Whether Resume can continue the run: it has ended without completing and a checkpoint of its own is there. */
  async resumable(runId: string): Promise<boolean> {
    const run = this.store.getRun(runId);
    if (!run || this.active.has(runId) || !['stopped', 'failed', 'interrupted'].includes(run.status)) return false;
    return (await this.resumeCheckpoint(runId)) !== null;
  }

  /**
   * Continues a stopped, failed or interrupted run from its latest checkpoint (or the one given),
   * in the same run row: metrics past the checkpoint are dropped (the engine recomputes them), those
   * the checkpoint holds but the store lost are rebuilt from its seed log, resumed_from records the
   * checkpoint folder. Nothing changes until the engine has checked the checkpoint and the data:
   * a resume that cannot start leaves the run as it was and rejects with the reason.
   */
  async resume(runId: string, over: { checkpoint?: string; options?: TrainOptions; device?: Device } = {}): Promise<RunRecord> {
    this.assertOpen();
    const run = this.store.getRun(runId);
    if (!run) throw new Error(`no run with id ${runId}`);
    if (this.active.has(runId) || (run.status === 'running' && otherProcessAlive(run.ownerPid))) throw new Error(`run ${runId} is already running`);
    const stored = run.config as unknown as StoredRunConfig;
    const dir = stored.options.checkpointDir as string;
    const checkpoint = over.checkpoint ?? (await latestCheckpoint(dir, runId));
    if (!checkpoint) {
      const others = (await listCheckpoints(dir)).filter((c) => c.runId !== null && c.runId !== runId);
      const note = others.length ? `; the checkpoints there are run ${[...new Set(others.map((c) => c.runId))].join(', ')}'s` : '';
      throw new Error(`run ${runId} has no checkpoint to resume from (none of its own in ${dir}${note})`);
    }
    const { steps_done: step } = await readCheckpointState(checkpoint);
    // Resumed on another device: the run asks for it from now on (the engine notes the change of backend).
    const options: TrainOptions = { ...(over.options ?? stored.options), ...(over.device ? { device: over.device } : {}), runId, resumeFrom: checkpoint };
    if (run.status === 'completed' && options.steps <= run.stepsDone) {
      throw new Error(`run ${runId} has completed its ${run.stepsDone} steps; there is nothing to resume (give more steps to train further)`);
    }
    // What the checkpoint holds, for the rows the store lost; a log that does not read is the engine's to refuse.
    const seedLog = await readSeedLog(checkpoint).catch(() => [] as SeedLogEntry[]);
    if (stored.ownModelFolder && stored.options.out) {
      // A stopped run saved a partial model there; the resumed run writes the whole one.
      await rm(stored.options.out, { recursive: true, force: true });
      await mkdir(stored.options.out, { recursive: true });
    }
    let resumed: RunRecord | null = null;
    await this.launch(runId, options, () => {
      resumed = this.store.transaction(() => {
        this.store.deleteMetricsAfter(runId, step);
        this.restoreSteps(runId, step, seedLog);
        this.store.removeArtifacts(runId, 'model');
        return this.store.updateRun(runId, {
          status: 'running',
          config: { ...stored, options: { ...options, resumeFrom: undefined } } as unknown as Record<string, unknown>,
          stepsPlanned: options.steps,
          resumedFrom: checkpoint,
          endedAt: null,
          error: null,
          finalMetrics: null,
          stepsDone: step,
          ownerPid: process.pid,
        });
      });
    });
    return resumed as unknown as RunRecord;
  }

  /** Rows for the checkpoint's steps that the store lacks, from its seed log; what cannot be rebuilt is said in the run's log. */
  private restoreSteps(runId: string, step: number, seedLog: readonly SeedLogEntry[]): void {
    const have = new Set(this.store.stepNumbers(runId, step));
    const missing = new Set<number>();
    for (let s = 1; s <= step; s++) if (!have.has(s)) missing.add(s);
    if (missing.size === 0) return;
    const { rows, lost } = stepRowsFromSeedLog(seedLog, missing);
    if (rows.length) {
      this.store.insertStepMetrics(runId, rows);
      this.store.advanceStepsDone(runId, step);
    }
    const now = Date.now();
    const lines = [
      ...(rows.length ? [`${plural(rows.length, 'step row')} rebuilt from the checkpoint's seed log (steps ${stepRanges(rows.map((r) => r.step))}): they ran while nothing recorded them (the supervising process had ended)`] : []),
      ...(lost.length ? [`${plural(lost.length, 'step row')} missing (steps ${stepRanges(lost)}): they ran while nothing recorded them, and the checkpoint's seed log predates the losses it now keeps`] : []),
    ];
    this.store.addLogs(runId, lines.map((message) => ({ time: now, level: 'info' as const, message })));
    this.store.noteFlushed(runId, this.store.lastStep(runId));
  }

  /**
   * Starts the engine of a run and waits for it to say the run can start; then `onReady` records
   * it and the events flow (those the engine sent before are recorded then). Rejects with the
   * engine's reason when it ends before that.
   */
  private launch(runId: string, options: TrainOptions, onReady: OnReady): Promise<void> {
    // The engine caches its calibration (offload 'auto') in this data folder, where the plan method reads it.
    const env = { SPILLWAY_DATA_DIR: this.dataDir, ...this.env };
    let recorded = false;
    const early: TrainEvent[] = [];
    let ready!: () => void;
    let notReady!: (e: Error) => void;
    const readyP = new Promise<void>((res, rej) => {
      ready = res;
      notReady = rej;
    });
    const a: ActiveRun = { job: null as unknown as EngineJob, held: null, stopRequested: false, killTimer: null, done: null, finished: Promise.resolve(null as unknown as RunRecord) };
    const onEvent = (e: TrainEvent) => {
      if (a.held) return void a.held.push(e);
      if (recorded) return this.onEngineEvent(runId, e);
      if (e.type !== 'ready') {
        early.push(e);
        // Progress on long checks (a large dataset being read) reaches listeners at once.
        if (e.type === 'log') this.emit({ ...e, runId });
        return;
      }
      try {
        onReady();
      } catch (err) {
        a.job.kill('SIGKILL');
        notReady(err as Error);
        return;
      }
      recorded = true;
      this.pending.delete(a.job);
      this.active.set(runId, a);
      for (const x of early) this.record(runId, x);
      this.emit({ runId, type: 'status', status: 'running', error: null });
      // Several engine messages can arrive in one turn: the ones after `ready` wait for the next,
      // so that whoever awaited start() or resume() has subscribed by then.
      a.held = [];
      setImmediate(() => this.release(runId, a));
      ready();
    };
    // Several ranks: mpirun starts them (rank 0 owns the checkpoints, the seed log and the model; its events are the run's).
    a.job =
      options.ranks > 1
        ? startRankJob({ type: 'train', options }, (e) => onEvent(e as TrainEvent), { ranks: options.ranks, hostfile: options.hostfile, timeoutMs: options.rankTimeout * 1000, env })
        : startEngineJob({ type: 'train', options }, (e) => onEvent(e as TrainEvent), { env });
    this.pending.add(a.job);
    a.finished = a.job.done.then(
      () => (recorded ? this.finish(runId, a, null) : this.notStarted(a, notReady, new Error('the engine ended before the run started'))),
      (e: unknown) => (recorded ? this.finish(runId, a, e as Error) : this.notStarted(a, notReady, e as Error)),
    );
    return readyP;
  }

  private release(runId: string, a: ActiveRun): void {
    const held = a.held ?? [];
    a.held = null;
    for (const e of held) this.onEngineEvent(runId, e);
  }

  private notStarted(a: ActiveRun, reject: (e: Error) => void, e: Error): RunRecord {
    this.pending.delete(a.job);
    reject(e);
    return null as unknown as RunRecord;
  }

  private onEngineEvent(runId: string, e: TrainEvent): void {
    this.record(runId, e);
    this.emit({ ...e, runId });
  }

  /** Keeps an engine event in the store. */
  private record(runId: string, e: TrainEvent): void {
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
        case 'start': {
          // The plan the engine placed the blocks by (the GUI sets its predictions beside the measured I/O),
          // and the device it computes on (a resume may have moved it).
          const config = this.store.getRun(runId)?.config as unknown as StoredRunConfig | undefined;
          this.store.updateRun(runId, {
            plan: (e.plan as unknown as Record<string, unknown> | undefined) ?? null,
            ...(config && e.device ? { config: { ...config, device: e.device } as unknown as Record<string, unknown> } : {}),
          });
          this.writer.addLog(runId, {
            time: now,
            level: 'info',
            message: `${e.model} (${e.architecture}, ${e.parameters} parameters) on ${e.backend} x ${e.threads} threads; ${e.trainExamples} training / ${e.evalExamples} held-out examples`,
          });
          break;
        }
        case 'ready':
          break;
      }
    } catch (err) {
      process.emitWarning(`spillway: recording a ${e.type} event of run ${runId} failed: ${(err as Error).message}`);
    }
  }

  /** The engine keeps the two newest checkpoint folders; rows follow the disk. */
  private forgetPrunedCheckpoints(runId: string): void {
    for (const c of this.store.checkpoints(runId)) {
      if (!existsSync(c.path)) this.store.removeCheckpoint(runId, c.step);
    }
  }

  private async finish(runId: string, a: ActiveRun, err: Error | null): Promise<RunRecord> {
    this.release(runId, a);
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
    // An engine still checking its run has nothing to save: it is ended, and its run never recorded.
    for (const job of this.pending) job.kill('SIGKILL');
    await Promise.all([...this.active.keys()].map((id) => this.stop(id)));
    this.closed = true;
    this.writer.close();
    this.store.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('the run supervisor is closed');
  }
}
