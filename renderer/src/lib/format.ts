// Numbers as people read them.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < UNITS.length - 1) { v /= 1024; u++; }
  return `${u === 0 ? v.toFixed(0) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${UNITS[u]}`;
}

export function formatCount(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  const a = Math.abs(n);
  if (a >= 1e12) return `${(n / 1e12).toFixed(2)} T`;
  if (a >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (a >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (a >= 1e3) return `${(n / 1e3).toFixed(1)} K`;
  return String(n);
}

import { parseBytes as parseSize } from '../../../electron/common/format.ts';

export { formatDuration } from '../../../electron/common/format.ts';

/** A running clock: "0:07", "12:03", "1:02:03" (whole seconds, rounded down). */
export function formatClock(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return '—';
  const s = Math.floor(ms / 1000);
  const two = (n: number) => String(n).padStart(2, '0');
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
}

/** Seconds on a time axis: "0.5 s", "42 s" under a minute, then a clock ("1:30", "1:02:03"). */
export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '—';
  return Math.abs(s) < 60 ? `${Number(s.toPrecision(2))} s` : formatClock(s * 1000);
}

export function formatNumber(n: number | null | undefined, digits = 4): string {
  if (n === null || n === undefined) return '—';
  if (!Number.isFinite(n)) return String(n);
  if (n !== 0 && (Math.abs(n) < 1e-3 || Math.abs(n) >= 1e6)) return n.toExponential(2);
  return Number(n.toPrecision(digits)).toString();
}

export function formatPercent(f: number | null | undefined): string {
  if (f === null || f === undefined || !Number.isFinite(f)) return '—';
  return `${(f * 100).toFixed(1)} %`;
}

/** A size field: bytes as the CLI reads them ("16 GiB", "16 GB", "2048"); null for empty; NaN when unreadable. */
export function parseBytes(text: string): number | null {
  if (text.trim() === '') return null;
  try {
    return parseSize(text);
  } catch {
    return NaN;
  }
}
