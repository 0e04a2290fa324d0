// Resume as issues 13 and 14 found it failing, each fault injected for real: a stop during an
// evaluation (the Ctrl-C repro), a supervisor that dies with rows it had not flushed,
// another run's checkpoints in the folder, options that change the trajectory, a run stopped
// with --out, a checkpoint that fails its checks.
import { spawn } from 'node:child_process';
import { cpSync, existsSync, rmSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';

import { latestCheckpoint } from '../../electron/engine/checkpoint.js';
import type { TrainOptions } from '../../electron/engine/trainer.js';
import { RunSupervisor } from '../../electron/services/runs/index.js';
import type { RunEvent } from '../../electron/services/runs/index.js';
import { ended } from '../../bench/faults/processes.js';
import { BIN, jsonLines, runSpillway } from '../helpers/cli.js';
import { ROOT } from '../helpers/engine.js';
import { EventLog } from '../helpers/events.js';
import { makeTinyLlama } from '../helpers/tiny-model.js';
import { demoTrainOptions } from '../helpers/train-options.js';

let work: string;
let model: string;
const open: RunSupervisor[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-faults-resume-'));
  model = await makeTinyLlama(join(work, 'tiny'));
});

afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

function supervisor(dataDir = mkdtempSync(join(work, 'data-'))): RunSupervisor {
  const s = RunSupervisor.open(dataDir);
  open.push(s);
  return s;
}

const options = (over: Partial<TrainOptions> = {}): TrainOptions => demoTrainOptions(model, { steps: 12, seed: 4, checkpointEvery: 3, ...over });
const losses = (s: RunSupervisor, runId: string) => s.getMetrics(runId).steps.map((m) => [m.step, m.loss, m.lossPlus, m.lossMinus]);

