// Telemetry service: machine and engine samples, about once a second while a run is active.
//
//   const sampler = new Sampler();
//   const off = sampler.onSample((s) => store.appendTelemetry(runId, s));
//   sampler.start({ spillDir, enginePid: child.pid });
//   // on each engine step event: sampler.recordStep(stepTimesFromEvent(ev));
//   sampler.stop(); off();
export { Sampler, stepTimesFromEvent } from './sampler.js';
export type { SampleListener, SamplerDeps, SamplerOptions, SamplerStats } from './sampler.js';
export { nvmlGpuSource, noGpuSource } from './gpu.js';
export type { GpuSource } from './gpu.js';
export { resolveBlockDevice } from './procfs.js';
export type { BlockDevice, BlockDeviceResult } from './procfs.js';
export type * from './types.js';
