// The New run form: what to train on, MeZO's hyperparameters (defaults per
// task), budgets and precision, and the plan the backend makes from them.

import type { AdapterTarget, Device, DeviceList, Estimator, Gemm, Masters, MethodParamsInput, NoiseKind, PlanResult, RunOptionsInput, RunSummary, Schedule, Settings, TaskKind, TaskTemplate, TrainableSet, UpdateMode } from '../../../electron/common/contract.ts';
import { AdapterTarget as AdapterTargetSchema, ESTIMATOR_DEFAULTS, MAX_RANK, TRAIN_DEFAULTS, freezesBase } from '../../../electron/common/options.ts';
import { app } from './app.svelte.ts';
import { library } from './library.svelte.ts';
import type { Client } from '../../../electron/common/client.ts';
import { describeError } from '../../../electron/common/client.ts';
import { chatTemplateOf, emptyChatFields, parseRoleMap, type ChatFields } from '../lib/chat.ts';
import { parseBytes } from '../lib/format.ts';
import { MASTERS, precisionComparison } from '../lib/precision.ts';
import { deviceChoices } from '../lib/devices.ts';
import type { Parallel } from '../../../electron/common/options.ts';
import { checkLayout, rankLayout } from '../../../electron/common/ranks.ts';

export type { TaskKind };

export interface Hyper {
  steps: number;
  batchSize: number;
  lr: number;
  eps: number;
  weightDecay: number;
  /** Perturbations averaged per step (MeZO's n; 1 in the paper). */
  q: number;
  noise: NoiseKind;
  schedule: Schedule;
  warmupSteps: number;
  evalEvery: number;
  seed: number;
  maxLength: number;
}

/**
 * MeZO's defaults (Malladi et al. 2023, OPT on SST-2/RTE: batch 16, eps 1e-3,
 * lr 1e-6 for full-parameter ZO-SGD), except for the embedded demo model,
 * whose tuned settings live in resources/demo.json (mirrored here).
 */
const MEZO = { eps: 1e-3, weightDecay: 0, q: 1, noise: 'gaussian', schedule: 'constant', warmupSteps: 0, evalEvery: 100, seed: 0, maxLength: 256 } as const;
export const TASK_DEFAULTS: Record<TaskKind, Hyper> = {
  sst2: { ...MEZO, steps: 1000, batchSize: 16, lr: 1e-6 },
  rte: { ...MEZO, steps: 1000, batchSize: 16, lr: 1e-6 },
  classify: { ...MEZO, steps: 1000, batchSize: 16, lr: 1e-6 },
  text: { ...MEZO, steps: 1000, batchSize: 8, lr: 1e-6 },
  completion: { ...MEZO, steps: 1000, batchSize: 8, lr: 1e-6 },
  // Conversations run longer than MeZO's sentences (capped by the model's positions).
  chat: { ...MEZO, steps: 1000, batchSize: 8, lr: 1e-6, maxLength: 1024 },
};
export const DEMO_DEFAULTS: Hyper = { ...MEZO, steps: 300, batchSize: 16, lr: 3e-4, evalEvery: 25 };

/**
 * A label map as typed: `negative: 0, positive: 1` (or `=` instead of `:`, or a JSON object) →
 * dataset label → index of its label word. Empty text: no map.
 */
export function parseLabelMap(text: string, words: number): { map: Record<string, number> | null; error: string | null } {
  const t = text.trim();
  if (!t) return { map: null, error: null };
  let entries: [string, unknown][];
  if (t.startsWith('{')) {
    try {
      entries = Object.entries(JSON.parse(t) as Record<string, unknown>);
    } catch {
      return { map: null, error: 'Label map: the JSON object does not parse.' };
    }
  } else {
    entries = [];
    for (const part of t.split(',').map((p) => p.trim()).filter(Boolean)) {
      const m = /^(.+?)\s*[:=]\s*(\S+)$/.exec(part);
      if (!m) return { map: null, error: `Label map: write each entry as label: index (got ${JSON.stringify(part)}).` };
      entries.push([m[1].trim().replace(/^"(.*)"$/, '$1'), Number(m[2])]);
    }
  }
  const map: Record<string, number> = {};
  for (const [k, v] of entries) {
    if (!(typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < words)) {
      return { map: null, error: `Label map: ${JSON.stringify(k)} must map to the index of a label word (0 to ${words - 1}).` };
    }
    map[k] = v;
  }
  return { map, error: null };
}

