// The service facade behind the contract: one method per contract method
// (params already validated, result checked again on the way out), plus the
// pushed events and shutdown. Plain Node; knows nothing of Electron or of the
// transports.
//
// The catalog parts (models, datasets, preview, plan) are implemented here.
// Run operations and settings come from the run supervisor (RunOperations),
// injected; until it is wired in, `unavailableRunOperations()` answers
// UNAVAILABLE for runs and keeps settings in memory.

import { promises as fsp } from 'node:fs';
import type { Dirent } from 'node:fs';
import { homedir } from 'node:os';
import * as path from 'node:path';

import {
  pathKinds,
  SpillwayError,
  TrainOptions,
  type AnyEvent,
  type DatasetCheck,
  type DatasetEntry,
  type DatasetPreview,
  type Gemm,
  type JsonValue,
  type MethodName,
  type MethodParams,
  type MethodResult,
  type ModelSummary,
  type Notice,
  type PathMeta,
  type PickRequest,
  type RunMethodName,
  type RunOptions,
  type Settings,
} from '../common/contract.js';
import {
  chatRenderer,
  ChatTemplateError,
  DatasetError,
  detectFormat,
  loadTokenizer,
  previewChatRow,
  previewDataset,
  readDataset,
  renderExample,
  tokenizeExample,
  TokenizerError,
  validateTemplate,
} from '../data/index.js';
import type { ChatRenderer, SpillwayTokenizer, TaskTemplate } from '../data/index.js';
import { inspectModel, isModelError, loadModelInfo, scanModelRoots } from '../model/index.js';
import type { ModelInfo } from '../model/index.js';
import { packageRoot } from '../engine/native.js';
import { planFor, toPlanResult } from '../engine/plan-result.js';
import { deviceListing, effectiveGemm, nativeDeviceSource, resolveDevice } from '../engine/device.js';
import type { DeviceSource, ResolvedDevice } from '../engine/device.js';
import { datasetMeanTokens, trainingMaxLength } from '../engine/example-tokens.js';
import { filled } from '../common/options.js';
import { FileAccess, type AccessOptions, type RootKind } from './access.js';
import { listFolder } from './folders.js';
import { GenerationService } from './generation.js';

export interface CallContext {
  /** Aborted when the caller cancels or disconnects. */
  signal: AbortSignal;
}

/** One async function per contract method, typed from the contract. */
export type ServiceMethods = {
  [M in MethodName]: (params: MethodParams<M>, ctx: CallContext) => Promise<MethodResult<M>>;
};

export type EventListener = (e: AnyEvent) => void;

export interface EventSource {
  /** Returns the unsubscribe function. */
  onEvent(listener: EventListener): () => void;
}

export interface SpillwayServices extends ServiceMethods, EventSource {
  /** Stops every run with a checkpoint and releases resources; called when the app quits. */
  shutdown(): Promise<void>;
}

/**
 * What the run supervisor provides. Conventions:
 * - throw SpillwayError('NOT_FOUND') for an unknown run id, 'CONFLICT' for a
 *   state that forbids the operation (resume a running run, delete a running
 *   run); any other error crosses as INTERNAL with its message;
 * - push runStatus / stepMetrics / evalMetrics / log events through onEvent,
 *   stepMetrics in step order; getMetrics must return every step the events
 *   carried (that is how a reconnecting UI catches up);
 * - shutdown: stop every running run with a checkpoint, then resolve.
 */
export type RunOperations = Pick<ServiceMethods, RunMethodName> & EventSource & { shutdown(): Promise<void> };

export interface ServicesOptions {
  runs?: RunOperations;
  /** More event sources, e.g. the telemetry sampler. */
  eventSources?: EventSource[];
  /** The Hugging Face hub cache; default hfHubCacheDir(). */
  hfCacheDir?: string;
  /** Folders always listed first (default: the embedded demo's resources/models and resources/datasets). */
  builtInRoots?: { models: string[]; datasets: string[] };
  /** Folders the calls may use besides the demo, the data folder and the settings' (`spillway serve --allow`). */
  access?: Pick<AccessOptions, 'allow' | 'perKind'>;
  /** The desktop app's native dialogs; without it pickPath answers UNAVAILABLE (a browser uses listFolder). */
  picker?: (request: PickRequest) => Promise<string | null>;
  /** What the backend had to say when it opened its data folder (a damaged database moved aside…). */
  notices?: () => Notice[];
  /** Where the CUDA devices come from (default: the native addon, asked on each call). */
  devices?: DeviceSource;
  /** Extra environment of the generator processes (tests). */
  engineEnv?: NodeJS.ProcessEnv;
}

