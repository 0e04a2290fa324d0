// The planner tests' synthetic model and rates: an OPT-like decoder small enough to place by
// hand (C = 64, V = 100) and fixed link, SSD, GEMM and update rates, so every expectation can be
// derived from these inputs.
import type { PlannerModel, PlannerRates } from '../../electron/engine/planner.js';

export const C = 64;
export const V = 100;
export const SYNTHETIC_LAYERS = 6;
/** Parameters of one OPT-like block. */
export const BLOCK = 12 * C * C + 13 * C;

export function syntheticModel(layers = SYNTHETIC_LAYERS): PlannerModel {
  return {
    name: 'synthetic',
    config: { hidden: C, heads: 4, intermediate: 4 * C, vocabSize: V, tiedEmbeddings: true },
    units: [
      { kind: 'embed', index: -1, parameters: V * C + 130 * C },
      ...Array.from({ length: layers }, (_, i) => ({ kind: 'block' as const, index: i, parameters: BLOCK })),
      { kind: 'head', index: -1, parameters: 2 * C },
    ],
  };
}

/** No device update rate: where updates run follows from the CPU's rate alone. */
export const SYNTHETIC_RATES: PlannerRates = {
  h2dBytesPerS: 25e9,
  d2hBytesPerS: 25e9,
  ssdReadBytesPerS: 7e9,
  ssdWriteBytesPerS: 5e9,
  gemmFlopsPerS: 1e12,
  cpuUpdateElemsPerS: 1e9,
  date: 'fixed',
};
