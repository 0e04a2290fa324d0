// The ranks of a distributed run as one rank's process sees them (started by mpirun through
// ranks.ts): who it is, and the exchanges it makes with the others. Every exchange has a
// deadline; past it the promise rejects with a RankError naming the ranks that did not take
// part, and the rank reports it and ends the job (abort).
import { loadNative } from './native.js';
import type { NativeWorld } from './native.js';

export class RankError extends Error {
  constructor(message: string, readonly ranks: number[]) {
    super(message);
    this.name = 'RankError';
  }
}

function rankError(e: unknown): never {
  const err = e as { code?: string; message?: string; ranks?: number[] };
  if (err?.code === 'EDIST') throw new RankError(err.message ?? String(e), err.ranks ?? []);
  throw e;
}

export class World {
  private constructor(
    readonly info: NativeWorld,
    /** How long a rank waits for the others at an exchange, ms. */
    readonly timeoutMs: number,
  ) {}

  /** MPI_Init and the rendezvous with every other rank (each waits at most timeoutMs for the rest). */
  static async join(timeoutMs: number): Promise<World> {
    const info = await loadNative().distInit(timeoutMs).catch(rankError);
    return new World(info, timeoutMs);
  }

  get rank(): number {
    return this.info.rank;
  }
  get size(): number {
    return this.info.size;
  }
  get localSize(): number {
    return this.info.localSize;
  }

  /** Every rank's values (the same length on every rank), in rank order. */
  async exchange(values: readonly number[] | Float64Array, what: string, timeoutMs = this.timeoutMs): Promise<Float64Array[]> {
    const mine = values instanceof Float64Array ? values : Float64Array.from(values);
    const all = await loadNative().distExchange(mine, timeoutMs, what).catch(rankError);
    return Array.from({ length: this.size }, (_, r) => all.subarray(r * mine.length, (r + 1) * mine.length));
  }

  /** Rank 0's text on every rank. */
  async broadcastText(text: string | null, what: string, timeoutMs = this.timeoutMs): Promise<string> {
    const data = this.rank === 0 ? new TextEncoder().encode(text ?? '') : null;
    const out = await loadNative().distBroadcast(data, timeoutMs, what).catch(rankError);
    return new TextDecoder().decode(out);
  }

  /** Ends every rank of the job now (MPI_Abort with this code). */
  abort(code: number): never {
    return loadNative().distAbort(code);
  }

  finalize(): void {
    loadNative().distFinalize();
  }
}
