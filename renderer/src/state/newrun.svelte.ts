// The New run form: what to train on, MeZO's hyperparameters (defaults per
// task), budgets and precision, and the plan the backend makes from them.

import type { PlanResult, RunOptions, RunSummary, TaskTemplate } from '../../../electron/common/contract.ts';
import { app } from './app.svelte.ts';
import type { Client } from '../lib/client.ts';
import { describeError } from '../lib/client.ts';
import { parseBytes } from '../lib/format.ts';

export type TaskKind = TaskTemplate['kind'];

export interface Hyper {
  steps: number;
  batchSize: number;
  lr: number;
  eps: number;
  weightDecay: number;
  evalEvery: number;
  seed: number;
  schedule: 'constant' | 'linear' | 'cosine';
  maxLength: number;
}

/**
 * MeZO's defaults (Malladi et al. 2023, OPT on SST-2/RTE: batch 16, eps 1e-3,
 * lr 1e-6 for full-parameter ZO-SGD), except for the embedded demo model,
 * whose tuned settings live in resources/demo.json (mirrored here).
 */
export const TASK_DEFAULTS: Record<TaskKind, Hyper> = {
  sst2: { steps: 1000, batchSize: 16, lr: 1e-6, eps: 1e-3, weightDecay: 0, evalEvery: 100, seed: 0, schedule: 'constant', maxLength: 256 },
  rte: { steps: 1000, batchSize: 16, lr: 1e-6, eps: 1e-3, weightDecay: 0, evalEvery: 100, seed: 0, schedule: 'constant', maxLength: 256 },
  classify: { steps: 1000, batchSize: 16, lr: 1e-6, eps: 1e-3, weightDecay: 0, evalEvery: 100, seed: 0, schedule: 'constant', maxLength: 256 },
  text: { steps: 1000, batchSize: 8, lr: 1e-6, eps: 1e-3, weightDecay: 0, evalEvery: 100, seed: 0, schedule: 'constant', maxLength: 256 },
  completion: { steps: 1000, batchSize: 8, lr: 1e-6, eps: 1e-3, weightDecay: 0, evalEvery: 100, seed: 0, schedule: 'constant', maxLength: 256 },
};
export const DEMO_DEFAULTS: Hyper = { steps: 300, batchSize: 16, lr: 3e-4, eps: 1e-3, weightDecay: 0, evalEvery: 25, seed: 0, schedule: 'constant', maxLength: 256 };

export class NewRunState {
  name = $state('');
  model = $state('');
  train = $state('');
  eval = $state('');
  evalFraction = $state(0.1);
  task = $state<TaskKind>('sst2');
  labelWords = $state('');
  prompt = $state('');
  hyper = $state<Hyper>({ ...TASK_DEFAULTS.sst2 });
  gpuBudget = $state('');
  cpuBudget = $state('');
  spillDir = $state('');
  precision = $state<'f32'>('f32');

  plan = $state<PlanResult | null>(null);
  planError = $state<string | null>(null);
  planning = $state(false);
  starting = $state(false);
  startError = $state<string | null>(null);

  budgetErrors = $derived.by(() => {
    const errs: string[] = [];
    for (const [label, v] of [['GPU memory', this.gpuBudget], ['CPU memory', this.cpuBudget]] as const) {
      if (Number.isNaN(parseBytes(v))) errs.push(`${label}: write a size such as 16 GiB or 8192 MiB`);
    }
    return errs;
  });

  formErrors = $derived.by(() => {
    const errs: string[] = [];
    if (!this.model) errs.push('Choose a model.');
    if (!this.train.trim()) errs.push('Choose a training dataset.');
    if (this.task === 'classify' && this.labelWordList.length < 2) errs.push('Classification needs at least two label words, separated by commas.');
    const h = this.hyper;
    if (!(Number.isInteger(h.steps) && h.steps > 0)) errs.push('Steps must be a whole number above 0.');
    if (!(Number.isInteger(h.batchSize) && h.batchSize > 0)) errs.push('Batch size must be a whole number above 0.');
    if (!(h.lr >= 0)) errs.push('Learning rate must be 0 or more.');
    if (!(h.eps > 0)) errs.push('Perturbation scale (eps) must be above 0.');
    return [...errs, ...this.budgetErrors];
  });

