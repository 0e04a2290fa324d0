import { describe, expect, it } from 'vitest';
import type { RunOptions } from '../../electron/common/contract.ts';
import { comparisonCsv, hyperparameterTable, legendNames, type ComparedRun } from '../../renderer/src/lib/compare.ts';
import { RunSeries } from '../../renderer/src/lib/series.ts';
import { smoothSeries } from '../../renderer/src/lib/smoothing.ts';

const T0 = 1_700_000_000_000;
const base: RunOptions = { model: '/m/demo', train: '/d/train.jsonl', task: { kind: 'sst2', labelWords: [' terrible', ' great'] }, steps: 3, lr: 1e-3, seed: 0 };

function compared(id: string, name: string, options: RunOptions, losses: number[], evals: [number, number][] = []): ComparedRun {
  const series = new RunSeries(0.6);
  losses.forEach((loss, i) =>
    series.addStep({ runId: id, step: i + 1, at: T0 + 2_000 * (i + 1), loss, lossPlus: loss, lossMinus: loss, projectedGrad: 0, lr: 1e-3, stepMs: 5, tokensPerS: 1, skipped: false }),
  );
  for (const [step, accuracy] of evals) series.addEval({ runId: id, step, at: T0 + 2_000 * step + 100, loss: 0.5, accuracy, examples: 4, evalMs: 1 });
  return { id, name, startedAt: T0, options, series };
}

describe('comparing runs', () => {
  it('tells runs with the same name apart by their ids, and leaves unique names alone', () => {
    expect(legendNames([{ id: 'a1', name: 'demo' }, { id: 'b2', name: 'demo' }, { id: 'c3', name: 'other' }])).toEqual(['demo · a1', 'demo · b2', 'other']);
  });

  it('lists every option once, in reading order, and marks the ones that differ', () => {
    const rows = hyperparameterTable([
      { options: base },
      { options: { ...base, lr: 1e-4, task: { kind: 'sst2', labelWords: [' bad', ' good'] }, q: 4 } },
    ]);
    expect(rows.map((r) => r.key)).toEqual(['model', 'train', 'task.kind', 'task.labelWords', 'steps', 'lr', 'q', 'seed']);
    const byKey = Object.fromEntries(rows.map((r) => [r.key, r]));
    expect(byKey.lr).toMatchObject({ label: 'learning rate', values: ['0.001', '0.0001'], differs: true });
    expect(byKey['task.labelWords']).toMatchObject({ values: ['[" terrible"," great"]', '[" bad"," good"]'], differs: true });
    expect(byKey.q).toMatchObject({ values: ['', '4'], differs: true });
    expect(byKey.steps).toMatchObject({ values: ['3', '3'], differs: false });
  });

  it('exports what is compared as CSV: one row per run and step, with time, smoothed loss and the evaluations', () => {
    const a = compared('a1', 'demo, first', base, [0.9, 0.8, 0.7], [[2, 0.75]]);
    const b = compared('b2', 'second', base, [1.0, 0.6]);
    const lines = comparisonCsv([a, b]).trimEnd().split('\n');
    expect(lines[0]).toBe('run_id,run_name,step,elapsed_s,loss,smoothed_loss,eval_loss,eval_accuracy');
    expect(lines).toHaveLength(1 + 3 + 2);
    const smoothed = smoothSeries(a.series.loss, 0.6);
    expect(lines[1]).toBe(`a1,"demo, first",1,2,0.9,${smoothed[0].y},,`);
    expect(lines[2]).toBe(`a1,"demo, first",2,4,0.8,${smoothed[1].y},0.5,0.75`);
    expect(lines[5]).toBe(`b2,second,2,4,0.6,${smoothSeries(b.series.loss, 0.6)[1].y},,`);
  });
});
