// An in-memory RunOperations: what the run supervisor will do, minus the
// engine. Tests drive it (emitStep, finish) and read what it was asked.
import {
  SpillwayError,
  type AnyEvent,
  type EvalMetric,
  type RunDetail,
  type RunStatus,
  type RunSummary,
  type Settings,
  type StepMetric,
  type TelemetrySample,
} from '../../../electron/common/contract.js';
import { EventLog } from '../../helpers/events.js';
import { defaultSettings, type EventListener, type RunOperations } from '../../../electron/services/api.js';

interface FakeRun {
  detail: RunDetail;
  steps: StepMetric[];
}

export class FakeRuns implements RunOperations {
  private runs = new Map<string, FakeRun>();
  private listeners = new Set<EventListener>();
  private nextId = 1;
  private settings: Settings = defaultSettings();
  shutdownCalls = 0;
  /** What became of the call for run 'slow', which never answers on its own: 'arrived', then 'cancelled' on abort. */
  slowGetRun = new EventLog<'arrived' | 'cancelled'>();
  now = 1_700_000_000_000;

  emit(e: AnyEvent): void {
    for (const l of this.listeners) l(e);
  }

  /** Pushes a raw event straight to listeners (for contract-breaking payloads). */
  emitRaw(event: string, payload: unknown): void {
    for (const l of this.listeners) l({ event, payload } as AnyEvent);
  }

  private get(runId: string): FakeRun {
    const r = this.runs.get(runId);
    if (!r) throw new SpillwayError('NOT_FOUND', `no run ${runId}`);
    return r;
  }

  private summary(r: FakeRun): RunSummary {
    const { options: _o, checkpoints: _c, evals: _e, outDir: _d, ...s } = r.detail;
    // As the supervisor has it: ended without completing, with a checkpoint to continue from.
    const resumable = ['stopped', 'failed', 'interrupted'].includes(s.status) && r.detail.checkpoints.length > 0;
    return structuredClone({ ...s, resumable });
  }

  private setStatus(r: FakeRun, status: RunStatus, error: string | null = null): void {
    r.detail.status = status;
    r.detail.error = error;
    this.emit({ event: 'runStatus', payload: { runId: r.detail.id, status, stepsDone: r.detail.stepsDone, error, at: this.now } });
  }

  emitStep(runId: string, step: number, loss = 1 / (step + 1)): StepMetric {
    const r = this.get(runId);
    const m: StepMetric = { runId, step, at: this.now + step * 1000, loss, lossPlus: loss + 0.01, lossMinus: loss - 0.01, projectedGrad: 0.5, lr: 1e-6, stepMs: 12, tokensPerS: 1000, skipped: false };
    r.steps.push(m);
    r.detail.stepsDone = step;
    r.detail.lastLoss = loss;
    this.emit({ event: 'stepMetrics', payload: m });
    return m;
  }

  emitEval(runId: string, step: number, accuracy: number): EvalMetric {
    const r = this.get(runId);
    const m: EvalMetric = { runId, step, at: this.now + step * 1000 + 500, loss: 0.5, accuracy, examples: 10, evalMs: 5 };
    r.detail.evals.push(m);
    r.detail.lastAccuracy = accuracy;
    this.emit({ event: 'evalMetrics', payload: m });
    return m;
  }

