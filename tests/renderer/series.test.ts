import { describe, expect, it } from 'vitest';
import { RunSeries } from '../../renderer/src/lib/series.ts';
import { smoothSeries } from '../../renderer/src/lib/smoothing.ts';

const step = (s: number, loss: number) => ({ runId: 'r', step: s, loss, lossPlus: loss, lossMinus: loss, projectedGrad: 0, lr: 1e-3, stepMs: 10, tokensPerS: 100, skipped: false });

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

  it('records evaluations once per step', () => {
    const s = new RunSeries(0);
    s.addEval({ runId: 'r', step: 0, loss: 0.7, accuracy: 0.5, examples: 10, evalMs: 5 });
    s.addEval({ runId: 'r', step: 0, loss: 0.7, accuracy: 0.5, examples: 10, evalMs: 5 });
    expect(s.evalAccuracy).toEqual([{ x: 0, y: 0.5 }]);
  });
});
