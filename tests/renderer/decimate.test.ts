import { describe, expect, it } from 'vitest';
import { decimateMinMax } from '../../renderer/src/lib/decimate.ts';

const series = (n: number, f: (i: number) => number) => Array.from({ length: n }, (_, i) => ({ x: i, y: f(i) }));

describe('min-max decimation', () => {
  it('leaves short series alone', () => {
    const s = series(10, (i) => i);
    expect(decimateMinMax(s, 100)).toEqual(s);
  });

  it('bounds a long series and keeps first, last and every extreme', () => {
    const s = series(100_000, (i) => Math.sin(i / 50));
    s[31_337].y = 42;
    s[77_777].y = -42;
    const out = decimateMinMax(s, 1000);
    expect(out.length).toBeLessThanOrEqual(1000);
    expect(out[0]).toBe(s[0]);
    expect(out.at(-1)).toBe(s.at(-1));
    expect(out).toContain(s[31_337]);
    expect(out).toContain(s[77_777]);
  });

  it('keeps points in x order', () => {
    const out = decimateMinMax(series(5000, (i) => (i * 7919) % 101), 200);
    for (let i = 1; i < out.length; i++) expect(out[i].x).toBeGreaterThan(out[i - 1].x);
  });

  it('handles uneven x spacing (gaps)', () => {
    const s = [...series(100, (i) => i), ...series(100, (i) => -i).map((p) => ({ x: p.x + 10_000, y: p.y }))];
    const out = decimateMinMax(s, 20);
    expect(out.length).toBeLessThanOrEqual(20);
    expect(out.some((p) => p.x >= 10_000)).toBe(true);
  });
});
