// `spillway train --ranks N` on this machine: real Open MPI ranks on the CPU backend, each a
// child of mpirun, against one process doing the same steps. Then the faults: a rank killed
// with SIGKILL, a rank that hangs, and resuming what they left with the same or another N.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { BIN, jsonLines, runSpillway } from '../helpers/cli.js';
import { makeTinyLlama } from '../helpers/tiny-model.js';
import { DEMO_TRAIN } from '../helpers/train-options.js';

let work: string;
let model: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spillway-ranks-'));
  model = await makeTinyLlama(join(work, 'model'), { seed: 3 });
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Each test's runs record into their own data folder. */
const dataDir = (name: string) => join(work, `data-${name}`);

const base = (steps: number) => ['train', '--model', model, '--data', DEMO_TRAIN, '--task', 'sst2', '--batch-size', '4', '--lr', '1e-2', '--steps', String(steps), '--threads', '1', '--eval-fraction', '0', '--no-zero-shot', '--json'];

type Event = Record<string, unknown> & { type: string };
const steps = (events: Event[]) => events.filter((e) => e.type === 'step') as (Event & { step: number; loss: number; lossPlus: number; lossMinus: number; projectedGrad: number; ranks?: Record<string, number | string>[] })[];

async function train(name: string, args: string[]): Promise<{ code: number; events: Event[]; stderr: string }> {
  const r = await runSpillway(args, dataDir(name));
  return { code: r.code, events: jsonLines(r.stdout) as Event[], stderr: r.stderr };
}

/** The largest relative difference between two loss trajectories (step by step). */
function maxRelDiff(a: number[], b: number[]): number {
  expect(a.length).toBe(b.length);
  return Math.max(...a.map((x, i) => Math.abs(x - b[i]) / Math.max(1e-30, Math.abs(b[i]))));
}

/**
 * What a run left in /dev/shm: the homes a machine's ranks share are named after the pid of its
 * first rank (rank 0 here), so other runs on this machine (other suites, other people) are not counted.
 */
function shmLeftBy(events: Event[]): string[] {
  const start = events.find((e) => e.type === 'start') as Event & { world: { ranks: { pid: number }[] } };
  return readdirSync('/dev/shm').filter((f) => f.startsWith(`spillway-${start.world.ranks[0].pid}-`));
}

// Data parallelism: each rank's shard gives per-example losses that are exchanged and summed in
// the global order, so the step's mean is one process's whenever the shard's forward gives each
// example the bits the whole batch's forward gives it. The engine does not promise that (a BLAS
// may take another path for fewer rows), hence a tolerance: relative 1e-6 on every loss, where
// the rounding of float32 forwards lies (measured here: 0, bit for bit).
const DATA_TOLERANCE = 1e-6;

/** Steps planned for the runs a test kills or stops: far more than they live. */
const MANY_STEPS = 1000;

