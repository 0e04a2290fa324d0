// A one-line progress bar on a terminal; plain lines otherwise.
export class ProgressLine {
  total = 0;
  private started = Date.now();
  private lastDraw = 0;
  private drawn = false;
  private lastStep = 0;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly tty: boolean,
  ) {}

  update(step: number, detail: string): void {
    this.lastStep = step;
    const now = Date.now();
    if (!this.tty) {
      // Without a terminal, a line every ~10% keeps logs readable.
      const every = Math.max(1, Math.round(this.total / 10));
      if (step % every === 0 || step === this.total) this.out.write(`step ${step}/${this.total}  ${detail}\n`);
      return;
    }
    if (now - this.lastDraw < 100 && step !== this.total) return;
    this.lastDraw = now;
    const width = 24;
    const frac = this.total > 0 ? Math.min(1, step / this.total) : 0;
    const fill = Math.round(frac * width);
    const elapsed = (now - this.started) / 1000;
    const eta = step > 0 ? (elapsed / step) * (this.total - step) : 0;
    const line = `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${step}/${this.total}  ${detail}  eta ${eta.toFixed(0)} s`;
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
    void this.lastStep;
  }
}
