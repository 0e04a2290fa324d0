// The run being watched: its history (paged from the store), then live step,
// evaluation, status and telemetry events. Chart data is bounded and refreshed
// at most a few times a second however fast steps arrive.

import type { EvalMetric, RunDetail, RunStatus, StepMetric, TelemetrySample } from '../../../electron/common/contract.ts';
import { app } from './app.svelte.ts';
import type { Client } from '../../../electron/common/client.ts';
import { describeError } from '../../../electron/common/client.ts';
import { elapsedMs, remainingMs } from '../lib/progress.ts';
import { RunSeries } from '../lib/series.ts';
import { storageLine, streamsUnits, tierSummary } from '../lib/tiers.ts';
import type { Point } from '../lib/smoothing.ts';

export const ACTIVE: readonly RunStatus[] = ['queued', 'running', 'stopping'];
const TELEMETRY_KEEP = 900;
const REFRESH_MS = 250;
/** How often the elapsed time and the ETA of a running run move on. */
export const CLOCK_MS = 1000;

export interface TelemetryPoints {
  cpu: Point[];
  gpu: Point[];
  ram: Point[];
}

export class LiveRunState {
  runId = $state<string | null>(null);
  detail = $state<RunDetail | null>(null);
  status = $state<RunStatus | null>(null);
  stepsDone = $state(0);
  stepsPlanned = $state(0);
  error = $state<string | null>(null);
  loadError = $state<string | null>(null);
  loading = $state(false);
  smoothing = $state(0.6);
  /** Bumped when the series change; chart data derive from it. */
  version = $state(0);
  telemetry = $state<TelemetrySample | null>(null);
  telemetryVersion = $state(0);
  busy = $state<'stop' | 'checkpoint' | 'resume' | null>(null);
  /** The clock the elapsed time and the ETA read: ticks while the run is active. */
  now = $state(Date.now());

  series = new RunSeries(0.6);
  telemetryPoints: TelemetryPoints = { cpu: [], gpu: [], ram: [] };
  lastStep = $state<StepMetric | null>(null);
  lastEval = $state<EvalMetric | null>(null);

  active = $derived(this.status !== null && ACTIVE.includes(this.status));
  /** Resume can continue it: ended without completing, with a checkpoint of its own (the backend says). */
  resumable = $derived(!this.active && this.detail?.resumable === true && this.detail.status === this.status);
  progress = $derived(this.stepsPlanned > 0 ? Math.min(1, this.stepsDone / this.stepsPlanned) : 0);
  elapsed = $derived(elapsedMs(this.detail?.startedAt, this.active ? null : this.detail?.endedAt, this.now));
  /** Milliseconds left at the pace of the last steps; null when unknown or not running. */
  eta = $derived.by(() => {
    void this.version;
    return this.active ? remainingMs(this.series.recent, this.stepsPlanned, this.now) : null;
  });

  lossChart = $derived.by(() => {
    void this.version;
    return {
      raw: this.series.bounded(this.series.loss),
      smoothed: this.series.bounded(this.series.smoothedForDisplay()),
    };
  });
  evalChart = $derived.by(() => {
    void this.version;
    return { accuracy: this.series.evalAccuracy.slice(), loss: this.series.evalLoss.slice() };
  });
  speedChart = $derived.by(() => {
    void this.version;
    return { stepMs: this.series.bounded(this.series.stepMs), tokensPerS: this.series.bounded(this.series.tokensPerS) };
  });
  /** The Tiers panel: measured I/O per step beside the plan's predictions; null before any step reported it. */
  tiers = $derived.by(() => {
    void this.version;
    return tierSummary(this.series.io, this.detail?.plan ?? null);
  });
  /** Whether the run streams units (the Tiers panel is hidden otherwise). */
  showTiers = $derived.by(() => {
    void this.version;
    return streamsUnits(this.detail?.plan ?? null, this.detail?.options.offload, this.series.io);
  });
  /** The run's masters, update mode and spill folders, when it sets them or streams blocks. */
  storage = $derived.by(() => {
    void this.version;
    return storageLine(this.detail?.options, this.detail?.plan ?? null, this.series.io);
  });
  telemetryChart = $derived.by(() => {
    void this.telemetryVersion;
    return { cpu: this.telemetryPoints.cpu.slice(), gpu: this.telemetryPoints.gpu.slice(), ram: this.telemetryPoints.ram.slice() };
  });

  #client: () => Client;
  #pending: ((s: RunSeries) => void)[] | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #generation = 0;
  #planAsked = false;

  constructor(client: () => Client) {
    this.#client = client;
  }