/** resources/models and resources/datasets of this installation. */
export function bundledRoots(): { models: string[]; datasets: string[] } {
  const res = path.join(packageRoot(), 'resources');
  return { models: [path.join(res, 'models')], datasets: [path.join(res, 'datasets')] };
}

export function defaultSettings(): Settings {
  return {
    modelRoots: [],
    datasetRoots: [],
    includeHfCache: true,
    spillDir: null,
    runsDir: null,
    budgets: { gpu: null, cpu: null, ssd: null },
    threads: 0,
    samplingIntervalMs: 1000,
    dataDir: null,
  };
}

/** Run operations for a backend without the supervisor: runs answer UNAVAILABLE, settings live in memory. */
export function unavailableRunOperations(initial: Settings = defaultSettings()): RunOperations {
  let settings = structuredClone(initial);
  const unavailable = async (): Promise<never> => {
    throw new SpillwayError('UNAVAILABLE', 'runs are not available in this build: the run supervisor is not wired in');
  };
  return {
    startRun: unavailable,
    stopRun: unavailable,
    resumeRun: unavailable,
    checkpointRun: unavailable,
    listRuns: async () => ({ runs: [], total: 0 }),
    getRun: unavailable,
    getMetrics: unavailable,
    getTelemetry: unavailable,
    deleteRun: unavailable,
    exportRun: unavailable,
    getSettings: async () => structuredClone(settings),
    updateSettings: async (patch) => {
      const { dataDir: _readOnly, ...writable } = patch as Partial<Settings>;
      settings = { ...settings, ...writable };
      return structuredClone(settings);
    },
    onEvent: () => () => {},
    shutdown: async () => {},
  };
}

/** Where huggingface_hub keeps its cache: $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. */
export function hfHubCacheDir(env: NodeJS.ProcessEnv = process.env, home = homedir()): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return path.join(env.HF_HOME, 'hub');
  if (env.XDG_CACHE_HOME) return path.join(env.XDG_CACHE_HOME, 'huggingface', 'hub');
  return path.join(home, '.cache', 'huggingface', 'hub');
}

