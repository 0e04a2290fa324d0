// The trainable set and the estimator in the one options schema: the defaults that follow them
// (MeZO-LoRA's lr and eps for the adapter sets, FZOO's probes), the checks across options, and
// the same through the CLI's flags (names in errors are the flags there, the fields here).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { describe, expect, it } from 'vitest';

import { trainOptionsFromArgs } from '../../../electron/cli/main.js';
import { argOptions } from '../../../electron/cli/flags.js';
import { parseParams, RunOptions, TrainOptions } from '../../../electron/common/contract.js';
import { TRAIN_DEFAULTS } from '../../../electron/common/options.js';
import { ROOT } from '../../helpers/engine.js';
import type { SpillwayError } from '../../../electron/common/contract.js';
import { parseTrainOptions } from '../../../electron/engine/trainer.js';

const base = { model: '/m', train: '/d', task: { kind: 'sst2' } };

describe('run options: trainable set and estimator', () => {
  it('fills lr, eps, noise, q and rank from the set and the estimator, and keeps what is given', () => {
    expect(RunOptions.parse(base)).toMatchObject({ trainable: 'full', estimator: 'mezo', lr: 1e-6, eps: 1e-3, noise: 'gaussian', q: 1, rank: 8 });
    for (const trainable of ['lora', 'loldu'] as const) {
      expect(RunOptions.parse({ ...base, trainable })).toMatchObject({ lr: 1e-4, eps: 1e-2, targets: ['q', 'v'], rank: 8, merge: false });
    }
    expect(RunOptions.parse({ ...base, trainable: 'sparse' })).toMatchObject({ lr: 1e-6, eps: 1e-3, sparseFraction: 0.25 });
    expect(RunOptions.parse({ ...base, trainable: 'tokens' })).toMatchObject({ lr: TRAIN_DEFAULTS.tokens.lr, eps: 1e-3 });
    expect(RunOptions.parse({ ...base, estimator: 'fzoo' })).toMatchObject({ noise: 'rademacher', q: 4 });
    const given = { ...base, trainable: 'lora', estimator: 'fzoo', lr: 3e-3, eps: 5e-3, noise: 'gaussian', q: 6, rank: 2, targets: ['k', 'o'] };
    expect(parseTrainOptions(given)).toMatchObject({ lr: 3e-3, eps: 5e-3, noise: 'gaussian', q: 6, rank: 2, targets: ['k', 'o'] });
  });

  it('refuses what does not fit, naming the field and what was expected', () => {
    const refused = (options: Record<string, unknown>) => {
      try {
        parseParams('startRun', { options: { ...base, ...options } });
      } catch (e) {
        return (e as SpillwayError).message;
      }
      throw new Error(`accepted ${JSON.stringify(options)}`);
    };
    expect(refused({ trainable: 'adapters' })).toMatch(/options\.trainable: unknown trainable set adapters \(full, lora, loldu, sparse, tokens\)/);
    expect(refused({ estimator: 'spsa' })).toMatch(/options\.estimator: unknown estimator spsa \(mezo, fzoo\)/);
    expect(refused({ trainable: 'lora', targets: ['q', 'query'] })).toMatch(/options\.targets\.1: unknown target matrix query \(q, k, v, o, qkv/);
    expect(refused({ trainable: 'lora', targets: [] })).toMatch(/options\.targets: expected at least one target matrix/);
    expect(refused({ trainable: 'lora', rank: 0 })).toMatch(/options\.rank: expected an integer from 1 to 4096, got 0/);
    expect(refused({ trainable: 'sparse', sparseFraction: 1.5 })).toMatch(/options\.sparseFraction: expected a finite number > 0 and <= 1, got 1\.5/);
    expect(refused({ estimator: 'fzoo', q: 1 })).toMatch(/options\.q: the fzoo estimator needs at least 2 probes, got 1/);
    expect(refused({ trainable: 'full', merge: true })).toMatch(/options\.merge: merging .* needs the trainable set lora, loldu or tokens/);
    // tokens trains the label words' rows: a task without label words has none.
    expect(refused({ trainable: 'tokens', task: { kind: 'text' } })).toMatch(/options\.trainable: the trainable set tokens trains the rows of the task's label words: it needs a task with label words \(sst2, rte, classify\), not text/);
    expect(TrainOptions.safeParse({ ...base, trainable: 'tokens', merge: true }).success).toBe(true);
    // The trainer's own entry applies the same checks.
    expect(() => parseTrainOptions({ ...base, estimator: 'fzoo', q: 1 })).toThrow(/^q: the fzoo estimator needs at least 2 probes/);
    expect(TrainOptions.safeParse({ ...base, trainable: 'loldu', merge: true }).success).toBe(true);
  });
});

describe('spillway train: --train, --estimator and the adapter flags', () => {
  const flags = argOptions(TrainOptions, { task: true });
  const args = (...argv: string[]) =>
    trainOptionsFromArgs(parseArgs({ args: ['--model', '/m', '--data', '/d', ...argv], options: flags, allowPositionals: false }).values);

  it('reach the options the engine gets', () => {
    expect(args('--train', 'lora', '--rank', '4', '--lora-alpha', '8', '--targets', 'q,k,v', '--merge', '--out', '/o')).toMatchObject({
      trainable: 'lora', rank: 4, loraAlpha: 8, targets: ['q', 'k', 'v'], merge: true, lr: 1e-4, eps: 1e-2,
    });
    expect(args('--train', 'sparse', '--sparse-fraction', '0.1', '--estimator', 'fzoo', '--q', '3')).toMatchObject({
      trainable: 'sparse', sparseFraction: 0.1, estimator: 'fzoo', q: 3, noise: 'rademacher', lr: 1e-6,
    });
  });

  it('on the demo, another trainable set takes its own lr and eps, not MeZO-full\'s, unless given', () => {
    const demo = (...argv: string[]) => trainOptionsFromArgs(parseArgs({ args: argv, options: flags, allowPositionals: false }).values);
    const full = demo();
    const spec = JSON.parse(readFileSync(join(ROOT, 'resources', 'demo.json'), 'utf8')) as { lr: number; eps: number };
    expect(full).toMatchObject({ trainable: 'full', lr: spec.lr, eps: spec.eps });
    expect(spec.lr).not.toBe(TRAIN_DEFAULTS.tokens.lr);
    expect(demo('--train', 'tokens')).toMatchObject({ trainable: 'tokens', lr: TRAIN_DEFAULTS.tokens.lr, eps: TRAIN_DEFAULTS.tokens.eps, steps: full.steps });
    expect(demo('--train', 'lora')).toMatchObject({ trainable: 'lora', lr: 1e-4, eps: 1e-2 });
    expect(demo('--train', 'tokens', '--lr', '0.05')).toMatchObject({ lr: 0.05, eps: 1e-3 });
  });

  it('name the flag in their errors', () => {
    expect(() => args('--train', 'lora', '--targets', 'q,attn')).toThrow(/--targets.*unknown target matrix attn/);
    expect(() => args('--estimator', 'fzoo', '--q', '1')).toThrow(/--q.*at least 2 probes/);
    expect(() => args('--merge', '--out', '/o')).toThrow(/--merge.*lora, loldu or tokens/);
    expect(() => args('--train', 'tokens', '--task', 'text')).toThrow(/--train.*needs a task with label words/);
    expect(() => args('--train', 'loldu', '--rank', '0')).toThrow(/--rank.*expected an integer from 1 to 4096/);
  });
});
