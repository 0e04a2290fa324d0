// The contract test suite, written once and run against every transport
// (tests/electron/server/ws-contract.test.ts, tests/electron/shell/ipc-contract.test.ts).
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import type { SpillwayClient } from '../../../electron/common/client.js';
import { SpillwayError, type StepMetric } from '../../../electron/common/contract.js';
import { createServices, type SpillwayServices } from '../../../electron/services/api.js';
import { recordedDeviceSource } from '../../../electron/engine/device.js';
import { EventLog } from '../../helpers/events.js';
import { makeTinyLlama } from '../../helpers/tiny-model.js';
import { FakeRuns } from './fake-runs.js';
import { allBlocksOnSsdBudget } from './plan-budget.js';

export const MODELS_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/models');
/** The addon's cudaDevices() as the H100 machine answered it (tests/fixtures/gpu/README.md). */
const H100_DEVICES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/gpu/h100-cuda-devices.json');
/** The embedded demo model: the one with a tokenizer. */
const DEMO_MODEL = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../resources/models/spillway-demo');

/** A backend reachable over one transport. */
export interface Backend {
  connect(): Promise<SpillwayClient>;
  close(): Promise<void>;
}
export type BackendFactory = (services: SpillwayServices) => Promise<Backend>;

/** The SpillwayError a call rejects with (the test fails if it resolves). */
export async function rejection(p: Promise<unknown>): Promise<SpillwayError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(SpillwayError);
    return e as SpillwayError;
  }
  throw new Error('expected the call to reject');
}

/** A folder the fake runs name (it need not exist: the run supervisor is faked); the backend is told it is allowed. */
const FAKE_ROOT = '/spillway-contract';
const RUN_OPTIONS = { model: `${FAKE_ROOT}/models/opt`, train: `${FAKE_ROOT}/data/train.jsonl`, task: { kind: 'sst2' as const }, steps: 100 };