export function createServices(options: ServicesOptions = {}): SpillwayServices {
  const runs = options.runs ?? unavailableRunOperations();
  const meanTokens = meanTokensCache();
  const sources: EventSource[] = [runs, ...(options.eventSources ?? [])];
  const hfCache = options.hfCacheDir ?? hfHubCacheDir();
  // The embedded demo is always listed, so a first launch can preselect it.
  const builtIn = options.builtInRoots ?? bundledRoots();
  const access = new FileAccess({ ...options.access, builtIn, hfCache }, () => runs.getSettings({}, { signal: new AbortController().signal }));
  const allowed = (kind: RootKind, p: string, what: string) => access.check(kind, p, what);
  const devices = options.devices ?? nativeDeviceSource;
  const generation = new GenerationService({
    checkModel: (p) => allowed('models', p, 'the model folder'),
    getRun: (runId, ctx) => runs.getRun({ runId }, ctx),
    threads: async () => (await runs.getSettings({}, { signal: new AbortController().signal })).threads,
    env: options.engineEnv,
  });
  sources.push(generation);

  return {
    async startRun(p, ctx) {
      await checkRunPaths(access, filled(p.options));
      return runs.startRun(p, ctx);
    },
    stopRun: (p, ctx) => runs.stopRun(p, ctx),
    resumeRun: (p, ctx) => runs.resumeRun(p, ctx),
    checkpointRun: (p, ctx) => runs.checkpointRun(p, ctx),
    listRuns: (p, ctx) => runs.listRuns(p, ctx),
    getRun: (p, ctx) => runs.getRun(p, ctx),
    getMetrics: (p, ctx) => runs.getMetrics(p, ctx),
    getTelemetry: (p, ctx) => runs.getTelemetry(p, ctx),
    deleteRun: (p, ctx) => runs.deleteRun(p, ctx),
    async exportRun(p, ctx) {
      await allowed('export', p.dest, 'the export destination');
      return runs.exportRun(p, ctx);
    },
    getSettings: (p, ctx) => runs.getSettings(p, ctx),
    async updateSettings(p, ctx) {
      await checkSettingFolders(access, p, await runs.getSettings({}, ctx));
      return runs.updateSettings(p, ctx);
    },

    async listModels(p, ctx) {
      for (const r of p.roots ?? []) await allowed('models', r, 'the model folder');
      const roots = p.roots ?? (await listedRoots(access, 'models'));
      const { models, unsupported } = await scanModelRoots(roots);
      // A symlink inside an allowed folder may lead out of it: what lies there is not listed.
      const inside = async (dir: string) => (await access.within(dir, 'models')) !== null;
      const keep = await Promise.all([...models.map((m) => inside(m.dir)), ...unsupported.map((u) => inside(u.dir))]);
      return {
        models: models.filter((_, i) => keep[i]).map(modelSummary),
        unsupported: unsupported.filter((_, i) => keep[models.length + i]),
      };
    },

    inspectModel: (p) =>
      catalogCall(async () => {
        await allowed('models', p.path, 'the model folder');
        return inspectModel(p.path);
      }),

    async listDatasets(p, ctx) {
      for (const r of p.roots ?? []) await allowed('datasets', r, 'the dataset folder');
      const roots = p.roots ?? (await listedRoots(access, 'datasets'));
      return { datasets: await scanDatasetRoots(roots, ctx.signal) };
    },

    listFolder: (p) => listFolder(access, p),

    async pickPath(p) {
      if (!options.picker) {
        throw new SpillwayError('UNAVAILABLE', 'native dialogs exist only in the desktop app; in a browser, browse the allowed folders instead');
      }
      const picked = await options.picker(p);
      if (picked) await access.grant(p.kind, picked);
      return { path: picked };
    },

    getNotices: async () => ({ notices: options.notices?.() ?? [] }),

    listDevices: async () => deviceListing(devices),
    generate: (p, ctx) => generation.generate(p, ctx),
    stopGeneration: (p) => generation.stop(p.generationId),

    previewDataset: (p) =>
      catalogCall(async () => {
        await allowed('datasets', p.path, 'the dataset');
        let template: TaskTemplate | undefined;
        if (p.template) {
          template = p.template;
          try {
            validateTemplate(template);
          } catch (e) {
            throw new SpillwayError('BAD_REQUEST', (e as Error).message);
          }
        }
        const preview = await previewDataset(p.path, p.rows, p.format ? { format: p.format } : {});
        let chat: ChatPreviewer | null = null;
        if (template?.kind === 'chat' && p.model) {
          const tokenizer = await loadTokenizer((await loadModelInfo(p.model)).dir);
          chat = { tokenizer, renderer: chatRenderer(tokenizer, template) };
        }
        return datasetPreviewResult(preview, template, chat);
      }),

    checkDataset: (p, ctx) =>
      catalogCall(async () => {
        await allowed('datasets', p.path, 'the dataset');
        await allowed('models', p.model, 'the model folder');
        return checkDataset(p, ctx.signal);
      }),

    plan: (p, ctx) =>
      catalogCall(async () => {
        const settings = await runs.getSettings({}, ctx);
        // The folders asked for (several: striped), else the settings' spill folder.
        const spillDirs = p.spillDirs?.length ? p.spillDirs : settings.spillDir ? [settings.spillDir] : [];
        await allowed('models', p.model, 'the model folder');
        for (const d of spillDirs) await allowed('spill', d, 'the spill folder');
        if (p.train) await allowed('datasets', p.train, 'the training data');
        // With the training data named: compute for its mean tokens per example, as the run's own plan does.
        let data: { meanTokens: number; examples: number } | null = null;
        let dataNote: string | null = null;
        if (p.train && p.task) {
          try {
            data = await meanTokens(p.model, p.train, p.task, p.maxLength);
            if (data.examples === 0) data = null;
          } catch (e) {
            dataNote = `The training data could not be tokenized (${(e as Error).message}); compute is predicted for batch × max length.`;
          }
        }
        // The plan is made for the device the run would compute on (--device's resolution, said in the plan).
        let resolved: ResolvedDevice;
        let gemm: Gemm;
        try {
          resolved = resolveDevice(p.device, deviceListing(devices));
          gemm = effectiveGemm(p.gemm, resolved).gemm;
        } catch (e) {
          throw new SpillwayError('BAD_REQUEST', (e as Error).message);
        }
        const { plan, info, prefetchRequested, device } = await planFor({
          model: p.model,
          device: { resolved, gemm },
          budgets: {
            device: p.budgets.gpu ?? settings.budgets.gpu ?? undefined,
            cpu: p.budgets.cpu ?? settings.budgets.cpu ?? undefined,
            ssd: p.budgets.ssd ?? settings.budgets.ssd ?? undefined,
          },
          spillDirs,
          masters: p.masters ?? 'fp32',
          updateMode: p.updateOn,
          trainable: { set: p.trainable, rank: p.rank, targets: p.targets, fraction: p.sparseFraction },
          batchSize: p.batchSize,
          maxLength: p.maxLength,
          ...(data ? { tokensPerStep: data.meanTokens * p.batchSize } : {}),
          dataDir: settings.dataDir,
          calibrate: p.recalibrate ? 'recalibrate' : 'cached',
          // The threads a run with these options takes (its own, else the settings'; 0: all cores).
          threads: p.threads || settings.threads || undefined,
        });
        if (dataNote) plan.notes.push(dataNote);
        return {
          ...toPlanResult(plan, info.dir, prefetchRequested, device),
          dataTokens: data ? { meanPerExample: data.meanTokens, examples: data.examples, perStep: data.meanTokens * p.batchSize } : null,
        };
      }),

    onEvent(listener) {
      const offs = sources.map((s) => s.onEvent(listener));
      return () => offs.forEach((off) => off());
    },

    shutdown: async () => {
      await generation.shutdown();
      await runs.shutdown();
    },
  };
}

