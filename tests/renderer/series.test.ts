import { describe, expect, it } from 'vitest';
import { RunSeries } from '../../renderer/src/lib/series.ts';
import { smoothSeries } from '../../renderer/src/lib/smoothing.ts';

const step = (s: number, loss: number, at = 1_000 * s) => ({ runId: 'r', step: s, at, loss, lossPlus: loss, lossMinus: loss, projectedGrad: 0, lr: 1e-3, stepMs: 10, tokensPerS: 100, skipped: false });

describe('RunSeries', () => {
  it('ignores steps already seen (history and live events overlap)', () => {
    const s = new RunSeries(0.5);
    expect(s.addStep(step(1, 2))).toBe(true);
    expect(s.addStep(step(1, 2))).toBe(false);
    expect(s.addStep(step(0, 2))).toBe(false);
    expect(s.loss).toHaveLength(1);
  });

  it('keeps the smoothed curve equal to smoothing the whole series, also after a weight change', () => {
    const s = new RunSeries(0.6);
    const ys = [3, 2.5, 2.7, 2.1, 1.9, 2.2, 1.5];
    ys.forEach((y, i) => s.addStep(step(i + 1, y)));
    expect(s.smoothed.map((p) => p.y)).toEqual(smoothSeries(s.loss, 0.6).map((p) => p.y));
    s.setSmoothing(0.9);
    expect(s.smoothed.map((p) => p.y)).toEqual(smoothSeries(s.loss, 0.9).map((p) => p.y));
  });

  it('bounds what it hands to charts', () => {
    const s = new RunSeries(0.6);
    for (let i = 1; i <= 20_000; i++) s.addStep(step(i, Math.random()));
    expect(s.bounded(s.loss).length).toBeLessThanOrEqual(1500);
  });

  it('places steps and evaluations at the seconds since the start when they ended, and keeps the recent pace', () => {
    const s = new RunSeries(0);
    const t0 = 1_700_000_000_000;
    [1, 2, 3].forEach((i) => s.addStep(step(i, 1 / i, t0 + 1500 * i)));
    s.addEval({ runId: 'r', step: 2, at: t0 + 3200, loss: 0.7, accuracy: 0.5, examples: 10, evalMs: 5 });
    expect(s.alongTime(s.loss, t0)).toEqual([{ x: 1.5, y: 1 }, { x: 3, y: 0.5 }, { x: 4.5, y: 1 / 3 }]);
    expect(s.alongTime(s.evalAccuracy, t0, 'evals')).toEqual([{ x: 3.2, y: 0.5 }]);
    expect(s.recent.map((r) => r.step)).toEqual([1, 2, 3]);
    for (let i = 4; i <= 200; i++) s.addStep(step(i, 1, t0 + 1500 * i));
    expect(s.recent).toHaveLength(50);
    expect(s.recent.at(-1)).toEqual({ step: 200, at: t0 + 300_000 });
  });

  it('records evaluations once per step', () => {
    const s = new RunSeries(0);
    s.addEval({ runId: 'r', step: 0, at: 0, loss: 0.7, accuracy: 0.5, examples: 10, evalMs: 5 });
    s.addEval({ runId: 'r', step: 0, at: 0, loss: 0.7, accuracy: 0.5, examples: 10, evalMs: 5 });
    expect(s.evalAccuracy).toEqual([{ x: 0, y: 0.5 }]);
  });
});