  /** Subscribes to the backend's events; call once. */
  listen(): () => void {
    const c = this.#client();
    const offs = [
      c.on('stepMetrics', (m) => {
        this.#apply(m.runId, (s) => s.addStep(m) && (this.lastStep = m));
        if (m.runId === this.runId) void this.#fetchPlan();
      }),
      c.on('evalMetrics', (e) => this.#apply(e.runId, (s) => s.addEval(e) && (this.lastEval = e))),
      c.on('runStatus', (r) => {
        if (r.runId !== this.runId) return;
        this.status = r.status;
        this.stepsDone = Math.max(this.stepsDone, r.stepsDone);
        this.error = r.error;
        this.now = Date.now();
        // Its end time and final figures (or, resumed, its new start) are in the run's record.
        void this.#refreshDetail();
      }),
      c.on('telemetry', (t) => this.#addTelemetry(t)),
    ];
    const clock = setInterval(() => {
      if (this.active) this.now = Date.now();
    }, CLOCK_MS);
    return () => {
      clearInterval(clock);
      offs.forEach((off) => off());
    };
  }

  async #refreshDetail(): Promise<void> {
    const generation = this.#generation;
    const runId = this.runId;
    if (!runId || !this.detail) return;
    try {
      const fresh = await this.#client().call('getRun', { runId });
      if (generation === this.#generation) this.detail = fresh;
    } catch {
      // The next status or a reopen shows it; the live view carries on with what it has.
    }
  }

  #apply(runId: string, change: (s: RunSeries) => unknown): void {
    if (runId !== this.runId) return;
    if (this.#pending) {
      this.#pending.push(change);
      return;
    }
    change(this.series);
    this.stepsDone = Math.max(this.stepsDone, this.series.lastStep);
    this.#scheduleRefresh();
  }

  /**
   * A run placed by the planner records its plan when its engine starts, which may be after the
   * run was opened: ask for it again once steps arrive.
   */
  async #fetchPlan(): Promise<void> {
    const d = this.detail;
    if (!d || d.plan || d.options.offload !== 'auto' || this.#planAsked) return;
    this.#planAsked = true;
    const generation = this.#generation;
    try {
      const fresh = await this.#client().call('getRun', { runId: d.id });
      if (generation === this.#generation && this.detail) this.detail = { ...this.detail, plan: fresh.plan ?? null };
    } catch {
      this.#planAsked = false;
    }
  }

  #scheduleRefresh(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.version++;
    }, REFRESH_MS);
  }

  #addTelemetry(t: TelemetrySample): void {
    this.telemetry = t;
    const x = t.at / 1000;
    const push = (arr: Point[], y: number | null | undefined) => {
      if (y === null || y === undefined) return;
      arr.push({ x, y });
      if (arr.length > TELEMETRY_KEEP) arr.splice(0, arr.length - TELEMETRY_KEEP);
    };
    push(this.telemetryPoints.cpu, t.cpu ? t.cpu.utilization * 100 : null);
    push(this.telemetryPoints.gpu, t.gpus[0]?.utilization != null ? t.gpus[0].utilization * 100 : null);
    push(this.telemetryPoints.ram, t.memory ? (t.memory.usedBytes / Math.max(1, t.memory.totalBytes)) * 100 : null);
    this.telemetryVersion++;
  }

  /** Shows a run: its history first, then whatever arrives live. */
  async open(runId: string): Promise<void> {
    const generation = ++this.#generation;
    this.runId = runId;
    this.series = new RunSeries(this.smoothing);
    this.lastStep = null;
    this.lastEval = null;
    this.detail = null;
    this.#planAsked = false;
    this.loadError = null;
    this.loading = true;
    this.#pending = [];
    try {
      const c = this.#client();
      const detail = await c.call('getRun', { runId });
      if (generation !== this.#generation) return;
      this.detail = detail;
      this.now = Date.now();
      this.status = detail.status;
      this.stepsDone = detail.stepsDone;
      this.stepsPlanned = detail.stepsPlanned;
      this.error = detail.error;
      let since = -1;
      for (;;) {
        const page = await c.call('getMetrics', { runId, sinceStep: since, limit: 10_000 });
        if (generation !== this.#generation) return;
        for (const m of page.steps) this.series.addStep(m);
        for (const e of page.evals) this.series.addEval(e);
        const last = page.steps.at(-1);
        if (!last || last.step >= page.latestStep) break;
        since = last.step;
      }
      for (const e of detail.evals) this.series.addEval(e);
      this.lastEval = detail.evals.at(-1) ?? null;
    } catch (e) {
      if (generation === this.#generation) this.loadError = describeError(e);
    } finally {
      if (generation === this.#generation) {
        const queued = this.#pending ?? [];
        this.#pending = null;
        for (const change of queued) change(this.series);
        this.stepsDone = Math.max(this.stepsDone, this.series.lastStep);
        this.loading = false;
        this.version++;
      }
    }
  }

  close(): void {
    this.#generation++;
    this.runId = null;
    this.detail = null;
    this.status = null;
    this.series = new RunSeries(this.smoothing);
    this.version++;
  }

  setSmoothing(w: number): void {
    this.smoothing = w;
    this.series.setSmoothing(w);
    this.version++;
  }

  async #act(kind: 'stop' | 'checkpoint' | 'resume', call: (c: Client, runId: string) => Promise<unknown>): Promise<void> {
    if (!this.runId) return;
    this.busy = kind;
    try {
      await call(this.#client(), this.runId);
    } finally {
      this.busy = null;
    }
  }

  stop(): Promise<void> {
    return this.#act('stop', async (c, runId) => {
      const r = await c.call('stopRun', { runId, checkpoint: true });
      this.status = r.status;
    });
  }

  checkpoint(): Promise<void> {
    return this.#act('checkpoint', (c, runId) => c.call('checkpointRun', { runId }));
  }

  resume(): Promise<void> {
    return this.#act('resume', async (c, runId) => {
      const r = await c.call('resumeRun', { runId });
      this.status = r.status;
      this.stepsPlanned = r.stepsPlanned;
    });
  }
}

export const liveRun = new LiveRunState(() => app.client);
