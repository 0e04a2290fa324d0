// OPT-1.3B … OPT-175B as the planner sees them (bench/planner-table.ts, bench/planner-dist.ts):
// layers, hidden size and heads from the OPT paper's table, and ZO2's published GPU memory.
import type { PlannerModel } from '../electron/engine/planner.js';

export interface OptShape {
  name: string;
  layers: number;
  hidden: number;
  heads: number;
  /** ZO2 GPU memory, GB (NVML, fp16, batch 1, sequence 2048), ALGORITHMS.md §2; null: not published. */
  zo2: number | null;
}

export const OPT: OptShape[] = [
  { name: 'OPT-1.3B', layers: 24, hidden: 2048, heads: 32, zo2: 3.75 },
  { name: 'OPT-2.7B', layers: 32, hidden: 2560, heads: 32, zo2: null },
  { name: 'OPT-6.7B', layers: 32, hidden: 4096, heads: 32, zo2: 4.99 },
  { name: 'OPT-13B', layers: 40, hidden: 5120, heads: 40, zo2: 6.18 },
  { name: 'OPT-30B', layers: 48, hidden: 7168, heads: 56, zo2: 8.86 },
  { name: 'OPT-66B', layers: 64, hidden: 9216, heads: 72, zo2: 12.07 },
  { name: 'OPT-175B', layers: 96, hidden: 12288, heads: 96, zo2: 18.04 },
];
const VOCAB = 50272;
const POSITIONS = 2048;

/** A block's matrices with their biases (what lora and loldu adapt): q, k, v, o [C, C]; fc1 [4C, C]; fc2 [C, 4C]. */
function matrices(C: number): NonNullable<PlannerModel['units'][number]['matrices']> {
  const m = (stem: string, out: number, inp: number) => ({ stem, out, in: inp, groupFloats: out * inp + out });
  return [m('q', C, C), m('k', C, C), m('v', C, C), m('o', C, C), m('fc1', 4 * C, C), m('fc2', C, 4 * C)];
}

/** OPT units: embeddings (tokens + learned positions, offset 2), blocks (q/k/v/o, fc1/fc2 with biases, two layer norms), final norm + tied head. */
export function optModel(s: OptShape): PlannerModel {
  const C = s.hidden;
  return {
    name: s.name,
    config: { hidden: C, heads: s.heads, intermediate: 4 * C, vocabSize: VOCAB, tiedEmbeddings: true },
    units: [
      // The engine perturbs one tensor group at a time: its working copies are the largest group
      // (fc1 with its bias in a block; the head's norm and the tied embedding); embeddings on the fly.
      { kind: 'embed', index: -1, parameters: VOCAB * C + (POSITIONS + 2) * C, maxGroupParameters: 0 },
      ...Array.from({ length: s.layers }, (_, i) => ({ kind: 'block' as const, index: i, parameters: 12 * C * C + 13 * C, maxGroupParameters: 4 * C * C + 4 * C, matrices: matrices(C) })),
      { kind: 'head', index: -1, parameters: 2 * C, maxGroupParameters: 2 * C + VOCAB * C },
    ],
  };
}
