// Durations and sizes as people read and write them, the same in the terminal and the GUI.
// No Node imports.

/** "850 ms", "42 s", "3 m 5 s", "2 h 14 m"; "—" when unknown. */
export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} m`;
}

/**
 * A size as a person writes it: "24GB" or "24 G" (10^9), "24GiB" (2^30), "512MB", "512MiB", "1TB",
 * or a plain byte count. Throws, naming the text, when it does not read.
 */
export function parseBytes(v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?)B?\s*$/i.exec(v);
  if (!m) throw new Error(`cannot read ${JSON.stringify(v)} as a size (for example 24GB, 512MiB or 1000000)`);
  const pow = ' KMGTP'.indexOf(m[2].toUpperCase() || ' ');
  return Math.round(Number(m[1]) * (m[3] ? 1024 : 1000) ** pow);
}

/**
 * "Customer=user,Agent=assistant" → { Customer: 'user', Agent: 'assistant' }: name=value pairs separated
 * by commas, as the CLI and the GUI take a mapping (a name may hold '='; the last one splits).
 * Throws, naming the pair, when one has no name or no '='.
 */
export function parsePairs(text: string, value = 'value'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.lastIndexOf('=');
    const name = part.slice(0, eq).trim();
    if (eq <= 0 || !name) throw new Error(`write name=${value} pairs separated by commas (got ${JSON.stringify(part)})`);
    out[name] = part.slice(eq + 1).trim();
  }
  return out;
}
