// Waiting on what arrives (engine events, run events, frames), never on the clock.
//
// A test that polls with its own wall-clock deadline fails whenever the machine is slow (CI runs
// many suites at once on two cores). Here a wait is woken by each arrival and has no deadline of
// its own: vitest's testTimeout is the one guard against a hang, and it names the test.
import type { SpillwayClient } from '../../electron/common/client.js';
import type { RunStatus, StepMetric } from '../../electron/common/contract.js';
import type { TrainEvent } from '../../electron/engine/trainer.js';

type Waiter<T> = { holds: (items: readonly T[]) => boolean; fails?: (items: readonly T[]) => string | null; resolve: () => void; reject: (e: Error) => void };

/**
 * An array of what arrived that can be awaited: push as usual (from an event callback), and
 * `until(holds)` resolves once `holds` is true of the items so far, checked at once and after
 * every push. `fails` rejects the wait early when the items show it can no longer come true
 * (a run that failed before its steps arrived), with its message.
 */
export class EventLog<T> extends Array<T> {
  // map/filter/slice of a log are plain arrays.
  static override get [Symbol.species](): ArrayConstructor {
    return Array;
  }

  #waiters: Waiter<T>[] = [];
  #ended: string | null = null;

  override push(...items: T[]): number {
    const n = super.push(...items);
    this.check();
    return n;
  }

  until(holds: (items: readonly T[]) => boolean, fails?: (items: readonly T[]) => string | null): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#waiters.push({ holds, fails, resolve, reject });
      this.check();
    });
  }

  /** Nothing more will arrive (a socket closed): waits that do not hold by now fail with `why`. */
  end(why: string): void {
    this.#ended = why;
    this.check();
  }

  /** The first item that satisfies `pred`, once it has arrived. */
  async first(pred: (item: T) => boolean): Promise<T> {
    await this.until((items) => items.some(pred));
    return this.find(pred) as T;
  }

  private check(): void {
    this.#waiters = this.#waiters.filter((w) => {
      if (w.holds(this)) {
        w.resolve();
        return false;
      }
      const why = w.fails?.(this) ?? this.#ended;
      if (why !== null) {
        w.reject(new Error(why));
        return false;
      }
      return true;
    });
  }
}

/** The engine job a wait depends on: when it ends first, the wait cannot come true. */
interface Job {
  done: Promise<unknown>;
}

/** `wait`, or a rejection naming why when the engine ends before it comes true. */
function whileRunning(wait: Promise<void>, job: Job, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    wait.then(resolve, reject);
    job.done.then(
      () => reject(new Error(`the engine finished before ${what}`)),
      (e: unknown) => reject(e instanceof Error ? e : new Error(String(e))),
    );
  });
}

/** Resolves once a checkpoint at `step` or later has been written. */
export function waitForCheckpoint(events: EventLog<TrainEvent>, step: number, job: Job): Promise<void> {
  return whileRunning(events.until((ev) => ev.some((e) => e.type === 'checkpoint' && e.step >= step)), job, `a checkpoint at step ${step}`);
}

/** Resolves once `n` steps have arrived. */
export function waitForSteps(events: EventLog<TrainEvent>, n: number, job: Job): Promise<void> {
  return whileRunning(events.until((ev) => ev.filter((e) => e.type === 'step').length >= n), job, `${n} steps`);
}

/** What a contract client sees of one run: its steps and its changes of status. */
export type RunNews = { type: 'step'; metric: StepMetric } | { type: 'status'; status: RunStatus; error: string | null };

export interface RunWatch {
  news: EventLog<RunNews>;
  steps(): StepMetric[];
  /** Resolves once `holds`; rejects (with the run's error) when the run has ended without it. */
  until(what: string, holds: (w: RunWatch) => boolean): Promise<void>;
  status(): RunStatus;
  off(): void;
}

const ENDED: readonly RunStatus[] = ['stopped', 'completed', 'failed', 'interrupted'];

/** Follows a run over the contract from `sinceStep` on (catch-up, then live), starting from its current status. */
export async function watchRun(client: SpillwayClient, runId: string, sinceStep: number): Promise<RunWatch> {
  const news = new EventLog<RunNews>();
  const off = await client.subscribe(runId, sinceStep, {
    onStep: (metric) => news.push({ type: 'step', metric }),
    onStatus: (s) => news.push({ type: 'status', status: s.status, error: s.error }),
  });
  const now = await client.call('getRun', { runId });
  news.push({ type: 'status', status: now.status, error: now.error });
  const w: RunWatch = {
    news,
    steps: () => news.flatMap((n) => (n.type === 'step' ? [n.metric] : [])),
    status: () => {
      const statuses = news.flatMap((n) => (n.type === 'status' ? [n.status] : []));
      return statuses[statuses.length - 1];
    },
    until: (what, holds) =>
      news.until(
        () => holds(w),
        (items) => {
          const last = items.at(-1);
          return last?.type === 'status' && ENDED.includes(last.status) ? `run ${runId} ended (${last.status}${last.error ? `: ${last.error}` : ''}) before ${what}` : null;
        },
      ),
    off,
  };
  return w;
}
