// A GPU user's failures and the run's machine telemetry, through the real supervisor, engine
// processes and SQLite: a CUDA device asked for where there is none (refused before the run is recorded), running out of device memory
// mid-run (the engine's budget of its arena refuses as a GPU would), a resume onto another device,
// and NVML samples (recorded: this machine has no GPU) kept with the run and drawn over its time.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';

import type { RunDevice } from '../../../../electron/common/contract.js';
import { packBatch } from '../../../../electron/engine/batch.js';
import { formatBytes } from '../../../../electron/engine/safe-write.js';
import { loadNative } from '../../../../electron/engine/native.js';
import { loadForTraining, scoreExamples } from '../../../../electron/engine/trainer.js';
import type { TrainOptions } from '../../../../electron/engine/trainer.js';
import { supervisorOperations, telemetrySource } from '../../../../electron/services/runs/operations.js';
import { RunSupervisor } from '../../../../electron/services/runs/index.js';
import type { RunEvent } from '../../../../electron/services/runs/index.js';
import { Sampler } from '../../../../electron/services/telemetry/index.js';
import type { GpuSample } from '../../../../electron/services/telemetry/index.js';
import { telemetrySeries } from '../../../../renderer/src/lib/telemetry.js';
import { EventLog } from '../../../helpers/events.js';
import { makeTinyLlama } from '../../../helpers/tiny-model.js';
import { demoTrainOptions } from '../../../helpers/train-options.js';

const FIXTURES = join(import.meta.dirname, '..', '..', '..', 'fixtures', 'gpu');
const hasGpu = loadNative().cudaDevices().state === 'ok';
const ctx = { signal: new AbortController().signal };

let work: string;
let model: string;
const open: RunSupervisor[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-device-runs-'));
  model = await makeTinyLlama(join(work, 'tiny'));
});

afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

function supervisor(): RunSupervisor {
  const s = RunSupervisor.open(mkdtempSync(join(work, 'data-')), { stopGraceMs: 20_000 });
  open.push(s);
  return s;
}

const options = (over: Partial<TrainOptions> = {}) => demoTrainOptions(model, over);

