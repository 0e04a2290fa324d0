// The model spec handed to the native engine: normalised config + units by role.
import type { ModelInfo } from '../model/types.js';

export function engineSpec(info: ModelInfo): unknown {
  const c = info.config;
  return {
    config: { ...c, rope: c.ropeTheta > 0 ? { type: 'default', theta: c.ropeTheta, rotaryDim: c.headDim } : null },
    units: info.units.map((u) => ({ kind: u.kind, index: u.index, tensors: u.tensors })),
  };
}
