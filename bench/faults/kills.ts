// SIGKILL at random moments, for real: one training run of the demo model is
// killed again and again (its engine, the `spillway train` that supervises it,
// or the `spillway serve` that does) at moments drawn from a seeded schedule,
// and continued after each kill as a person would (`train --resume` with the
// newest checkpoint of the run, or Resume in the app). At the end its step
// rows are compared with those of the same run never interrupted: every step
// must have exactly one row, with the same losses bit for bit (CPU backend).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';

import { connectWebSocket, SpillwayClient, webSocketUrlFor } from '../../electron/common/client.js';
import type { WebSocketLike } from '../../electron/common/client.js';
import { latestCheckpoint } from '../../electron/engine/checkpoint.js';
import { packageRoot } from '../../electron/engine/native.js';
import { RunStore } from '../../electron/services/store/index.js';
import type { StepMetric } from '../../electron/services/store/types.js';
import { alive, ended, engineOf, seeded, spillway } from './processes.js';
import type { Spawned } from './processes.js';

export type KillTarget = 'engine' | 'cli' | 'serve';

export interface KillOptions {
  target: KillTarget;
  kills: number;
  seed: number;
  /** Steps of the run (enough for every kill to land mid-run). */
  steps: number;
  /** A fresh folder for this campaign's data folders and checkpoints. */
  work: string;
  /** The uninterrupted run's rows, when already known (they are the same for every target). */
  reference?: StepMetric[];
}

export interface KillReport {
  target: KillTarget;
  kills: number;
  /** Kills after which the run was continued from a checkpoint of its own. */
  resumed: number;
  /** The step each kill landed after (the last step reported before it). */
  killedAfter: number[];
  status: string;
  steps: number;
  rowsPresent: number;
  /** Steps with no row. */
  rowsLost: number;
  /** Steps whose row differs from the uninterrupted run's. */
  rowsWrong: number;
  /** Rows rebuilt from a checkpoint's seed log (steps run while nothing recorded them). */
  rowsRebuilt: number;
  reference: StepMetric[];
}

const DEMO = join(packageRoot(), 'resources');
const CHECKPOINT_EVERY = 10;

/** The run's options as CLI flags and as the API's RunOptions: the demo data, evaluations every 25 steps. */
function runFlags(steps: number): string[] {
  return [
    '--model', join(DEMO, 'models', 'spillway-demo'),
    '--data', join(DEMO, 'datasets', 'sentiment-demo', 'train.jsonl'),
    '--eval-data', join(DEMO, 'datasets', 'sentiment-demo', 'eval.jsonl'),
    '--task', 'sst2', '--steps', String(steps), '--batch-size', '8', '--lr', '3e-4', '--eps', '1e-3', '--seed', '7',
    '--eval-every', '25', '--eval-max', '64', '--no-zero-shot', '--threads', '2', '--checkpoint-every', String(CHECKPOINT_EVERY),
  ];
}

function runOptions(steps: number) {
  return {
    model: join(DEMO, 'models', 'spillway-demo'),
    train: join(DEMO, 'datasets', 'sentiment-demo', 'train.jsonl'),
    eval: join(DEMO, 'datasets', 'sentiment-demo', 'eval.jsonl'),
    task: { kind: 'sst2' as const },
    steps,
    batchSize: 8,
    lr: 3e-4,
    eps: 1e-3,
    seed: 7,
    evalEvery: 25,
    evalMax: 64,
    zeroShot: false,
    threads: 2,
    checkpointEvery: CHECKPOINT_EVERY,
  };
}

function rowsOf(dataDir: string, runId: string): StepMetric[] {
  const store = RunStore.open(dataDir);
  try {
    return store.getMetrics(runId).steps;
  } finally {
    store.close();
  }
}

function logsOf(dataDir: string, runId: string): string[] {
  const store = RunStore.open(dataDir);
  try {
    return store.logs(runId).map((l) => l.message);
  } finally {
    store.close();
  }
}

/** The run never interrupted: the rows every campaign is held to. */
export async function referenceRows(work: string, steps: number): Promise<StepMetric[]> {
  const dataDir = join(work, 'reference');
  const p = spillway(['train', ...runFlags(steps), '--checkpoint-dir', join(dataDir, 'ckpt'), '--json', '--data-dir', dataDir]);
  const { code } = await p.exited;
  if (code !== 0) throw new Error(`the reference run failed:\n${p.output()}`);
  const start = p.output().split('\n').find((l) => l.includes('"type":"start"'));
  return rowsOf(dataDir, (JSON.parse(start as string) as { runId: string }).runId);
}

