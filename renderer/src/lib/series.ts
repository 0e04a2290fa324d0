// One run's curves as plain arrays: raw loss, its smoothed twin (kept up to
// date point by point), evaluations, throughput. Appends are idempotent by
// step, so a page of history and live events can overlap without duplicates.

import type { EvalMetric, StepMetric } from '../../../electron/common/contract.ts';
import { decimateMinMax } from './decimate.ts';
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
  /** The last steps' bytes per link and I/O wait (steps that reported them), for the Tiers panel. */
  io: IoSample[] = [];
  lastStep = -1;
  lastEvalStep = -1;
  #ema: EmaSmoother;

  constructor(public smoothing: number) {
    this.#ema = new EmaSmoother(smoothing);
  }

  addStep(m: StepMetric): boolean {
    if (m.step <= this.lastStep) return false;
    this.lastStep = m.step;
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
    this.evalLoss.push({ x: e.step, y: e.loss });
    if (e.accuracy !== null) this.evalAccuracy.push({ x: e.step, y: e.accuracy });
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

  bounded(points: readonly Point[], max = MAX_CHART_POINTS): Point[] {
    return decimateMinMax(points, max);
  }
}