  labelWordList = $derived(
    this.labelWords
      .split(',')
      .map((w) => w.replace(/^\s*"|"\s*$/g, ''))
      .filter((w) => w.trim() !== ''),
  );

  template = $derived.by((): TaskTemplate => {
    switch (this.task) {
      case 'classify':
        return { kind: 'classify', labelWords: this.labelWordList, ...(this.prompt.includes('{text}') ? { prompt: this.prompt } : {}) };
      case 'sst2':
      case 'rte':
        return this.labelWordList.length === 2 ? { kind: this.task, labelWords: this.labelWordList } : { kind: this.task };
      default:
        return { kind: this.task };
    }
  });

  #client: () => Client;

  constructor(client: () => Client) {
    this.#client = client;
  }

  setTask(task: TaskKind, demo = false): void {
    this.task = task;
    this.hyper = { ...(demo ? DEMO_DEFAULTS : TASK_DEFAULTS[task]) };
  }

  /** First launch: the embedded demo, ready to go. */
  useDemo(model: string, train: string, evalPath: string | null): void {
    this.model = model;
    this.train = train;
    this.eval = evalPath ?? '';
    this.labelWords = '" terrible"," great"';
    this.setTask('sst2', true);
    if (!this.name) this.name = 'demo sentiment';
  }

  options(): RunOptions {
    const h = this.hyper;
    return {
      model: this.model,
      train: this.train.trim(),
      ...(this.eval.trim() ? { eval: this.eval.trim() } : { evalFraction: this.evalFraction }),
      task: this.template,
      steps: h.steps,
      batchSize: h.batchSize,
      lr: h.lr,
      eps: h.eps,
      weightDecay: h.weightDecay,
      schedule: h.schedule,
      seed: h.seed,
      evalEvery: h.evalEvery,
      maxLength: h.maxLength,
      ...this.placement(),
    };
  }

  /** The budgets and spill folder the plan was made with: a run follows the plan it showed. */
  placement(): Pick<RunOptions, 'offload' | 'gpuMem' | 'cpuMem' | 'spillDir'> {
    const gpu = parseBytes(this.gpuBudget);
    const cpu = parseBytes(this.cpuBudget);
    const spill = this.spillDir.trim();
    if (gpu === null && cpu === null) return spill ? { spillDir: spill } : {};
    return { offload: 'auto', ...(gpu !== null ? { gpuMem: gpu } : {}), ...(cpu !== null ? { cpuMem: cpu } : {}), ...(spill ? { spillDir: spill } : {}) };
  }

  async makePlan(): Promise<void> {
    if (!this.model || this.budgetErrors.length) return;
    this.planning = true;
    try {
      const gpu = parseBytes(this.gpuBudget);
      const cpu = parseBytes(this.cpuBudget);
      this.plan = await this.#client().call('plan', {
        model: this.model,
        budgets: { ...(gpu !== null ? { gpu } : {}), ...(cpu !== null ? { cpu } : {}) },
        ...(this.spillDir.trim() ? { spillDir: this.spillDir.trim() } : {}),
        precision: this.precision,
        batchSize: this.hyper.batchSize,
        maxLength: this.hyper.maxLength,
      });
      this.planError = null;
    } catch (e) {
      this.plan = null;
      this.planError = describeError(e);
    } finally {
      this.planning = false;
    }
  }

  async start(): Promise<RunSummary | null> {
    if (this.formErrors.length) {
      this.startError = this.formErrors.join(' ');
      return null;
    }
    this.starting = true;
    this.startError = null;
    try {
      return await this.#client().call('startRun', { ...(this.name.trim() ? { name: this.name.trim() } : {}), options: this.options() });
    } catch (e) {
      this.startError = describeError(e);
      return null;
    } finally {
      this.starting = false;
    }
  }
}

export const newRun = new NewRunState(() => app.client);
