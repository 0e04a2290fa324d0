// How the ranks of a run share a step (ALGORITHMS.md §7; native/src/dist/layout.h is the engine's
// side): `groups` perturbation groups of `shards` data-parallel ranks. The trainer, the options'
// checks and the New run form use it. No Node imports: the renderer loads this file.
import type { Parallel } from './options.js';

/** How the ranks share a step: `groups` perturbation groups of `shards` data-parallel ranks (native/src/dist/layout.h). */
export interface RankLayout {
  ranks: number;
  groups: number;
  shards: number;
}

export function rankLayout(ranks: number, parallel: Parallel, groups?: number): RankLayout {
  const g = parallel === 'data' ? 1 : parallel === 'perturbation' ? ranks : (groups ?? 0);
  if (!Number.isInteger(g) || g < 1 || ranks % g !== 0) {
    throw new Error(
      parallel === '2d'
        ? `--parallel 2d needs --groups G, a divisor of the ${ranks} ranks (G perturbation groups of ${ranks}/G data-parallel ranks)`
        : `${ranks} ranks cannot form ${g} perturbation groups`,
    );
  }
  return { ranks, groups: g, shards: ranks / g };
}

/** Checks a layout against q and the global batch, with what to change when it does not fit. */
export function checkLayout(l: RankLayout, q: number, batch: number): void {
  if (q % l.groups !== 0) {
    throw new Error(`the q perturbations of a step are shared among ${l.groups} perturbation groups: q (${q}) must be a multiple of ${l.groups}`);
  }
  if (batch < l.shards) throw new Error(`the batch of ${batch} examples is smaller than the ${l.shards} data-parallel ranks it is split over`);
}

/** Rank r's examples of a global batch of B: contiguous, sizes differing by at most one (as layout.h). */
export function shardOf(l: RankLayout, rank: number, B: number): [number, number] {
  const d = rank % l.shards;
  return [Math.floor((d * B) / l.shards), Math.floor(((d + 1) * B) / l.shards)];
}
