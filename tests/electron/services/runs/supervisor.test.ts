// The run supervisor end to end: real engine processes on a tiny model, a
// real SQLite file, events fanned out with their run id.
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';

import { latestCheckpoint } from '../../../../electron/engine/checkpoint.js';
import type { TrainOptions } from '../../../../electron/engine/trainer.js';
import { RunSupervisor } from '../../../../electron/services/runs/index.js';
import type { RunEvent } from '../../../../electron/services/runs/index.js';
import { RunStore } from '../../../../electron/services/store/index.js';
import { makeTinyLlama } from '../../../helpers/tiny-model.js';
import { demoTrainOptions } from '../../../helpers/train-options.js';
import { EventLog } from '../../../helpers/events.js';

let work: string;
let model: string;
const open: RunSupervisor[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-sup-'));
  model = await makeTinyLlama(join(work, 'tiny'));
});

afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

const options = (over: Partial<TrainOptions> = {}): TrainOptions =>
  demoTrainOptions(model, {
    steps: 4,
    seed: 3,
    ...over,
  });

function supervisor(dataDir = mkdtempSync(join(tmpdir(), 'spw-data-')), o: Parameters<typeof RunSupervisor.open>[1] = {}): RunSupervisor {
  const s = RunSupervisor.open(dataDir, o);
  open.push(s);
  return s;
}

/** The first event that satisfies `pred`; rejects when the run ends before it arrives. */
function until(events: EventLog<RunEvent>, pred: (e: RunEvent) => boolean): Promise<void> {
  return events.until(
    (ev) => ev.some(pred),
    (ev) => {
      const last = ev.at(-1);
      return last?.type === 'status' && last.status !== 'running' ? `the run ended (${last.status}: ${last.error}) first` : null;
    },
  );
}

const losses = (s: RunSupervisor, runId: string) => s.getMetrics(runId).steps.map((m) => [m.step, m.lossPlus, m.lossMinus]);

