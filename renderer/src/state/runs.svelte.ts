// The Runs table: filter, sort, select several to overlay their curves, and
// the per-run actions (open, resume, export, delete).

import type { ExportKind, RunStatus, RunSummary } from '../../../electron/common/contract.ts';
import { filled } from '../../../electron/common/options.ts';
import { app } from './app.svelte.ts';
import type { Client } from '../../../electron/common/client.ts';
import { describeError } from '../../../electron/common/client.ts';
import { comparisonCsv, type ComparedRun, type XAxis } from '../lib/compare.ts';
import { RunSeries } from '../lib/series.ts';
import { ACTIVE } from './live.svelte.ts';

export type SortKey = 'name' | 'status' | 'model' | 'dataset' | 'lastLoss' | 'lastAccuracy' | 'duration' | 'createdAt';

export function runDuration(r: RunSummary, now = Date.now()): number | null {
  if (r.startedAt === null) return null;
  return (r.endedAt ?? now) - r.startedAt;
}

function sortValue(r: RunSummary, key: SortKey): string | number {
  switch (key) {
    case 'duration':
      return runDuration(r) ?? -1;
    case 'lastLoss':
      return r.lastLoss ?? Infinity;
    case 'lastAccuracy':
      return r.lastAccuracy ?? -1;
    default:
      return r[key];
  }
}

export function sortRuns(runs: readonly RunSummary[], key: SortKey, order: 'asc' | 'desc'): RunSummary[] {
  const sign = order === 'asc' ? 1 : -1;
  return [...runs].sort((a, b) => {
    const va = sortValue(a, key);
    const vb = sortValue(b, key);
    const c = typeof va === 'number' && typeof vb === 'number' ? va - vb : String(va).localeCompare(String(vb));
    return c * sign || (b.createdAt - a.createdAt);
  });
}

export class RunsState {
  runs = $state<RunSummary[]>([]);
  total = $state(0);
  search = $state('');
  statusFilter = $state<RunStatus | ''>('');
  sortKey = $state<SortKey>('createdAt');
  order = $state<'asc' | 'desc'>('desc');
  selected = $state<string[]>([]);
  loading = $state(false);
  error = $state<string | null>(null);
  /** The selected runs' curves and options, loaded on demand for the comparison. */
  overlay = $state<ComparedRun[]>([]);
  overlayError = $state<string | null>(null);
  /** Bumped when the compared curves change in place (smoothing). */
  overlayVersion = $state(0);
  compareSmoothing = $state(0.6);
  compareAxis = $state<XAxis>('step');

  sorted = $derived(sortRuns(this.runs, this.sortKey, this.order));

  #client: () => Client;
  #loadSeq = 0;

  constructor(client: () => Client) {
    this.#client = client;
  }

