// Exponential moving average with TensorBoard's debiasing, so the smoothed
// curve of a run reads the same here as in TensorBoard.
//
// Reference: tensorflow/tensorboard,
// tensorboard/webapp/widgets/line_chart_v2/data_transformer.ts (classicSmoothing):
//   last = last * w + (1 - w) * y      (last starts at 0)
//   n    = number of finite points so far
//   smoothed = last / (1 - w^n)        (no debias when w == 1)
// Non-finite values pass through unchanged and are not counted; a series whose
// values are all equal is returned as is.

export interface Point {
  x: number;
  y: number;
}

/** Streaming form: feed points one at a time (what the live view does). */
export class EmaSmoother {
  private last = 0;
  private count = 0;

  constructor(readonly weight: number) {
    if (!(weight >= 0 && weight <= 1)) throw new RangeError(`smoothing weight ${weight} is outside [0, 1]`);
  }

  push(y: number): number {
    if (!Number.isFinite(y)) return y;
    this.last = this.last * this.weight + (1 - this.weight) * y;
    this.count++;
    const debias = this.weight === 1 ? 1 : 1 - Math.pow(this.weight, this.count);
    return this.last / debias;
  }
}

/** The whole series at once; identical to TensorBoard's classicSmoothing. */
export function smoothSeries(points: readonly Point[], weight: number): Point[] {
  if (points.length === 0) return [];
  const first = points[0].y;
  if (points.every((p) => p.y === first)) return points.map((p) => ({ x: p.x, y: p.y }));
  const ema = new EmaSmoother(weight);
  return points.map((p) => ({ x: p.x, y: ema.push(p.y) }));
}