describe('runs on a device that fails them', () => {
  it.skipIf(hasGpu)('a CUDA device asked for on a machine without one: refused before the run is recorded, saying why', async () => {
    const sup = supervisor();
    await expect(sup.start({ options: options({ steps: 2, device: 'cuda' }) })).rejects.toThrow(
      /^device cuda asked for, but (CUDA reports no device: .+|this build of the engine has no CUDA backend .+); use --device cpu or auto$/,
    );
    expect(sup.store.listRuns()).toEqual([]);
  });

  it('out of device memory mid-run: failed with what the run needed, what to change and the checkpoint it leaves, intact', async () => {
    // The budget: above what training steps of 2 examples hold, below what scoring 8 at once needs
    // (measured here, on the engine the run will use).
    const o = options({ steps: 6, batchSize: 2, evalFraction: 0.2, evalEvery: 2, checkpointEvery: 1 });
    const probe = await loadForTraining(o, () => {});
    let trainPeak = 0;
    let evalPeak = 0;
    try {
      for (let s = 0; s < 2; s++) {
        await probe.engine.step(packBatch(await probe.train.get([2 * s, 2 * s + 1])), { seed: 0n, step: s, q: 1, lr: 0, eps: 1e-3, weightDecay: 0, noise: 'gaussian' });
      }
      trainPeak = probe.engine.info().tiers!.deviceMemoryPeak;
      await scoreExamples(probe.engine, probe.eval.chunks(Math.max(8, o.batchSize * 2)));
      evalPeak = probe.engine.info().tiers!.deviceMemoryPeak;
    } finally {
      await probe.close();
    }
    expect(evalPeak).toBeGreaterThan(trainPeak);
    const budget = Math.round((trainPeak + evalPeak) / 2);

    const sup = supervisor();
    const events = new EventLog<RunEvent>();
    sup.subscribe('*', (e) => events.push(e));
    const run = await sup.start({ options: { ...o, gpuMem: budget, offload: 'none' } });
    const done = await sup.waitFor(run.id);
    expect(done.status).toBe('failed');
    expect(done.stepsDone).toBe(2);
    const checkpoint = join(run.folder, 'checkpoints', 'step-00000001');
    expect(done.error).toContain('out of device memory on cpu');
    expect(done.error).toContain('while evaluating after step 2');
    expect(done.error).toContain(`--gpu-mem ${formatBytes(budget)}`);
    expect(done.error).toMatch(/Try --offload auto .*--masters bf16.*--batch-size or --max-length/);
    expect(done.error).toContain(`The last checkpoint (step 1) is intact at ${checkpoint}.`);
    expect(done.error).toMatch(/The engine said: device memory budget exceeded/);
    expect(existsSync(join(checkpoint, 'model.safetensors')) && existsSync(join(checkpoint, 'spillway.json'))).toBe(true);
    expect(sup.store.checkpoints(run.id).map((c) => c.step)).toContain(1);
  });

  it('a resume onto another device says the losses are not comparable across devices', async () => {
    const sup = supervisor();
    const events = new EventLog<RunEvent>();
    sup.subscribe('*', (e) => events.push(e));
    const run = await sup.start({ options: options({ steps: 4, checkpointEvery: 2, device: 'cpu' }) });
    await sup.waitFor(run.id);
    // The checkpoint as a GPU run would have written it (the recorded H100's device).
    const checkpoint = join(run.folder, 'checkpoints', 'step-00000002');
    const state = JSON.parse(readFileSync(join(checkpoint, 'spillway.json'), 'utf8')) as { device: RunDevice };
    expect(state.device).toMatchObject({ asked: 'cpu', id: 'cpu', gemm: 'fp32' });
    const onGpu: RunDevice = { asked: 'cuda', id: 'cuda:0', name: 'NVIDIA H100 80GB HBM3', gemm: 'tf32', backend: 'cuda:0 (NVIDIA H100 80GB HBM3, gemm tf32)', pciBusId: '0000:00:06.0' };
    // Written with its manifest's entry, as the engine writes a checkpoint (a bare edit is refused as damage).
    const text = JSON.stringify({ ...state, device: onGpu });
    writeFileSync(join(checkpoint, 'spillway.json'), text);
    const manifest = JSON.parse(readFileSync(join(checkpoint, 'manifest.json'), 'utf8')) as { files: { name: string; bytes: number; sha256: string }[] };
    const entry = manifest.files.find((f) => f.name === 'spillway.json')!;
    entry.bytes = Buffer.byteLength(text);
    entry.sha256 = createHash('sha256').update(text).digest('hex');
    writeFileSync(join(checkpoint, 'manifest.json'), JSON.stringify(manifest));
    sup.store.updateRun(run.id, { status: 'stopped' });
    sup.store.removeCheckpoint(run.id, 4);

    const resumed = await sup.resume(run.id, { device: 'auto' });
    expect((resumed.config as { options: TrainOptions }).options.device).toBe('auto');
    await sup.waitFor(run.id);
    const log = events.filter((e) => e.runId === run.id && e.type === 'log').map((e) => (e as { message: string }).message);
    expect(log).toContainEqual(expect.stringMatching(/^resuming on (cpu|cuda:\d+) \(.+\) a run checkpointed on cuda:0 \(NVIDIA H100 80GB HBM3\): .*not bit-comparable/));
  });
});

