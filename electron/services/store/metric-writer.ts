// Batches metric rows into one transaction every ~250 ms or every N rows, so
// a fast run costs a handful of fsyncs a second; close() flushes the rest.
import type { RunStore } from './run-store.js';
import type { EvalMetric, LogLine, StepMetric, SystemSample, TierStat } from './types.js';

export interface MetricWriterOptions {
  /** Flush this long after the first buffered row (default 250 ms). */
  flushMs?: number;
  /** Flush at once when this many rows are buffered (default 500). */
  maxRows?: number;
  /** Told when a flush fails; the rows are dropped so the run carries on. */
  onError?: (e: Error) => void;
}

interface RunBuffer {
  steps: StepMetric[];
  evals: EvalMetric[];
  logs: LogLine[];
}

export class MetricWriter {
  private readonly flushMs: number;
  private readonly maxRows: number;
  private readonly onError: (e: Error) => void;
  private runs = new Map<string, RunBuffer>();
  private system: SystemSample[] = [];
  private tiers: TierStat[] = [];
  private rows = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly store: RunStore,
    options: MetricWriterOptions = {},
  ) {
    this.flushMs = options.flushMs ?? 250;
    this.maxRows = options.maxRows ?? 500;
    this.onError = options.onError ?? ((e) => process.emitWarning(`spillway: metric write failed: ${e.message}`));
  }

  /** Rows waiting for the next flush. */
  get pending(): number {
    return this.rows;
  }

  private buffer(runId: string): RunBuffer {
    let b = this.runs.get(runId);
    if (!b) {
      b = { steps: [], evals: [], logs: [] };
      this.runs.set(runId, b);
    }
    return b;
  }

  addStep(runId: string, m: StepMetric): void {
    this.buffer(runId).steps.push(m);
    this.added();
  }

  addEval(runId: string, m: EvalMetric): void {
    this.buffer(runId).evals.push(m);
    this.added();
  }

  addLog(runId: string, line: LogLine): void {
    this.buffer(runId).logs.push(line);
    this.added();
  }

  addSystemSample(s: SystemSample): void {
    this.system.push(s);
    this.added();
  }

  addTierStat(t: TierStat): void {
    this.tiers.push(t);
    this.added();
  }

  private added(): void {
    if (this.closed) throw new Error('the metric writer is closed');
    this.rows++;
    if (this.rows >= this.maxRows) this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.flushMs);
      this.timer.unref();
    }
  }

  /** Writes everything buffered in one transaction; returns the row count. */
  flush(): number {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.rows === 0) return 0;
    const runs = this.runs;
    const system = this.system;
    const tiers = this.tiers;
    const n = this.rows;
    this.runs = new Map();
    this.system = [];
    this.tiers = [];
    this.rows = 0;
    try {
      this.store.transaction(() => {
        for (const [runId, b] of runs) {
          if (b.steps.length) {
            this.store.insertStepMetrics(runId, b.steps);
            this.store.advanceStepsDone(runId, b.steps[b.steps.length - 1].step);
          }
          if (b.evals.length) this.store.insertEvalMetrics(runId, b.evals);
          if (b.logs.length) this.store.addLogs(runId, b.logs);
        }
        if (system.length) this.store.insertSystemSamples(system);
        if (tiers.length) this.store.insertTierStats(tiers);
      });
    } catch (e) {
      this.onError(e as Error);
      return 0;
    }
    for (const [runId, b] of runs) if (b.steps.length) this.store.noteFlushed(runId, b.steps[b.steps.length - 1].step);
    return n;
  }

  /** Drops whatever is buffered for a run (it is being deleted). */
  discard(runId: string): void {
    const b = this.runs.get(runId);
    if (!b) return;
    this.rows -= b.steps.length + b.evals.length + b.logs.length;
    this.runs.delete(runId);
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
  }
}
