export { DEFAULT_CHECKPOINT_EVERY, DEFAULT_STOP_GRACE_MS, RunSupervisor } from './supervisor.js';
export type { StopOptions, SupervisorOptions } from './supervisor.js';
export type { RunConfig, RunEvent, RunListener, StatusEvent, StoredRunConfig } from './types.js';
export { CSV_HEADER, metricsCsv, runsCommand, RUNS_USAGE } from './commands.js';
export type { CommandIO } from './commands.js';