describe('train --ranks on real Open MPI ranks (CPU backend)', () => {
  it('data parallel over 2 ranks follows the loss trajectory of one process with the same global batch', async () => {
    const one = await train('data', base(6));
    const two = await train('data', [...base(6), '--ranks', '2', '--parallel', 'data']);
    expect(one.code, one.stderr).toBe(0);
    expect(two.code, two.stderr).toBe(0);
    const start = two.events.find((e) => e.type === 'start') as Event & { world: { size: number; shards: number; ranks: { pid: number; threads: number }[] } };
    expect(start.world).toMatchObject({ size: 2, parallel: 'data', groups: 1, shards: 2 });
    expect(start.world.ranks.map((r) => r.threads)).toEqual([1, 1]);
    const a = steps(one.events);
    const b = steps(two.events);
    expect(b.length).toBe(6);
    expect(maxRelDiff(b.map((s) => s.loss), a.map((s) => s.loss))).toBeLessThanOrEqual(DATA_TOLERANCE);
    expect(maxRelDiff(b.map((s) => s.projectedGrad), a.map((s) => s.projectedGrad))).toBeLessThanOrEqual(DATA_TOLERANCE * 1e3);
    // Per-rank telemetry: each rank computed its 2 examples of the batch of 4.
    for (const s of b) {
      expect(s.ranks?.map((r) => r.rank)).toEqual([0, 1]);
      expect(s.ranks?.map((r) => r.examples)).toEqual([2, 2]);
    }
  });

  it('perturbation parallel over 2 ranks gives the losses and weights of one process with q-averaging, bit for bit', async () => {
    const one = await train('pert', [...base(5), '--q', '2', '--out', join(work, 'out-one')]);
    const two = await train('pert', [...base(5), '--q', '2', '--ranks', '2', '--parallel', 'perturbation', '--out', join(work, 'out-two')]);
    expect(one.code, one.stderr).toBe(0);
    expect(two.code, two.stderr).toBe(0);
    const key = (e: ReturnType<typeof steps>[number]) => [e.loss, e.lossPlus, e.lossMinus, e.projectedGrad];
    expect(steps(two.events).map(key)).toEqual(steps(one.events).map(key));
    // Every rank applied both terms to every weight: the saved models are the same bytes.
    expect(readFileSync(join(work, 'out-two', 'model.safetensors')).equals(readFileSync(join(work, 'out-one', 'model.safetensors')))).toBe(true);
    // The seed logs agree but for when each step ended and how long it took (kept to rebuild lost rows).
    const trajectory = (dir: string) => readFileSync(join(work, dir, 'seedlog.jsonl'), 'utf8').trim().split('\n').map((l) => ({ ...JSON.parse(l), at: undefined, step_ms: undefined }));
    expect(trajectory('out-two')).toEqual(trajectory('out-one'));
    // The 2d layout, 2 perturbation groups of 2 data-parallel ranks, on the same steps.
    const four = await train('pert', [...base(5), '--q', '2', '--ranks', '4', '--parallel', '2d', '--groups', '2']);
    expect(four.code, four.stderr).toBe(0);
    expect(maxRelDiff(steps(four.events).map((s) => s.loss), steps(one.events).map((s) => s.loss))).toBeLessThanOrEqual(DATA_TOLERANCE);
  });

  it("--sliced (DistZO2's sliced transfer, MPI between the staging slots): the same losses and weights, half the bytes uploaded per rank, nothing left in /dev/shm", async () => {
    const cpu = [...base(5), '--ranks', '2', '--offload', 'cpu', '--eval-every', '5'];
    for (const masters of ['fp32', 'bf16']) {
      const whole = await train('sliced', [...cpu, '--masters', masters, '--out', join(work, `sliced-whole-${masters}`)]);
      const sliced = await train('sliced', [...cpu, '--masters', masters, '--sliced', '--out', join(work, `sliced-${masters}`)]);
      expect(whole.code, whole.stderr).toBe(0);
      expect(sliced.code, sliced.stderr).toBe(0);
      // Updated on the device (the staging slot) instead of at home: the same values, bit for bit.
      expect(steps(sliced.events).map((s) => s.loss)).toEqual(steps(whole.events).map((s) => s.loss));
      const bytes = (d: string) => readFileSync(join(work, d, 'model.safetensors'));
      expect(bytes(`sliced-${masters}`).equals(bytes(`sliced-whole-${masters}`))).toBe(true);
      // Each rank uploads its slice (half a block, rounded up to 256 bytes) and writes back its slice.
      const io = (events: Event[]) => (steps(events).at(-1) as unknown as { io: { h2dBytes: number; d2hBytes: number } }).io;
      const h2dWhole = io(whole.events).h2dBytes;
      expect(io(sliced.events).h2dBytes).toBeGreaterThanOrEqual(h2dWhole / 2);
      expect(io(sliced.events).h2dBytes).toBeLessThanOrEqual(h2dWhole / 2 + 256 * 4);
      expect(io(sliced.events).d2hBytes).toBe(io(sliced.events).h2dBytes);
      expect(shmLeftBy(sliced.events)).toEqual([]);
    }
  });

  it('refuses a layout that cannot share the step, before starting any rank', async () => {
    const r = await train('refuse', [...base(2), '--ranks', '2', '--parallel', 'perturbation', '--q', '3']);
    expect(r.code).toBe(1);
    expect(r.events.find((e) => e.type === 'error')?.message).toMatch(/q \(3\) must be a multiple of 2/);
    const g = await train('refuse', [...base(2), '--ranks', '4', '--parallel', '2d', '--groups', '3']);
    expect(g.events.find((e) => e.type === 'error')?.message).toMatch(/--parallel 2d needs --groups G, a divisor of the 4 ranks/);
  });
});

