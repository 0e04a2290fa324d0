// Waiting on the events an engine job pushes into an array.
import type { TrainEvent } from '../../electron/engine/trainer.js';

/** Resolves once `until` holds for the events received so far (polled every 5 ms). */
export function waitForEvents(events: TrainEvent[], until: (events: TrainEvent[]) => boolean): Promise<void> {
  return new Promise((resolve) => {
    const t = setInterval(() => {
      if (until(events)) {
        clearInterval(t);
        resolve();
      }
    }, 5);
  });
}

/** Resolves once a checkpoint at `step` or later has been written. */
export function waitForCheckpoint(events: TrainEvent[], step: number): Promise<void> {
  return waitForEvents(events, (ev) => ev.some((e) => e.type === 'checkpoint' && e.step >= step));
}