  onEvent(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async shutdown(): Promise<void> {
    this.shutdownCalls++;
    for (const r of this.runs.values()) if (r.detail.status === 'running') this.setStatus(r, 'stopped');
  }

  startRun: RunOperations['startRun'] = async ({ name, options }) => {
    const id = `run-${this.nextId++}`;
    const r: FakeRun = {
      detail: {
        id,
        name: name ?? `run ${id}`,
        status: 'queued',
        model: options.model,
        dataset: options.train,
        createdAt: this.now,
        startedAt: this.now,
        endedAt: null,
        stepsDone: 0,
        stepsPlanned: options.steps ?? 1000,
        lastLoss: null,
        lastAccuracy: null,
        error: null,
        resumedFrom: null,
        resumable: false,
        options,
        checkpoints: [],
        evals: [],
        outDir: null,
      },
      steps: [],
    };
    this.runs.set(id, r);
    this.setStatus(r, 'running');
    return this.summary(r);
  };

  stopRun: RunOperations['stopRun'] = async ({ runId, checkpoint }) => {
    const r = this.get(runId);
    if (r.detail.status !== 'running') throw new SpillwayError('CONFLICT', `run ${runId} is ${r.detail.status}`);
    if (checkpoint) r.detail.checkpoints.push({ step: r.detail.stepsDone, path: `/ckpt/${runId}/${r.detail.stepsDone}`, bytes: 1024, createdAt: this.now });
    this.setStatus(r, 'stopped');
    return this.summary(r);
  };

  resumeRun: RunOperations['resumeRun'] = async ({ runId, device }) => {
    const r = this.get(runId);
    if (r.detail.status === 'running') throw new SpillwayError('CONFLICT', `run ${runId} is running`);
    if (r.detail.checkpoints.length === 0) throw new SpillwayError('CONFLICT', `run ${runId} has no checkpoint to resume from`);
    if (device) r.detail.options = { ...r.detail.options, device };
    this.setStatus(r, 'running');
    return this.summary(r);
  };

  /** Samples kept per run (tests put them here). */
  telemetry = new Map<string, TelemetrySample[]>();

  getTelemetry: RunOperations['getTelemetry'] = async ({ runId, limit }) => {
    this.get(runId);
    const all = this.telemetry.get(runId) ?? [];
    return { runId, samples: structuredClone(all.slice(-limit)), thinned: all.length > limit };
  };

  checkpointRun: RunOperations['checkpointRun'] = async ({ runId }) => {
    const r = this.get(runId);
    if (r.detail.status !== 'running') throw new SpillwayError('CONFLICT', `run ${runId} is ${r.detail.status}`);
    return { requested: true };
  };

  listRuns: RunOperations['listRuns'] = async (q) => {
    let runs = [...this.runs.values()].map((r) => this.summary(r));
    if (q.status) runs = runs.filter((r) => q.status!.includes(r.status));
    if (q.search) runs = runs.filter((r) => r.name.includes(q.search!) || r.model.includes(q.search!));
    runs.sort((a, b) => (a.id < b.id ? -1 : 1) * (q.order === 'asc' ? 1 : -1));
    return { runs: runs.slice(q.offset, q.offset + q.limit), total: runs.length };
  };

  getRun: RunOperations['getRun'] = async ({ runId }, ctx) => {
    if (runId === 'slow') {
      // Never answers on its own: for cancellation tests.
      this.slowGetRun.push('arrived');
      return new Promise<never>((_resolve, reject) => {
        ctx.signal.addEventListener('abort', () => {
          this.slowGetRun.push('cancelled');
          reject(new Error('aborted'));
        });
      });
    }
    if (runId === 'broken') return { id: 'broken' } as RunDetail; // breaks the contract on purpose
    if (runId === 'throws') throw new TypeError('something internal went wrong');
    return structuredClone(this.get(runId).detail);
  };

  getMetrics: RunOperations['getMetrics'] = async ({ runId, sinceStep, limit }) => {
    const r = this.get(runId);
    const steps = r.steps.filter((s) => s.step > sinceStep).slice(0, limit);
    const evals = r.detail.evals.filter((e) => e.step > sinceStep);
    return { runId, steps: structuredClone(steps), evals: structuredClone(evals), latestStep: r.steps.at(-1)?.step ?? -1 };
  };

  deleteRun: RunOperations['deleteRun'] = async ({ runId }) => {
    const r = this.get(runId);
    if (r.detail.status === 'running') throw new SpillwayError('CONFLICT', `run ${runId} is running: stop it first`);
    this.runs.delete(runId);
    return { deleted: true };
  };

  exportRun: RunOperations['exportRun'] = async ({ runId, kind, dest }) => {
    this.get(runId);
    return { path: `${dest}/${runId}-${kind}`, bytes: 42 };
  };

  getSettings: RunOperations['getSettings'] = async () => structuredClone(this.settings);

  updateSettings: RunOperations['updateSettings'] = async (patch) => {
    this.settings = { ...this.settings, ...patch };
    return structuredClone(this.settings);
  };
}