describe('spillway plan --ranks', () => {
  type RanksPlan = { ranks: number; groups: number; shards: number; perGpu: { examples: number; perturbations: number }; stepMs: number; singleGpuStepMs: number; speedup: number; feasible: boolean };
  const plan = (name: string, args: string[]) =>
    runSpillway(['plan', '--model', model, '--spill', join(work, `spill-${name}`), '--batch-size', '4', '--max-length', '32', '--calibration-bytes', '16MiB', ...args], dataDir(name));

  it("shows each rank's share of the step beside the one-process plan, and refuses a layout that cannot share it", async () => {
    const data = await plan('plan', ['--ranks', '2', '--json']);
    expect(data.code, data.stderr).toBe(0);
    const d = (JSON.parse(data.stdout) as { ranks: RanksPlan }).ranks;
    expect(d).toMatchObject({ ranks: 2, groups: 1, shards: 2, perGpu: { examples: 2, perturbations: 1 }, feasible: true });
    expect(d.speedup).toBeCloseTo(d.singleGpuStepMs / d.stepMs, 9);
    const pert = await plan('plan', ['--ranks', '2', '--parallel', 'perturbation', '--q', '2', '--json']);
    expect(pert.code, pert.stderr).toBe(0);
    expect((JSON.parse(pert.stdout) as { ranks: RanksPlan }).ranks).toMatchObject({ groups: 2, shards: 1, perGpu: { examples: 4, perturbations: 1 } });
    const human = await plan('plan', ['--ranks', '2']);
    expect(human.stdout).toMatch(/^2 ranks \(2 per machine\), data parallel$/m);
    expect(human.stdout).toMatch(/^predicted step [\d.]+ ms \(bound by \w+\); the same step in one process [\d.]+ ms: [\d.]+×$/m);
    const refused = await plan('plan', ['--ranks', '2', '--parallel', 'perturbation', '--q', '3']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/q \(3\) must be a multiple of the 2 perturbation groups/);
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Runs the CLI, calling onEvent for each JSON line as it comes; resolves with the exit code. */
function trainStreaming(name: string, args: string[], onEvent: (e: Event, so: Event[]) => void): Promise<{ code: number | null; events: Event[] }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, SPILLWAY_DATA_DIR: dataDir(name) }, stdio: ['ignore', 'pipe', 'pipe'] });
    const events: Event[] = [];
    let buf = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const e = JSON.parse(buf.slice(0, i)) as Event;
        buf = buf.slice(i + 1);
        events.push(e);
        onEvent(e, events);
      }
    });
    child.stderr.resume();
    child.on('close', (code) => resolve({ code, events }));
  });
}

