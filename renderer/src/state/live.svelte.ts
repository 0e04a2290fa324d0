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
import { emptySeries, telemetrySeries } from '../lib/telemetry.ts';
import type { TelemetrySeries } from '../lib/telemetry.ts';

export const ACTIVE: readonly RunStatus[] = ['queued', 'running', 'stopping'];
const TELEMETRY_KEEP = 900;
const REFRESH_MS = 250;
/** How often the elapsed time and the ETA of a running run move on. */
export const CLOCK_MS = 1000;


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
  /** The machine's telemetry samples while the run ran: kept with the run, then live (the newest TELEMETRY_KEEP). */
  telemetrySamples: TelemetrySample[] = [];
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
    return {
      accuracy: this.series.evalAccuracy.slice(),
      loss: this.series.evalLoss.slice(),
      exactMatch: this.series.evalExactMatch.slice(),
      f1: this.series.evalF1.slice(),
    };
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
  /** The samples as series over the run's elapsed time, its own GPU's (found once its engine said which). */
  telemetryChart = $derived.by((): TelemetrySeries => {
    void this.telemetryVersion;
    const d = this.detail;
    return d ? telemetrySeries(this.telemetrySamples, d.startedAt ?? d.createdAt, d.device) : emptySeries();
  });

  #client: () => Client;
  #pending: ((s: RunSeries) => void)[] | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #generation = 0;
  #planAsked = false;
  #telemetryQueue: TelemetrySample[] | null = null;

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
    // A GPU run without --offload is placed by the planner too.
    const planned = d && (d.options.offload === 'auto' || (d.options.offload === undefined && d.device?.id !== 'cpu'));
    if (!d || this.#planAsked || ((d.plan || !planned) && d.device)) return;
    this.#planAsked = true;
    const generation = this.#generation;
    try {
      const fresh = await this.#client().call('getRun', { runId: d.id });
      if (generation === this.#generation && this.detail) {
        this.detail = { ...this.detail, plan: fresh.plan ?? null, device: fresh.device ?? null };
        this.telemetryVersion++;
      }
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

  /** A live sample: machine-wide, so it belongs to the open run only while that run is active. */
  #addTelemetry(t: TelemetrySample): void {
    if (!this.detail || !this.active) return;
    if (this.#telemetryQueue) {
      this.#telemetryQueue.push(t);
      return;
    }
    this.telemetry = t;
    this.telemetrySamples.push(t);
    if (this.telemetrySamples.length > TELEMETRY_KEEP) this.telemetrySamples.splice(0, this.telemetrySamples.length - TELEMETRY_KEEP);
    this.telemetryVersion++;
  }

  /** The samples kept with the run (a finished run shows them; a running one continues them live). */
  async #loadTelemetry(generation: number): Promise<void> {
    const d = this.detail;
    if (!d) return;
    // Live samples that arrive meanwhile wait, then follow the kept ones they are newer than.
    this.#telemetryQueue = [];
    let kept: TelemetrySample[] = [];
    try {
      kept = (await this.#client().call('getTelemetry', { runId: d.id, limit: TELEMETRY_KEEP })).samples ?? [];
    } catch {
      // An older backend without kept samples: the live ones still come.
    }
    if (generation !== this.#generation) return;
    const queued = this.#telemetryQueue;
    this.#telemetryQueue = null;
    const last = kept.at(-1)?.at ?? -Infinity;
    const samples = [...kept, ...queued.filter((t) => t.at > last)];
    this.telemetrySamples = samples.slice(-TELEMETRY_KEEP);
    this.telemetry = samples.at(-1) ?? null;
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
    this.telemetry = null;
    this.telemetrySamples = [];
    this.telemetryVersion++;
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
      void this.#loadTelemetry(generation);
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
