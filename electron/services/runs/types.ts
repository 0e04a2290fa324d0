import type { RunDevice } from '../../common/contract.js';
import type { TrainOptions, TrainOptionsInput } from '../../common/options.js';
import type { TrainEvent } from '../../engine/trainer.js';
import type { RunStatus } from '../store/types.js';

export interface RunConfig {
  /** The run's id (default: a new one); a checkpoint's run started again elsewhere keeps its own. */
  id?: string;
  /** Shown in run lists (default: "<model folder> on <data file>"). */
  name?: string;
  /**
   * The engine's options. checkpointDir defaults to <run>/checkpoints,
   * checkpointEvery to the supervisor's default, out to <run>/model when
   * saveModel is on; the others take the schema's defaults.
   */
  options: TrainOptionsInput;
  /** Save the fine-tuned model into <run>/model when options.out is not set (default true). */
  saveModel?: boolean;
}

/** What the run row's config column holds: enough to resume the run. */
export interface StoredRunConfig {
  options: TrainOptions;
  /** options.out is the run's own model folder (cleared again on resume). */
  ownModelFolder: boolean;
  /** The device its engine resolved --device to, from its (latest) start event. */
  device?: RunDevice;
}

export interface StatusEvent {
  type: 'status';
  status: RunStatus;
  error: string | null;
}

/** Every engine event, and each change of status, tagged with its run. */
export type RunEvent = (TrainEvent | StatusEvent) & { runId: string };

export type RunListener = (e: RunEvent) => void;