/** Draws when, after the moment it is armed, the next kill lands: uniform over what is left of the run (at most 3 s). */
function scheduler(seed: number, steps: number) {
  const rng = seeded(seed);
  let lastAt = 0;
  let stepMs = 100;
  return {
    step(step: number) {
      const now = Date.now();
      if (lastAt) stepMs = 0.8 * stepMs + 0.2 * (now - lastAt);
      lastAt = now;
      return step;
    },
    /**
     * The step after which the next kill is armed: drawn from what is left of the run, shared among
     * the kills still to come, and at least two steps before its end, so every kill lands in the run
     * however fast or loaded the machine is (a delay drawn in time alone let a slow-then-fast run end first).
     */
    armAfter(from: number, killsLeft: number): number {
      const lastArm = Math.max(1, steps - 2);
      const span = Math.max(1, Math.floor((lastArm - from) / Math.max(1, killsLeft)));
      return Math.min(lastArm, from + 1 + Math.floor(rng() * span));
    },
    /** The moment within the step after arming: a random part of one step's time (the step, its evaluation or its checkpoint). */
    delay(): number {
      return rng() * Math.min(3000, Math.max(20, 0.8 * stepMs));
    },
    reset() {
      lastAt = 0;
    },
  };
}

interface Session {
  /** Resolves with the step the kill landed after, or null when the run ended before it. */
  killed: Promise<number | null>;
}

/** A `spillway train --json` session killed (its engine or itself) at the drawn moment once armed. */
function cliSession(args: string[], target: 'engine' | 'cli', sched: ReturnType<typeof scheduler>, armOn: 'checkpoint' | 'step', armAt: number, onStart: (runId: string) => void): Session {
  const p: Spawned = spillway(args);
  let last = 0;
  // A first session is killed only once a checkpoint exists to resume from.
  let resumable = armOn === 'step';
  let timer: NodeJS.Timeout | null = null;
  const killed = new Promise<number | null>((resolve, reject) => {
    p.onLine((line) => {
      let e: { type?: string; step?: number; runId?: string; message?: string };
      try {
        e = JSON.parse(line) as typeof e;
      } catch {
        return;
      }
      if (e.type === 'start' && e.runId) onStart(e.runId);
      if (e.type === 'step') last = sched.step(e.step as number);
      if (e.type === 'checkpoint') resumable = true;
      if (!timer && resumable && last >= armAt && (e.type === 'step' || e.type === 'checkpoint')) {
        timer = setTimeout(async () => {
          const engine = await engineOf(p.child.pid as number);
          // Not up yet: the next event arms again.
          if (engine === null || !alive(p.child.pid as number)) return void (timer = null);
          const at = last;
          process.kill(target === 'engine' ? engine : (p.child.pid as number), 'SIGKILL');
          await p.exited;
          await ended(engine);
          resolve(at);
        }, sched.delay());
      }
    });
    void p.exited.then(({ code, signal }) => {
      if (signal === 'SIGKILL' || (target === 'engine' && timer && code === 1)) return;
      if (timer) clearTimeout(timer);
      if (code === 0) resolve(null);
      else reject(new Error(`spillway train exited ${code ?? signal} unasked:\n${p.output().slice(-2000)}`));
    });
  });
  return { killed };
}

async function cliCampaign(o: KillOptions, sched: ReturnType<typeof scheduler>): Promise<{ dataDir: string; runId: string; killedAfter: number[]; resumed: number }> {
  const dataDir = join(o.work, `data-${o.target}`);
  const ckpts = join(o.work, `ckpt-${o.target}`);
  mkdirSync(dataDir, { recursive: true });
  let runId = '';
  const killedAfter: number[] = [];
  let resumed = 0;
  let args = ['train', ...runFlags(o.steps), '--checkpoint-dir', ckpts, '--json', '--data-dir', dataDir];
  let armOn: 'checkpoint' | 'step' = 'checkpoint';
  for (;;) {
    sched.reset();
    const target = killedAfter.length < o.kills ? (o.target as 'engine' | 'cli') : null;
    const armAt = sched.armAfter(killedAfter.at(-1) ?? 0, o.kills - killedAfter.length);
    const s = target ? cliSession(args, target, sched, armOn, armAt, (id) => (runId = id)) : null;
    const at = s ? await s.killed : await finishCli(args, (id) => (runId = id));
    if (at === null) break;
    killedAfter.push(at);
    const from = await latestCheckpoint(ckpts, runId);
    if (!from) throw new Error(`no checkpoint of run ${runId} in ${ckpts} after the kill at step ${at}`);
    args = ['train', '--resume', from, '--json', '--data-dir', dataDir];
    armOn = 'step';
    resumed++;
  }
  return { dataDir, runId, killedAfter, resumed };
}

/** The last session: runs to the end. */
async function finishCli(args: string[], onStart: (runId: string) => void): Promise<null> {
  const p = spillway(args);
  p.onLine((line) => {
    if (line.includes('"type":"start"')) onStart((JSON.parse(line) as { runId: string }).runId);
  });
  const { code } = await p.exited;
  if (code !== 0) throw new Error(`the last session failed:\n${p.output().slice(-2000)}`);
  return null;
}

