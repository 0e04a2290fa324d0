import { describe, expect, it } from 'vitest';
import { EmaSmoother, smoothSeries } from '../../renderer/src/lib/smoothing.ts';

// TensorBoard's classicSmoothing (webapp/widgets/line_chart_v2/data_transformer.ts),
// written out independently as the oracle.
function tensorboard(ys: number[], w: number): number[] {
  if (ys.every((y) => y === ys[0])) return ys.slice();
  let last = 0;
  let n = 0;
  return ys.map((y) => {
    if (!Number.isFinite(y)) return y;
    last = last * w + (1 - w) * y;
    n++;
    return last / (w === 1 ? 1 : 1 - Math.pow(w, n));
  });
}

const pts = (ys: number[]) => ys.map((y, x) => ({ x, y }));

describe('EMA smoothing with TensorBoard debiasing', () => {
  it('starts at the first value (debiased), not at zero', () => {
    expect(smoothSeries(pts([4, 2]), 0.9)[0].y).toBeCloseTo(4, 12);
  });

  it('matches TensorBoard on a noisy series for several weights', () => {
    const ys = Array.from({ length: 200 }, (_, i) => Math.sin(i / 7) + ((i * 7919) % 13) / 13);
    for (const w of [0, 0.3, 0.6, 0.9, 0.99]) {
      const got = smoothSeries(pts(ys), w).map((p) => p.y);
      const want = tensorboard(ys, w);
      got.forEach((g, i) => expect(g).toBeCloseTo(want[i], 12));
    }
  });

  it('second point is the debiased weighted mean', () => {
    const w = 0.6;
    // last = (1-w)*a*w + (1-w)*b ; debias 1 - w^2
    const want = ((1 - w) * w * 1 + (1 - w) * 3) / (1 - w * w);
    expect(smoothSeries(pts([1, 3]), w)[1].y).toBeCloseTo(want, 12);
  });

  it('weight 0 is the raw series', () => {
    expect(smoothSeries(pts([1, 5, 2]), 0).map((p) => p.y)).toEqual([1, 5, 2]);
  });

  it('passes non-finite values through without counting them', () => {
    const got = smoothSeries(pts([1, NaN, 3]), 0.5).map((p) => p.y);
    expect(got[1]).toBeNaN();
    expect(got[2]).toBeCloseTo(tensorboard([1, NaN, 3], 0.5)[2], 12);
  });

  it('returns a constant series unchanged', () => {
    expect(smoothSeries(pts([2, 2, 2]), 0.9).map((p) => p.y)).toEqual([2, 2, 2]);
  });

  it('streaming form equals the batch form', () => {
    const ys = [3, 1, 4, 1, 5, 9, 2, 6];
    const s = new EmaSmoother(0.8);
    expect(ys.map((y) => s.push(y))).toEqual(smoothSeries(pts(ys), 0.8).map((p) => p.y));
  });

  it('rejects weights outside [0, 1]', () => {
    expect(() => new EmaSmoother(1.5)).toThrow(RangeError);
  });
});