/** Which kind of allowed folder each path of a run's options must lie in: as the options' schema says (pathKinds). */
export const RUN_OPTION_PATHS: Record<string, PathMeta> = Object.fromEntries(
  Object.entries(TrainOptions.shape).flatMap(([field, schema]) => {
    const meta = pathKinds.get(schema);
    return meta ? [[field, meta]] : [];
  }),
);

/** The folders scanned when a listing names none: every allowed one but the data folder (its runs' checkpoints and seed logs are not a library). */
async function listedRoots(access: FileAccess, kind: RootKind): Promise<string[]> {
  return (await access.roots(kind)).filter((r) => r.source !== 'data folder').map((r) => r.path);
}

async function checkRunPaths(access: FileAccess, options: RunOptions): Promise<void> {
  for (const [field, value] of Object.entries(options)) {
    const rule = RUN_OPTION_PATHS[field];
    if (!rule) continue;
    for (const p of Array.isArray(value) ? value : [value]) if (typeof p === 'string') await access.check(rule.kind, p, rule.what);
  }
}

/**
 * Folders a settings change names: never a system folder or one holding the home folder's secrets. A model
 * folder it adds must hold a model (or folders of models), a dataset folder it adds must exist; folders
 * already in the settings are not checked for that again, so one that emptied since does not block saving the rest.
 */
async function checkSettingFolders(access: FileAccess, patch: Partial<Settings>, current: Settings): Promise<void> {
  for (const r of patch.modelRoots ?? []) {
    const resolved = await access.checkSettingFolder('Model folders', r);
    if (!current.modelRoots.includes(r)) await checkModelFolder(r, resolved);
  }
  for (const r of patch.datasetRoots ?? []) {
    const resolved = await access.checkSettingFolder('Dataset folders', r);
    if (current.datasetRoots.includes(r)) continue;
    const st = await fsp.stat(resolved).catch(() => null);
    if (!st?.isDirectory()) throw new SpillwayError('BAD_REQUEST', `Dataset folders: ${r} ${st ? 'is not a folder' : 'does not exist'}`);
  }
  for (const [setting, p] of [['Spill folder', patch.spillDir], ['Runs folder', patch.runsDir]] as const) {
    if (!p) continue;
    const resolved = await access.checkSettingFolder(setting, p);
    const st = await fsp.stat(resolved).catch(() => null);
    if (st && !st.isDirectory()) throw new SpillwayError('BAD_REQUEST', `${setting}: ${p} is a file, not a folder`);
  }
}

