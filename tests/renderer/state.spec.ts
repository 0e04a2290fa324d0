// Svelte state classes (runes): run with `npm run test:renderer`.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { NewRunState, DEMO_DEFAULTS, TASK_DEFAULTS, parseLabelMap, parseTargets } from '../../renderer/src/state/newrun.svelte.ts';
import { RunsState, sortRuns } from '../../renderer/src/state/runs.svelte.ts';
import { CLOCK_MS, LiveRunState } from '../../renderer/src/state/live.svelte.ts';
import type { Client } from '../../electron/common/client.ts';
import { emptyChatFields } from '../../renderer/src/lib/chat.ts';
import type { Settings } from '../../electron/common/contract.ts';

const run = (id: string, name: string, lastLoss: number | null, createdAt: number) => ({
  id, name, status: 'completed' as const, model: 'm', dataset: 'd', createdAt, startedAt: createdAt, endedAt: createdAt + 1000,
  stepsDone: 1, stepsPlanned: 1, lastLoss, lastAccuracy: null, error: null, resumedFrom: null, resumable: false,
});

/** A client for LiveRunState: `answer`'s reply to a call, else an empty metrics page; listeners kept by event. */
function liveClient(listeners: Map<string, (p: unknown) => void>, answer: (method: string) => unknown): Client {
  return {
    call: async (m: string) => answer(m) ?? { runId: 'r1', steps: [], evals: [], latestStep: -1 },
    on: (e: string, l: (p: unknown) => void) => { listeners.set(e, l); return () => listeners.delete(e); },
  } as unknown as Client;
}