describe('a rank that dies or hangs', () => {
  it('SIGKILL of rank 1 mid-run (sliced) stops every rank within seconds, fails the run naming rank 1, and resuming with 2 or 1 ranks reproduces the losses', async () => {
    const ck = join(work, 'ck-kill');
    // The killed run streams its blocks from memory the ranks share (--sliced): a crash leaves
    // nothing in /dev/shm. It is planned far longer than it lives (the schedule is constant, so its
    // steps are those of any shorter run): however late the kill lands on a loaded machine, it
    // lands mid-run.
    const args = [...base(MANY_STEPS), '--ranks', '2', '--offload', 'cpu', '--sliced', '--checkpoint-every', '5', '--checkpoint-dir', ck];
    let killedAt = 0;
    // Killed once step 7 is reported: rank 1 is then computing step 8 or later.
    const killed = await trainStreaming('kill', args, (e, so) => {
      if (e.type === 'step' && e.step === 7) {
        const start = so.find((x) => x.type === 'start') as Event & { world: { ranks: { pid: number }[] } };
        killedAt = performance.now();
        process.kill(start.world.ranks[1].pid, 'SIGKILL');
      }
    });
    const stoppedAfter = (performance.now() - killedAt) / 1000;
    expect(killed.code).toBe(1);
    const error = killed.events.find((e) => e.type === 'error') as Event & { message: string };
    expect(error.message).toMatch(/^rank 1 \(pid \d+ on \S+\) exited on signal 9 \(Killed\); every rank was stopped$/);
    // mpirun ends the other ranks once it sees one die (measured: about 1 s), long before the
    // default --rank-timeout (120 s) would; 60 s leaves room for a loaded machine.
    expect(stoppedAfter).toBeLessThan(60);
    const runs = JSON.parse((await runSpillway(['runs', 'list', '--json'], dataDir('kill'))).stdout) as { status: string; error: string | null; stepsDone: number }[];
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ status: 'failed', error: error.message });
    expect(shmLeftBy(killed.events)).toEqual([]);
    // The newest checkpoint (step 5, or later if the kill landed late) is whole: resume it with
    // 2 ranks (bit for bit) and with 1 (data parallel: within the tolerance), 5 steps past it,
    // against a run of 2 ranks that was never interrupted.
    const newest = readdirSync(ck).filter((d) => /^step-\d+$/.test(d)).sort().at(-1) as string;
    const from = Number(newest.slice('step-'.length));
    expect(from).toBeGreaterThanOrEqual(5);
    const total = from + 5;
    const whole = await train('kill-whole', [...base(total), '--ranks', '2']);
    expect(whole.code, whole.stderr).toBe(0);
    const resumeArgs = (ranks: string[]) => ['train', '--resume', join(ck, newest), '--model', model, ...base(total).slice(3), ...ranks];
    const again = await train('kill', resumeArgs(['--ranks', '2']));
    expect(again.code, again.stderr).toBe(0);
    const after = (events: Event[]) => steps(events).filter((s) => s.step > from);
    expect(after(again.events)).toHaveLength(5);
    expect(after(again.events).map((s) => s.loss)).toEqual(after(whole.events).map((s) => s.loss));
    // The run has gone on past that checkpoint (again): in its own data folder a second resume from
    // it is refused, so the 1-rank resume runs in another folder.
    const alone = await train('kill-alone', resumeArgs([]));
    expect(alone.code, alone.stderr).toBe(0);
    expect(maxRelDiff(after(alone.events).map((s) => s.loss), after(whole.events).map((s) => s.loss))).toBeLessThanOrEqual(DATA_TOLERANCE);
  });

  it('a rank that hangs (SIGSTOP) is named by rank 0 after --rank-timeout, and every rank ends', async () => {
    let stoppedAt = 0;
    let pid = 0;
    // Planned far longer than it lives, like the killed run above: the stop lands mid-run however late.
    // 10 s: long enough that no rank of a healthy run on a loaded machine is ever that late, so
    // the timeout that ends the run is the one the stop caused.
    const hung = await trainStreaming('hang', [...base(MANY_STEPS), '--ranks', '2', '--rank-timeout', '10'], (e) => {
      if (e.type === 'start') pid = (e as Event & { world: { ranks: { pid: number }[] } }).world.ranks[1].pid;
      if (e.type === 'step' && e.step === 3) {
        stoppedAt = performance.now();
        process.kill(pid, 'SIGSTOP');
      }
    });
    const seconds = (performance.now() - stoppedAt) / 1000;
    expect(hung.code).toBe(1);
    expect(stoppedAt).toBeGreaterThan(0);
    const error = hung.events.find((e) => e.type === 'error') as Event & { message: string };
    // Named by the 10 s timeout (rank 0 may already have been waiting when the stop landed, so the
    // timeout is read from the message, not from the clock).
    expect(error.message).toMatch(/^rank 0: rank 1 \(pid \d+ on \S+\) has not taken part in .* within 10 s of rank 0 arriving: hung or dead; every rank was stopped$/);
    // The timeout, then MPI_Abort ends the stopped rank too; 60 s beyond it leaves room for a loaded machine.
    expect(seconds).toBeLessThan(10 + 60);
    // Gone once mpirun has reaped it (not our child: nothing to wait on but its pid).
    for (let i = 0; i < 600 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
    expect(alive(pid)).toBe(false);
  });
});
