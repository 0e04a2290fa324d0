// What the training loop does differently on the ranks of a distributed run (ALGORITHMS.md §7):
// each rank's share of the batch and of the perturbations, the checks that every rank trains the
// same thing, the stop and checkpoint decisions of rank 0 that every rank follows, evaluation
// shared among the ranks, and the waits for rank 0's writes. The exchanges go through World
// (world.ts); the step's own exchange of losses happens inside the engine (NativeStepParams.dist).
import type { RankStep } from '../common/contract.js';
import type { TokenizedExample } from '../data/index.js';
import type { NativeEngine, NativeRankTimes } from './native.js';
import { packBatch } from './batch.js';
import type { World } from './world.js';

/** How long the others wait for rank 0 writing `bytes` (a checkpoint, the model): the rank timeout plus the bytes at 50 MB/s. */
export function writeAllowanceMs(timeoutMs: number, bytes: number): number {
  return timeoutMs + (bytes / 50e6) * 1000;
}

/** A 32-bit FNV-1a hash of a string: what every rank compares to know it read the same job. */
function fnv(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export interface RankStart {
  threads: number;
  trainExamples: number;
  evalExamples: number;
  parameters: number;
  /** The training data as tokenised (every rank must see the same). */
  dataHash: number;
}

/**
 * Every rank says what it loaded; a rank that loaded something else than rank 0 (another file,
 * another model, the same path holding other data on another machine) is named. Returns each
 * rank's start figures.
 */
export async function agreeOnStart(world: World, mine: RankStart): Promise<RankStart[]> {
  const all = await world.exchange([mine.threads, mine.trainExamples, mine.evalExamples, mine.parameters, mine.dataHash], 'the start of training');
  const starts = all.map((v) => ({ threads: v[0], trainExamples: v[1], evalExamples: v[2], parameters: v[3], dataHash: v[4] }));
  const ref = starts[0];
  starts.forEach((s, r) => {
    const differs: string[] = [];
    if (s.parameters !== ref.parameters) differs.push(`a model of ${s.parameters} parameters (rank 0: ${ref.parameters})`);
    if (s.trainExamples !== ref.trainExamples || s.evalExamples !== ref.evalExamples)
      differs.push(`${s.trainExamples} training and ${s.evalExamples} held-out examples (rank 0: ${ref.trainExamples} and ${ref.evalExamples})`);
    else if (s.dataHash !== ref.dataHash) differs.push('other training data than rank 0 (the same counts, other tokens)');
    if (differs.length) {
      throw new Error(`rank ${r} (${world.info.ranks[r]?.host ?? '?'}) loaded ${differs.join(' and ')}: every rank must read the same model and data files`);
    }
  });
  return starts;
}

export function dataHash(examples: TokenizedExample[]): number {
  return fnv(JSON.stringify(examples.map((e) => [e.label, e.sequences.map((s) => [s.tokens, s.scoreStart, s.scoreEnd])])));
}

/** Rank 0's stop and checkpoint requests, taken by every rank at the same step. */
export async function agreeOnControl(world: World, stop: boolean, checkpoint: boolean): Promise<{ stop: boolean; checkpoint: boolean }> {
  const all = await world.exchange([stop ? 1 : 0, checkpoint ? 1 : 0], 'the stop and checkpoint decision');
  return { stop: all[0][0] === 1, checkpoint: all[0][1] === 1 };
}

/** Waits until rank 0 has written a checkpoint or the model (the others wait for it, not past the allowance). */
export async function waitForRankZero(world: World, what: string, allowanceMs: number): Promise<void> {
  await world.exchange([0], what, allowanceMs);
}

/**
 * The held-out set scored by all ranks, each a contiguous share, in chunks; the per-example
 * results are exchanged so that every rank holds them in the order one process would have
 * produced them (the loss is then summed in the same order). Returns what scoreExamples
 * returns in one process.
 */
export async function scoreShared(
  world: World,
  engine: NativeEngine,
  examples: TokenizedExample[],
  chunk: number,
): Promise<{ loss: number; accuracy: number | null }> {
  const n = examples.length;
  const per = Math.ceil(n / world.size);
  const lo = Math.min(n, world.rank * per);
  const hi = Math.min(n, lo + per);
  // Per example: its loss and whether it was classified correctly (-1: not a classification); padded to `per`.
  const mine = new Float64Array(2 * per).fill(Number.NaN);
  // Every rank makes as many passes as the fullest one (with the sliced transfer a pass is made
  // by all the ranks of a machine together); a rank whose share ran out scores a stand-in.
  for (let c = 0; c < Math.ceil(per / chunk); c++) {
    const i = lo + c * chunk;
    if (i >= hi) {
      await engine.score(packBatch(examples.slice(0, 1)));
      continue;
    }
    const r = await engine.score(packBatch(examples.slice(i, Math.min(hi, i + chunk))));
    r.exampleLoss.forEach((l, k) => {
      mine[2 * (i - lo + k)] = l;
      mine[2 * (i - lo + k) + 1] = r.correct[k];
    });
  }
  const all = await world.exchange(mine, 'the held-out scores');
  let lossSum = 0;
  let correct = 0;
  let classified = 0;
  for (let e = 0; e < n; e++) {
    const r = Math.floor(e / per);
    const k = e - r * per;
    lossSum += all[r][2 * k];
    const c = all[r][2 * k + 1];
    if (c >= 0) {
      classified++;
      correct += c;
    }
  }
  return { loss: n ? lossSum / n : Number.NaN, accuracy: classified ? correct / classified : null };
}

export function rankSteps(world: World, ranks: NativeRankTimes[]): RankStep[] {
  const slowest = Math.max(...ranks.map((t) => t.computeMs));
  return ranks.map((t, r) => ({
    rank: r,
    host: world.info.ranks[r]?.host ?? '',
    computeMs: t.computeMs,
    forwardMs: t.forwardMs,
    ioMs: t.ioMs,
    waitMs: Math.max(0, slowest - t.computeMs),
    examples: t.examples,
    tokens: t.tokens,
  }));
}