  async refresh(): Promise<void> {
    const seq = ++this.#loadSeq;
    this.loading = true;
    try {
      const r = await this.#client().call('listRuns', {
        ...(this.search.trim() ? { search: this.search.trim() } : {}),
        ...(this.statusFilter ? { status: [this.statusFilter] } : {}),
        limit: 1000,
      });
      if (seq !== this.#loadSeq) return;
      this.runs = r.runs;
      this.total = r.total;
      this.error = null;
      const ids = new Set(r.runs.map((x) => x.id));
      this.selected = this.selected.filter((id) => ids.has(id));
    } catch (e) {
      if (seq === this.#loadSeq) this.error = describeError(e);
    } finally {
      if (seq === this.#loadSeq) this.loading = false;
    }
  }

  /**
   * Keeps the table live: steps and evaluations move a row's figures, a change of status its badge;
   * a run that has ended is read again for its end time and final figures. Returns the unsubscribe.
   */
  listen(): () => void {
    const c = this.#client();
    const offs = [
      c.on('stepMetrics', (m) => this.#patch(m.runId, (r) => (m.step >= r.stepsDone ? { stepsDone: m.step, lastLoss: Number.isFinite(m.loss) ? m.loss : r.lastLoss } : {}))),
      c.on('evalMetrics', (e) => this.#patch(e.runId, () => (e.accuracy === null ? {} : { lastAccuracy: e.accuracy }))),
      c.on('runStatus', (s) => {
        if (!this.applyStatus(s.runId, s.status, s.stepsDone, s.error)) void this.refresh();
        else if (!ACTIVE.includes(s.status)) void this.#reload(s.runId);
      }),
    ];
    return () => offs.forEach((off) => off());
  }

  #patch(runId: string, change: (r: RunSummary) => Partial<RunSummary>): void {
    const i = this.runs.findIndex((r) => r.id === runId);
    if (i >= 0) this.runs[i] = { ...this.runs[i], ...change(this.runs[i]) };
  }

  async #reload(runId: string): Promise<void> {
    try {
      const d = await this.#client().call('getRun', { runId });
      this.#patch(runId, () => ({
        status: d.status, stepsDone: d.stepsDone, stepsPlanned: d.stepsPlanned, startedAt: d.startedAt, endedAt: d.endedAt,
        lastLoss: d.lastLoss, lastAccuracy: d.lastAccuracy, error: d.error,
      }));
    } catch {
      // Deleted meanwhile, or the backend is away: the next refresh shows what is there.
    }
  }

  /** Applies a status event to the row in place (the table stays live without refetching). */
  applyStatus(runId: string, status: RunStatus, stepsDone: number, error: string | null): boolean {
    const i = this.runs.findIndex((r) => r.id === runId);
    if (i < 0) return false;
    this.runs[i] = { ...this.runs[i], status, stepsDone, error };
    return true;
  }

  sortBy(key: SortKey): void {
    if (this.sortKey === key) this.order = this.order === 'asc' ? 'desc' : 'asc';
    else {
      this.sortKey = key;
      this.order = key === 'name' || key === 'model' || key === 'dataset' ? 'asc' : 'desc';
    }
  }

  toggle(id: string): void {
    this.selected = this.selected.includes(id) ? this.selected.filter((x) => x !== id) : [...this.selected, id];
  }

  async loadOverlay(): Promise<void> {
    this.overlayError = null;
    try {
      const c = this.#client();
      this.overlay = await Promise.all(
        this.selected.map(async (id): Promise<ComparedRun> => {
          const detail = await c.call('getRun', { runId: id });
          const series = new RunSeries(this.compareSmoothing);
          let since = -1;
          for (;;) {
            const page = await c.call('getMetrics', { runId: id, sinceStep: since, limit: 10_000 });
            for (const m of page.steps) series.addStep(m);
            for (const e of page.evals) series.addEval(e);
            const last = page.steps.at(-1);
            if (!last || last.step >= page.latestStep) break;
            since = last.step;
          }
          // getRun's options went through RunOptions: the defaults that follow the trainable set are filled.
          return { id, name: detail.name, startedAt: detail.startedAt, options: filled(detail.options), series };
        }),
      );
    } catch (e) {
      this.overlayError = describeError(e);
    }
  }

  setCompareSmoothing(weight: number): void {
    this.compareSmoothing = weight;
    for (const o of this.overlay) o.series.setSmoothing(weight);
    this.overlayVersion++;
  }

  /** What the comparison shows, as CSV. */
  comparisonCsv(): string {
    return comparisonCsv(this.overlay);
  }

  async remove(id: string): Promise<void> {
    await this.#client().call('deleteRun', { runId: id });
    this.runs = this.runs.filter((r) => r.id !== id);
    this.selected = this.selected.filter((x) => x !== id);
    this.overlay = this.overlay.filter((o) => o.id !== id);
    this.total = Math.max(0, this.total - 1);
  }

  async resume(id: string): Promise<RunSummary> {
    const r = await this.#client().call('resumeRun', { runId: id });
    this.applyStatus(id, r.status, r.stepsDone, r.error);
    return r;
  }

  /** Without overwrite an existing destination is refused (CONFLICT, name DestinationExists): ask, then call again with it. */
  async exportRun(id: string, kind: ExportKind, dest: string, overwrite = false): Promise<{ path: string; bytes: number }> {
    return this.#client().call('exportRun', { runId: id, kind, dest, overwrite });
  }
}

export const runs = new RunsState(() => app.client);