const wsFactory = (url: string) => new WebSocket(url) as unknown as WebSocketLike;

/** `spillway serve` on a free port; resolves with its process and a client of its API. */
async function serve(dataDir: string): Promise<{ p: Spawned; client: SpillwayClient }> {
  const p = spillway(['serve', '--port', '0', '--data-dir', dataDir]);
  const url = await new Promise<string>((resolve, reject) => {
    const t = setInterval(() => {
      const m = /(http:\/\/\S+\?token=\w+)/.exec(p.output());
      if (m) {
        clearInterval(t);
        resolve(m[1]);
      }
    }, 20);
    void p.exited.then(() => {
      clearInterval(t);
      reject(new Error(`spillway serve exited:\n${p.output()}`));
    });
  });
  return { p, client: new SpillwayClient(await connectWebSocket(webSocketUrlFor(url), wsFactory)) };
}

async function serveCampaign(o: KillOptions, sched: ReturnType<typeof scheduler>): Promise<{ dataDir: string; runId: string; killedAfter: number[]; resumed: number }> {
  const dataDir = join(o.work, 'data-serve');
  mkdirSync(dataDir, { recursive: true });
  let runId = '';
  const killedAfter: number[] = [];
  let resumed = 0;
  for (;;) {
    sched.reset();
    const { p, client } = await serve(dataDir);
    const arming = killedAfter.length < o.kills;
    const armAt = sched.armAfter(killedAfter.at(-1) ?? 0, o.kills - killedAfter.length);
    // The first session is killed only once a checkpoint exists to resume from.
    let resumable = killedAfter.length > 0;
    let last = 0;
    let timer: NodeJS.Timeout | null = null;
    const outcome = new Promise<number | null>((resolve, reject) => {
      const arm = () => {
        if (timer || !arming || !resumable || last < armAt) return;
        timer = setTimeout(async () => {
          const engine = await engineOf(p.child.pid as number);
          // Not up yet: the next step arms again.
          if (engine === null) return void (timer = null);
          const at = last;
          p.child.kill('SIGKILL');
          await p.exited;
          await ended(engine);
          resolve(at);
        }, sched.delay());
      };
      const watch = (id: string, since: number) =>
        client.subscribe(id, since, {
          onStep: (m) => {
            last = sched.step(m.step);
            arm();
          },
          onLog: (l) => {
            if (!l.message.startsWith('checkpoint at step')) return;
            resumable = true;
            arm();
          },
          onStatus: (st) => {
            if (st.status === 'completed') resolve(null);
            else if (st.status === 'failed') reject(new Error(`run ${id} failed: ${st.error}`));
          },
        });
      const go = async () => {
        if (!runId) {
          const r = await client.call('startRun', { name: 'killed', options: runOptions(o.steps) });
          runId = r.id;
          await watch(runId, 0);
        } else {
          const r = await client.call('resumeRun', { runId });
          resumed++;
          await watch(runId, r.stepsDone);
        }
      };
      go().catch(reject);
    });
    const at = await outcome;
    if (at === null) {
      client.close();
      p.child.kill('SIGTERM');
      await p.exited;
      break;
    }
    killedAfter.push(at);
  }
  return { dataDir, runId, killedAfter, resumed };
}

/** One campaign: `kills` SIGKILLs of `target` at seeded random moments of one run, each followed by its resume; then the rows checked. */
export async function killCampaign(o: KillOptions): Promise<KillReport> {
  mkdirSync(o.work, { recursive: true });
  const reference = o.reference ?? (await referenceRows(o.work, o.steps));
  const sched = scheduler(o.seed, o.steps);
  const r = o.target === 'serve' ? await serveCampaign(o, sched) : await cliCampaign(o, sched);
  const rows = rowsOf(r.dataDir, r.runId);
  const store = RunStore.open(r.dataDir);
  const status = store.getRun(r.runId)?.status ?? 'missing';
  store.close();
  const byStep = new Map(rows.map((m) => [m.step, m]));
  let rowsWrong = 0;
  for (const ref of reference) {
    const got = byStep.get(ref.step);
    if (got && (got.loss !== ref.loss || got.lossPlus !== ref.lossPlus || got.lossMinus !== ref.lossMinus || got.seed !== ref.seed)) rowsWrong++;
  }
  const rebuilt = logsOf(r.dataDir, r.runId).reduce((n, m) => n + Number(/^(\d+) step rows? rebuilt from the checkpoint's seed log/.exec(m)?.[1] ?? 0), 0);
  return {
    target: o.target,
    kills: r.killedAfter.length,
    resumed: r.resumed,
    killedAfter: r.killedAfter,
    status,
    steps: o.steps,
    rowsPresent: rows.length,
    rowsLost: o.steps - new Set(rows.map((m) => m.step).filter((s) => s >= 1 && s <= o.steps)).size,
    rowsWrong,
    rowsRebuilt: rebuilt,
    reference,
  };
}
