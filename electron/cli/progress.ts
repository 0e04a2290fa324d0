// A one-line progress bar on a terminal; plain lines otherwise. Both say the
// time spent and the time left, in units.
import { formatDuration } from '../common/format.js';

export class ProgressLine {
  total = 0;
  private started = Date.now();
  private lastDraw = 0;
  private drawn = false;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly tty: boolean,
  ) {}

  /** "elapsed 1 m 5 s, eta 3 m 10 s": the time left from the mean time per step so far. */
  timing(step: number, now = Date.now()): string {
    const elapsed = now - this.started;
    const eta = step > 0 ? (elapsed / step) * Math.max(0, this.total - step) : null;
    return `elapsed ${formatDuration(elapsed)}, eta ${formatDuration(eta)}`;
  }

  update(step: number, detail: string): void {
    const now = Date.now();
    if (!this.tty) {
      // Without a terminal, a line every ~10% keeps logs readable.
      const every = Math.max(1, Math.round(this.total / 10));
      if (step % every === 0 || step === this.total) this.out.write(`step ${step}/${this.total}  ${detail}  ${this.timing(step, now)}\n`);
      return;
    }
    if (now - this.lastDraw < 100 && step !== this.total) return;
    this.lastDraw = now;
    const width = 24;
    const frac = this.total > 0 ? Math.min(1, step / this.total) : 0;
    const fill = Math.round(frac * width);
    const line = `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${step}/${this.total}  ${detail}  ${this.timing(step, now)}`;
    const cols = this.out.columns ?? 100;
    this.out.write(`\r\x1b[2K${line.slice(0, cols - 1)}`);
    this.drawn = true;
  }

  log(message: string): void {
    if (this.tty && this.drawn) this.out.write('\r\x1b[2K');
    this.out.write(message + '\n');
    if (this.tty && this.drawn) this.drawn = false;
  }

  finish(): void {
    if (this.tty && this.drawn) this.out.write('\n');
    this.drawn = false;
  }
}
