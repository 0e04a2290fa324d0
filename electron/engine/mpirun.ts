// The command line that starts the ranks of a distributed run with Open MPI's mpirun,
// and the reading of what mpirun prints back (per-rank output, the rank it saw die).
// Pure: no process is started here (ranks.ts does that).
import { execFileSync } from 'node:child_process';

export interface MpirunSpec {
  /** Ranks to start (mpirun -n). */
  ranks: number;
  /** Open MPI host file (`host slots=N` per line): ranks across machines. Absent: this machine only. */
  hostfile?: string;
  /** The mpirun executable (default: `mpirun` on PATH, or $SPILLWAY_MPIRUN). */
  mpirun?: string;
  /** Environment variables every rank gets from mpirun's environment (-x), on every machine. */
  forwardEnv?: string[];
  /** Running as root: Open MPI refuses unless told (containers and CI run as root). */
  asRoot?: boolean;
}

/** Variables that reach remote ranks too (local ranks inherit mpirun's whole environment). */
export const FORWARDED_ENV = ['PATH', 'LD_LIBRARY_PATH', 'SPILLWAY_DATA_DIR', 'SPILLWAY_THREADS', 'SPILLWAY_MPI', 'SPILLWAY_NCCL', 'SPILLWAY_CUBLAS', 'SPILLWAY_GEMM'];

export function mpirunCommand(spec: MpirunSpec, argv: string[], env: NodeJS.ProcessEnv = process.env): { command: string; args: string[] } {
  if (!Number.isInteger(spec.ranks) || spec.ranks < 1) throw new Error(`ranks must be an integer >= 1, got ${spec.ranks}`);
  const args = ['-n', String(spec.ranks)];
  // Each line of a rank's output comes back tagged "[job,rank]<stdout>:" (and again at every
  // 4 KiB inside a long line): the rank's lines are told apart however they interleave.
  args.push('--tag-output');
  // Ranks run their own thread pools (the engine's threads are set per rank): no binding to one core.
  args.push('--bind-to', 'none');
  if (spec.hostfile) args.push('--hostfile', spec.hostfile);
  // On one machine more ranks than cores is allowed (a 2-core CI machine runs 2 ranks of 1 thread each).
  else args.push('--oversubscribe');
  if (spec.asRoot) args.push('--allow-run-as-root');
  for (const name of spec.forwardEnv ?? FORWARDED_ENV) if (env[name] !== undefined) args.push('-x', name);
  return { command: spec.mpirun ?? env.SPILLWAY_MPIRUN ?? 'mpirun', args: [...args, ...argv] };
}

/** Whether mpirun can be started, with its version line; null when it cannot (and why). */
export function mpirunVersion(command = process.env.SPILLWAY_MPIRUN ?? 'mpirun'): { version: string | null; error: string | null } {
  try {
    const out = execFileSync(command, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
    return { version: out.split('\n')[0].trim(), error: null };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return {
      version: null,
      error: err.code === 'ENOENT' ? `${command} not found: install Open MPI (Debian: apt-get install openmpi-bin)` : err.message,
    };
  }
}

/** One complete line a rank wrote. */
export interface RankLine {
  rank: number;
  stream: 'stdout' | 'stderr';
  text: string;
}

const TAG = /\[\d+,(\d+)\]<(stdout|stderr|stddiag)>:/g;

/**
 * Splits mpirun's --tag-output stream back into each rank's lines. Text before any tag is
 * mpirun's own (its notices); it is passed as rank -1.
 */
export class TaggedLineReader {
  private pending = '';
  private readonly partial = new Map<string, string>();

  constructor(private readonly onLine: (l: RankLine) => void) {}

  push(chunk: string): void {
    this.pending += chunk;
    // Only complete lines of mpirun's stream are read; a tag is never cut in two.
    const cut = this.pending.lastIndexOf('\n');
    if (cut < 0) return;
    const text = this.pending.slice(0, cut + 1);
    this.pending = this.pending.slice(cut + 1);
    this.read(text);
  }

  /** The stream ended: whatever is left is delivered as final lines. */
  end(): void {
    if (this.pending) this.read(this.pending + '\n');
    this.pending = '';
    for (const [key, rest] of this.partial) {
      if (rest) this.emit(key, rest);
    }
    this.partial.clear();
  }

  private read(text: string): void {
    let last = 0;
    let key = '-1:stdout';
    TAG.lastIndex = 0;
    for (let m = TAG.exec(text); m; m = TAG.exec(text)) {
      this.append(key, text.slice(last, m.index));
      key = `${m[1]}:${m[2] === 'stdout' ? 'stdout' : 'stderr'}`;
      last = m.index + m[0].length;
    }
    this.append(key, text.slice(last));
  }

  private append(key: string, piece: string): void {
    if (!piece) return;
    let acc = (this.partial.get(key) ?? '') + piece;
    for (let nl = acc.indexOf('\n'); nl >= 0; nl = acc.indexOf('\n')) {
      this.emit(key, acc.slice(0, nl));
      acc = acc.slice(nl + 1);
    }
    this.partial.set(key, acc);
  }

  private emit(key: string, text: string): void {
    const [rank, stream] = key.split(':');
    this.onLine({ rank: Number(rank), stream: stream as RankLine['stream'], text });
  }
}

/** What mpirun said about a rank that ended abnormally ("mpirun noticed that process rank 1 ... exited on signal 9 (Killed)"). */
export interface NoticedEnd {
  rank: number;
  /** "exited on signal 9 (Killed)", "exited with status 3", "called MPI_Abort (error code 1)" */
  how: string;
  /** The node mpirun named, when it did. */
  host: string | null;
}

export function noticedEnd(lines: readonly string[]): NoticedEnd | null {
  const text = lines.join(' ').replace(/\s+/g, ' ');
  const m = /process rank (\d+) with PID \d+ on node (\S+) (exited on signal \d+ \([^)]*\)|exited with status \d+)/.exec(text);
  if (m) return { rank: Number(m[1]), how: m[3], host: m[2] };
  const abort = /MPI_ABORT was invoked on rank (\d+) in communicator MPI_COMM_WORLD with errorcode (\d+)/.exec(text);
  if (abort) return { rank: Number(abort[1]), how: `called MPI_Abort (error code ${abort[2]})`, host: null };
  return null;
}

/** The prefix of a line a rank host writes for its launcher (the rest is one JSON message). */
export const RANK_LINE = '@@spillway@@ ';

/** What a rank host writes: the job's events (rank 0), its end, or a rank's error. */
export type RankMessage =
  | { type: 'event'; event: unknown }
  | { type: 'finished' }
  | { type: 'error'; rank: number; message: string; stack?: string; ranks?: number[] };
