import { describe, expect, it } from 'vitest';
import { elapsedMs, remainingMs } from '../../renderer/src/lib/progress.ts';

describe('elapsed time and ETA', () => {
  it('the remaining steps at the recent pace, counted from the last step', () => {
    // Steps 10..20 took 5 s: 0.5 s a step; 80 steps to go from the last one's end.
    const recent = [
      { step: 10, at: 100_000 },
      { step: 20, at: 105_000 },
    ];
    expect(remainingMs(recent, 100, 105_000)).toBe(40_000);
    expect(remainingMs(recent, 100, 107_000)).toBe(38_000);
    // Past the estimate: 0, not a negative time.
    expect(remainingMs(recent, 100, 200_000)).toBe(0);
  });

  it('is unknown before two steps and once the last step is reached', () => {
    expect(remainingMs([], 10, 0)).toBeNull();
    expect(remainingMs([{ step: 1, at: 5 }], 10, 5)).toBeNull();
    expect(remainingMs([{ step: 1, at: 5 }, { step: 10, at: 9 }], 10, 9)).toBeNull();
  });

  it('elapsed runs to now while running, to the end once ended', () => {
    expect(elapsedMs(1_000, null, 23_000)).toBe(22_000);
    expect(elapsedMs(1_000, 5_000, 23_000)).toBe(4_000);
    expect(elapsedMs(null, null, 23_000)).toBeNull();
  });
});
