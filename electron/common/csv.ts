// CSV as spreadsheets read it (RFC 4180): the CLI's metrics export and the GUI's comparison export.
// No Node imports: the renderer uses it too.

/** One field: empty for null/undefined, 1/0 for booleans, quoted when it holds a comma, quote or line break. */
export function csvField(v: unknown): string {
  if (v === null || v === undefined) return '';
  const s = typeof v === 'boolean' ? (v ? '1' : '0') : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Rows (the header first) as CSV text, one line each, ending with a newline. */
export function csvText(rows: readonly (readonly unknown[])[]): string {
  return rows.map((r) => r.map(csvField).join(',')).join('\n') + '\n';
}