/** The targets as typed ("q, v"): the matrices, or the first word that names none. */
export function parseTargets(text: string): { targets: AdapterTarget[]; error: string | null } {
  const words = text.split(/[\s,]+/).filter(Boolean);
  if (!words.length) return { targets: [], error: 'Target matrices: name at least one (for example q, v).' };
  const targets: AdapterTarget[] = [];
  for (const w of words) {
    const r = AdapterTargetSchema.safeParse(w);
    if (!r.success) return { targets: [], error: `Target matrices: ${JSON.stringify(w)} is not one (${AdapterTargetSchema.options.join(', ')}).` };
    if (!targets.includes(r.data)) targets.push(r.data);
  }
  return { targets, error: null };
}

const isAdapterSet = (t: TrainableSet) => t === 'lora' || t === 'loldu';

export class NewRunState {
  name = $state('');
  model = $state('');
  train = $state('');
  eval = $state('');
  evalFraction = $state(0.1);
  task = $state<TaskKind>('sst2');
  labelWords = $state('');
  /** Dataset label → label word index, as typed (see parseLabelMap); classification only. */
  labelMap = $state('');
  prompt = $state('');
  /** The chat task's column mapping ("" fields: the defaults). */
  chat = $state<ChatFields>(emptyChatFields());
  hyper = $state<Hyper>({ ...TASK_DEFAULTS.sst2 });
  /** What trains (every weight, the small ones, or adapters over a frozen base) and how a step estimates its direction. */
  trainable = $state<TrainableSet>('full');
  estimator = $state<Estimator>('mezo');
  rank = $state(TRAIN_DEFAULTS.lora.rank);
  loraAlpha = $state(16);
  /** The adapters' target matrices as typed (see parseTargets). */
  targets = $state('q, v');
  sparseFraction = $state(0.25);
  /** Adapter runs: also save the base with the adapter merged in. */
  merge = $state(false);
  targetsParsed = $derived(parseTargets(this.targets));
  gpuBudget = $state('');
  cpuBudget = $state('');
  /** Spill folders, one per drive (the first is the spill folder; empty entries are ignored). */
  spillDirs = $state<string[]>(['']);
  masters = $state<Masters>('fp32');
  updateOn = $state<UpdateMode>('auto');
  /** Steps between checkpoints; null: the backend's default (DEFAULT_CHECKPOINT_EVERY), 0: none. */
  checkpointEvery = $state<number | null>(null);
  /** Where the trained model is written; empty: the run's own folder in the data folder. */
  out = $state('');
  /** The compute device: auto, cpu or cuda:N. */
  device = $state<Device>('auto');
  /** The GEMM precision on a CUDA device. */
  gemm = $state<Gemm>('fp32');
  /** The backend's devices (listDevices), and why they could not be listed. */
  devices = $state<DeviceList | null>(null);
  devicesError = $state<string | null>(null);
  deviceChoices = $derived(deviceChoices(this.devices));
  /** The CUDA device the run would compute on (auto's, or the one picked); null: the CPU. */
  cudaDevice = $derived(this.deviceChoices.find((c) => c.value === this.device)?.cuda ?? null);
  /** Engine processes sharing each step (started with mpirun by the backend), how they share it, and 2d's groups. */
  ranks = $state(1);
  parallel = $state<Parallel>('data');
  groups = $state(2);

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
    if (this.task === 'classify' && this.labelMapParsed.error) errs.push(this.labelMapParsed.error);
    const roleError = this.task === 'chat' ? parseRoleMap(this.chat.roleMap).error : null;
    if (roleError) errs.push(roleError);
    const h = this.hyper;
    if (!(Number.isInteger(h.steps) && h.steps > 0)) errs.push('Steps must be a whole number above 0.');
    if (!(Number.isInteger(h.batchSize) && h.batchSize > 0)) errs.push('Batch size must be a whole number above 0.');
    if (!(h.lr >= 0)) errs.push('Learning rate must be 0 or more.');
    if (!(h.eps > 0)) errs.push('Perturbation scale (eps) must be above 0.');
    if (!(Number.isInteger(h.q) && h.q >= 1 && h.q <= 1024)) errs.push('q (perturbations per step) must be a whole number from 1 to 1024.');
    if (!(Number.isInteger(h.warmupSteps) && h.warmupSteps >= 0)) errs.push('Warm-up steps must be a whole number, 0 or more.');
    if (this.estimator === 'fzoo' && !(h.q >= 2)) errs.push("The FZOO estimator needs at least 2 probes (q): the spread of their losses scales the step.");
    if (isAdapterSet(this.trainable)) {
      if (!(Number.isInteger(this.rank) && this.rank >= 1 && this.rank <= MAX_RANK)) errs.push(`Rank must be a whole number from 1 to ${MAX_RANK}.`);
      if (this.trainable === 'lora' && !(this.loraAlpha > 0)) errs.push('LoRA alpha must be above 0.');
      if (this.targetsParsed.error) errs.push(this.targetsParsed.error);
    }
    if (this.trainable === 'sparse' && !(this.sparseFraction > 0 && this.sparseFraction <= 1)) errs.push('Sparse fraction must be above 0 and at most 1.');
    const ck = this.checkpointEvery;
    if (ck !== null && !(Number.isInteger(ck) && ck >= 0)) errs.push('Checkpoint every must be a whole number of steps (0: no checkpoints), or empty for the default.');
    if (!(Number.isInteger(this.ranks) && this.ranks >= 1)) errs.push('Ranks must be a whole number, 1 or more.');
    else if (this.ranks > 1) {
      try {
        checkLayout(rankLayout(this.ranks, this.parallel, this.groups), h.q, h.batchSize);
      } catch (e) {
        errs.push(`Ranks: ${(e as Error).message}.`);
      }
    }
    return [...errs, ...this.budgetErrors];
  });

  labelWordList = $derived(
    this.labelWords
      .split(',')
      .map((w) => w.replace(/^\s*"|"\s*$/g, ''))
      .filter((w) => w.trim() !== ''),
  );

  labelMapParsed = $derived(parseLabelMap(this.labelMap, this.labelWordList.length));

  template = $derived.by((): TaskTemplate => {
    switch (this.task) {
      case 'classify': {
        const map = this.labelMapParsed.map;
        return {
          kind: 'classify',
          labelWords: this.labelWordList,
          ...(map && Object.keys(map).length ? { labelMap: map } : {}),
          ...(this.prompt.includes('{text}') ? { prompt: this.prompt } : {}),
        };
      }
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

  /** Asks the backend for its devices (New run's picker). */
  async loadDevices(): Promise<void> {
    try {
      this.devices = await this.#client().call('listDevices', {});
      this.devicesError = null;
      // A device picked earlier that is gone: back to auto.
      if (!this.deviceChoices.some((c) => c.value === this.device)) this.device = 'auto';
    } catch (e) {
      this.devicesError = describeError(e);
    }
  }

  /** The device and GEMM precision a run and its plan ask for (auto and fp32 are the defaults, left out). */
  deviceOptions(): Pick<RunOptionsInput, 'device' | 'gemm'> {
    return { ...(this.device !== 'auto' ? { device: this.device } : {}), ...(this.gemm !== 'fp32' && this.device !== 'cpu' ? { gemm: this.gemm } : {}) };
  }

  setTask(task: TaskKind, demo = false): void {
    this.task = task;
    this.hyper = { ...(demo ? DEMO_DEFAULTS : TASK_DEFAULTS[task]) };
    if (isAdapterSet(this.trainable)) this.setTrainable(this.trainable);
    if (this.estimator !== 'mezo') this.setEstimator(this.estimator);
  }

  /** Another trainable set, with its learning rate and ε (MeZO-LoRA's 1e-4 and 1e-2 for the adapter sets). */
  setTrainable(t: TrainableSet): void {
    this.trainable = t;
    const d = TRAIN_DEFAULTS[t];
    this.hyper = { ...this.hyper, lr: d.lr, eps: d.eps };
    if (!freezesBase(t)) this.merge = false;
  }

  /** Another estimator, with its noise and probes (FZOO: 4 Rademacher probes). */
  setEstimator(e: Estimator): void {
    this.estimator = e;
    const d = ESTIMATOR_DEFAULTS[e];
    this.hyper = { ...this.hyper, noise: d.noise, q: d.q };
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

  /**
   * A dataset chosen on the Datasets screen: its file, task, label words or chat mapping, with held-out
   * evaluation (the previous eval file belonged to other data). The model is kept, or the demo model
   * when none is chosen.
   */
  useDataset(train: string, task: TaskKind, labelWords: string, chat: ChatFields, demoModel: string | null): void {
    this.train = train.trim();
    this.eval = '';
    this.labelWords = labelWords;
    this.labelMap = '';
    this.chat = { ...chat };
    if (this.task !== task) this.setTask(task);
    if (!this.model && demoModel) this.model = demoModel;
  }

  options(): RunOptionsInput {
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
      q: h.q,
      noise: h.noise,
      schedule: h.schedule,
      warmupSteps: h.warmupSteps,
      seed: h.seed,
      evalEvery: h.evalEvery,
      maxLength: h.maxLength,
      ...this.method(),
      ...(this.checkpointEvery !== null ? { checkpointEvery: this.checkpointEvery } : {}),
      ...(this.out.trim() ? { out: this.out.trim() } : {}),
      ...this.deviceOptions(),
      ...(this.ranks > 1 ? { ranks: this.ranks, parallel: this.parallel, ...(this.parallel === '2d' ? { groups: this.groups } : {}) } : {}),
      ...this.placement(),
    };
  }

  /** The trainable set and the estimator, with the options of the set chosen only. */
  method(): Pick<RunOptionsInput, 'trainable' | 'estimator' | 'rank' | 'loraAlpha' | 'targets' | 'sparseFraction' | 'merge'> {
    const t = this.trainable;
    return {
      trainable: t,
      estimator: this.estimator,
      ...(isAdapterSet(t) ? { rank: this.rank, targets: this.targetsParsed.targets } : {}),
      ...(freezesBase(t) && this.merge ? { merge: true } : {}),
      ...(t === 'lora' ? { loraAlpha: this.loraAlpha } : {}),
      ...(t === 'sparse' ? { sparseFraction: this.sparseFraction } : {}),
    };
  }

  /**
   * The budgets, spill folders, masters and update mode the plan was made with: a run follows the plan it
   * showed (placed by the planner, offload 'auto', when a budget is set; resident otherwise).
   */
  placement(): Pick<RunOptionsInput, 'offload' | 'gpuMem' | 'cpuMem' | 'ssdMem' | 'spillDirs' | 'masters' | 'updateOn'> {
    const b = this.budgets();
    const dirs = this.spillFolders;
    const spill = dirs.length ? { spillDirs: dirs } : {};
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
      ...(dirs.length ? { spillDirs: dirs } : {}),
      masters,
      updateOn: this.updateOn,
      ...this.deviceOptions(),
      ...this.planTrainable(),
      batchSize: this.hyper.batchSize,
      maxLength: this.hyper.maxLength,
      // The training data and task: the step is then predicted for the data's mean length, as the run's own plan is.
      ...(this.train.trim() && this.templateComplete ? { train: this.train.trim(), task: this.template } : {}),
    };
  }

  /** What trains, for the plan (trainable and frozen bytes apart; a frozen base writes nothing back): targets only once they parse. */
  planTrainable(): Pick<MethodParamsInput<'plan'>, 'trainable' | 'rank' | 'targets' | 'sparseFraction'> {
    const { trainable, rank, targets, sparseFraction } = this.method();
    return { trainable, ...(rank !== undefined ? { rank } : {}), ...(targets?.length ? { targets } : {}), ...(sparseFraction !== undefined ? { sparseFraction } : {}) };
  }

  /** Whether the task template is one the backend accepts (classification needs two label words or more). */
  get templateComplete(): boolean {
    if (this.task === 'chat') return parseRoleMap(this.chat.roleMap).error === null;
    return this.task !== 'classify' || (this.labelWordList.length >= 2 && this.labelMapParsed.error === null);
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
