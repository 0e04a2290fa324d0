// The engine host: one child process per job. It receives one command from
// its parent over IPC, streams events back, and exits. A crash here (native
// or otherwise) ends this process only; the parent reports it.
import { scoreDataset } from './score.js';
import type { ScoreOptions } from './score.js';
import { StopSignal, train } from './trainer.js';
import type { TrainOptions } from './trainer.js';

export type HostCommand =
  | { type: 'train'; options: TrainOptions }
  | { type: 'score'; options: ScoreOptions }
  | { type: 'stop' }
  | { type: 'checkpoint' };

export type HostMessage =
  | { type: 'event'; event: unknown }
  | { type: 'error'; message: string; stack?: string }
  | { type: 'finished' };

function send(m: HostMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) {
      resolve();
      return;
    }
    process.send(m, undefined, undefined, () => resolve());
  });
}

const signal = new StopSignal();
let started = false;

async function run(cmd: HostCommand): Promise<void> {
  const emit = (event: unknown) => void send({ type: 'event', event });
  try {
    if (cmd.type === 'train') await train(cmd.options, emit, signal);
    else if (cmd.type === 'score') await scoreDataset(cmd.options, emit);
    await send({ type: 'finished' });
    process.exit(0);
  } catch (e) {
    const err = e as Error;
    await send({ type: 'error', message: err?.message ?? String(e), stack: err?.stack });
    process.exit(1);
  }
}

process.on('message', (raw: unknown) => {
  const cmd = raw as HostCommand;
  if (!cmd || typeof cmd !== 'object' || typeof cmd.type !== 'string') {
    void send({ type: 'error', message: 'engine host: malformed command' });
    return;
  }
  if (cmd.type === 'stop') {
    signal.stop();
    return;
  }
  if (cmd.type === 'checkpoint') {
    signal.checkpointRequested = true;
    return;
  }
  if (started) {
    void send({ type: 'error', message: 'engine host: a job is already running' });
    return;
  }
  started = true;
  void run(cmd);
});

process.on('disconnect', () => {
  // The parent is gone: stop cooperatively, then leave.
  signal.stop();
  setTimeout(() => process.exit(2), 5000).unref();
});
