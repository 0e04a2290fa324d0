// The model spec handed to the native engine: normalised config + units by role.
import type { ModelInfo } from '../model/types.js';

export function engineSpec(info: ModelInfo): unknown {
  return {
    config: info.config,
    units: info.units.map((u) => ({ kind: u.kind, index: u.index, tensors: u.tensors })),
  };
}
