// One run's curves as plain arrays: raw loss, its smoothed twin (kept up to
// date point by point), evaluations, throughput. Appends are idempotent by
// step, so a page of history and live events can overlap without duplicates.

import type { EvalMetric, StepMetric } from '../../../electron/common/contract.ts';
import { decimateMinMax } from './decimate.ts';
import { PACE_WINDOW, type StepTime } from './progress.ts';
import { EmaSmoother, type Point } from './smoothing.ts';
import { addIoSample, type IoSample } from './tiers.ts';

export const MAX_CHART_POINTS = 1500;

export class RunSeries {
  loss: Point[] = [];
  smoothed: Point[] = [];
  stepMs: Point[] = [];
  tokensPerS: Point[] = [];
  evalLoss: Point[] = [];
  evalAccuracy: Point[] = [];
  /** Generated answers (completion tasks): exact match and token F1, 0..1. */
  evalExactMatch: Point[] = [];
  evalF1: Point[] = [];
  /** The last steps' bytes per link and I/O wait (steps that reported them), for the Tiers panel. */
  io: IoSample[] = [];
  /** The last PACE_WINDOW steps' end times: the ETA. */
  recent: StepTime[] = [];
  lastStep = -1;
  lastEvalStep = -1;
  /** When each step and evaluation ended, by step: the time axis. */
  #stepAt = new Map<number, number>();
  #evalAt = new Map<number, number>();
  #ema: EmaSmoother;

  constructor(public smoothing: number) {
    this.#ema = new EmaSmoother(smoothing);
  }

  addStep(m: StepMetric): boolean {
    if (m.step <= this.lastStep) return false;
    this.lastStep = m.step;
    this.#stepAt.set(m.step, m.at);
    this.recent.push({ step: m.step, at: m.at });
    if (this.recent.length > PACE_WINDOW) this.recent.shift();
    addIoSample(this.io, m);
    if (m.skipped) return true;
    this.loss.push({ x: m.step, y: m.loss });
    this.smoothed.push({ x: m.step, y: this.#ema.push(m.loss) });
    this.stepMs.push({ x: m.step, y: m.stepMs });
    this.tokensPerS.push({ x: m.step, y: m.tokensPerS });
    return true;
  }

  addEval(e: EvalMetric): boolean {
    if (e.step <= this.lastEvalStep) return false;
    this.lastEvalStep = e.step;
    this.#evalAt.set(e.step, e.at);
    this.evalLoss.push({ x: e.step, y: e.loss });
    if (e.accuracy !== null) this.evalAccuracy.push({ x: e.step, y: e.accuracy });
    if (e.exactMatch != null) this.evalExactMatch.push({ x: e.step, y: e.exactMatch });
    if (e.f1 != null) this.evalF1.push({ x: e.step, y: e.f1 });
    return true;
  }

  setSmoothing(weight: number): void {
    this.smoothing = weight;
    this.#ema = new EmaSmoother(weight);
    this.smoothed = [];
    for (const p of this.loss) this.smoothed.push({ x: p.x, y: this.#ema.push(p.y) });
  }

  /** The smoothed curve exactly as TensorBoard would draw it (its constant-series rule included). */
  smoothedForDisplay(): Point[] {
    const first = this.loss[0]?.y;
    return this.loss.every((p) => p.y === first) ? this.loss.slice() : this.smoothed;
  }

  /**
   * Step-indexed points (of this series) placed at the seconds since `t0` when their step, or their
   * evaluation, ended; points without a known time are left out.
   */
  alongTime(points: readonly Point[], t0: number, of: 'steps' | 'evals' = 'steps'): Point[] {
    const out: Point[] = [];
    for (const p of points) {
      const x = this.secondsAt(p.x, t0, of);
      if (x !== null) out.push({ x, y: p.y });
    }
    return out;
  }

  /** Seconds since `t0` when `step` (or its evaluation) ended; null when unknown. */
  secondsAt(step: number, t0: number, of: 'steps' | 'evals' = 'steps'): number | null {
    const t = (of === 'steps' ? this.#stepAt : this.#evalAt).get(step);
    return t === undefined ? null : (t - t0) / 1000;
  }

  bounded(points: readonly Point[], max = MAX_CHART_POINTS): Point[] {
    return decimateMinMax(points, max);
  }
}
