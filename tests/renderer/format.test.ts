import { describe, expect, it } from 'vitest';
import { formatBytes, formatCount, formatDuration, parseBytes } from '../../renderer/src/lib/format.ts';
import { parseHash } from '../../renderer/src/lib/route.ts';

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
});
