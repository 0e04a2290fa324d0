// The whole backend through the contract: a real `serve` server with the run
// supervisor over a real SQLite store, real engine processes, and a WebSocket
// client. Start a run, watch its metrics arrive, stop it, resume it, export,
// delete; a second client reconnecting with sinceStep catches up.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { connectWebSocket, SpillwayClient, webSocketUrlFor } from '../../../../electron/common/client.js';
import { defaultServices, startServe } from '../../../../electron/server/serve-command.js';
import { watchRun } from '../../../helpers/events.js';
import { DEMO_DATA, DEMO_TOKENIZER_DIR, makeTinyLlama } from '../../../helpers/tiny-model.js';
import { wsFactory } from '../../server/ws-helpers.js';
import { allBlocksOnSsdBudget } from '../../common/plan-budget.js';

let work: string;
let model: string;
let stop: () => Promise<void>;
let url: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-ops-'));
  model = await makeTinyLlama(join(work, 'tiny'));
  const served = await startServe({ host: '127.0.0.1', port: 0, staticDir: null }, defaultServices(join(work, 'data'), { allow: [work] }), () => {});
  stop = served.stop;
  url = served.server.url;
});

afterAll(async () => {
  await stop?.();
});

const client = async () => new SpillwayClient(await connectWebSocket(webSocketUrlFor(url), wsFactory));

const options = (steps: number) => ({
  model,
  train: join(DEMO_DATA, 'sentiment-demo', 'train.jsonl'),
  eval: join(DEMO_DATA, 'sentiment-demo', 'eval.jsonl'),
  evalMax: 16,
  task: { kind: 'sst2' as const },
  steps,
  batchSize: 4,
  lr: 1e-3,
  threads: 1,
  evalEvery: 5,
  checkpointEvery: 5,
});

