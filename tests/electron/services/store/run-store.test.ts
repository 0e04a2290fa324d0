// The store's rows: runs, metrics batched by the writer, cascading deletes,
// log pruning, settings.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { LOG_LINES_KEPT, MetricWriter, RunStore } from '../../../../electron/services/store/index.js';
import type { StepMetric } from '../../../../electron/services/store/index.js';

const open = () => RunStore.open(mkdtempSync(join(tmpdir(), 'spw-rows-')));

const newRun = (store: RunStore, id = 'run-a') =>
  store.createRun({ id, name: id, model: '/m', dataset: '/d.jsonl', task: 'sst2', config: { options: { steps: 5 } }, stepsPlanned: 5, folder: `/runs/${id}` });

const step = (n: number, loss = 1 / n): StepMetric => ({
  step: n, time: 1000 + n, loss, lossPlus: loss + 0.1, lossMinus: loss - 0.1, projectedGrad: 0.2, lr: 1e-3, stepMs: 3, tokensPerS: 100, skipped: false, seed: String(n),
});

const count = (store: RunStore, table: string) => (store.db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;

describe('RunStore', () => {
  it('creates, finds by any part of the id, updates and lists runs as plain objects', () => {
    const store = open();
    newRun(store, '20250101-000000-aaaa');
    newRun(store, '20250101-000000-bbbb');
    expect(store.findRun('20250101-000000-a').id).toBe('20250101-000000-aaaa');
    // The random tail alone is enough (what a person remembers of an id), or any other part only one id has.
    expect(store.findRun('bbbb').id).toBe('20250101-000000-bbbb');
    expect(store.findRun('0-aa').id).toBe('20250101-000000-aaaa');
    // Several: the message lists them, so the person can pick.
    expect(() => store.findRun('20250101')).toThrow(/"20250101" is in 2 run ids: 20250101-000000-bbbb .*20250101-000000-aaaa .*give more/);
    expect(() => store.findRun('nope')).toThrow(/no run with id "nope" or containing it/);
    const r = store.updateRun('20250101-000000-aaaa', { status: 'completed', finalMetrics: { finalLoss: 0.25 }, endedAt: 7 });
    expect(r).toMatchObject({ status: 'completed', finalMetrics: { finalLoss: 0.25 }, endedAt: 7, config: { options: { steps: 5 } } });
    expect(structuredClone(r)).toEqual(r);
    expect(store.listRuns()).toHaveLength(2);
    store.close();
  });

  it('keeps a step\'s I/O per link (or none) and a run\'s plan', () => {
    const store = open();
    newRun(store);
    expect(store.getRun('run-a')?.plan).toBeNull();
    const io = { h2dBytes: 1.5e6, d2hBytes: 2048, ssdReadBytes: 3178496, ssdWriteBytes: 0, waitMs: 0.25 };
    store.insertStepMetrics('run-a', [step(1), { ...step(2), io }, { ...step(3), io: null }, { ...step(4), io: { ...io, ssdReadBytes: 12.6, waitMs: NaN } }]);
    const rows = store.getMetrics('run-a').steps;
    expect(rows.map((r) => r.io)).toEqual([null, io, null, { ...io, ssdReadBytes: 13, waitMs: 0 }]);
    const plan = { homes: { device: 2, cpu: 1, ssd: 3 }, predictedStepMs: 40, floorMs: 25, bound: 'ssd-read', linkBytes: { hostToDevice: 1, deviceToHost: 0, ssdRead: 1, ssdWrite: 0.5 }, linkMs: null, ioWaitMs: 3 };
    expect(store.updateRun('run-a', { plan }).plan).toEqual(plan);
    expect(store.updateRun('run-a', { plan: null }).plan).toBeNull();
    store.close();
  });

  it('batches metric writes and flushes them on close', () => {
    const store = open();
    newRun(store);
    const writer = new MetricWriter(store, { flushMs: 60_000, maxRows: 1000 });
    for (let i = 1; i <= 5; i++) writer.addStep('run-a', step(i));
    writer.addEval('run-a', { step: 0, time: 1, loss: 0.7, accuracy: 0.5, examples: 8, evalMs: 2 });
    writer.addEval('run-a', { step: 5, time: 9, loss: 0.6, accuracy: NaN, examples: 8, evalMs: 2 });
    writer.addLog('run-a', { time: 1, level: 'info', message: 'hello' });
    expect(writer.pending).toBe(8);
    expect(count(store, 'step_metrics')).toBe(0);
    writer.close();
    expect(writer.pending).toBe(0);
    expect(count(store, 'step_metrics')).toBe(5);
    expect(store.getRun('run-a')?.stepsDone).toBe(5);
    const m = store.getMetrics('run-a');
    expect(m.steps.map((s) => s.step)).toEqual([1, 2, 3, 4, 5]);
    expect(m.evals.map((e) => [e.step, e.accuracy])).toEqual([[0, 0.5], [5, null]]);
    expect(store.getMetrics('run-a', 3)).toEqual({ steps: m.steps.slice(3), evals: m.evals.slice(1) });
    expect(store.logs('run-a')).toEqual([{ time: 1, level: 'info', message: 'hello' }]);
    expect(() => writer.addStep('run-a', step(6))).toThrow(/closed/);
    store.close();
  });

  it('flushes on its own after the interval and when the buffer is full', async () => {
    const store = open();
    newRun(store);
    const writer = new MetricWriter(store, { flushMs: 20, maxRows: 3 });
    writer.addStep('run-a', step(1));
    writer.addStep('run-a', step(2));
    expect(count(store, 'step_metrics')).toBe(0);
    writer.addStep('run-a', step(3));
    expect(count(store, 'step_metrics')).toBe(3);
    writer.addStep('run-a', step(4));
    await new Promise((r) => setTimeout(r, 80));
    expect(count(store, 'step_metrics')).toBe(4);
    writer.close();
    store.close();
  });

  it('keeps the last log lines only', () => {
    const store = open();
    newRun(store);
    const lines = Array.from({ length: LOG_LINES_KEPT + 50 }, (_, i) => ({ time: i, level: 'info' as const, message: `line ${i}` }));
    store.addLogs('run-a', lines);
    expect(count(store, 'logs')).toBe(LOG_LINES_KEPT);
    expect(store.logs('run-a', 2).map((l) => l.message)).toEqual([`line ${LOG_LINES_KEPT + 48}`, `line ${LOG_LINES_KEPT + 49}`]);
    store.close();
  });

  it('deletes every row of a run by cascade and nothing of another run', () => {
    const store = open();
    newRun(store, 'a');
    newRun(store, 'b');
    for (const id of ['a', 'b']) {
      store.insertStepMetrics(id, [step(1)]);
      store.insertEvalMetrics(id, [{ step: 2, time: 1, loss: 1, accuracy: 0.5, examples: 4, evalMs: 1 }]);
      store.addCheckpoint({ runId: id, step: 2, path: `/x/${id}`, bytes: 10, createdAt: 1 });
      store.addArtifact({ runId: id, kind: 'model', path: `/m/${id}`, bytes: 10, createdAt: 1 });
      store.addLogs(id, [{ time: 1, level: 'info', message: 'x' }]);
      store.insertSystemSamples([{ runId: id, time: 1, payload: {} }]);
      store.insertTierStats([{ runId: id, step: 1, time: 1, tier: 'gpu', residentBytes: 5, payload: {} }]);
    }
    expect(store.deleteRun('a')).toBe(true);
    for (const t of ['step_metrics', 'eval_metrics', 'checkpoints', 'artifacts', 'logs', 'system_samples', 'tier_stats']) {
      expect(count(store, t), t).toBe(1);
    }
    expect(store.tierStats('b')).toEqual([expect.objectContaining({ tier: 'gpu', residentBytes: 5 })]);
    store.close();
  });

  it('stores settings as JSON', () => {
    const store = open();
    store.setSetting('budgets', { gpu: 8, cpu: 32 });
    store.setSetting('budgets', { gpu: 16 });
    expect(store.getSetting('budgets')).toEqual({ gpu: 16 });
    store.deleteSetting('budgets');
    expect(store.getSetting('budgets')).toBeUndefined();
    store.close();
  });
});
