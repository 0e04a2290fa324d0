// The CLI's standard output. Once its reader has gone (EPIPE: `spillway score
// --json | head`), writes are dropped quietly and `stdoutClosed` resolves, so
// that a command can end its work and exit 0 instead of dying with a stack trace.

let closed = false;
let markClosed: () => void = () => {};
export const stdoutClosed = new Promise<void>((resolve) => {
  markClosed = resolve;
});

/** Whether the reader of stdout has gone. */
export function isStdoutClosed(): boolean {
  return closed;
}

/**
 * Takes a broken pipe on stdout or stderr (`2>&1 | head`) as the reader leaving; later errors of a
 * stream written after that are dropped too. Any other stream error still throws.
 */
export function watchOutput(streams: NodeJS.WritableStream[] = [process.stdout, process.stderr]): void {
  for (const s of streams) {
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE' && !closed) throw e;
      closed = true;
      markClosed();
    });
  }
}

export function out(text: string): void {
  if (!closed) process.stdout.write(text);
}