describe('the backend over the contract', () => {
  it('runs, streams, stops, resumes, exports and deletes a run', async () => {
    const a = await client();
    const started = await a.call('startRun', { name: 'contract run', options: options(100_000) });
    expect(started.status).toBe('running');
    const watch = await watchRun(a, started.id, -1);
    await watch.until('7 live steps', (w) => w.steps().length >= 7);
    const seen = watch.steps();
    expect(seen.map((m) => m.step)).toEqual(seen.map((_, i) => i + 1));

    // A second client joining late catches up from step 3 and then follows live.
    const b = await client();
    const lateWatch = await watchRun(b, started.id, 3);
    await lateWatch.until('6 steps for the late client', (w) => w.steps().length >= 6);
    const late = lateWatch.steps();
    expect(late[0].step).toBe(4);
    expect(late.map((m) => m.step)).toEqual(late.map((_, i) => i + 4));

    const stopped = await a.call('stopRun', { runId: started.id, checkpoint: true });
    expect(stopped.status).toBe('stopped');
    const detail = await a.call('getRun', { runId: started.id });
    expect(detail.checkpoints.length).toBeGreaterThan(0);
    expect(detail.options.steps).toBe(100_000);
    expect(detail.storage).toBeNull();
    const stepsAtStop = detail.stepsDone;
    expect(stepsAtStop).toBeGreaterThanOrEqual(7);

    const list = await a.call('listRuns', {});
    expect(list.runs.map((r) => r.id)).toContain(started.id);
    expect(list.runs.find((r) => r.id === started.id)?.lastLoss).not.toBeNull();

    const resumed = await a.call('resumeRun', { runId: started.id });
    expect(resumed.status).toBe('running');
    const afterResume = await watchRun(a, started.id, stepsAtStop);
    await afterResume.until('2 steps after resume', (w) => w.steps().length >= 2);
    afterResume.off();
    await a.call('stopRun', { runId: started.id, checkpoint: true });

    const csv = join(work, 'metrics.csv');
    const exported = await a.call('exportRun', { runId: started.id, kind: 'metrics-csv', dest: csv });
    expect(exported.bytes).toBeGreaterThan(0);
    expect(readFileSync(csv, 'utf8').split('\n').length).toBeGreaterThan(stepsAtStop);

    await expect(a.call('resumeRun', { runId: 'no-such-run' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const folder = (await a.call('getRun', { runId: started.id })).checkpoints[0]?.path;
    await a.call('deleteRun', { runId: started.id });
    await expect(a.call('getRun', { runId: started.id })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    if (folder) expect(existsSync(folder)).toBe(false);
    watch.off();
    lateWatch.off();
    a.close();
    b.close();
  });

  it('refuses a run that cannot start, naming why, and records nothing (issue 13)', async () => {
    const a = await client();
    const before = (await a.call('listRuns', {})).total;
    await expect(a.call('startRun', { options: { ...options(5), model: join(work, 'missing-model') } })).rejects.toMatchObject({ code: 'BAD_REQUEST', message: expect.stringMatching(/missing-model/) });
    expect((await a.call('listRuns', {})).total).toBe(before);
    a.close();
  });

  it('records a run whose engine fails after its checks, and does not offer to resume it without a checkpoint', async () => {
    const a = await client();
    // A device budget of 1 KiB: the checks pass, the engine refuses to load the weights.
    const r = await a.call('startRun', { options: { ...options(5), gpuMem: 1024 } });
    await (await watchRun(a, r.id, -1)).until('the failed status', (w) => w.status() === 'failed');
    const detail = await a.call('getRun', { runId: r.id });
    expect(detail.error).toMatch(/budget|memory/i);
    expect(detail.resumable).toBe(false);
    expect((await a.call('listRuns', {})).runs.find((x) => x.id === r.id)?.resumable).toBe(false);
    await expect(a.call('resumeRun', { runId: r.id })).rejects.toMatchObject({ code: 'CONFLICT', message: expect.stringMatching(/no checkpoint/) });
    expect((await a.call('getRun', { runId: r.id })).status).toBe('failed');
    a.close();
  });

  it('runs with the blocks on the SSD tier when the options say so, with the resident losses', async () => {
    const a = await client();
    const steps = async (extra: Record<string, unknown>) => {
      const r = await a.call('startRun', { options: { ...options(3), evalEvery: 0, zeroShot: false, ...extra } });
      await (await watchRun(a, r.id, -1)).until('the run to complete', (w) => w.status() === 'completed');
      return (await a.call('getMetrics', { runId: r.id, sinceStep: -1 })).steps.map((m) => [m.lossPlus, m.lossMinus]);
    };
    const resident = await steps({});
    expect(resident).toHaveLength(3);
    expect(await steps({ offload: 'ssd', spillDirs: [work], writeBackEvery: 2 })).toEqual(resident);
    a.close();
  });

  it('runs bf16 masters placed by the plan (offload auto) over two spill folders with device updates: the options reach the engine', async () => {
    const a = await client();
    // Four blocks, and a CPU budget under which every one streams from the SSD, in fp32 and in bf16.
    const model = await makeTinyLlama(join(work, 'tiny4'), { layers: 4 });
    const spill = [mkdtempSync(join(work, 'spill-a-')), mkdtempSync(join(work, 'spill-b-'))];
    const shape = { batchSize: 4, maxLength: 64 };
    const base = { model, spillDirs: spill, updateOn: 'device' as const, threads: 1, ...shape };
    const { cpu: cpuMem } = await allBlocksOnSsdBudget((c, masters) => a.call('plan', { ...base, masters, ...(c === undefined ? {} : { budgets: { cpu: c } }) }));
    const ask = { ...base, budgets: { cpu: cpuMem } };
    const f32 = await a.call('plan', { ...ask, masters: 'fp32' });
    const bf16 = await a.call('plan', { ...ask, masters: 'bf16' });
    expect(bf16.feasible).toBe(true);
    expect(bf16.units.map((u) => u.home)).toEqual(f32.units.map((u) => u.home));
    expect(bf16.linkBytesPerStep.hostToDevice).toBe(f32.linkBytesPerStep.hostToDevice / 2);
    const onSsd = bf16.units.filter((u) => u.home === 'ssd').length;
    expect(onSsd).toBe(4);

    const extra = { offload: 'auto' as const, cpuMem, spillDirs: spill, masters: 'bf16' as const, updateOn: 'device' as const };
    const r = await a.call('startRun', { options: { ...options(3), model, ...shape, evalEvery: 0, zeroShot: false, checkpointEvery: 0, ...extra } });
    await (await watchRun(a, r.id, -1)).until('the bf16 run to end', (w) => ['completed', 'failed'].includes(w.status()));
    const detail = await a.call('getRun', { runId: r.id });
    expect(detail.error).toBeNull();
    expect(detail.status).toBe('completed');
    expect(detail.options).toMatchObject(extra);
    // The list shows how the run keeps its streamed blocks, and where.
    expect((await a.call('listRuns', {})).runs.find((x) => x.id === r.id)?.storage).toEqual({ masters: 'bf16', updateOn: 'device', spillDirs: spill });
    // The run followed the plan the contract showed: the same homes and bytes per step.
    expect(detail.plan?.homes).toEqual({ device: bf16.units.length - onSsd, cpu: 0, ssd: onSsd });
    expect(detail.plan?.linkBytes).toEqual({ ...bf16.linkBytesPerStep });
    // Measured per step: the blocks crossed in 2 bytes per parameter, as the plan said; from the second step on,
    // the previous step's device-side updates are written back (device → host, then the SSD).
    const steps = (await a.call('getMetrics', { runId: r.id, sinceStep: -1 })).steps;
    expect(steps).toHaveLength(3);
    for (const s of steps) expect(s.io!.h2dBytes).toBe(bf16.linkBytesPerStep.hostToDevice);
    for (const s of steps.slice(1)) expect(s.io!.d2hBytes).toBe(bf16.linkBytesPerStep.deviceToHost);
    // The engine cached its calibration in this backend's data folder: plans are now predicted.
    expect((await a.call('plan', { ...ask, masters: 'bf16' })).predictedStepMs).not.toBeNull();
    a.close();
  });

  it('runs a LoRA run with the FZOO estimator started through the contract, and exports its adapter folder', async () => {
    const a = await client();
    const method = { trainable: 'lora' as const, rank: 2, targets: ['q' as const, 'v' as const], estimator: 'fzoo' as const, merge: true };
    const r = await a.call('startRun', { options: { ...options(3), evalEvery: 0, zeroShot: false, checkpointEvery: 0, ...method } });
    await (await watchRun(a, r.id, -1)).until('the LoRA run to end', (w) => ['completed', 'failed'].includes(w.status()));
    const detail = await a.call('getRun', { runId: r.id });
    expect(detail.error).toBeNull();
    // The defaults that follow the estimator reached the run: FZOO's 4 Rademacher probes.
    expect(detail.options).toMatchObject({ ...method, q: 4, noise: 'rademacher' });
    const dest = join(work, 'exported-adapter');
    const exported = await a.call('exportRun', { runId: r.id, kind: 'model', dest });
    expect(existsSync(join(dest, 'adapter_config.json'))).toBe(true);
    expect(existsSync(join(dest, 'merged', 'model.safetensors'))).toBe(true);
    expect(exported.bytes).toBeGreaterThan(0);
    a.close();
  });

  it("plans for the training data's mean tokens per example when the request names the dataset and task", async () => {
    const a = await client();
    const ask = { model: DEMO_TOKENIZER_DIR, batchSize: 16, maxLength: 256 };
    const data = { train: join(DEMO_DATA, 'sentiment-demo', 'train.jsonl'), task: { kind: 'sst2' as const } };
    // Measured here, then cached in this backend's data folder for the plans below.
    const bare = await a.call('plan', { ...ask, recalibrate: true });
    expect(bare.predictedStepMs).not.toBeNull();
    expect(bare.dataTokens ?? null).toBeNull();

    const withData = await a.call('plan', { ...ask, ...data });
    const t = withData.dataTokens!;
    expect(t.examples).toBe(512);
    // SST-2: two sequences per example (one per label word), each far shorter than the max length.
    expect(t.meanPerExample).toBeGreaterThan(2);
    expect(t.meanPerExample).toBeLessThan(ask.maxLength);
    expect(t.perStep).toBeCloseTo(t.meanPerExample * ask.batchSize, 6);
    expect(withData.timeTerms!.computeMs).toBeLessThan(bare.timeTerms!.computeMs);
    expect(withData.predictedStepMs!).toBeLessThan(bare.predictedStepMs!);
    // Asked again (as the form does per keystroke): the same figures, from the cache.
    expect((await a.call('plan', { ...ask, ...data })).dataTokens).toEqual(t);

    // Data that cannot be tokenized: planned for batch × max length, with a note.
    const bad = await a.call('plan', { ...ask, train: join(work, 'missing.jsonl'), task: { kind: 'sst2' } });
    expect(bad.dataTokens ?? null).toBeNull();
    expect(bad.predictedStepMs).toBe(bare.predictedStepMs);
    expect(bad.notes.some((n) => /could not be tokenized/.test(n))).toBe(true);
    a.close();
  });

  it('keeps settings in the store', async () => {
    const a = await client();
    const s = await a.call('updateSettings', { threads: 3, modelRoots: [work] });
    expect(s.threads).toBe(3);
    expect((await a.call('getSettings', {})).modelRoots).toEqual([work]);
    a.close();
  });
});
