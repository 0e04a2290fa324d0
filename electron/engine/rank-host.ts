// The engine host of one rank of a distributed run: mpirun starts one per rank (ranks.ts).
// Rank 0 reads the job from its stdin (mpirun forwards stdin to rank 0 only) and hands it to
// the others; every rank trains its share; rank 0 writes the run's events to its stdout as
// protocol lines, which mpirun brings back to the launching process tagged with the rank. A
// rank that fails writes why and ends the whole job (MPI_Abort), so no rank is left waiting.
import { createInterface } from 'node:readline';

import type { HostCommand } from './host.js';
import { RANK_LINE } from './mpirun.js';
import { loadNative } from './native.js';
import type { RankMessage } from './mpirun.js';
import { StopSignal, train } from './trainer.js';
import { RankError, World } from './world.js';

/** How long a rank waits for the others (SPILLWAY_RANK_TIMEOUT_MS, set by the launcher from --rank-timeout). */
const timeoutMs = Number(process.env.SPILLWAY_RANK_TIMEOUT_MS) > 0 ? Number(process.env.SPILLWAY_RANK_TIMEOUT_MS) : 120_000;

function send(m: RankMessage): void {
  // A pipe: written synchronously on Linux, so the line is out before an abort.
  process.stdout.write(RANK_LINE + JSON.stringify(m) + '\n');
}

function errorMessage(rank: number, e: unknown): RankMessage {
  const err = e as Error;
  return {
    type: 'error',
    rank,
    message: err?.message ?? String(e),
    stack: err?.stack,
    ...(e instanceof RankError ? { ranks: e.ranks } : {}),
  };
}

/** Rank 0: the job on its first stdin line; later lines ask for a stop or a checkpoint. */
function readCommands(signal: StopSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    let first = true;
    const rl = createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      if (!line.trim()) return;
      if (first) {
        first = false;
        resolve(line);
        return;
      }
      let cmd: HostCommand;
      try {
        cmd = JSON.parse(line) as HostCommand;
      } catch {
        send({ type: 'event', event: { type: 'log', message: `ignored a line from the launcher that is not a command: ${line.slice(0, 200)}` } });
        return;
      }
      if (cmd.type === 'stop') signal.stop();
      else if (cmd.type === 'checkpoint') signal.checkpointRequested = true;
    });
    rl.on('close', () => {
      // The launcher is gone: stop cooperatively at the next step.
      if (first) reject(new Error('the launcher closed the job channel before sending a job'));
      signal.stop();
    });
  });
}

/**
 * One GPU per rank: where the machine has at least as many GPUs (NVML, which does not start CUDA)
 * as ranks, each rank sees only the one of its local rank, as its device 0. Set before CUDA starts
 * in this process; a CUDA_VISIBLE_DEVICES given by the person is respected (its local-rank-th entry).
 */
async function oneGpuPerRank(world: World): Promise<void> {
  const gpus = (await loadNative().nvmlSample()).devices.length;
  const visible = process.env.CUDA_VISIBLE_DEVICES?.split(',').filter(Boolean) ?? Array.from({ length: gpus }, (_, i) => String(i));
  if (world.localSize > 1 && visible.length >= world.localSize) process.env.CUDA_VISIBLE_DEVICES = visible[world.info.localRank];
}

async function main(): Promise<void> {
  let world: World;
  try {
    world = await World.join(timeoutMs);
  } catch (e) {
    send(errorMessage(-1, e));
    process.exit(1);
  }
  await oneGpuPerRank(world);
  const signal = new StopSignal();
  try {
    const text = await world.broadcastText(world.rank === 0 ? await readCommands(signal) : null, 'the job');
    const cmd = JSON.parse(text) as HostCommand;
    if (cmd.type !== 'train') throw new Error(`a distributed job trains; "${cmd.type}" runs in one process`);
    const emit = world.rank === 0 ? (event: unknown) => send({ type: 'event', event }) : () => {};
    await train(cmd.options, emit, signal, world);
    if (world.rank === 0) send({ type: 'finished' });
    world.finalize();
    process.exit(0);
  } catch (e) {
    send(errorMessage(world.rank, e));
    if (world.size > 1) world.abort(1);
    process.exit(1);
  }
}

void main();