/** A model folder setting must exist and hold at least one model; else the reason the folder is not one. */
async function checkModelFolder(given: string, resolved: string): Promise<void> {
  const st = await fsp.stat(resolved).catch(() => null);
  if (!st) throw new SpillwayError('BAD_REQUEST', `Model folders: ${given} does not exist`, { name: 'NotAModelFolder' });
  if (!st.isDirectory()) throw new SpillwayError('BAD_REQUEST', `Model folders: ${given} is a file; choose the folder that holds config.json and the weights`, { name: 'NotAModelFolder' });
  const { models, unsupported } = await scanModelRoots([resolved]);
  if (models.length > 0 || unsupported.length > 0) return;
  let why: string;
  try {
    await loadModelInfo(resolved);
    why = 'no model was found in it';
  } catch (e) {
    why = (e as Error).message;
  }
  throw new SpillwayError(
    'BAD_REQUEST',
    `Model folders: ${given} holds no model (${why}). A model folder has config.json, *.safetensors and a tokenizer; a folder of models holds such folders (up to 4 levels down), as does a Hugging Face cache.`,
    { name: 'NotAModelFolder' },
  );
}

/**
 * Mean tokens per training example, remembered per (dataset, task, model, max length) and the files' change
 * times, so that a plan per keystroke of the New run form tokenizes the data once. Concurrent asks share one.
 */
function meanTokensCache(limit = 32) {
  const cache = new Map<string, Promise<{ meanTokens: number; examples: number }>>();
  const mtime = async (f: string) => (await fsp.stat(f).catch(() => null))?.mtimeMs ?? null;
  return async (model: string, train: string, task: TaskTemplate, maxLength: number) => {
    const m = path.resolve(model);
    const t = path.resolve(train);
    const key = JSON.stringify([t, task, m, maxLength, await mtime(t), await mtime(path.join(m, 'tokenizer.json'))]);
    let hit = cache.get(key);
    if (!hit) {
      hit = datasetMeanTokens({ model: m, train: t, task, maxLength });
      cache.set(key, hit);
      hit.catch(() => cache.delete(key));
      while (cache.size > limit) cache.delete(cache.keys().next().value!);
    }
    return hit;
  };
}

/** Errors about the user's files (ModelError, DatasetError, TokenizerError) become BAD_REQUEST, keeping their name. */
async function catalogCall<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (isModelError(e) || e instanceof DatasetError || e instanceof TokenizerError || e instanceof ChatTemplateError) {
      throw new SpillwayError('BAD_REQUEST', e.message, { name: e.name });
    }
    throw e;
  }
}

function modelSummary(m: ModelInfo): ModelSummary {
  return {
    dir: m.dir,
    name: m.name,
    architecture: m.config.hfArchitecture,
    family: m.config.family,
    parameterCount: m.parameterCount,
    dtypes: { ...m.dtypes },
    sizeOnDisk: m.sizeOnDisk,
    layers: m.config.layers,
    hidden: m.config.hidden,
    vocabSize: m.config.vocabSize,
    tokenizer: m.tokenizer?.kind ?? null,
  };
}

// ---------------------------------------------------------------------------
// Datasets

const DATASET_EXTENSIONS = new Set(['.jsonl', '.json', '.ndjson', '.csv', '.parquet']);
const SKIP_DIRS = new Set(['node_modules', '.git', '__pycache__', '.cache']);
const MAX_DATASETS = 2000;
const DATASET_SCAN_DEPTH = 3;

export async function scanDatasetRoots(roots: string[], signal?: AbortSignal): Promise<DatasetEntry[]> {
  const found = new Map<string, DatasetEntry>();
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (signal?.aborted || found.size >= MAX_DATASETS) return;
    let entries: Dirent[];
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (depth < DATASET_SCAN_DEPTH && !SKIP_DIRS.has(e.name) && !e.name.startsWith('.')) await walk(full, depth + 1);
      } else if (e.isFile() && DATASET_EXTENSIONS.has(path.extname(e.name).toLowerCase())) {
        const st = await fsp.stat(full).catch(() => null);
        if (st && found.size < MAX_DATASETS) {
          found.set(full, { path: full, name: e.name, format: detectFormat(full), bytes: st.size, modified: st.mtimeMs });
        }
      }
    }
  };
  for (const r of roots) await walk(path.resolve(r), 0);
  return [...found.values()];
}

