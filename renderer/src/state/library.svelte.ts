// What the person can train with: models and datasets found on disk, and the
// backend's settings (model roots, spill folder, budgets) that decide where
// Spillway looks.

import type {
  DatasetCheck,
  DatasetEntry,
  DatasetPreview,
  InspectReport,
  ModelSummary,
  Settings,
  SettingsPatch,
  TaskTemplate,
  UnsupportedModel,
} from '../../../electron/common/contract.ts';
import { app } from './app.svelte.ts';
import type { Client } from '../../../electron/common/client.ts';
import { describeError } from '../../../electron/common/client.ts';

export const DEMO_MODEL = 'spillway-demo';
export const DEMO_TRAIN = /sentiment-demo[\\/]train\.jsonl$/;
export const DEMO_EVAL = /sentiment-demo[\\/]eval\.jsonl$/;

export class LibraryState {
  models = $state<ModelSummary[]>([]);
  unsupported = $state<UnsupportedModel[]>([]);
  datasets = $state<DatasetEntry[]>([]);
  settings = $state<Settings | null>(null);
  modelsError = $state<string | null>(null);
  datasetsError = $state<string | null>(null);
  settingsError = $state<string | null>(null);
  loadingModels = $state(false);
  loadingDatasets = $state(false);

  inspected = $state<InspectReport | null>(null);
  inspectError = $state<string | null>(null);

  preview = $state<DatasetPreview | null>(null);
  previewError = $state<string | null>(null);
  previewing = $state(false);

  check = $state<DatasetCheck | null>(null);
  checkError = $state<string | null>(null);
  checking = $state(false);

  demoModel = $derived(this.models.find((m) => m.name === DEMO_MODEL || m.dir.endsWith(`/${DEMO_MODEL}`)) ?? null);
  demoTrain = $derived(this.datasets.find((d) => DEMO_TRAIN.test(d.path)) ?? null);
  demoEval = $derived(this.datasets.find((d) => DEMO_EVAL.test(d.path)) ?? null);

  #client: () => Client;

  constructor(client: () => Client) {
    this.#client = client;
  }

  async loadAll(): Promise<void> {
    await Promise.all([this.loadSettings(), this.loadModels(), this.loadDatasets()]);
  }

  async loadSettings(): Promise<void> {
    try {
      this.settings = await this.#client().call('getSettings', {});
      this.settingsError = null;
    } catch (e) {
      this.settingsError = describeError(e);
    }
  }

  async saveSettings(patch: SettingsPatch): Promise<void> {
    this.settings = await this.#client().call('updateSettings', patch);
  }

  async loadModels(): Promise<void> {
    this.loadingModels = true;
    try {
      const r = await this.#client().call('listModels', {});
      this.models = r.models;
      this.unsupported = r.unsupported;
      this.modelsError = null;
    } catch (e) {
      this.modelsError = describeError(e);
    } finally {
      this.loadingModels = false;
    }
  }

  /** Adds a folder to the model roots (kept in settings) and rescans. */
  async addModelRoot(path: string): Promise<void> {
    const p = path.trim();
    if (!p) throw new Error('Type the path of a folder first.');
    const roots = this.settings?.modelRoots ?? [];
    if (!roots.includes(p)) await this.saveSettings({ modelRoots: [...roots, p] });
    await this.loadModels();
  }

  async removeModelRoot(path: string): Promise<void> {
    await this.saveSettings({ modelRoots: (this.settings?.modelRoots ?? []).filter((r) => r !== path) });
    await this.loadModels();
  }

  async inspect(dir: string): Promise<void> {
    this.inspectError = null;
    try {
      this.inspected = await this.#client().call('inspectModel', { path: dir });
    } catch (e) {
      this.inspected = null;
      this.inspectError = describeError(e);
    }
  }

  async loadDatasets(): Promise<void> {
    this.loadingDatasets = true;
    try {
      this.datasets = (await this.#client().call('listDatasets', {})).datasets;
      this.datasetsError = null;
    } catch (e) {
      this.datasetsError = describeError(e);
    } finally {
      this.loadingDatasets = false;
    }
  }

  /** `model`: whose chat template and tokenizer render chat rows. */
  async previewDataset(path: string, template: TaskTemplate | undefined, rows = 8, model?: string): Promise<void> {
    this.previewing = true;
    this.previewError = null;
    this.check = null;
    this.checkError = null;
    try {
      this.preview = await this.#client().call('previewDataset', { path: path.trim(), rows, template, ...(model ? { model } : {}) });
    } catch (e) {
      this.preview = null;
      this.previewError = describeError(e);
    } finally {
      this.previewing = false;
    }
  }

  /** Tokenises every row with the model's tokenizer; the result lists the first errors with their lines. */
  async checkDataset(path: string, model: string, template: TaskTemplate, maxLength?: number): Promise<void> {
    this.checking = true;
    this.checkError = null;
    try {
      this.check = await this.#client().call('checkDataset', { path: path.trim(), model, template, ...(maxLength ? { maxLength } : {}) });
    } catch (e) {
      this.check = null;
      this.checkError = describeError(e);
    } finally {
      this.checking = false;
    }
  }
}

export const library = new LibraryState(() => app.client);