describe('RunSupervisor', () => {
  it('runs, records every event, and fans them out to every subscriber with the run id', async () => {
    const sup = supervisor();
    const all: RunEvent[] = [];
    const mine: RunEvent[] = [];
    const unsubscribeAll = sup.subscribe('*', (e) => all.push(e));
    const run = await sup.start({ name: 'first', options: options({ steps: 4, evalFraction: 0.1, evalMax: 8, evalEvery: 2, zeroShot: true }) });
    sup.subscribe(run.id, (e) => mine.push(e));
    expect(run).toMatchObject({ name: 'first', status: 'running', stepsPlanned: 4, task: 'sst2', ownerPid: process.pid });
    expect(existsSync(join(run.folder, 'checkpoints'))).toBe(true);
    expect(existsSync(join(run.folder, 'model'))).toBe(true);

    const done = await sup.waitFor(run.id);
    expect(done.status).toBe('completed');
    expect(done.error).toBeNull();
    expect(done.stepsDone).toBe(4);
    expect(done.endedAt).toBeGreaterThanOrEqual(done.startedAt as number);
    expect(done.finalMetrics).toMatchObject({ steps: 4, skippedSteps: 0, out: join(run.folder, 'model') });

    const types = mine.map((e) => e.type);
    expect(types).toEqual(['log', 'start', 'eval', 'step', 'step', 'eval', 'step', 'step', 'eval', 'log', 'done', 'status']);
    // The device line first (said while the run was checked, before it was recorded): which device `auto` took on this
    // machine and why; the start carries it, the run keeps it.
    expect(sup.store.logs(run.id)[0]).toMatchObject({ message: expect.stringMatching(/^device auto: /) });
    const start = mine.find((e) => e.type === 'start') as Extract<RunEvent, { type: 'start' }>;
    expect(start.device).toMatchObject({ asked: 'auto', id: expect.stringMatching(/^(cpu|cuda:\d+)$/) });
    expect((done.config as { device?: unknown }).device).toEqual(start.device);
    // What the run's checks said before start() resolved reached only the subscribers already listening: the device line.
    const early = all.slice(0, all.findIndex((e) => e.type === 'status'));
    expect(early).toEqual([{ runId: run.id, type: 'log', message: expect.stringMatching(/^device auto: /) }]);
    expect(all.slice(early.length).filter((e) => e.type !== 'status')).toEqual(mine.filter((e) => e.type !== 'status'));
    expect(all[early.length]).toEqual({ runId: run.id, type: 'status', status: 'running', error: null });
    expect(all.every((e) => e.runId === run.id)).toBe(true);

    const m = sup.getMetrics(run.id);
    const stepEvents = mine.flatMap((e) => (e.type === 'step' ? [e] : []));
    expect(m.steps.map((s) => [s.step, s.loss, s.seed])).toEqual(stepEvents.map((e) => [e.step, e.loss, e.seed]));
    expect(m.evals.map((e) => e.step)).toEqual([0, 2, 4]);
    expect(sup.getMetrics(run.id, 2)).toEqual({ steps: m.steps.slice(2), evals: m.evals.slice(2) });
    expect(sup.store.artifacts(run.id)).toEqual([expect.objectContaining({ kind: 'model', path: join(run.folder, 'model') })]);
    expect(sup.store.artifacts(run.id)[0].bytes).toBeGreaterThan(0);
    expect(sup.store.logs(run.id).map((l) => l.message).join('\n')).toMatch(/saved fine-tuned model/);

    unsubscribeAll();
    const second = await sup.start({ options: options({ steps: 1 }), saveModel: false });
    await sup.waitFor(second.id);
    expect(all.some((e) => e.runId === second.id)).toBe(false);
    expect(sup.getRun(second.id)?.finalMetrics?.out).toBeNull();
  });

  it('stops cooperatively: status stopped, a checkpoint row, resumable', async () => {
    const sup = supervisor();
    const events = new EventLog<RunEvent>();
    sup.subscribe('*', (e) => events.push(e));
    const run = await sup.start({ options: options({ steps: 100_000 }) });
    await until(events, (e) => e.type === 'step' && e.step >= 3);
    sup.checkpointNow(run.id);
    await until(events, (e) => e.type === 'checkpoint');
    const stopped = await sup.stop(run.id);
    expect(stopped.status).toBe('stopped');
    expect(stopped.error).toBeNull();
    const ckpts = sup.store.checkpoints(run.id);
    expect(ckpts.length).toBeGreaterThanOrEqual(1);
    const last = ckpts[ckpts.length - 1];
    expect(last.step).toBe(stopped.stepsDone);
    expect(last.path).toBe(join(run.folder, 'checkpoints', `step-${String(last.step).padStart(8, '0')}`));
    expect(existsSync(last.path)).toBe(true);
    expect(last.bytes).toBeGreaterThan(0);
    expect(events.at(-1)).toEqual({ runId: run.id, type: 'status', status: 'stopped', error: null });
    expect(readdirSync(join(run.folder, 'model'))).toContain('spillway.json');

    // Resume in the same row (the partial model is cleared), then stop again.
    const resumed = await sup.resume(run.id);
    expect(resumed).toMatchObject({ status: 'running', resumedFrom: last.path, stepsDone: last.step });
    await until(events, (e) => e.type === 'step' && e.step > last.step + 1);
    const again = await sup.stop(run.id);
    expect(again.status).toBe('stopped');
    expect(sup.getMetrics(run.id).steps.map((m) => m.step)).toEqual(Array.from({ length: again.stepsDone }, (_, i) => i + 1));
  });

  it('kills an engine that ignores stop after the grace period, and records it as stopped', async () => {
    const sup = supervisor();
    const events = new EventLog<RunEvent>();
    sup.subscribe('*', (e) => events.push(e));
    const run = await sup.start({ options: options({ steps: 100_000 }) });
    await until(events, (e) => e.type === 'step');
    process.kill(sup.enginePid(run.id) as number, 'SIGSTOP');
    const t0 = Date.now();
    const stopped = await sup.stop(run.id, { graceMs: 300 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(stopped.status).toBe('stopped');
    expect(stopped.error).toMatch(/SIGKILL/);
  });

  it('marks a run killed by SIGKILL failed, keeps the rest intact, and resumes it bit-identically', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'spw-data-'));
    const sup = supervisor(dataDir);
    const o = options({ steps: 30, checkpointEvery: 2 });
    const whole = await sup.start({ name: 'whole', options: o, saveModel: false });
    await sup.waitFor(whole.id);

    const events = new EventLog<RunEvent>();
    const run = await sup.start({ name: 'victim', options: o });
    sup.subscribe(run.id, (e) => {
      events.push(e);
      if (e.type === 'checkpoint' && e.step === 4) process.kill(sup.enginePid(run.id) as number, 'SIGKILL');
    });
    const failed = await sup.waitFor(run.id);
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatch(/killed by SIGKILL/);
    expect(failed.stepsDone).toBeGreaterThanOrEqual(4);
    expect(failed.stepsDone).toBeLessThan(30);
    expect(sup.store.db.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(sup.getRun(whole.id)?.status).toBe('completed');

    // The kill lands while the engine runs on: it resumes from the newest checkpoint on disk (step 4 or later).
    const newest = (await latestCheckpoint(join(run.folder, 'checkpoints'))) as string;
    expect(Number(/step-(\d+)$/.exec(newest)?.[1])).toBeGreaterThanOrEqual(4);
    const resumed = await sup.resume(run.id);
    expect(resumed).toMatchObject({ id: run.id, status: 'running', error: null, resumedFrom: newest });
    const after = await sup.waitFor(run.id);
    expect(after.error).toBeNull();
    expect(after.status).toBe('completed');
    expect(after.stepsDone).toBe(30);
    expect(losses(sup, run.id)).toEqual(losses(sup, whole.id));
    expect(losses(sup, run.id)).toHaveLength(30);
    await expect(sup.resume(run.id)).rejects.toThrow(/has completed/);

    // A fresh supervisor on the same file sees the same rows.
    await sup.close();
    open.splice(open.indexOf(sup), 1);
    const again = supervisor(dataDir);
    expect(losses(again, run.id)).toEqual(losses(again, whole.id));
  });

  it('recovers runs left running by a dead process as interrupted, leaving live owners alone', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'spw-data-'));
    const store = RunStore.open(dataDir);
    const dead = spawnSync(process.execPath, ['-e', 'process.pid']).pid as number;
    const base = { name: 'x', model: '/m', dataset: '/d', task: 'sst2', config: {}, stepsPlanned: 9, status: 'running' as const };
    store.createRun({ ...base, id: 'orphan', folder: join(dataDir, 'runs', 'orphan'), ownerPid: dead });
    store.createRun({ ...base, id: 'elsewhere', folder: join(dataDir, 'runs', 'elsewhere'), ownerPid: process.ppid });
    store.insertStepMetrics('orphan', [{ step: 1, time: 1, loss: 1, lossPlus: 1, lossMinus: 1, projectedGrad: 0, lr: 0, stepMs: 1, tokensPerS: 1, skipped: false, seed: '1' }]);
    store.close();

    const sup = supervisor(dataDir);
    const events = new EventLog<RunEvent>();
    sup.subscribe('*', (e) => events.push(e));
    const recovered = sup.recover();
    expect(recovered.map((r) => r.id)).toEqual(['orphan']);
    expect(sup.getRun('orphan')).toMatchObject({ status: 'interrupted', stepsDone: 1, ownerPid: null });
    expect(sup.getRun('orphan')?.error).toMatch(new RegExp(`pid ${dead}`));
    expect(sup.getRun('elsewhere')?.status).toBe('running');
    expect(events).toEqual([{ runId: 'orphan', type: 'status', status: 'interrupted', error: expect.any(String) }]);
  });

  it('deletes a run: its rows and its files, and nothing of other runs', async () => {
    const sup = supervisor();
    const a = await sup.start({ options: options({ steps: 3, checkpointEvery: 1 }) });
    const b = await sup.start({ options: options({ steps: 2 }) });
    await Promise.all([sup.waitFor(a.id), sup.waitFor(b.id)]);
    expect(readdirSync(join(a.folder, 'model'))).toContain('model.safetensors');
    expect(sup.store.checkpoints(a.id).length).toBe(2);
    const removed = await sup.deleteRun(a.id);
    expect(removed[0]).toBe(a.folder);
    expect(existsSync(a.folder)).toBe(false);
    expect(sup.getRun(a.id)).toBeNull();
    expect(sup.getMetrics(a.id)).toEqual({ steps: [], evals: [] });
    expect(sup.store.checkpoints(a.id)).toEqual([]);
    expect(sup.getRun(b.id)?.status).toBe('completed');
    expect(existsSync(b.folder)).toBe(true);
    await expect(sup.deleteRun(a.id)).rejects.toThrow(/no run/);
  });

  it('refuses invalid options before creating a run', async () => {
    const sup = supervisor();
    await expect(sup.start({ options: { ...options(), steps: -1 } })).rejects.toThrow(/steps: expected an integer from 0 to 100000000, got -1/);
    // The bounds are the engine's: q above what it accepts is refused here, before the model loads.
    await expect(sup.start({ options: { ...options(), q: 65 } })).rejects.toThrow(/q: expected an integer from 1 to 64, got 65/);
    expect(sup.listRuns()).toEqual([]);
  });
});
