// Svelte state classes (runes): run with `npm run test:renderer`.
import { describe, expect, it } from 'vitest';
import { NewRunState, DEMO_DEFAULTS, TASK_DEFAULTS } from '../../renderer/src/state/newrun.svelte.ts';
import { RunsState, sortRuns } from '../../renderer/src/state/runs.svelte.ts';
import { LiveRunState } from '../../renderer/src/state/live.svelte.ts';
import type { Client } from '../../renderer/src/lib/client.ts';

const run = (id: string, name: string, lastLoss: number | null, createdAt: number) => ({
  id, name, status: 'completed' as const, model: 'm', dataset: 'd', createdAt, startedAt: createdAt, endedAt: createdAt + 1000,
  stepsDone: 1, stepsPlanned: 1, lastLoss, lastAccuracy: null, error: null, resumedFrom: null,
});

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
  });
  it('says what is wrong with the form', () => {
    const s = new NewRunState(noClient as () => Client);
    s.gpuBudget = 'lots';
    expect(s.formErrors.join(' ')).toMatch(/Choose a model.*GPU memory/);
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
    const client = {
      call: async (m: string) => {
        calls.push(m);
        if (m === 'getRun') return started ? { ...detail, plan } : detail;
        return { runId: 'r1', steps: [], evals: [], latestStep: -1 };
      },
      on: (e: string, l: (p: unknown) => void) => { listeners.set(e, l); return () => listeners.delete(e); },
    } as unknown as Client;
    const s = new LiveRunState(() => client);
    s.listen();
    await s.open('r1');
    expect(s.detail?.plan).toBeNull();
    expect(s.tiers).toBeNull();
    expect(s.showTiers).toBe(false);
    started = true;
    const io = { h2dBytes: 3_178_496, d2hBytes: 0, ssdReadBytes: 3_178_496, ssdWriteBytes: 0, waitMs: 5 };
    listeners.get('stepMetrics')?.({ runId: 'r1', step: 1, loss: 1, lossPlus: 1, lossMinus: 1, projectedGrad: 0, lr: 1e-3, stepMs: 24, tokensPerS: 1, skipped: false, io });
    listeners.get('stepMetrics')?.({ runId: 'r1', step: 2, loss: 1, lossPlus: 1, lossMinus: 1, projectedGrad: 0, lr: 1e-3, stepMs: 26, tokensPerS: 1, skipped: false, io });
    await new Promise((r) => setTimeout(r, 300));
    expect(calls.filter((c) => c === 'getRun')).toHaveLength(2);
    expect(s.detail?.plan).toEqual(plan);
    expect(s.showTiers).toBe(true);
    expect(s.tiers?.links.find((l) => l.key === 'ssdRead')).toMatchObject({ latest: 3_178_496, predicted: 3e6 });
    expect(s.tiers?.step).toMatchObject({ mean: 25, ratio: 1.25, floorRatio: 25 / 16 });
  });
});
