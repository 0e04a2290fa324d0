// Svelte state classes (runes): run with `npm run test:renderer`.
import { describe, expect, it } from 'vitest';
import { NewRunState, DEMO_DEFAULTS, TASK_DEFAULTS } from '../../renderer/src/state/newrun.svelte.ts';
import { RunsState, sortRuns } from '../../renderer/src/state/runs.svelte.ts';
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