export function contractSuite(transport: string, makeBackend: BackendFactory): void {
  describe(`contract over ${transport}`, () => {
    let runs: FakeRuns;
    let services: SpillwayServices;
    let backend: Backend;
    let client: SpillwayClient;
    let dataDir: string;
    const extraClients: SpillwayClient[] = [];

    const connectAnother = async () => {
      const c = await backend.connect();
      extraClients.push(c);
      return c;
    };

    beforeAll(async () => {
      dataDir = await mkdtemp(path.join(os.tmpdir(), 'spillway-contract-'));
      await writeFile(path.join(dataDir, 'train.jsonl'), '{"sentence":"a fine film","label":1}\n{"sentence":"dull","label":0}\n{"sentence":"no label"}\n');
      await writeFile(path.join(dataDir, 'eval.csv'), 'sentence,label\nok,1\n');
      await writeFile(path.join(dataDir, 'notes.txt'), 'not a dataset');
      await mkdir(path.join(dataDir, 'sub'));
      await writeFile(path.join(dataDir, 'sub', 'more.jsonl'), '{"text":"x"}\n');
      await writeFile(
        path.join(dataDir, 'sub', 'two-bad.jsonl'),
        [
          '{"sentence":"a fine film","label":1}',
          '{"sentence":"no label here"}',
          '{"sentence":"dull","label":0}',
          '',
          '{"sentence": "broken json",',
          '{"sentence":"lovely","label":"1"}',
        ].join('\n') + '\n',
      );
    });
    afterAll(async () => {
      await rm(dataDir, { recursive: true, force: true });
    });

    beforeEach(async () => {
      runs = new FakeRuns();
      services = createServices({ runs, hfCacheDir: path.join(dataDir, 'no-hf-cache'), access: { allow: [dataDir, MODELS_ROOT, FAKE_ROOT] } });
      backend = await makeBackend(services);
      client = await backend.connect();
    });
    afterEach(async () => {
      client.close();
      extraClients.splice(0).forEach((c) => c.close());
      await backend.close();
      // Ends the generator processes the generation tests started.
      await services.shutdown();
    });

    describe('catalog', () => {
      it('lists the models under the given roots, with unsupported ones and why', async () => {
        const r = await client.call('listModels', { roots: [MODELS_ROOT] });
        const names = r.models.map((m) => m.name);
        expect(names).toEqual(expect.arrayContaining(['opt-tiny', 'gpt2-tiny', 'llama-tiny', 'llama-tiny-sharded']));
        const opt = r.models.find((m) => m.name === 'opt-tiny')!;
        expect(opt.family).toBe('opt');
        expect(opt.parameterCount).toBeGreaterThan(0);
        expect(r.unsupported).toEqual([]);
      });

      it('lists the embedded demo and the allowed folders\' models when no roots are given', async () => {
        const names = (await client.call('listModels', {})).models.map((m) => m.name);
        expect(names).toContain('spillway-demo');
        expect(names).toEqual(expect.arrayContaining(['llama-tiny', 'opt-tiny']));
      });

      it('inspects a model', async () => {
        const r = await client.call('inspectModel', { path: path.join(MODELS_ROOT, 'llama-tiny') });
        expect(r.family).toBe('llama');
        expect(r.units.map((u) => u.kind)).toEqual(['embed', 'block', 'head']);
      });

      it('answers a missing model folder with a typed error that names it', async () => {
        const e = await rejection(client.call('inspectModel', { path: path.join(dataDir, 'nope') }));
        expect(e.code).toBe('BAD_REQUEST');
        expect(e.name).toBe('ModelError');
        expect(e.message).toContain('nope');
      });

      it('lists datasets (JSONL, CSV, Parquet) under the roots', async () => {
        const r = await client.call('listDatasets', { roots: [dataDir] });
        expect(r.datasets.map((d) => d.name).sort()).toEqual(['eval.csv', 'more.jsonl', 'train.jsonl', 'two-bad.jsonl']);
        expect(r.datasets.find((d) => d.name === 'eval.csv')!.format).toBe('csv');
      });

      it('previews a dataset, rendering rows with a template and saying which rows fail', async () => {
        const r = await client.call('previewDataset', { path: path.join(dataDir, 'train.jsonl'), rows: 3, template: { kind: 'sst2' } });
        expect(r.columns).toEqual(['sentence', 'label']);
        expect(r.rows).toHaveLength(3);
        expect(r.rows[0]).toEqual({ line: 1, values: { sentence: 'a fine film', label: 1 } });
        expect(r.rendered![0]).toEqual({ ok: true, example: expect.objectContaining({ prompt: 'a fine film It was', label: 1 }) });
        expect(r.rendered![2]).toEqual({ ok: false, error: expect.stringContaining('label') });
        expect(r.totalRows).toBeNull();
      });

      it('refuses a template that cannot work, before reading the file', async () => {
        const e = await rejection(
          client.call('previewDataset', { path: path.join(dataDir, 'train.jsonl'), template: { kind: 'classify', labelWords: [' yes'] } }),
        );
        expect(e.code).toBe('BAD_REQUEST');
        expect(e.issues?.[0].path).toBe('template.labelWords');
      });

      it('checks every row with the model tokenizer, listing each bad row with its line and field', async () => {
        const file = path.join(dataDir, 'sub', 'two-bad.jsonl');
        const r = await client.call('checkDataset', { path: file, model: DEMO_MODEL, template: { kind: 'sst2' } });
        expect(r).toMatchObject({ path: file, rows: 5, ok: 3, errorCount: 2, complete: true, maxLength: 256 });
        expect(r.errors).toEqual([
          { line: 2, field: 'label', message: expect.stringContaining('expected a label') },
          { line: 5, field: null, message: expect.stringMatching(/^invalid JSON/) },
        ]);
        // A label word longer than the token limit fails every row it could render, one entry per row.
        const tight = await client.call('checkDataset', {
          path: file,
          model: DEMO_MODEL,
          template: { kind: 'sst2', labelWords: [' terrible terrible terrible', ' great'] },
          maxLength: 3,
        });
        expect(tight).toMatchObject({ rows: 5, ok: 0, errorCount: 5, maxLength: 3 });
        expect(tight.errors.filter((e) => /does not fit maxLength 3/.test(e.message)).map((e) => e.line)).toEqual([1, 3, 6]);
      });

      it('previews chat rows with the model\'s template: the trained replies marked, token counts, the fallback said', async () => {
        // Inside the allowed data folder: the backend reads datasets only from folders it may read.
        const dir = await mkdtemp(path.join(dataDir, 'chat-'));
        const file = path.join(dir, 'chat.jsonl');
        await writeFile(
          file,
          [
            { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }, { role: 'user', content: 'bye' }, { role: 'assistant', content: 'ciao' }] },
            { messages: [{ role: 'assistant', content: 'me first' }, { role: 'user', content: 'hi' }] },
          ]
            .map((r) => JSON.stringify(r))
            .join('\n') + '\n',
        );
        const r = await client.call('previewDataset', { path: file, template: { kind: 'chat' }, model: DEMO_MODEL });
        const first = r.rendered![0];
        if (!first.ok || first.example.kind !== 'chat') throw new Error(`expected a rendered chat row, got ${JSON.stringify(first)}`);
        expect(first.example).toMatchObject({ template: 'fallback', templateFile: null, messages: 4 });
        const [seq] = first.example.sequences;
        expect(seq.replies).toEqual([2, 4]);
        expect(seq.pieces.filter((p) => p.trained).map((p) => p.text)).toEqual(['hello</s>\n\n', 'ciao</s>\n\n']);
        expect(seq.pieces.map((p) => p.text).join('')).toBe('<s>### User:\nhi\n\n### Assistant:\nhello</s>\n\n### User:\nbye\n\n### Assistant:\nciao</s>\n\n');
        expect(seq.tokens).toBe(seq.pieces.reduce((n, p) => n + p.tokens, 0));
        expect(seq.trainedTokens).toBeGreaterThan(0);
        expect(r.rendered![1]).toEqual({ ok: false, error: expect.stringMatching(/:2: field "messages": message 1 \(assistant\): the conversation must start with a user turn/) });
        // Without a model the rows cannot be rendered: each says so.
        const bare = await client.call('previewDataset', { path: file, template: { kind: 'chat' } });
        expect(bare.rendered![0]).toEqual({ ok: false, error: expect.stringContaining('choose a model') });
        // A check of every row lists the bad one with its line.
        const check = await client.call('checkDataset', { path: file, model: DEMO_MODEL, template: { kind: 'chat' } });
        expect(check).toMatchObject({ rows: 2, ok: 1, errorCount: 1 });
        expect(check.errors).toEqual([{ line: 2, field: 'messages', message: expect.stringContaining('must start with a user turn') }]);
        await rm(dir, { recursive: true, force: true });
      });

      it('answers a dataset check on a model without a tokenizer, or a missing file, with BAD_REQUEST', async () => {
        const file = path.join(dataDir, 'train.jsonl');
        const e = await rejection(client.call('checkDataset', { path: file, model: path.join(MODELS_ROOT, 'opt-tiny'), template: { kind: 'sst2' } }));
        expect(e.code).toBe('BAD_REQUEST');
        const missing = await rejection(client.call('checkDataset', { path: path.join(dataDir, 'nope.jsonl'), model: DEMO_MODEL, template: { kind: 'sst2' } }));
        expect(missing).toMatchObject({ code: 'BAD_REQUEST', name: 'DatasetError' });
      });

      it('plans the all-resident case and says the step time is not predicted yet', async () => {
        const p = await client.call('plan', { model: path.join(MODELS_ROOT, 'opt-tiny'), batchSize: 4, maxLength: 32 });
        const info = await client.call('inspectModel', { path: path.join(MODELS_ROOT, 'opt-tiny') });
        expect(p.strategy).toBe('all-resident');
        // Every unit stays on the compute device, which is the CPU here: its memory is the CPU's.
        expect(p.computeDevice).toBe('cpu');
        expect(p.units.every((u) => u.home === 'device')).toBe(true);
        expect(p.breakdown.weights).toBe(4 * p.units.reduce((n, u) => n + u.parameters, 0));
        expect(p.units.reduce((n, u) => n + u.parameters, 0)).toBeLessThanOrEqual(info.parameterCount);
        expect(p.memory).toEqual({ gpu: 0, cpu: p.breakdown.weights + p.breakdown.workingCopies + p.breakdown.activations + (p.breakdown.runtime ?? 0), ssd: 0 });
        expect(p.linkBytesPerStep).toEqual({ hostToDevice: 0, deviceToHost: 0, ssdRead: 0, ssdWrite: 0 });
        expect(p.predictedStepMs).toBeNull();
        expect(p.notes.join(' ')).toMatch(/calibrat/);
        expect(p.feasible).toBe(true);
      });

      it('says exactly what is short when the budget is too small', async () => {
        const p = await client.call('plan', { model: path.join(MODELS_ROOT, 'opt-tiny'), budgets: { cpu: 1000 } });
        expect(p.feasible).toBe(false);
        expect(p.shortfalls[0]).toMatch(/^CPU memory: what must stay on the compute device needs [\d.]+ MiB \(.*\) but the budget is 1000 B \(short by [\d.]+ MiB\)/);
      });

      it('plans bf16 masters: the same placement with half the streamed bytes, and says the read-ahead and the update choice', async () => {
        const spill = await mkdtemp(path.join(dataDir, 'spill-'));
        const ask = { model: DEMO_MODEL, spillDirs: [spill], batchSize: 4, maxLength: 64 };
        const resident = await client.call('plan', ask);
        expect(resident).toMatchObject({ strategy: 'all-resident', bytesPerParameter: 4, prefetch: 2, prefetchRequested: 2 });
        expect(resident.update).toMatchObject({ mode: 'auto', homeUnits: 0, deviceUnits: 0 });
        // A CPU budget under which every block streams from the SSD, with either precision.
        const { cpu } = await allBlocksOnSsdBudget((c, masters) => client.call('plan', { ...ask, masters, ...(c === undefined ? {} : { budgets: { cpu: c } }) }));
        const budgets = { cpu };
        const f32 = await client.call('plan', { ...ask, budgets, masters: 'fp32' });
        const bf16 = await client.call('plan', { ...ask, budgets, masters: 'bf16' });
        expect(f32.feasible && bf16.feasible).toBe(true);
        expect(bf16.units.map((u) => u.home)).toEqual(f32.units.map((u) => u.home));
        const streamed = f32.units.filter((u) => u.home === 'ssd');
        expect(streamed.length).toBe(resident.units.filter((u) => u.kind === 'block').length);
        expect(f32.bytesPerParameter).toBe(4);
        expect(bf16.bytesPerParameter).toBe(2);
        for (const u of bf16.units.filter((x) => x.home === 'ssd')) expect(u.bytes).toBe(2 * u.parameters);
        expect(bf16.linkBytesPerStep.hostToDevice).toBe(f32.linkBytesPerStep.hostToDevice / 2);
        expect(bf16.linkBytesPerStep.ssdRead).toBe(f32.linkBytesPerStep.ssdRead / 2);
        expect(bf16.memory.ssd).toBe(f32.memory.ssd / 2);
        expect(bf16.breakdown.runtime).toBeGreaterThan(0);
        // The read-ahead asked for, and the depth the budget leaves (lowered with a note when short).
        for (const p of [f32, bf16]) {
          expect(p.prefetchRequested).toBe(2);
          expect(p.prefetch!).toBeLessThanOrEqual(2);
          if (p.prefetch! < 2) expect(p.notes.join(' ')).toMatch(/read-ahead lowered from 2/);
        }
        expect(f32.update).toMatchObject({ mode: 'auto', homeUnits: streamed.length, deviceUnits: 0 });
        expect(f32.update!.reason).toMatch(/not calibrated/);
        expect(f32.units.filter((u) => u.home === 'ssd').every((u) => u.updateOn === 'home' && u.spillIndex === 0)).toBe(true);

        // Forced device updates, striped over two folders.
        const spill2 = await mkdtemp(path.join(dataDir, 'spill-'));
        const striped = await client.call('plan', { ...ask, spillDirs: [spill, spill2], budgets, masters: 'bf16', updateOn: 'device' });
        expect(striped.spillDirs).toEqual([spill, spill2]);
        expect(striped.ssd!.folders.map((f) => f.units)).toEqual([Math.ceil(streamed.length / 2), Math.floor(streamed.length / 2)]);
        const onSsd = striped.units.filter((u) => u.home === 'ssd');
        expect(onSsd.map((u) => u.spillIndex)).toEqual(onSsd.map((_, i) => i % 2));
        expect(onSsd.every((u) => u.updateOn === 'device' && u.deviceToHostBytes === u.bytes)).toBe(true);
        expect(striped.update).toMatchObject({ mode: 'device', homeUnits: 0, deviceUnits: streamed.length });
        expect(striped.deviceUpdate).toEqual(striped.units.map((u) => u.home === 'ssd'));
        expect(striped.linkBytesPerStep.deviceToHost).toBe(bf16.linkBytesPerStep.hostToDevice);
      });
    });

    describe('allowed folders', () => {
      it('refuses paths outside the allowed folders with FORBIDDEN, naming the path and the folders', async () => {
        const e = await rejection(client.call('previewDataset', { path: '/etc/passwd' }));
        expect(e.code).toBe('FORBIDDEN');
        expect(e.message).toMatch(/^the dataset \/etc\/passwd is outside the folders Spillway may read datasets from: .*\(command line\)/);
        expect((await rejection(client.call('inspectModel', { path: '/usr' }))).code).toBe('FORBIDDEN');
        expect((await rejection(client.call('startRun', { options: { ...RUN_OPTIONS, spillDirs: ['/var/tmp/spill'] } }))).code).toBe('FORBIDDEN');
      });

      it('lists the allowed folders, then a folder inside them; outside them it refuses', async () => {
        const top = await client.call('listFolder', {});
        expect(top.path).toBeNull();
        expect(top.roots.map((r) => r.path)).toEqual(expect.arrayContaining([dataDir, MODELS_ROOT]));
        const inside = await client.call('listFolder', { path: dataDir });
        const known = new Set(['sub', 'eval.csv', 'notes.txt', 'train.jsonl']);
        // Folders first, then files, each by name (other tests leave spill folders here too).
        expect(inside.entries.filter((e) => known.has(e.name)).map((e) => `${e.type}:${e.name}`)).toEqual(['folder:sub', 'file:eval.csv', 'file:notes.txt', 'file:train.jsonl']);
        expect(inside.entries.find((e) => e.name === 'train.jsonl')).toMatchObject({ path: path.join(dataDir, 'train.jsonl'), bytes: expect.any(Number), outside: false });
        expect(inside.parent).toBeNull();
        expect((await client.call('listFolder', { path: path.join(dataDir, 'sub') })).parent).toBe(dataDir);
        expect((await rejection(client.call('listFolder', { path: '/' }))).code).toBe('FORBIDDEN');
        expect((await rejection(client.call('listFolder', { path: path.join(dataDir, 'train.jsonl') }))).code).toBe('BAD_REQUEST');
      });

      it('checks the folders a settings change adds', async () => {
        const notModel = await rejection(client.call('updateSettings', { modelRoots: [path.join(dataDir, 'sub')] }));
        expect(notModel.code).toBe('BAD_REQUEST');
        expect(notModel.message).toMatch(/sub holds no model \(.*config\.json/);
        expect((await rejection(client.call('updateSettings', { modelRoots: [path.join(dataDir, 'nope')] }))).message).toMatch(/nope does not exist/);
        const system = await rejection(client.call('updateSettings', { datasetRoots: ['/etc'] }));
        expect(system).toMatchObject({ code: 'BAD_REQUEST', name: 'SystemFolder' });
        expect((await rejection(client.call('updateSettings', { spillDir: '/' }))).message).toMatch(/contains \/etc/);
        expect((await client.call('updateSettings', { modelRoots: [MODELS_ROOT], datasetRoots: [dataDir] })).datasetRoots).toEqual([dataDir]);
      });

      it("lists the devices: the CPU, each CUDA device with its name and memory, and what auto takes (this machine's, then a recorded H100's)", async () => {
        const here = await client.call('listDevices', {});
        expect(here.cpu.cores).toBeGreaterThan(0);
        expect(here.auto).toBe(here.devices[0]?.id ?? 'cpu');
        expect(here.autoReason).toMatch(/^device auto: /);
        if (!here.devices.length) expect(here.autoReason).toContain(here.cudaCompiled ? here.cudaDetail : 'no CUDA backend');

        const recorded = await makeBackend(createServices({ runs, devices: recordedDeviceSource(H100_DEVICES), access: { allow: [MODELS_ROOT] } }));
        try {
          const c = await recorded.connect();
          const list = await c.call('listDevices', {});
          expect(list).toMatchObject({ cudaCompiled: true, cudaState: 'ok', auto: 'cuda:0', driverVersion: 13000 });
          expect(list.devices).toEqual([
            { index: 0, id: 'cuda:0', name: 'NVIDIA H100 80GB HBM3', totalBytes: 85017493504, freeBytes: 85014085632, computeCapability: '9.0', multiprocessors: 132, pciBusId: '0000:00:06.0' },
          ]);
          // A plan for that GPU takes its free memory less the headroom; a device it does not have is refused, naming what it has.
          const p = await c.call('plan', { model: path.join(MODELS_ROOT, 'opt-tiny'), device: 'cuda:0', gemm: 'tf32', batchSize: 2, maxLength: 16 });
          expect(p.computeDevice).toBe('gpu');
          expect(p.device).toMatchObject({ id: 'cuda:0', name: 'NVIDIA H100 80GB HBM3', gemm: 'tf32', defaultBudget: { freeBytes: 85014085632, totalBytes: 85017493504 } });
          expect(p.device!.defaultBudget!.bytes).toBe(85014085632 - p.device!.defaultBudget!.headroomBytes);
          expect(p.notes.join(' ')).toContain('less');
          const e = await rejection(c.call('plan', { model: path.join(MODELS_ROOT, 'opt-tiny'), device: 'cuda:3' }));
          expect(e).toMatchObject({ code: 'BAD_REQUEST', message: 'device cuda:3 asked for, but CUDA lists 1 device: cuda:0 (NVIDIA H100 80GB HBM3)' });
          expect((await rejection(c.call('plan', { model: path.join(MODELS_ROOT, 'opt-tiny'), device: 'gpu' as 'cuda' }))).code).toBe('BAD_REQUEST');
          c.close();
        } finally {
          await recorded.close();
        }
      });

      it('has no native dialogs outside the desktop app, and no notices from a fresh backend', async () => {
        expect((await rejection(client.call('pickPath', { kind: 'datasets', mode: 'file' }))).code).toBe('UNAVAILABLE');
        expect(await client.call('getNotices', {})).toEqual({ notices: [] });
      });
    });

    describe('runs and settings', () => {
      it('starts, lists, gets, checkpoints, stops, resumes, exports and deletes a run', async () => {
        const started = await client.call('startRun', { name: 'first', options: RUN_OPTIONS });
        expect(started).toMatchObject({ name: 'first', status: 'running', stepsPlanned: 100 });
        const id = started.id;
        expect((await client.call('listRuns', {})).runs.map((r) => r.id)).toEqual([id]);
        expect((await client.call('listRuns', { status: ['completed'] })).total).toBe(0);
        expect((await client.call('getRun', { runId: id })).options.task).toEqual({ kind: 'sst2' });
        expect(await client.call('checkpointRun', { runId: id })).toEqual({ requested: true });
        runs.emitStep(id, 1);
        expect((await client.call('stopRun', { runId: id })).status).toBe('stopped');
        expect((await client.call('getRun', { runId: id })).checkpoints).toHaveLength(1);
        expect((await rejection(client.call('stopRun', { runId: id }))).code).toBe('CONFLICT');
        expect((await client.call('resumeRun', { runId: id, device: 'cpu' })).status).toBe('running');
        expect((await client.call('getRun', { runId: id })).options.device).toBe('cpu');
        expect((await rejection(client.call('resumeRun', { runId: id, device: 'gpu' as 'cpu' }))).code).toBe('BAD_REQUEST');
        expect((await rejection(client.call('deleteRun', { runId: id }))).code).toBe('CONFLICT');
        await client.call('stopRun', { runId: id, checkpoint: false });
        expect(await client.call('exportRun', { runId: id, kind: 'seed-log', dest: `${FAKE_ROOT}/out` })).toEqual({ path: `${FAKE_ROOT}/out/${id}-seed-log`, bytes: 42 });
        expect(await client.call('deleteRun', { runId: id })).toEqual({ deleted: true });
        const e = await rejection(client.call('getRun', { runId: id }));
        expect(e.code).toBe('NOT_FOUND');
      });

      it('reads and updates settings', async () => {
        const s = await client.call('getSettings', {});
        expect(s.includeHfCache).toBe(true);
        const u = await client.call('updateSettings', { threads: 4, budgets: { gpu: null, cpu: 8e9, ssd: null } });
        expect(u.threads).toBe(4);
        expect((await client.call('getSettings', {})).budgets.cpu).toBe(8e9);
        expect(s.samplingIntervalMs).toBe(1000);
        expect((await client.call('updateSettings', { samplingIntervalMs: 250 })).samplingIntervalMs).toBe(250);
        expect((await rejection(client.call('updateSettings', { samplingIntervalMs: 50 }))).code).toBe('BAD_REQUEST');
        // The data folder is read-only: one sent is dropped.
        const d = await client.call('updateSettings', { dataDir: '/elsewhere', threads: 2 } as never);
        expect(d).toMatchObject({ dataDir: null, threads: 2 });
      });

      it("gets a run's kept telemetry", async () => {
        const { id } = await client.call('startRun', { options: RUN_OPTIONS });
        const sample = { at: 5, cpu: { utilization: 0.5 }, memory: { usedBytes: 1, totalBytes: 2 }, disk: { readBytesPerS: 3, writeBytesPerS: 4, busy: 0.25, device: 'nvme0n1' }, gpus: [{ index: 1, name: 'NVIDIA H100 80GB HBM3', pciBusId: '00000000:00:06.0', utilization: 0.9, memoryUsedBytes: 7, memoryTotalBytes: 80, pcieRxBytesPerS: 9, pcieTxBytesPerS: 1 }], tiers: null };
        runs.telemetry.set(id, [sample]);
        expect(await client.call('getTelemetry', { runId: id })).toEqual({ runId: id, samples: [sample], thinned: false });
        expect((await rejection(client.call('getTelemetry', { runId: 'nope' }))).code).toBe('NOT_FOUND');
      });

      it('gets metrics since a step', async () => {
        const { id } = await client.call('startRun', { options: RUN_OPTIONS });
        for (let s = 1; s <= 5; s++) runs.emitStep(id, s);
        runs.emitEval(id, 4, 0.75);
        const m = await client.call('getMetrics', { runId: id, sinceStep: 3 });
        expect(m.steps.map((s) => s.step)).toEqual([4, 5]);
        expect(m.evals.map((e) => e.accuracy)).toEqual([0.75]);
        expect(m.latestStep).toBe(5);
      });
    });

    describe('bad requests', () => {
      it('answers wrong param types with BAD_REQUEST naming the field, and keeps serving', async () => {
        const e = await rejection(client.call('getMetrics', { runId: 'x', sinceStep: 'three' as unknown as number }));
        expect(e.code).toBe('BAD_REQUEST');
        expect(e.issues).toEqual([expect.objectContaining({ path: 'sinceStep' })]);
        expect((await client.call('getSettings', {})).threads).toBe(0);
      });

      it('answers missing or non-object params with BAD_REQUEST', async () => {
        expect((await rejection(client.call('inspectModel', undefined as never))).code).toBe('BAD_REQUEST');
        expect((await rejection(client.call('getRun', 'run-1' as never))).code).toBe('BAD_REQUEST');
        expect((await rejection(client.call('getSettings', { extra: 1 } as never))).code).toBe('BAD_REQUEST');
        expect((await rejection(client.call('startRun', { options: { ...RUN_OPTIONS, task: { kind: 'poetry' } } } as never))).code).toBe('BAD_REQUEST');
      });

      it('answers an unknown method with UNKNOWN_METHOD', async () => {
        const outcome = await client.transport.call('dropDatabase', 'id-1', {});
        expect(outcome).toEqual({ ok: false, error: expect.objectContaining({ code: 'UNKNOWN_METHOD' }) });
        const e = await rejection(client.call('__proto__' as never, {} as never));
        expect(e.code).toBe('UNKNOWN_METHOD');
      });

      it('turns a service crash into INTERNAL with its name and message, and keeps serving', async () => {
        const e = await rejection(client.call('getRun', { runId: 'throws' }));
        expect(e).toMatchObject({ code: 'INTERNAL', name: 'TypeError', message: 'something internal went wrong' });
        expect(await client.call('listRuns', {})).toEqual({ runs: [], total: 0 });
      });

      it('refuses a result that breaks the contract with BAD_RESULT', async () => {
        const e = await rejection(client.call('getRun', { runId: 'broken' }));
        expect(e.code).toBe('BAD_RESULT');
      });

      it('cancels a call: the caller gets CANCELLED and the service sees the abort', async () => {
        const ac = new AbortController();
        const pending = client.call('getRun', { runId: 'slow' }, { signal: ac.signal });
        await runs.slowGetRun.first((s) => s === 'arrived');
        ac.abort();
        expect((await rejection(pending)).code).toBe('CANCELLED');
        await runs.slowGetRun.first((s) => s === 'cancelled');
        expect((await client.call('getSettings', {})).threads).toBe(0);
      });
    });

    describe('generation', () => {
      it('streams a generation as events, in order, and answers with the whole text and what it ran on', async () => {
        const deltas: string[] = [];
        client.on('generation', (g) => {
          if (g.generationId === 'g1') deltas.push(g.text);
        });
        const r = await client.call('generate', {
          generationId: 'g1',
          source: { model: DEMO_MODEL },
          messages: [{ role: 'user', content: 'How was the film?' }],
          sampling: { maxNewTokens: 12 },
        });
        expect(r).toMatchObject({ generationId: 'g1', template: 'fallback', weights: { kind: 'model', name: 'spillway-demo', step: null } });
        expect(r.newTokens).toBeGreaterThan(0);
        expect(r.sampling).toMatchObject({ temperature: 0, maxNewTokens: 12, stop: ['\n### '] });
        // Events may trail the answer by a frame: wait for them to add up to the text.
        await expect.poll(() => deltas.join('')).toBe(r.text);
        // Greedy is deterministic: the same request gives the same text.
        const again = await client.call('generate', { generationId: 'g2', source: { model: DEMO_MODEL }, messages: [{ role: 'user', content: 'How was the film?' }], sampling: { maxNewTokens: 12 } });
        expect(again.text).toBe(r.text);
      });

      it('stops a generation on request: the call answers with the text so far', async () => {
        const first = new EventLog<string>();
        client.on('generation', (g) => {
          if (g.generationId === 'long') first.push(g.text);
        });
        // Past any end id and up to 60000 tokens: it runs until stopped, however loaded the machine.
        const model = await makeTinyLlama(path.join(dataDir, 'long-llama'), { maxPositions: 65536 });
        const pending = client.call('generate', { generationId: 'long', source: { model }, prompt: 'The movie', sampling: { maxNewTokens: 60000, temperature: 1, seed: 3, ignoreEos: true } });
        await first.until((s) => s.length > 0);
        expect(await client.call('stopGeneration', { generationId: 'long' })).toEqual({ stopped: true });
        const r = await pending;
        expect(r.finishReason).toBe('stopped');
        expect(r.newTokens).toBeLessThan(60000);
        expect(await client.call('stopGeneration', { generationId: 'long' })).toEqual({ stopped: false });
        // Cancelling the call stops it too, and frees the model for the next request.
        const ac = new AbortController();
        const cancelled = new EventLog<string>();
        client.on('generation', (g) => {
          if (g.generationId === 'cancelled') cancelled.push(g.text);
        });
        const call = client.call('generate', { generationId: 'cancelled', source: { model }, prompt: 'The', sampling: { maxNewTokens: 60000, ignoreEos: true } }, { signal: ac.signal });
        await cancelled.until((s) => s.length > 0);
        ac.abort();
        expect((await rejection(call)).code).toBe('CANCELLED');
        const next = await client.call('generate', { generationId: 'after', source: { model }, prompt: 'The', sampling: { maxNewTokens: 3, ignoreEos: true } });
        expect(next).toMatchObject({ finishReason: 'length', newTokens: 3 });
      });

      it('refuses what it cannot generate from, naming why', async () => {
        const outside = await rejection(client.call('generate', { generationId: 'x', source: { model: '/usr' }, prompt: 'hi' }));
        expect(outside.code).toBe('FORBIDDEN');
        const noTokenizer = await rejection(client.call('generate', { generationId: 'x', source: { model: path.join(MODELS_ROOT, 'opt-tiny') }, prompt: 'hi' }));
        expect(noTokenizer).toMatchObject({ code: 'BAD_REQUEST', name: 'ModelLoadError' });
        expect(noTokenizer.message).toMatch(/no tokenizer/);
        const both = await rejection(client.call('generate', { generationId: 'x', source: { model: DEMO_MODEL }, prompt: 'hi', messages: [{ role: 'user', content: 'hi' }] }));
        expect(both.code).toBe('BAD_REQUEST');
        expect((await rejection(client.call('generate', { generationId: 'x', source: { runId: 'nope' }, prompt: 'hi' }))).code).toBe('NOT_FOUND');
      });
    });

    describe('events', () => {
      it('pushes run status, step, eval, telemetry and log events', async () => {
        const seen = new EventLog<string>();
        client.on('runStatus', (s) => seen.push(`status:${s.status}`));
        client.on('stepMetrics', (m) => seen.push(`step:${m.step}`));
        client.on('evalMetrics', (m) => seen.push(`eval:${m.accuracy}`));
        client.on('telemetry', (t) => seen.push(`telemetry:${t.cpu?.utilization}`));
        client.on('log', (l) => seen.push(`log:${l.message}`));
        const { id } = await client.call('startRun', { options: RUN_OPTIONS });
        runs.emitStep(id, 1);
        runs.emitEval(id, 1, 0.5);
        runs.emit({ event: 'telemetry', payload: { at: 1, cpu: { utilization: 0.25 }, memory: null, disk: null, gpus: [], tiers: null } });
        runs.emit({ event: 'log', payload: { runId: id, level: 'info', message: 'hello', at: 1 } });
        await seen.until((s) => s.length === 5);
        expect(seen).toEqual(['status:running', 'step:1', 'eval:0.5', 'telemetry:0.25', 'log:hello']);
      });

      it('drops events that break the contract and keeps delivering', async () => {
        const steps = new EventLog<number>();
        client.on('stepMetrics', (m) => steps.push(m.step));
        const { id } = await client.call('startRun', { options: RUN_OPTIONS });
        runs.emitRaw('stepMetrics', { runId: id, step: 'one' });
        runs.emitRaw('notAnEvent', {});
        runs.emitStep(id, 2);
        await steps.until((s) => s.length > 0);
        expect(steps).toEqual([2]);
      });

      it('delivers one run to two clients watching it', async () => {
        const other = await connectAnother();
        const { id } = await client.call('startRun', { options: RUN_OPTIONS });
        const a = new EventLog<number>();
        const b = new EventLog<number>();
        await client.subscribe(id, -1, { onStep: (m) => a.push(m.step) });
        await other.subscribe(id, -1, { onStep: (m) => b.push(m.step) });
        for (let s = 1; s <= 3; s++) runs.emitStep(id, s);
        await Promise.all([a.until((s) => s.length === 3), b.until((s) => s.length === 3)]);
        expect(a).toEqual([1, 2, 3]);
        expect(b).toEqual([1, 2, 3]);
      });

      it('gives a subscriber that reconnects the steps it missed, then live ones, each once', async () => {
        const { id } = await client.call('startRun', { options: RUN_OPTIONS });
        const first = new EventLog<StepMetric>();
        const off = await client.subscribe(id, -1, { onStep: (m) => first.push(m) });
        runs.emitStep(id, 1);
        runs.emitStep(id, 2);
        await first.until((s) => s.length === 2);
        off();
        client.close();
        // Missed while disconnected:
        runs.emitStep(id, 3);
        runs.emitStep(id, 4);
        runs.emitEval(id, 4, 0.9);
        const again = await connectAnother();
        const steps = new EventLog<number>();
        const evals: number[] = [];
        const statuses = new EventLog<string>();
        await again.subscribe(id, first.at(-1)!.step, {
          onStep: (m) => steps.push(m.step),
          onEval: (m) => evals.push(m.step),
          onStatus: (s) => statuses.push(s.status),
        });
        expect(steps).toEqual([3, 4]);
        expect(evals).toEqual([4]);
        runs.emitStep(id, 5);
        await again.call('stopRun', { runId: id });
        await Promise.all([steps.until((s) => s.length === 3), statuses.until((s) => s.length === 1)]);
        expect(steps).toEqual([3, 4, 5]);
        expect(statuses).toEqual(['stopped']);
      });

      it('stops delivering after unsubscribe, and filters other runs out', async () => {
        const r1 = await client.call('startRun', { options: RUN_OPTIONS });
        const r2 = await client.call('startRun', { options: RUN_OPTIONS });
        const got = new EventLog<string>();
        const off = await client.subscribe(r1.id, -1, { onStep: (m) => got.push(`${m.runId}:${m.step}`) });
        runs.emitStep(r2.id, 1);
        runs.emitStep(r1.id, 1);
        await got.until((s) => s.length === 1);
        off();
        runs.emitStep(r1.id, 2);
        await client.call('getSettings', {}); // a round trip: anything sent before it has arrived
        expect(got).toEqual([`${r1.id}:1`]);
      });

      it('rejects subscribe to an unknown run with NOT_FOUND', async () => {
        const e = await rejection(client.subscribe('nope', -1, {}));
        expect(e.code).toBe('NOT_FOUND');
      });
    });

    it('is closed cleanly: a closed client answers DISCONNECTED', async () => {
      client.close();
      const e = await rejection(client.call('getSettings', {}));
      expect(e.code).toBe('DISCONNECTED');
    });
  });
}
