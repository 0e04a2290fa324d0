// Bounded chart data: a series of any length drawn with at most `maxPoints`
// points, keeping every spike. The x range is cut into equal-width buckets;
// each bucket keeps its minimum and its maximum (in x order), and the first and
// last points are always kept. Same idea as chart.js's 'min-max' decimation,
// done before the data reaches the chart so the chart's arrays stay small.

import type { Point } from './smoothing.ts';

export function decimateMinMax(points: readonly Point[], maxPoints: number): Point[] {
  if (maxPoints < 4) throw new RangeError('maxPoints must be at least 4');
  if (points.length <= maxPoints) return points.slice();
  const first = points[0];
  const last = points[points.length - 1];
  const buckets = Math.floor((maxPoints - 2) / 2);
  const span = last.x - first.x;
  const out: Point[] = [first];
  let i = 1;
  for (let b = 0; b < buckets; b++) {
    const end = b === buckets - 1 ? Infinity : first.x + (span * (b + 1)) / buckets;
    let min: Point | null = null;
    let max: Point | null = null;
    let minAt = 0;
    let maxAt = 0;
    for (; i < points.length - 1 && points[i].x < end; i++) {
      const p = points[i];
      if (!Number.isFinite(p.y)) continue;
      if (min === null || p.y < min.y) { min = p; minAt = i; }
      if (max === null || p.y > max.y) { max = p; maxAt = i; }
    }
    if (min === null || max === null) continue;
    if (min === max) out.push(min);
    else if (minAt < maxAt) out.push(min, max);
    else out.push(max, min);
  }
  out.push(last);
  return out;
}
