import { describe, expect, it } from 'vitest';
import { formatBytes, formatClock, formatCount, formatDuration, formatSeconds, parseBytes } from '../../renderer/src/lib/format.ts';
import { parseHash, routeHash } from '../../renderer/src/lib/route.ts';

describe('formatting', () => {
  it('bytes', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatBytes(80 * 1024 ** 3)).toBe('80.0 GiB');
    expect(formatBytes(null)).toBe('—');
  });
  it('counts and durations', () => {
    expect(formatCount(125_000_000)).toBe('125.00 M');
    expect(formatDuration(1500)).toBe('2 s');
    expect(formatDuration(3_725_000)).toBe('1 h 2 m');
  });
  it('a running clock in whole seconds', () => {
    expect(formatClock(230)).toBe('0:00');
    expect(formatClock(22_900)).toBe('0:22');
    expect(formatClock(12 * 60_000 + 3_000)).toBe('12:03');
    expect(formatClock(3_723_000)).toBe('1:02:03');
    expect(formatClock(null)).toBe('—');
  });
  it('seconds on a time axis', () => {
    expect(formatSeconds(0.52)).toBe('0.52 s');
    expect(formatSeconds(42)).toBe('42 s');
    expect(formatSeconds(90)).toBe('1:30');
  });
  it('parses budgets', () => {
    expect(parseBytes('16 GiB')).toBe(16 * 1024 ** 3);
    // As the CLI reads them (one parser): SI letters are powers of 1000, the i-forms of 1024.
    expect(parseBytes('512m')).toBe(512e6);
    expect(parseBytes('16 GB')).toBe(16e9);
    expect(parseBytes(' 1.5 TiB ')).toBe(1.5 * 1024 ** 4);
    expect(parseBytes('')).toBeNull();
    expect(parseBytes('lots')).toBeNaN();
  });
  it('keeps the live run in the URL hash', () => {
    expect(parseHash('#/live/run%2F1')).toEqual({ screen: 'live', runId: 'run/1' });
    expect(parseHash('#/nonsense')).toEqual({ screen: 'new', runId: null });
  });
  it('keeps the run the Playground has open in the URL hash, and no run for other screens', () => {
    expect(parseHash(routeHash({ screen: 'playground', runId: 'run/2' }))).toEqual({ screen: 'playground', runId: 'run/2' });
    expect(parseHash('#/playground')).toEqual({ screen: 'playground', runId: null });
    expect(parseHash('#/runs/run1')).toEqual({ screen: 'runs', runId: null });
  });
});
