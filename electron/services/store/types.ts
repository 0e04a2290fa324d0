// Plain objects in and out of the store: nothing here holds a handle, so the
// store can move behind a worker or utility process without changing callers.

export type RunStatus = 'created' | 'running' | 'completed' | 'stopped' | 'failed' | 'interrupted';

export interface RunRecord {
  id: string;
  name: string;
  model: string;
  dataset: string;
  task: string;
  config: Record<string, unknown>;
  status: RunStatus;
  createdAt: number;
  startedAt: number | null;
  endedAt: number | null;
  error: string | null;
  /** The checkpoint folder this run (last) continued from. */
  resumedFrom: string | null;
  stepsPlanned: number;
  stepsDone: number;
  finalMetrics: Record<string, unknown> | null;
  /** <data>/runs/<id>: checkpoints/ and model/ live here. */
  folder: string;
  /** The process supervising the run while it is running. */
  ownerPid: number | null;
  /** The plan summary the engine started with (offload auto), as its start event carried it. */
  plan: Record<string, unknown> | null;
}

export type NewRun = Pick<RunRecord, 'id' | 'name' | 'model' | 'dataset' | 'task' | 'config' | 'stepsPlanned' | 'folder'> &
  Partial<Pick<RunRecord, 'status' | 'createdAt' | 'resumedFrom' | 'ownerPid' | 'startedAt' | 'plan'>>;

export type RunPatch = Partial<Omit<RunRecord, 'id' | 'createdAt'>>;

export interface StepMetric {
  step: number;
  time: number;
  loss: number | null;
  lossPlus: number | null;
  lossMinus: number | null;
  projectedGrad: number | null;
  lr: number | null;
  stepMs: number | null;
  tokensPerS: number | null;
  skipped: boolean;
  seed: string;
  /** Bytes moved per link during the step and the wait for streamed units; null/absent when not reported. */
  io?: StepIo | null;
}

export interface StepIo {
  h2dBytes: number;
  d2hBytes: number;
  ssdReadBytes: number;
  ssdWriteBytes: number;
  waitMs: number;
}

export interface EvalMetric {
  step: number;
  time: number;
  loss: number | null;
  accuracy: number | null;
  examples: number;
  evalMs: number | null;
  /** Generated answers against the references (completion tasks); absent or null otherwise. */
  exactMatch?: number | null;
  f1?: number | null;
}

export interface CheckpointRecord {
  runId: string;
  step: number;
  path: string;
  bytes: number;
  createdAt: number;
}

export interface ArtifactRecord {
  runId: string;
  kind: 'model';
  path: string;
  bytes: number;
  createdAt: number;
}

export interface LogLine {
  time: number;
  level: 'info' | 'error';
  message: string;
}

export interface SystemSample {
  runId: string | null;
  time: number;
  cpuPercent?: number | null;
  ramUsedBytes?: number | null;
  gpuPercent?: number | null;
  gpuMemUsedBytes?: number | null;
  /** The whole sample as telemetry produced it. */
  payload: unknown;
}

export interface TierStat {
  runId: string;
  step: number;
  time: number;
  tier: string;
  residentBytes?: number | null;
  readBytes?: number | null;
  writtenBytes?: number | null;
  payload: unknown;
}

export interface RunMetrics {
  steps: StepMetric[];
  evals: EvalMetric[];
}