describe("a run's telemetry", () => {
  it('is kept with the run and read back after it ends through the path the live view takes, drawn over its elapsed time', async () => {
    const recorded = JSON.parse(readFileSync(join(FIXTURES, 'h100-nvml-samples.json'), 'utf8')) as GpuSample[];
    let next = 0;
    const sampler = new Sampler({ gpu: async () => recorded[Math.min(next++, recorded.length - 1)] });
    const sup = supervisor();
    const ops = supervisorOperations(sup);
    await ops.updateSettings({ samplingIntervalMs: 200 }, ctx);
    const source = telemetrySource(sup, sampler);
    const live = new EventLog<unknown>();
    source.onEvent((e) => live.push(e));
    const run = await sup.start({ options: options({ steps: 100_000, device: 'cpu' }) });
    await live.until((items) => items.length >= recorded.length + 1);
    await sup.stop(run.id);
    source.stop();

    const page = await ops.getTelemetry({ runId: run.id, limit: 5000 }, ctx);
    expect(page.samples.length).toBeGreaterThanOrEqual(recorded.length);
    // What was sent live is what is kept.
    expect(page.samples.slice(0, 3)).toEqual(live.slice(0, 3).map((e) => (e as { payload: unknown }).payload));
    // Each kept sample holds one of the recorded readings, in the order the source gave them.
    const index = page.samples.map((x) => recorded.findIndex((r) => r.devices[0].utilization === x.gpus[0]?.utilization && r.devices[0].memoryUsedBytes === x.gpus[0]?.memoryUsedBytes));
    expect(index.every((i, k) => i >= 0 && (k === 0 || i >= index[k - 1]))).toBe(true);
    expect(new Set(index).size).toBeGreaterThanOrEqual(3);
    expect(page.samples[0].gpus[0]).toMatchObject({ name: 'NVIDIA H100 80GB HBM3', pciBusId: '00000000:00:06.0' });

    // A GPU run's charts: its GPU found by bus id (CUDA's spelling against NVML's), x in seconds since the start.
    const detail = await ops.getRun({ runId: run.id }, ctx);
    const h100: RunDevice = { asked: 'auto', id: 'cuda:0', name: 'NVIDIA H100 80GB HBM3', gemm: 'fp32', backend: 'cuda:0', pciBusId: '0000:00:06.0' };
    const s = telemetrySeries(page.samples, detail.startedAt!, h100);
    expect(s.gpuName).toBe('NVIDIA H100 80GB HBM3');
    const from = (f: (d: GpuSample['devices'][number]) => number) => index.map((i) => f(recorded[i].devices[0]));
    expect(s.gpuUtil.map((p) => p.y)).toEqual(from((d) => d.utilization! * 100));
    expect(s.gpuMemory.map((p) => p.y)).toEqual(from((d) => d.memoryUsedBytes! / 2 ** 30));
    expect(s.pcieRx.map((p) => p.y)).toEqual(from((d) => d.pcieRxBytesPerS! / 1e6));
    expect(s.pcieTx.map((p) => p.y)).toEqual(from((d) => d.pcieTxBytesPerS! / 1e6));
    expect(s.gpuMemoryTotal).toBe(recorded[0].devices[0].memoryTotalBytes! / 2 ** 30);
    const xs = s.cpuUtil.map((p) => p.x);
    expect(xs.every((x, i) => x >= 0 && (i === 0 || x >= xs[i - 1]))).toBe(true);
    expect(xs.at(-1)!).toBeLessThanOrEqual((detail.endedAt! - detail.startedAt!) / 1000 + 1);
    // The CPU run itself draws no GPU; nor does another GPU's bus.
    expect(telemetrySeries(page.samples, detail.startedAt!, detail.device).gpuUtil).toEqual([]);
    expect(telemetrySeries(page.samples, detail.startedAt!, { ...h100, pciBusId: '0000:3b:00.0' }).gpuUtil).toEqual([]);
    // Thinned evenly when more are kept than asked for, the first and the last kept.
    const two = await ops.getTelemetry({ runId: run.id, limit: 2 }, ctx);
    expect(two).toMatchObject({ thinned: true });
    expect(two.samples.map((x) => x.at)).toEqual([page.samples[0].at, page.samples.at(-1)!.at]);
  });
});
