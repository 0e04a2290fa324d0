// GPU telemetry: NVML through the native addon's nvmlSample() (native/src/nvml.cpp loads
// libnvidia-ml.so.1 with dlopen on first use, so no driver is needed to build or load the
// addon). No NVIDIA library or no GPU is the 'absent' state; an unbuilt addon or an NVML
// failure is 'unavailable'. The sources never reject.
import { loadNative } from '../../engine/native.js';
import type { GpuSample } from './types.js';

/** Reads every GPU once; must resolve (never reject). */
export type GpuSource = () => Promise<GpuSample>;

interface NvmlBinding {
  nvmlSample?: () => Promise<GpuSample>;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * The NVML source. `load` returns the addon (loadNative by default); it is called once, on
 * the first sample. 'absent' and 'unavailable' are sticky: NVML is initialised once per
 * process, so asking again each second would only repeat the answer.
 */
export function nvmlGpuSource(load: () => unknown = loadNative): GpuSource {
  let fn: (() => Promise<GpuSample>) | null = null;
  let settled: GpuSample | null = null;
  return async () => {
    if (settled) return settled;
    if (!fn) {
      let addon: NvmlBinding;
      try {
        addon = load() as NvmlBinding;
      } catch (e) {
        settled = { state: 'unavailable', reason: `native addon not loaded: ${message(e)}`, devices: [] };
        return settled;
      }
      if (typeof addon.nvmlSample !== 'function') {
        settled = {
          state: 'unavailable',
          reason: 'the native addon has no nvmlSample (rebuild it: npm run build:native)',
          devices: [],
        };
        return settled;
      }
      fn = addon.nvmlSample.bind(addon);
    }
    try {
      const r = await fn();
      if (r.state === 'ok') return r;
      // A failed init or a missing library stays so for the life of the process.
      settled = { state: r.state === 'absent' ? 'absent' : 'unavailable', reason: r.reason, devices: [] };
      return settled;
    } catch (e) {
      return { state: 'unavailable', reason: `nvmlSample failed: ${message(e)}`, devices: [] };
    }
  };
}

/** A source for machines or tests where GPU telemetry is off. */
export function noGpuSource(reason = 'GPU telemetry disabled'): GpuSource {
  const s: GpuSample = { state: 'absent', reason, devices: [] };
  return async () => s;
}