describe('NewRunState', () => {
  const noClient = () => { throw new Error('no backend in this test'); };
  it('takes MeZO defaults per task and the demo values for the demo', () => {
    const s = new NewRunState(noClient as () => Client);
    s.setTask('rte');
    expect(s.hyper).toEqual(TASK_DEFAULTS.rte);
    s.useDemo('/m/spillway-demo', '/d/train.jsonl', '/d/eval.jsonl');
    expect(s.hyper).toEqual(DEMO_DEFAULTS);
    expect(s.template).toEqual({ kind: 'sst2', labelWords: [' terrible', ' great'] });
    expect(s.formErrors).toEqual([]);
    expect(s.options()).toMatchObject({ model: '/m/spillway-demo', eval: '/d/eval.jsonl', steps: 300 });
    // The plan is made for the training data's mean length: the request names the data and its task.
    expect(s.planRequest()).toMatchObject({ train: '/d/train.jsonl', task: { kind: 'sst2', labelWords: [' terrible', ' great'] } });
    s.setTask('classify');
    s.labelWords = 'yes';
    expect(s.planRequest()).not.toHaveProperty('train'); // an incomplete template is not sent
  });
  it('takes a dataset chosen on the Datasets screen: its file and task, held-out evaluation, the model kept', () => {
    const s = new NewRunState(noClient as () => Client);
    s.useDemo('/m/spillway-demo', '/d/train.jsonl', '/d/eval.jsonl');
    s.useDataset(' /data/classify-demo.csv ', 'classify', '" negative"," positive"', emptyChatFields(), '/m/other');
    expect(s.options()).toMatchObject({
      model: '/m/spillway-demo',
      train: '/data/classify-demo.csv',
      evalFraction: 0.1,
      task: { kind: 'classify', labelWords: [' negative', ' positive'] },
      steps: TASK_DEFAULTS.classify.steps,
    });
    expect(s.options()).not.toHaveProperty('eval');
    // Nothing chosen yet: the demo model is taken, so the run can start.
    const fresh = new NewRunState(noClient as () => Client);
    fresh.useDataset('/data/x.jsonl', 'text', '', emptyChatFields(), '/m/spillway-demo');
    expect(fresh.formErrors).toEqual([]);
    expect(fresh.options()).toMatchObject({ model: '/m/spillway-demo', train: '/data/x.jsonl', task: { kind: 'text' } });
  });
  it('sends what the CLI has: label map, q, noise, warm-up, checkpoint interval and output folder', () => {
    const s = new NewRunState(noClient as () => Client);
    s.useDemo('/m/spillway-demo', '/d/train.jsonl', '/d/eval.jsonl');
    // Defaults: MeZO's q = 1, Gaussian noise, no warm-up; the backend's checkpoint interval; the run's own model folder.
    expect(s.options()).toMatchObject({ q: 1, noise: 'gaussian', warmupSteps: 0 });
    expect(s.options()).not.toHaveProperty('checkpointEvery');
    expect(s.options()).not.toHaveProperty('out');
    s.setTask('classify');
    s.labelWords = '" bad"," good"';
    s.labelMap = 'neg: 0, "pos" = 1';
    Object.assign(s.hyper, { q: 4, noise: 'rademacher', warmupSteps: 20 });
    s.checkpointEvery = 0;
    s.out = ' /models/tuned ';
    expect(s.formErrors).toEqual([]);
    expect(s.options()).toMatchObject({
      task: { kind: 'classify', labelWords: [' bad', ' good'], labelMap: { neg: 0, pos: 1 } },
      q: 4, noise: 'rademacher', warmupSteps: 20, checkpointEvery: 0, out: '/models/tuned',
    });
    s.labelMap = 'neg: 2';
    expect(s.formErrors.join(' ')).toMatch(/"neg" must map to the index of a label word \(0 to 1\)/);
    expect(s.planRequest()).not.toHaveProperty('task');
    s.hyper.q = 0;
    expect(s.formErrors.join(' ')).toMatch(/q \(perturbations per step\)/);
  });
  it('sends the trainable set and the estimator with their defaults, and only the chosen set\'s options', () => {
    const s = new NewRunState(noClient as () => Client);
    s.useDemo('/m/spillway-demo', '/d/train.jsonl', '/d/eval.jsonl');
    expect(s.options()).toMatchObject({ trainable: 'full', estimator: 'mezo' });
    expect(s.options()).not.toHaveProperty('rank');
    s.setTrainable('lora');
    expect(s.hyper).toMatchObject({ lr: 1e-4, eps: 1e-2 });
    s.setEstimator('fzoo');
    expect(s.hyper).toMatchObject({ q: 4, noise: 'rademacher' });
    s.targets = 'q, k,v';
    s.rank = 4;
    s.merge = true;
    expect(s.formErrors).toEqual([]);
    expect(s.options()).toMatchObject({ trainable: 'lora', estimator: 'fzoo', rank: 4, loraAlpha: 16, targets: ['q', 'k', 'v'], merge: true, q: 4, lr: 1e-4 });
    expect(s.options()).not.toHaveProperty('sparseFraction');
    // A new task keeps the chosen set and estimator, and their defaults.
    s.setTask('rte');
    expect(s.hyper).toMatchObject({ lr: 1e-4, eps: 1e-2, q: 4, noise: 'rademacher' });
    s.setTrainable('sparse');
    expect(s.merge).toBe(false);
    expect(s.options()).toMatchObject({ trainable: 'sparse', sparseFraction: 0.25, lr: 1e-6, eps: 1e-3 });
    expect(s.options()).not.toHaveProperty('targets');
    s.sparseFraction = 0;
    s.hyper.q = 1;
    expect(s.formErrors.join(' ')).toMatch(/Sparse fraction must be above 0.*FZOO estimator needs at least 2 probes|FZOO estimator needs at least 2 probes.*Sparse fraction must be above 0/);
    s.setTrainable('loldu');
    s.targets = 'q, attention';
    s.rank = 0;
    expect(s.formErrors.join(' ')).toMatch(/Rank must be a whole number from 1 to 4096/);
    expect(s.formErrors.join(' ')).toMatch(/"attention" is not one \(q, k, v, o, qkv/);
  });
  it('sends trainable tokens with their lr and eps and the merge, without rank or targets', () => {
    const s = new NewRunState(noClient as () => Client);
    s.useDemo('/m/spillway-demo', '/d/train.jsonl', '/d/eval.jsonl');
    s.setTrainable('tokens');
    expect(s.hyper).toMatchObject({ lr: 1e-2, eps: 1e-3 });
    s.merge = true;
    expect(s.formErrors).toEqual([]);
    expect(s.options()).toMatchObject({ trainable: 'tokens', merge: true, lr: 1e-2, eps: 1e-3 });
    expect(s.options()).not.toHaveProperty('rank');
    expect(s.options()).not.toHaveProperty('targets');
    // Another set that saves no adapter drops the merge.
    s.setTrainable('full');
    expect(s.merge).toBe(false);
  });
  it('plans with the trainable set chosen: its rank and targets once they parse, the sparse fraction', () => {
    const s = new NewRunState(noClient as () => Client);
    s.useDemo('/m/spillway-demo', '/d/train.jsonl', '/d/eval.jsonl');
    expect(s.planRequest()).toMatchObject({ trainable: 'full' });
    expect(s.planRequest()).not.toHaveProperty('rank');
    s.setTrainable('lora');
    s.targets = 'q, down';
    s.rank = 4;
    expect(s.planRequest()).toMatchObject({ trainable: 'lora', rank: 4, targets: ['q', 'down'] });
    s.targets = 'q, attention';
    expect(s.planRequest()).not.toHaveProperty('targets');
    s.setTrainable('sparse');
    s.sparseFraction = 0.1;
    expect(s.planRequest()).toMatchObject({ trainable: 'sparse', sparseFraction: 0.1 });
    expect(s.planRequest()).not.toHaveProperty('rank');
  });
  it('reads target matrices separated by commas or spaces, each once', () => {
    expect(parseTargets('q, v  q')).toEqual({ targets: ['q', 'v'], error: null });
    expect(parseTargets(' ').error).toMatch(/name at least one/);
  });
  it('reads a label map as pairs or as JSON, and says what is wrong with one', () => {
    expect(parseLabelMap('', 2)).toEqual({ map: null, error: null });
    expect(parseLabelMap('negative=0, positive = 1', 2).map).toEqual({ negative: 0, positive: 1 });
    expect(parseLabelMap('{"neg": 0, "5": 1}', 2).map).toEqual({ neg: 0, '5': 1 });
    expect(parseLabelMap('{"neg": 0', 2).error).toMatch(/does not parse/);
    expect(parseLabelMap('neg 0', 2).error).toMatch(/label: index/);
  });
  it('says what is wrong with the form', () => {
    const s = new NewRunState(noClient as () => Client);
    s.gpuBudget = 'lots';
    expect(s.formErrors.join(' ')).toMatch(/Choose a model.*GPU memory/);
  });
});

describe('NewRunState: masters, update mode, spill folders', () => {
  const noClient = () => { throw new Error('no backend in this test'); };
  const demo = (s: NewRunState) => s.useDemo('/m/spillway-demo', '/d/train.jsonl', '/d/eval.jsonl');

  it('sends masters, the update mode and the spill folders with the run, offload auto under a budget', () => {
    const s = new NewRunState(noClient as () => Client);
    demo(s);
    expect(s.masters).toBe('fp32');
    expect(s.updateOn).toBe('auto');
    expect(s.spillDirs).toEqual(['']);
    expect(s.placement()).toEqual({});
    s.masters = 'bf16';
    s.spillDirs = [' /nvme0/spill '];
    expect(s.placement()).toEqual({ spillDirs: ['/nvme0/spill'], masters: 'bf16' });
    s.addSpillDir();
    s.spillDirs[1] = '/nvme1/spill';
    s.addSpillDir(); // an empty field is ignored
    s.cpuBudget = '2 GiB';
    s.updateOn = 'device';
    expect(s.options()).toMatchObject({
      offload: 'auto',
      cpuMem: 2 * 1024 ** 3,
      spillDirs: ['/nvme0/spill', '/nvme1/spill'],
      masters: 'bf16',
      updateOn: 'device',
    });
    expect(s.planRequest('fp16')).not.toHaveProperty('precision');
    expect(s.planRequest('fp16')).toMatchObject({ masters: 'fp16', updateOn: 'device', spillDirs: ['/nvme0/spill', '/nvme1/spill'], budgets: { cpu: 2 * 1024 ** 3 } });
    s.removeSpillDir(0);
    s.removeSpillDir(0);
    s.removeSpillDir(0);
    expect(s.spillDirs).toEqual(['']);
    expect(s.planRequest()).not.toHaveProperty('spillDirs');
  });

  it('uses the settings\' spill folder and budgets for empty fields, in the plan and in the run alike', () => {
    const settings = { spillDir: '/scratch/spill', budgets: { gpu: null, cpu: 4e9, ssd: 5e10 } } as unknown as Settings;
    const s = new NewRunState(noClient as () => Client, () => settings);
    demo(s);
    expect(s.placement()).toEqual({ offload: 'auto', cpuMem: 4e9, ssdMem: 5e10, spillDirs: ['/scratch/spill'] });
    expect(s.planRequest()).toMatchObject({ spillDirs: ['/scratch/spill'], budgets: { cpu: 4e9, ssd: 5e10 } });
    s.cpuBudget = '1 GiB';
    s.spillDirs = ['/mine'];
    expect(s.placement()).toMatchObject({ cpuMem: 1024 ** 3, spillDirs: ['/mine'] });
  });

  it('plans all three precisions; the chosen one is the plan, the others feed the comparison; a failed one says why', async () => {
    const asked: { masters?: string }[] = [];
    const planOf = (bpp: number) => ({
      model: '/m', computeDevice: 'cpu', strategy: 'tiered', units: [], memory: { gpu: 0, cpu: 100, ssd: 40 * bpp },
      breakdown: { weights: 40, workingCopies: 8, activations: 8 }, linkBytesPerStep: { hostToDevice: 10 * bpp, deviceToHost: 0, ssdRead: 10 * bpp, ssdWrite: 10 * bpp },
      predictedStepMs: null, feasible: true, shortfalls: [], notes: [], bytesPerParameter: bpp,
    });
    const client = {
      call: async (_m: string, p: { masters: string }) => {
        asked.push(p);
        if (p.masters === 'fp16') throw new Error('fp16 refused');
        return planOf(p.masters === 'fp32' ? 4 : 2);
      },
    } as unknown as Client;
    const s = new NewRunState(() => client);
    demo(s);
    s.masters = 'bf16';
    await s.makePlan();
    expect(asked.map((p) => p.masters)).toEqual(['fp32', 'bf16', 'fp16']);
    expect(s.plan?.bytesPerParameter).toBe(2);
    expect(s.planError).toBeNull();
    const h2d = s.comparison!.rows.find((r) => r.key === 'h2d')!.cells;
    expect(h2d.map((c) => [c.masters, c.value, c.delta])).toEqual([['fp32', 40, '+100%'], ['bf16', 20, ''], ['fp16', null, '']]);
    // Choosing another precision shows its plan at once, without asking again.
    s.masters = 'fp32';
    expect(s.plan?.bytesPerParameter).toBe(4);
    s.masters = 'fp16';
    expect(s.plan).toBeNull();
    expect(s.planError).toMatch(/fp16 refused/);
    expect(asked).toHaveLength(3);
  });
});

describe('RunsState', () => {
  it('sorts by any column and lists, deletes through the client', async () => {
    const rows = [run('a', 'beta', 0.5, 1), run('b', 'alpha', null, 2), run('c', 'gamma', 0.2, 3)];
    expect(sortRuns(rows, 'lastLoss', 'asc').map((r) => r.id)).toEqual(['c', 'a', 'b']);
    expect(sortRuns(rows, 'name', 'asc').map((r) => r.id)).toEqual(['b', 'a', 'c']);
    const calls: string[] = [];
    const client = { call: async (m: string) => { calls.push(m); return m === 'listRuns' ? { runs: rows, total: 3 } : { deleted: true }; } } as unknown as Client;
    const s = new RunsState(() => client);
    await s.refresh();
    s.toggle('a');
    await s.remove('a');
    expect(s.runs.map((r) => r.id)).toEqual(['b', 'c']);
    expect(s.selected).toEqual([]);
    expect(calls).toEqual(['listRuns', 'deleteRun']);
  });
});

describe('LiveRunState: the Tiers panel', () => {
  it('fetches the plan of a planned run once its steps arrive, and sums up their I/O beside it', async () => {
    const listeners = new Map<string, (p: unknown) => void>();
    const plan = {
      homes: { device: 2, cpu: 0, ssd: 4 }, predictedStepMs: 20, floorMs: 16, bound: 'ssd-read',
      linkBytes: { hostToDevice: 3e6, deviceToHost: 0, ssdRead: 3e6, ssdWrite: 3e6 }, linkMs: null, ioWaitMs: 4,
    };
    const detail = {
      ...run('r1', 'planned', null, 1), status: 'running' as const, stepsDone: 0, stepsPlanned: 10,
      options: { model: '/m', train: '/d', task: { kind: 'sst2' as const }, offload: 'auto' as const }, checkpoints: [], evals: [], outDir: null, plan: null,
    };
    let started = false;
    const calls: string[] = [];
    const client = liveClient(listeners, (m) => {
      calls.push(m);
      return m === 'getRun' ? (started ? { ...detail, plan } : detail) : undefined;
    });
    const s = new LiveRunState(() => client);
    s.listen();
    await s.open('r1');
    expect(s.detail?.plan).toBeNull();
    expect(s.tiers).toBeNull();
    expect(s.showTiers).toBe(false);
    started = true;
    const io = { h2dBytes: 3_178_496, d2hBytes: 0, ssdReadBytes: 3_178_496, ssdWriteBytes: 0, waitMs: 5 };
    listeners.get('stepMetrics')?.({ runId: 'r1', step: 1, at: 1_000, loss: 1, lossPlus: 1, lossMinus: 1, projectedGrad: 0, lr: 1e-3, stepMs: 24, tokensPerS: 1, skipped: false, io });
    listeners.get('stepMetrics')?.({ runId: 'r1', step: 2, at: 2_000, loss: 1, lossPlus: 1, lossMinus: 1, projectedGrad: 0, lr: 1e-3, stepMs: 26, tokensPerS: 1, skipped: false, io });
    await new Promise((r) => setTimeout(r, 300));
    expect(calls.filter((c) => c === 'getRun')).toHaveLength(2);
    expect(s.detail?.plan).toEqual(plan);
    expect(s.showTiers).toBe(true);
    expect(s.tiers?.links.find((l) => l.key === 'ssdRead')).toMatchObject({ latest: 3_178_496, predicted: 3e6 });
    expect(s.tiers?.step).toMatchObject({ mean: 25, ratio: 1.25, floorRatio: 25 / 16 });
  });
});

describe('LiveRunState: elapsed time and ETA', () => {
  afterEach(() => vi.useRealTimers());

  it('tick while the run is active, from its start and at the pace of its last steps; they stop at its end', async () => {
    vi.useFakeTimers();
    const t0 = 1_700_000_000_000;
    vi.setSystemTime(t0 + 5_000);
    const listeners = new Map<string, (p: unknown) => void>();
    const detail = {
      ...run('r1', 'timed', null, t0), startedAt: t0, endedAt: null, status: 'running' as const, stepsDone: 0, stepsPlanned: 100,
      options: { model: '/m', train: '/d', task: { kind: 'sst2' as const } }, checkpoints: [], evals: [], outDir: null, plan: null,
    };
    let ended: number | null = null;
    const client = {
      call: async (m: string) =>
        m === 'getRun' ? { ...detail, ...(ended ? { status: 'completed', endedAt: ended } : {}) } : { runId: 'r1', steps: [], evals: [], latestStep: -1 },
      on: (e: string, l: (p: unknown) => void) => { listeners.set(e, l); return () => listeners.delete(e); },
    } as unknown as Client;
    const s = new LiveRunState(() => client);
    const off = s.listen();
    await s.open('r1');
    expect(s.elapsed).toBe(5_000);
    expect(s.eta).toBeNull();
    // Steps 1..10 in 4 s, the last at t0 + 5 s: 0.4 s a step, 90 to go.
    for (let i = 1; i <= 10; i++) {
      listeners.get('stepMetrics')?.({ runId: 'r1', step: i, at: t0 + 1_000 + 400 * i, loss: 1, lossPlus: 1, lossMinus: 1, projectedGrad: 0, lr: 1e-3, stepMs: 400, tokensPerS: 1, skipped: false });
    }
    await vi.advanceTimersByTimeAsync(CLOCK_MS);
    expect(s.elapsed).toBe(6_000);
    expect(s.eta).toBeCloseTo(90 * 400 - 1_000, 6);
    await vi.advanceTimersByTimeAsync(3 * CLOCK_MS);
    expect(s.elapsed).toBe(9_000);
    expect(s.eta).toBeCloseTo(90 * 400 - 4_000, 6);

    ended = t0 + 9_500;
    listeners.get('runStatus')?.({ runId: 'r1', status: 'completed', stepsDone: 100, error: null, at: ended });
    await vi.advanceTimersByTimeAsync(5 * CLOCK_MS);
    expect(s.elapsed).toBe(9_500);
    expect(s.eta).toBeNull();
    off();
  });
});

describe('NewRunState: the device picker', () => {
  // A backend's listDevices on the recorded H100 machine (tests/fixtures/gpu/h100-cuda-devices.json).
  const h100 = { index: 0, id: 'cuda:0', name: 'NVIDIA H100 80GB HBM3', totalBytes: 85017493504, freeBytes: 85014085632, computeCapability: '9.0', multiprocessors: 132, pciBusId: '0000:00:06.0' };
  const list = {
    cudaCompiled: true, cudaState: 'ok', cudaDetail: '', driverVersion: 13000, runtimeVersion: 13000, devices: [h100],
    cpu: { name: 'AMD EPYC', cores: 16, memoryBytes: 128 * 2 ** 30 }, auto: 'cuda:0', autoReason: 'device auto: cuda:0, …', visibleDevices: null, deviceOrder: null,
  };
  const clientWith = (devices: unknown) => ({ call: async (m: string) => (m === 'listDevices' ? devices : null) }) as unknown as Client;

  it('lists auto (saying what it takes), the CPU and each GPU with its free and total memory', async () => {
    const s = new NewRunState(() => clientWith(list));
    await s.loadDevices();
    expect(s.deviceChoices.map((c) => [c.value, c.label])).toEqual([
      ['auto', 'Auto: cuda:0, NVIDIA H100 80GB HBM3'],
      ['cpu', 'CPU · AMD EPYC, 16 cores, 128 GiB'],
      ['cuda:0', 'cuda:0 · NVIDIA H100 80GB HBM3 · 79.2 GiB free of 79.2 GiB'],
    ]);
    expect(s.cudaDevice).toEqual(h100);
  });

  it('sends the device and GEMM precision picked, with the run and its plan; fp32 and auto are left to the defaults', async () => {
    const s = new NewRunState(() => clientWith(list));
    s.useDemo('/m/spillway-demo', '/d/train.jsonl', '/d/eval.jsonl');
    await s.loadDevices();
    expect(s.options()).not.toHaveProperty('device');
    s.device = 'cuda:0';
    s.gemm = 'tf32';
    expect(s.options()).toMatchObject({ device: 'cuda:0', gemm: 'tf32' });
    expect(s.planRequest()).toMatchObject({ device: 'cuda:0', gemm: 'tf32' });
    s.device = 'cpu';
    expect(s.options()).toMatchObject({ device: 'cpu' });
    expect(s.options()).not.toHaveProperty('gemm');
    expect(s.cudaDevice).toBeNull();
  });

  it('falls back to auto when the device picked is gone, and says why there is no GPU', async () => {
    let answer: unknown = list;
    const s = new NewRunState(() => clientWith(answer));
    await s.loadDevices();
    s.device = 'cuda:0';
    answer = { ...list, cudaState: 'no device', cudaDetail: 'no CUDA driver (libcuda.so.1) on this machine', devices: [], auto: 'cpu' };
    await s.loadDevices();
    expect(s.device).toBe('auto');
    expect(s.deviceChoices[0].label).toBe('Auto: the CPU (no CUDA device)');
    const { noCudaReason } = await import('../../renderer/src/lib/devices.ts');
    expect(noCudaReason(s.devices)).toBe('No CUDA device: no CUDA driver (libcuda.so.1) on this machine. Runs compute on the CPU.');
  });
});

describe('LiveRunState: machine telemetry', () => {
  it("shows a finished run's kept samples over its elapsed time, its own GPU's by bus id; an active run continues them live", async () => {
    const listeners = new Map<string, (p: unknown) => void>();
    const gpu = (bus: string, u: number) => ({ index: 0, name: bus === '00000000:86:00.0' ? 'H100' : 'A10', pciBusId: bus, utilization: u, memoryUsedBytes: 2 ** 30, memoryTotalBytes: 80 * 2 ** 30, pcieRxBytesPerS: 2e9, pcieTxBytesPerS: 1e6 });
    const sample = (at: number, u: number) => ({ at, cpu: { utilization: 0.5 }, memory: { usedBytes: 4 * 2 ** 30, totalBytes: 16 * 2 ** 30 }, disk: { readBytesPerS: 5e6, writeBytesPerS: 0, busy: 0.1 }, gpus: [gpu('00000000:3b:00.0', 0.01), { ...gpu('00000000:86:00.0', u), index: 1 }], tiers: null });
    const device = { asked: 'auto', id: 'cuda:0', name: 'H100', gemm: 'fp32' as const, backend: 'cuda:0', pciBusId: '0000:86:00.0' };
    let status: 'running' | 'completed' = 'completed';
    const detail = () => ({ ...run('r1', 'gpu run', null, 10_000), status, device, options: { model: '/m', train: '/d', task: { kind: 'sst2' as const } }, checkpoints: [], evals: [], outDir: null, plan: null });
    const client = liveClient(listeners, (m) =>
      m === 'getRun' ? detail() : m === 'getTelemetry' ? { runId: 'r1', samples: [sample(11_000, 0.5), sample(12_000, 0.9)], thinned: false } : undefined,
    );
    const s = new LiveRunState(() => client);
    s.listen();
    await s.open('r1');
    await new Promise((r) => setTimeout(r, 0));
    expect(s.telemetryChart.gpuUtil).toEqual([{ x: 1, y: 50 }, { x: 2, y: 90 }]);
    expect(s.telemetryChart.gpuName).toBe('H100');
    expect(s.telemetryChart.pcieRx).toEqual([{ x: 1, y: 2000 }, { x: 2, y: 2000 }]);
    expect(s.telemetryChart.diskBusy.map((p) => p.y)).toEqual([10, 10]);
    // A finished run takes no live samples (they are another run's now).
    listeners.get('telemetry')?.(sample(13_000, 0.7));
    expect(s.telemetryChart.gpuUtil).toHaveLength(2);
    status = 'running';
    await s.open('r1');
    await new Promise((r) => setTimeout(r, 0));
    listeners.get('telemetry')?.(sample(13_000, 0.7));
    expect(s.telemetryChart.gpuUtil.at(-1)).toEqual({ x: 3, y: 70 });
  });
});