describe('the Ctrl-C repro of issue 14 (a stop during the evaluation after step 50)', () => {
  it('checkpoints step 50 whole, and --resume continues from it', async () => {
    const dataDir = join(work, 'repro');
    const ckpts = join(work, 'repro-ckpt');
    // The demo evaluates every 25 steps: the Ctrl-C sent on the "step":50 line lands in that evaluation.
    const child = spawn(process.execPath, [BIN, 'train', '--steps', '300', '--checkpoint-every', '20', '--checkpoint-dir', ckpts, '--json'], {
      env: { ...process.env, SPILLWAY_THREADS: '2', SPILLWAY_DATA_DIR: dataDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let sent = false;
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (!sent && /"type":"step","step":50,/.test(out)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    expect(code, out).toBe(0);
    const done = jsonLines(out).find((e) => e.type === 'done') as { status: string; steps: number };
    expect(done.status).toBe('stopped');
    expect(done.steps).toBeGreaterThanOrEqual(50);
    const last = (await latestCheckpoint(ckpts)) as string;
    expect(last).toBe(join(ckpts, `step-${String(done.steps).padStart(8, '0')}`));
    expect(readFileSync(join(last, 'seedlog.jsonl'), 'utf8').trim().split('\n')).toHaveLength(done.steps);

    const r = await runSpillway(['train', '--resume', last, '--steps', String(done.steps + 2), '--json'], dataDir);
    expect(r.code, r.stderr).toBe(0);
    const resumed = jsonLines(r.stdout);
    expect(resumed.filter((e) => e.type === 'step').map((e) => e.step)).toEqual([done.steps + 1, done.steps + 2]);
    // The same run, continued: one run in the store, its id kept.
    const start = resumed.find((e) => e.type === 'start') as { runId: string };
    expect(start.runId).toBe((jsonLines(out).find((e) => e.type === 'start') as { runId: string }).runId);
    const runs = JSON.parse((await runSpillway(['runs', 'list', '--json'], dataDir)).stdout) as { id: string; status: string; stepsDone: number }[];
    expect(runs).toEqual([expect.objectContaining({ id: start.runId, status: 'completed', stepsDone: done.steps + 2 })]);
  });
});

describe('a supervisor that dies with rows it had not flushed', () => {
  it('leaves the engine to checkpoint on its way out; the resume rebuilds the missing rows from the seed log', async () => {
    const dataDir = mkdtempSync(join(work, 'unflushed-'));
    const o = options({ steps: 30, checkpointEvery: 100 });
    const whole = supervisor();
    const ref = await whole.start({ options: o, saveModel: false });
    await whole.waitFor(ref.id);

    // A supervisor whose metric writer never flushes by itself (as serve's batch of ~250 ms, stretched):
    // killed after the 8th step, it has recorded no step at all.
    const script = `
      import { RunSupervisor } from ${JSON.stringify(join(ROOT, 'dist/electron/services/runs/index.js'))};
      const sup = RunSupervisor.open(${JSON.stringify(dataDir)}, { writer: { flushMs: 1e9, maxRows: 1e9 } });
      const o = JSON.parse(process.argv[1]);
      const run = await sup.start({ options: o, saveModel: false });
      sup.subscribe(run.id, (e) => { if (e.type === 'step') process.stdout.write(JSON.stringify({ step: e.step, engine: sup.enginePid(run.id) }) + '\\n'); });
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, JSON.stringify({ ...o, steps: 100_000 })], { stdio: ['ignore', 'pipe', 'inherit'] });
    const engine = await new Promise<number>((resolve) => {
      let buf = '';
      child.stdout.on('data', (b: Buffer) => {
        buf += b.toString();
        const m = /\{"step":8,"engine":(\d+)\}/.exec(buf);
        if (m) resolve(Number(m[1]));
      });
    });
    child.kill('SIGKILL');
    // The engine sees its parent go, stops after the step it is in, checkpoints and exits.
    await ended(engine);

    const sup = supervisor(dataDir);
    const [run] = sup.recover();
    expect(run.status).toBe('interrupted');
    expect(sup.getMetrics(run.id).steps).toEqual([]);
    const from = (await sup.resumeCheckpoint(run.id)) as string;
    const held = Number(/step-(\d+)$/.exec(from)?.[1]);
    expect(held).toBeGreaterThanOrEqual(8);
    const stored = run.config as { options: TrainOptions };
    await sup.resume(run.id, { options: { ...stored.options, steps: 30 } });
    expect((await sup.waitFor(run.id)).status).toBe('completed');
    expect(losses(sup, run.id)).toEqual(losses(whole, ref.id));
    expect(sup.store.logs(run.id).map((l) => l.message)).toContain(
      `${held} step rows rebuilt from the checkpoint's seed log (steps 1–${held}): they ran while nothing recorded them (the supervising process had ended)`,
    );
  });
});

describe('checkpoints name their run', () => {
  it('a folder holding another run\'s checkpoints is refused before a step; Resume takes the run\'s own newest, never another\'s', async () => {
    const sup = supervisor();
    const shared = join(work, 'shared-ckpt');
    const a = await sup.start({ name: 'a', options: options({ checkpointDir: shared, steps: 7 }) });
    await sup.waitFor(a.id);
    await expect(sup.start({ name: 'b', options: options({ checkpointDir: shared }) })).rejects.toThrow(
      new RegExp(`${shared} holds the checkpoints of run ${a.id} \\(steps 3, 6\\)`),
    );
    expect(sup.listRuns().map((r) => r.name)).toEqual(['a']);

    // Another run's newer checkpoint lands in this run's folder anyway (copied by hand): Resume ignores it,
    // and resuming from it is refused, naming both runs.
    const c = await sup.start({ name: 'c', options: options({ steps: 100_000 }) });
    const events = new EventLog<RunEvent>();
    sup.subscribe(c.id, (e) => events.push(e));
    await events.until((ev) => ev.some((e) => e.type === 'checkpoint'));
    await sup.stop(c.id);
    const own = (await sup.resumeCheckpoint(c.id)) as string;
    const foreign = join(c.folder, 'checkpoints', 'step-99999999');
    cpSync(join(shared, 'step-00000006'), foreign, { recursive: true });
    expect(await latestCheckpoint(join(c.folder, 'checkpoints'))).toBe(foreign);
    expect(await sup.resumeCheckpoint(c.id)).toBe(own);
    await expect(sup.resume(c.id, { checkpoint: foreign })).rejects.toThrow(new RegExp(`was written by run ${a.id}, not by run ${c.id}`));
    // Nor does the run write beside it (a checkpoint of the same step would replace the other run's).
    await expect(sup.resume(c.id)).rejects.toThrow(new RegExp(`holds the checkpoints of run ${a.id} \\(step 99999999\\)`));
    expect(sup.getRun(c.id)?.status).toBe('stopped');
    rmSync(foreign, { recursive: true });
    await sup.resume(c.id);
    await sup.stop(c.id);
    expect(sup.getRun(c.id)?.status).toBe('stopped');
  });
});

describe('options that change the trajectory', () => {
  it('are refused on resume, naming each; with --allow-option-changes they are taken and recorded', async () => {
    const dataDir = join(work, 'changes');
    const ckpts = join(work, 'changes-ckpt');
    const base = ['--model', model, '--data', demoTrainOptions(model).train, '--steps', '6', '--batch-size', '4', '--lr', '1e-2', '--seed', '4', '--no-zero-shot', '--eval-fraction', '0'];
    const first = await runSpillway(['train', ...base, '--checkpoint-every', '2', '--checkpoint-dir', ckpts, '--json'], dataDir);
    expect(first.code, first.stderr).toBe(0);
    const from = join(ckpts, 'step-00000004');

    const refused = await runSpillway(['train', '--resume', from, '--steps', '8', '--lr', '2e-2', '--batch-size', '8'], dataDir);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`${from} was trained with other options than this resume asks for (batchSize 4 → 8, lr 0.01 → 0.02)`);
    expect(refused.stderr).toContain('--allow-option-changes');
    // A longer run keeps a constant rate's trajectory: taken without asking.
    const longer = await runSpillway(['train', '--resume', from, '--steps', '8', '--json'], dataDir);
    expect(longer.code, longer.stderr).toBe(0);

    const taken = await runSpillway(['train', '--resume', join(ckpts, 'step-00000006'), '--steps', '10', '--lr', '2e-2', '--allow-option-changes', '--json'], dataDir);
    expect(taken.code, taken.stderr).toBe(0);
    const last = (await latestCheckpoint(ckpts)) as string;
    const state = JSON.parse(readFileSync(join(last, 'spillway.json'), 'utf8')) as { options: { lr: number }; option_changes: unknown[] };
    expect(state.options.lr).toBe(0.02);
    expect(state.option_changes).toEqual([{ step: 6, option: 'lr', from: 0.01, to: 0.02 }]);
    const runId = (jsonLines(taken.stdout).find((e) => e.type === 'start') as { runId: string }).runId;
    const sup = supervisor(dataDir);
    expect(sup.store.logs(runId).map((l) => l.message)).toContain('options changed on resume at step 6: lr 0.01 → 0.02');
  });
});

describe('a run stopped with --out (issue 13)', () => {
  it('resumes into its own output folder and completes; a resume that fails its checks leaves the run stopped', async () => {
    const sup = supervisor();
    const out = join(work, 'stopped-out');
    const run = await sup.start({ options: options({ steps: 100_000, out }) });
    const events = new EventLog<RunEvent>();
    sup.subscribe(run.id, (e) => events.push(e));
    await events.until((ev) => ev.some((e) => e.type === 'checkpoint'));
    await sup.stop(run.id);
    expect(JSON.parse(readFileSync(join(out, 'spillway.json'), 'utf8'))).toMatchObject({ status: 'stopped', run_id: run.id });

    // A damaged checkpoint: the resume is refused, naming the file, and the run stays as it was.
    const from = (await sup.resumeCheckpoint(run.id)) as string;
    const seedLog = join(from, 'seedlog.jsonl');
    const good = readFileSync(seedLog);
    writeFileSync(seedLog, good.subarray(0, good.length - 7));
    await expect(sup.resume(run.id)).rejects.toThrow(new RegExp(`${seedLog}`));
    expect(sup.getRun(run.id)).toMatchObject({ status: 'stopped', error: null });
    writeFileSync(seedLog, good);

    const stepsDone = sup.getRun(run.id)?.stepsDone as number;
    const stored = sup.getRun(run.id)?.config as { options: TrainOptions };
    await sup.resume(run.id, { options: { ...stored.options, steps: stepsDone + 3 } });
    const done = await sup.waitFor(run.id);
    expect(done).toMatchObject({ status: 'completed', error: null, stepsDone: stepsDone + 3 });
    expect(JSON.parse(readFileSync(join(out, 'spillway.json'), 'utf8'))).toMatchObject({ status: 'completed', run_id: run.id, steps_done: stepsDone + 3 });
    expect(readdirSync(out)).toContain('manifest.json');
  });

  it('another run\'s model in --out is refused before the run starts', async () => {
    const sup = supervisor();
    const out = join(work, 'taken-out');
    const a = await sup.start({ options: options({ steps: 2, out }) });
    await sup.waitFor(a.id);
    await expect(sup.start({ options: options({ steps: 2, out }) })).rejects.toThrow(`output folder ${out} is not empty (the model of run ${a.id}); choose a new folder`);
    expect(existsSync(join(out, 'model.safetensors'))).toBe(true);
  });
});
