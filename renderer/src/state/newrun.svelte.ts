// The New run form: what to train on, MeZO's hyperparameters (defaults per
// task), budgets and precision, and the plan the backend makes from them.

import type { Masters, MethodParamsInput, PlanResult, RunOptions, RunSummary, Settings, TaskTemplate, UpdateMode } from '../../../electron/common/contract.ts';
import { app } from './app.svelte.ts';
import { library } from './library.svelte.ts';
import type { Client } from '../lib/client.ts';
import { describeError } from '../lib/client.ts';
import { chatTemplateOf, emptyChatFields, parseRoleMap, type ChatFields } from '../lib/chat.ts';
import { parseBytes } from '../lib/format.ts';
import { MASTERS, precisionComparison, precisionOf } from '../lib/precision.ts';

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
  // Conversations run longer than MeZO's sentences (capped by the model's positions).
  chat: { steps: 1000, batchSize: 8, lr: 1e-6, eps: 1e-3, weightDecay: 0, evalEvery: 100, seed: 0, schedule: 'constant', maxLength: 1024 },
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
  /** The chat task's column mapping ("" fields: the defaults). */
  chat = $state<ChatFields>(emptyChatFields());
  hyper = $state<Hyper>({ ...TASK_DEFAULTS.sst2 });
  gpuBudget = $state('');
  cpuBudget = $state('');
  /** Spill folders, one per drive (the first is the spill folder; empty entries are ignored). */
  spillDirs = $state<string[]>(['']);
  masters = $state<Masters>('fp32');
  updateOn = $state<UpdateMode>('auto');

  /** The form planned with each precision (null: that plan failed, planErrors says why). */
  plans = $state<Partial<Record<Masters, PlanResult | null>>>({});
  planErrors = $state<Partial<Record<Masters, string>>>({});
  /** The plan of the chosen masters, and why there is none. */
  plan = $derived(this.plans[this.masters] ?? null);
  planError = $derived(this.planErrors[this.masters] ?? null);
  /** The chosen precision's figures beside the other two. */
  comparison = $derived(this.plan ? precisionComparison(this.plans, this.masters) : null);
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
    const roleError = this.task === 'chat' ? parseRoleMap(this.chat.roleMap).error : null;
    if (roleError) errs.push(roleError);
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
      case 'chat':
        return chatTemplateOf(this.chat);
      default:
        return { kind: this.task };
    }
  });

  #client: () => Client;
  #settings: () => Settings | null;
  #planSeq = 0;

  /** `settings`: the backend's settings, whose spill folder and budgets stand in for empty fields. */
  constructor(client: () => Client, settings: () => Settings | null = () => null) {
    this.#client = client;
    this.#settings = settings;
  }

  /** The spill folders typed (trimmed, empty ones dropped, each once), else the settings' spill folder. */
  get spillFolders(): string[] {
    const typed = [...new Set(this.spillDirs.map((d) => d.trim()).filter(Boolean))];
    if (typed.length) return typed;
    const d = this.#settings()?.spillDir;
    return d ? [d] : [];
  }

  addSpillDir(): void {
    this.spillDirs = [...this.spillDirs, ''];
  }

  /** Removes the i-th folder; the list keeps one (empty) field. */
  removeSpillDir(i: number): void {
    const next = this.spillDirs.filter((_, j) => j !== i);
    this.spillDirs = next.length ? next : [''];
  }

  /** The budgets typed, else the settings' (null: unlimited). */
  budgets(): { gpu: number | null; cpu: number | null; ssd: number | null } {
    const s = this.#settings()?.budgets;
    const typed = (v: string) => {
      const b = parseBytes(v);
      return b === null || Number.isNaN(b) ? null : b;
    };
    return { gpu: typed(this.gpuBudget) ?? s?.gpu ?? null, cpu: typed(this.cpuBudget) ?? s?.cpu ?? null, ssd: s?.ssd ?? null };
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

  /**
   * The budgets, spill folders, masters and update mode the plan was made with: a run follows the plan it
   * showed (placed by the planner, offload 'auto', when a budget is set; resident otherwise).
   */
  placement(): Pick<RunOptions, 'offload' | 'gpuMem' | 'cpuMem' | 'ssdMem' | 'spillDir' | 'spillDirs' | 'masters' | 'updateOn'> {
    const b = this.budgets();
    const dirs = this.spillFolders;
    const spill = { ...(dirs.length ? { spillDir: dirs[0] } : {}), ...(dirs.length > 1 ? { spillDirs: dirs } : {}) };
    const how = { ...(this.masters !== 'fp32' ? { masters: this.masters } : {}), ...(this.updateOn !== 'auto' ? { updateOn: this.updateOn } : {}) };
    if (b.gpu === null && b.cpu === null) return { ...spill, ...how };
    return {
      offload: 'auto',
      ...(b.gpu !== null ? { gpuMem: b.gpu } : {}),
      ...(b.cpu !== null ? { cpuMem: b.cpu } : {}),
      ...(b.ssd !== null ? { ssdMem: b.ssd } : {}),
      ...spill,
      ...how,
    };
  }

  /** The plan request for one master precision (the form's budgets, folders, update mode and batch shape). */
  planRequest(masters: Masters = this.masters): MethodParamsInput<'plan'> {
    const b = this.budgets();
    const dirs = this.spillFolders;
    return {
      model: this.model,
      budgets: { ...(b.gpu !== null ? { gpu: b.gpu } : {}), ...(b.cpu !== null ? { cpu: b.cpu } : {}), ...(b.ssd !== null ? { ssd: b.ssd } : {}) },
      ...(dirs.length === 1 ? { spillDir: dirs[0] } : dirs.length > 1 ? { spillDirs: dirs } : {}),
      masters,
      precision: precisionOf(masters),
      updateOn: this.updateOn,
      batchSize: this.hyper.batchSize,
      maxLength: this.hyper.maxLength,
      // The training data and task: the step is then predicted for the data's mean length, as the run's own plan is.
      ...(this.train.trim() && this.templateComplete ? { train: this.train.trim(), task: this.template } : {}),
    };
  }

  /** Whether the task template is one the backend accepts (classification needs two label words or more). */
  get templateComplete(): boolean {
    if (this.task === 'chat') return parseRoleMap(this.chat.roleMap).error === null;
    return this.task !== 'classify' || this.labelWordList.length >= 2;
  }

  /** Plans the form with each precision (three requests): the chosen one is the plan shown, all three feed the comparison. */
  async makePlan(): Promise<void> {
    if (!this.model || this.budgetErrors.length) return;
    const seq = ++this.#planSeq;
    this.planning = true;
    try {
      const requests = MASTERS.map((m) => this.planRequest(m));
      const results = await Promise.allSettled(requests.map(async (r) => this.#client().call('plan', r)));
      if (seq !== this.#planSeq) return; // a newer request is on its way
      const plans: Partial<Record<Masters, PlanResult | null>> = {};
      const errors: Partial<Record<Masters, string>> = {};
      MASTERS.forEach((m, i) => {
        const r = results[i];
        plans[m] = r.status === 'fulfilled' ? r.value : null;
        if (r.status === 'rejected') errors[m] = describeError(r.reason);
      });
      this.plans = plans;
      this.planErrors = errors;
    } finally {
      if (seq === this.#planSeq) this.planning = false;
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

export const newRun = new NewRunState(
  () => app.client,
  () => library.settings,
);
