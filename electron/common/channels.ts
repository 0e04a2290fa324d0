// Names of the contract's methods and events, and the Electron IPC channels
// derived from them. Kept free of zod (and of any import) so the sandboxed
// preload can carry it; contract.ts checks its schemas cover exactly these names.

/** Methods the run supervisor implements (electron/services/runs); the others are the catalog's. */
export const RUN_METHOD_NAMES = [
  'startRun',
  'stopRun',
  'resumeRun',
  'checkpointRun',
  'listRuns',
  'getRun',
  'getMetrics',
  'getTelemetry',
  'deleteRun',
  'exportRun',
  'getSettings',
  'updateSettings',
] as const;

export const METHOD_NAMES = [
  'listModels',
  'inspectModel',
  'listDatasets',
  'previewDataset',
  'checkDataset',
  'plan',
  'listFolder',
  'pickPath',
  'getNotices',
  'listDevices',
  'generate',
  'stopGeneration',
  ...RUN_METHOD_NAMES,
] as const;
export type MethodName = (typeof METHOD_NAMES)[number];
export type RunMethodName = (typeof RUN_METHOD_NAMES)[number];

export const EVENT_NAMES = ['runStatus', 'stepMetrics', 'evalMetrics', 'telemetry', 'log', 'generation'] as const;
export type EventName = (typeof EVENT_NAMES)[number];

export function isMethodName(x: unknown): x is MethodName {
  return typeof x === 'string' && (METHOD_NAMES as readonly string[]).includes(x);
}

export function isEventName(x: unknown): x is EventName {
  return typeof x === 'string' && (EVENT_NAMES as readonly string[]).includes(x);
}

export type MethodChannel = `spillway:call:${MethodName}`;
export type EventChannel = `spillway:event:${EventName}`;

// Written out so that the compiler checks the mapping is complete and exact.
export const METHOD_CHANNELS: Record<MethodName, MethodChannel> = {
  listModels: 'spillway:call:listModels',
  inspectModel: 'spillway:call:inspectModel',
  listDatasets: 'spillway:call:listDatasets',
  previewDataset: 'spillway:call:previewDataset',
  checkDataset: 'spillway:call:checkDataset',
  plan: 'spillway:call:plan',
  startRun: 'spillway:call:startRun',
  stopRun: 'spillway:call:stopRun',
  resumeRun: 'spillway:call:resumeRun',
  checkpointRun: 'spillway:call:checkpointRun',
  listRuns: 'spillway:call:listRuns',
  getRun: 'spillway:call:getRun',
  getMetrics: 'spillway:call:getMetrics',
  getTelemetry: 'spillway:call:getTelemetry',
  deleteRun: 'spillway:call:deleteRun',
  exportRun: 'spillway:call:exportRun',
  getSettings: 'spillway:call:getSettings',
  updateSettings: 'spillway:call:updateSettings',
  listFolder: 'spillway:call:listFolder',
  pickPath: 'spillway:call:pickPath',
  getNotices: 'spillway:call:getNotices',
  listDevices: 'spillway:call:listDevices',
  generate: 'spillway:call:generate',
  stopGeneration: 'spillway:call:stopGeneration',
};

export const EVENT_CHANNELS: Record<EventName, EventChannel> = {
  runStatus: 'spillway:event:runStatus',
  stepMetrics: 'spillway:event:stepMetrics',
  evalMetrics: 'spillway:event:evalMetrics',
  telemetry: 'spillway:event:telemetry',
  log: 'spillway:event:log',
  generation: 'spillway:event:generation',
};

/** Renderer → main, fire and forget: abort the call with this id. */
export const CANCEL_CHANNEL = 'spillway:cancel';

/** The key of the object the preload exposes on `window`. */
export const BRIDGE_KEY = 'spillway';
