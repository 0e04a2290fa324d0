// How long a run has taken and how long it has left.

/** When a step ended. */
export interface StepTime {
  step: number;
  at: number;
}

/** Steps whose pace the ETA follows: recent enough to track a change of speed, enough to even out evaluations. */
export const PACE_WINDOW = 50;

/**
 * Milliseconds left until step `stepsPlanned`: the remaining steps at the pace of `recent` (their wall
 * times, so the evaluations and checkpoints between them count), from the end of the last of them.
 * null until two steps have ended, or once the last one is reached.
 */
export function remainingMs(recent: readonly StepTime[], stepsPlanned: number, now: number): number | null {
  if (recent.length < 2) return null;
  const first = recent[0];
  const last = recent[recent.length - 1];
  const left = stepsPlanned - last.step;
  if (left <= 0 || last.step <= first.step) return null;
  const perStep = (last.at - first.at) / (last.step - first.step);
  return Math.max(0, last.at + left * perStep - now);
}

/** The run's wall time so far (to its end once it has ended); null before it started. */
export function elapsedMs(startedAt: number | null | undefined, endedAt: number | null | undefined, now: number): number | null {
  if (startedAt === null || startedAt === undefined) return null;
  return Math.max(0, (endedAt ?? now) - startedAt);
}
