export * from './types.js';
export * from './errors.js';
export {
  readSafetensorsHeader,
  parseSafetensorsHeader,
  writeSafetensors,
  encodeSafetensors,
  dtypeItemSize,
  isSupportedDtype,
  numelOf,
  MAX_HEADER_BYTES,
  SUPPORTED_DTYPES,
  type SafetensorsHeader,
  type UnsupportedDtypeTensor,
  type ReadHeaderOptions,
  type WriteTensor,
} from './safetensors.js';
export * from './config.js';
export * from './folder.js';
export * from './inspect.js';
export { positionLimit } from './arch/layers.js';
