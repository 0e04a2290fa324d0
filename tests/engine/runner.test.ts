// The engine host process: events relayed, cooperative stop, and a killed engine
// reported as such while its caller carries on.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { EngineCrashError, EngineJobError, startEngineJob } from '../../electron/engine/runner.js';
import type { TrainEvent, TrainOptions } from '../../electron/engine/trainer.js';
import { EventLog, waitForSteps } from '../helpers/events.js';
import { makeTinyLlama } from '../helpers/tiny-model.js';
import { demoTrainOptions } from '../helpers/train-options.js';

let work: string;
let model: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-runner-'));
  model = await makeTinyLlama(join(work, 'tiny'));
});

const options = (over: Partial<TrainOptions> = {}): TrainOptions =>
  demoTrainOptions(model, {
    steps: 100_000,
    lr: 1e-3,
    ...over,
  });

describe('the engine host process', () => {
  it('stops cooperatively and saves a model marked as stopped', async () => {
    const events = new EventLog<TrainEvent>();
    const out = join(work, 'stopped');
    const job = startEngineJob({ type: 'train', options: options({ out }) }, (e) => events.push(e as TrainEvent));
    await waitForSteps(events, 3, job);
    job.stop();
    await job.done;
    const done = events.at(-1);
    expect(done?.type).toBe('done');
    if (done?.type !== 'done') return;
    expect(done.status).toBe('stopped');
    expect(done.steps).toBeGreaterThanOrEqual(3);
    expect(done.steps).toBeLessThan(100_000);
    const meta = JSON.parse(readFileSync(join(out, 'spillway.json'), 'utf8')) as Record<string, unknown>;
    expect(meta.status).toBe('stopped');
    expect(meta.steps_done).toBe(done.steps);
    expect(readFileSync(join(out, 'seedlog.jsonl'), 'utf8').trim().split('\n')).toHaveLength(done.steps);
  });

  it('reports an engine killed mid-run with its signal, and the caller carries on', async () => {
    const events = new EventLog<TrainEvent>();
    const out = join(work, 'killed');
    const job = startEngineJob({ type: 'train', options: options({ out }) }, (e) => events.push(e as TrainEvent));
    await waitForSteps(events, 2, job);
    job.kill('SIGKILL');
    const err = await job.done.then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(EngineCrashError);
    expect((err as EngineCrashError).signal).toBe('SIGKILL');
    expect((err as Error).message).toMatch(/killed by SIGKILL/);
    // Nothing half-written appears at the destination.
    expect(existsSync(out)).toBe(false);
    // The caller is intact: another job runs to completion.
    const again: TrainEvent[] = [];
    const job2 = startEngineJob({ type: 'train', options: options({ steps: 2 }) }, (e) => again.push(e as TrainEvent));
    await job2.done;
    expect(again.at(-1)?.type).toBe('done');
  });

  it('turns a failing job into an error naming the problem', async () => {
    const job = startEngineJob({ type: 'train', options: options({ model: join(work, 'no-such-model') }) }, () => {});
    const err = await job.done.then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(EngineJobError);
    expect((err as Error).message).toMatch(/no-such-model/);
  });
});