/** Dataset cells as JSON: bigint → number when safe, else string; Date → ISO; bytes → a description; NaN → null. */
export function toJsonValue(v: unknown, depth = 0): JsonValue {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? null : v.toISOString();
  if (ArrayBuffer.isView(v)) return `<${v.byteLength} bytes>`;
  if (depth > 32) return '<nested too deeply>';
  if (Array.isArray(v)) return v.map((x) => toJsonValue(x, depth + 1));
  if (typeof v === 'object') {
    const out: Record<string, JsonValue> = {};
    for (const [k, x] of Object.entries(v)) out[k] = toJsonValue(x, depth + 1);
    return out;
  }
  return String(v);
}

/** The most row errors a dataset check lists (it counts them all). */
export const MAX_CHECK_ERRORS = 100;

/**
 * Tokenises every row of a dataset with the model's tokenizer, as a run would, without stopping at
 * the first bad row. A problem that ends the read (a malformed CSV quote, a corrupt Parquet page) is
 * listed as the last error, with `complete: false`; one about the whole file (unreadable, unknown
 * format) or the model is thrown.
 */
export async function checkDataset(p: MethodParams<'checkDataset'>, signal?: AbortSignal): Promise<DatasetCheck> {
  try {
    validateTemplate(p.template);
  } catch (e) {
    throw new SpillwayError('BAD_REQUEST', (e as Error).message);
  }
  const info = await loadModelInfo(p.model);
  const tokenizer = await loadTokenizer(info.dir);
  const maxLength = trainingMaxLength(info, p.maxLength);
  if (!Number.isFinite(maxLength)) throw new SpillwayError('BAD_REQUEST', 'the model states no position limit: give maxLength');
  const chat = p.template.kind === 'chat' ? chatRenderer(tokenizer, p.template) : undefined;
  const errors: DatasetCheck['errors'] = [];
  let rows = 0;
  let ok = 0;
  let errorCount = 0;
  let complete = true;
  const record = (e: unknown, line: number) => {
    errorCount++;
    if (errors.length >= MAX_CHECK_ERRORS) return;
    errors.push(
      e instanceof DatasetError
        ? { line: e.line, field: e.field ?? null, message: e.detail }
        : { line, field: null, message: e instanceof Error ? e.message : String(e) },
    );
  };
  try {
    const read = readDataset(p.path, {
      ...(p.format ? { format: p.format } : {}),
      onBadRow: (e) => {
        rows++;
        record(e, e.line);
      },
    });
    for await (const row of read) {
      if (signal?.aborted) throw new SpillwayError('CANCELLED', 'checkDataset was cancelled');
      rows++;
      try {
        tokenizeExample(row, p.template, tokenizer, { file: p.path, maxLength, chat });
        ok++;
      } catch (e) {
        record(e, row.line);
      }
    }
  } catch (e) {
    if (!(e instanceof DatasetError) || e.line <= 0) throw e;
    record(e, e.line);
    complete = false;
  }
  return { path: p.path, rows, ok, errorCount, errors, complete, maxLength };
}

/** What renders chat rows in a preview: the chosen model's tokenizer and chat template. */
interface ChatPreviewer {
  tokenizer: SpillwayTokenizer;
  renderer: ChatRenderer;
}

function datasetPreviewResult(
  preview: Awaited<ReturnType<typeof previewDataset>>,
  template: TaskTemplate | undefined,
  chat: ChatPreviewer | null,
): DatasetPreview {
  return {
    path: preview.file,
    format: preview.format,
    columns: preview.columns,
    rows: preview.rows.map((r) => ({ line: r.line, values: toJsonValue(r.values) as Record<string, JsonValue> })),
    totalRows: preview.totalRows ?? null,
    rendered: template
      ? preview.rows.map((r) => {
          try {
            if (template.kind !== 'chat') return { ok: true as const, example: renderExample(r, template, preview.file) };
            if (!chat) return { ok: false as const, error: 'choose a model: chat rows are rendered with its chat template and tokenizer' };
            return { ok: true as const, example: previewChatRow(r, template, chat.tokenizer, chat.renderer, preview.file) };
          } catch (e) {
            return { ok: false as const, error: (e as Error).message };
          }
        })
      : null,
  };
}
