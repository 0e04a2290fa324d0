// The model spec handed to the native engine (native/src/binding.cpp, parse_model): the
// normalised config (its rotary tables and each block's window and table included) and each
// unit's tensors by role.
import type { ModelInfo } from '../model/types.js';

export function engineSpec(info: ModelInfo): unknown {
  return {
    config: info.config,
    units: info.units.map((u) => ({ kind: u.kind, index: u.index, tensors: u.tensors })),
  };
}
