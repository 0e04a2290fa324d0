// The contract's run operations (electron/services/api.ts RunOperations) on
// top of the run supervisor and its store, and the telemetry sampler as an
// event source. Maps store rows and engine events to the contract's shapes.
import { copyFile, cp, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { RunOptions, RunPlan, samePciBus, SpillwayError } from '../../common/contract.js';
import { filled } from '../../common/options.js';
import type { AnyEvent, RunDetail, RunDevice, RunSummary, Settings, TelemetrySample as ContractSample } from '../../common/contract.js';
import type { EventListener, EventSource, RunOperations } from '../api.js';
import { defaultSettings } from '../api.js';
import type { EvalMetric as StoredEval, RunRecord, StepMetric as StoredStep } from '../store/types.js';
import { Sampler, stepTimesFromEvent } from '../telemetry/index.js';
import type { TelemetrySample } from '../telemetry/index.js';
import { metricsCsv, runDeviceOf, runStorageOf } from './commands.js';
import type { RunSupervisor } from './supervisor.js';
import type { RunEvent, StoredRunConfig } from './types.js';

const SETTINGS_KEY = 'settings';

/** The settings kept in the supervisor's store, over the defaults, with the data folder it opened. */
export function storedSettings(sup: RunSupervisor): Settings {
  const { dataDir: _stale, ...kept } = sup.store.getSetting<Partial<Settings>>(SETTINGS_KEY) ?? {};
  return { ...defaultSettings(), ...kept, dataDir: sup.dataDir };
}

function notFound(runId: string): SpillwayError {
  return new SpillwayError('NOT_FOUND', `no run with id ${runId}`);
}

/** The store's "created" (row written, engine not yet started) is the contract's "queued". */
function contractStatus(s: RunRecord['status']): RunSummary['status'] {
  return s === 'created' ? 'queued' : s;
}

function summary(r: RunRecord, lastLoss: number | null, lastAccuracy: number | null, resumable: boolean): RunSummary {
  return {
    id: r.id,
    name: r.name,
    status: contractStatus(r.status),
    model: r.model,
    dataset: r.dataset,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    endedAt: r.endedAt,
    stepsDone: r.stepsDone,
    stepsPlanned: r.stepsPlanned,
    lastLoss,
    lastAccuracy,
    error: r.error,
    resumedFrom: r.resumedFrom,
    resumable,
    storage: runStorageOf(r),
    device: runDeviceOf(r),
  };
}


const finite = (x: number | null | undefined): number | null => (typeof x === 'number' && Number.isFinite(x) ? x : null);

/** A step as the contract carries it, from a stored row (NaN is stored as NULL; its `time` is the step's `at`) or a live engine event. */
function stepToContract(runId: string, s: Omit<StoredStep, 'seed'>) {
  return {
    runId,
    step: s.step,
    at: s.time,
    loss: s.loss ?? Number.NaN,
    lossPlus: s.lossPlus ?? Number.NaN,
    lossMinus: s.lossMinus ?? Number.NaN,
    projectedGrad: s.projectedGrad ?? Number.NaN,
    lr: s.lr ?? 0,
    stepMs: s.stepMs ?? 0,
    tokensPerS: s.tokensPerS ?? 0,
    skipped: s.skipped,
    io: s.io ?? null,
  };
}

/** The plan the run's start event carried (planner.ts runPlan); null when it had none or it does not read. */
export function runPlanToContract(p: Record<string, unknown> | null | undefined): RunPlan | null {
  const r = RunPlan.safeParse(p);
  return r.success ? r.data : null;
}

function evalToContract(runId: string, e: StoredEval) {
  return {
    runId,
    step: e.step,
    at: e.time,
    loss: e.loss ?? Number.NaN,
    accuracy: e.accuracy,
    examples: e.examples,
    evalMs: e.evalMs ?? 0,
    exactMatch: e.exactMatch ?? null,
    f1: e.f1 ?? null,
  };
}

/**
 * The run's options as the UI sent them: the stored engine options minus the supervisor's own fields.
 * A value a run stored before today's bounds (threads 5000, say) reads as the option's default, so the
 * run still shows.
 */
function optionsOf(r: RunRecord): RunOptions {
  const stored = r.config as unknown as StoredRunConfig;
  let parsed = RunOptions.safeParse(stored.options);
  if (!parsed.success) {
    const bad = new Set(parsed.error.issues.map((i) => i.path[0]));
    parsed = RunOptions.safeParse(Object.fromEntries(Object.entries(stored.options).filter(([k]) => !bad.has(k))));
  }
  if (!parsed.success) throw new SpillwayError('INTERNAL', `run ${r.id} has stored options that do not read: ${parsed.error.issues[0]?.message}`);
  const { out, ...rest } = parsed.data;
  return filled({ ...rest, ...(stored.ownModelFolder || out === undefined ? {} : { out }) });
}

/** The weights file of a saved run folder: a model's, or an adapter run's peft adapter; null when neither is there. */
async function savedWeights(dir: string): Promise<string | null> {
  for (const name of ['model.safetensors', 'adapter_model.safetensors']) {
    const st = await stat(join(dir, name)).catch(() => null);
    if (st?.isFile()) return join(dir, name);
  }
  return null;
}

const unit = (x: number) => Math.min(1, Math.max(0, x));
const bytes = (x: number | null | undefined) => (typeof x === 'number' && Number.isFinite(x) ? Math.max(0, Math.round(x)) : null);

/**
 * A sample as the contract carries it, live (the telemetry event) and as kept with a run (getTelemetry):
 * one path, so what a finished run shows is what its live view showed.
 */
export function telemetryToContract(s: TelemetrySample): ContractSample {
  const gpuDevices = s.gpu.state === 'ok' ? s.gpu.devices : [];
  return {
    at: s.t,
    cpu: s.cpu ? { utilization: unit(s.cpu.total) } : null,
    memory: s.memory ? { usedBytes: Math.max(0, s.memory.usedBytes), totalBytes: Math.max(0, s.memory.totalBytes) } : null,
    disk: s.disk
      ? {
          readBytesPerS: Math.max(0, s.disk.readBytesPerS),
          writeBytesPerS: Math.max(0, s.disk.writeBytesPerS),
          ...(typeof s.disk.busy === 'number' ? { busy: unit(s.disk.busy) } : {}),
          device: s.disk.device,
        }
      : null,
    gpus: gpuDevices.map((d) => ({
      index: d.index,
      name: d.name,
      pciBusId: d.pciBusId ?? null,
      utilization: d.utilization === null ? null : unit(d.utilization),
      memoryUsedBytes: bytes(d.memoryUsedBytes),
      memoryTotalBytes: bytes(d.memoryTotalBytes),
      pcieRxBytesPerS: d.pcieRxBytesPerS === null ? null : Math.max(0, d.pcieRxBytesPerS),
      pcieTxBytesPerS: d.pcieTxBytesPerS === null ? null : Math.max(0, d.pcieTxBytesPerS),
    })),
    tiers: null,
  };
}

/** The GPU a run computes on among a sample's (by PCI bus id; the first when the run's is not known), or null. */
export function runGpu<G extends { pciBusId?: string | null }>(gpus: readonly G[], device: RunDevice | null): G | null {
  if (device && device.id === 'cpu') return null;
  const bus = device?.pciBusId;
  return (bus ? gpus.find((g) => samePciBus(g.pciBusId, bus)) : undefined) ?? gpus[0] ?? null;
}

/** n rows evenly thinned to at most `limit`, the first and the last kept. */
function thin<T>(rows: T[], limit: number): T[] {
  if (rows.length <= limit) return rows;
  if (limit === 1) return [rows[rows.length - 1]];
  return Array.from({ length: limit }, (_, i) => rows[Math.round((i * (rows.length - 1)) / (limit - 1))]);
}

/** Writes `dest` through a temporary file beside it, so a failed export leaves the old file whole. */
async function replaceFile(dest: string, write: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = join(dirname(dest), `.${basename(dest)}.spillway-${process.pid}.tmp`);
  try {
    await write(tmp);
    await rename(tmp, dest);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** Replacing a model export: only an empty folder or one that holds a model (config.json) is removed first. */
async function clearModelFolder(dest: string, isFolder: boolean): Promise<void> {
  if (!isFolder) throw new SpillwayError('BAD_REQUEST', `${dest} is a file; a model is exported to a folder`);
  const names = await readdir(dest);
  if (names.length && !names.includes('config.json')) {
    throw new SpillwayError('CONFLICT', `${dest} holds other files (${names.slice(0, 3).join(', ')}${names.length > 3 ? ', …' : ''}); choose an empty folder or a new name`, {
      name: 'DestinationExists',
    });
  }
  await rm(dest, { recursive: true, force: true });
}

/** The run supervisor as the contract's RunOperations. */
export function supervisorOperations(sup: RunSupervisor): RunOperations {
  const store = sup.store;
  const last = (runId: string) => {
    const lastStepRow = sup.getMetrics(runId, store.lastStep(runId) - 1).steps.at(-1);
    const lastEval = store.lastEval(runId);
    return { loss: finite(lastStepRow?.loss), accuracy: finite(lastEval?.accuracy) };
  };
  const sum = async (r: RunRecord) => {
    const l = last(r.id);
    return summary(r, l.loss, l.accuracy, await sup.resumable(r.id));
  };
  const get = (runId: string): RunRecord => {
    const r = sup.getRun(runId);
    if (!r) throw notFound(runId);
    return r;
  };
  const settings = (): Settings => storedSettings(sup);

  return {
    async startRun({ name, options }) {
      // A run that does not say takes the settings' threads.
      const threads = options.threads || settings().threads;
      try {
        const r = await sup.start({ name, options: { ...options, threads } });
        return sum(r);
      } catch (e) {
        throw new SpillwayError('BAD_REQUEST', (e as Error).message);
      }
    },
    async stopRun({ runId, checkpoint }) {
      get(runId);
      if (!sup.isActive(runId)) throw new SpillwayError('CONFLICT', `run ${runId} is not running`);
      const r = checkpoint ? await sup.stop(runId) : await sup.kill(runId);
      return sum(r);
    },
    async resumeRun({ runId, device }) {
      const r = get(runId);
      if (sup.isActive(runId) || r.status === 'running') throw new SpillwayError('CONFLICT', `run ${runId} is already running`);
      try {
        return sum(await sup.resume(runId, { device }));
      } catch (e) {
        throw new SpillwayError('CONFLICT', (e as Error).message);
      }
    },
    async checkpointRun({ runId }) {
      get(runId);
      if (!sup.isActive(runId)) throw new SpillwayError('CONFLICT', `run ${runId} is not running`);
      sup.checkpointNow(runId);
      return { requested: true as const };
    },
    async listRuns({ status, search, sort, order, limit, offset }) {
      let runs = await Promise.all(sup.listRuns().map(sum));
      if (status?.length) runs = runs.filter((r) => status.includes(r.status));
      if (search) {
        const q = search.toLowerCase();
        runs = runs.filter((r) => [r.name, r.model, r.dataset].some((s) => s.toLowerCase().includes(q)));
      }
      const key = (r: RunSummary): number | string => (sort === 'lastLoss' ? (r.lastLoss ?? Infinity) : (r[sort] as number | string));
      runs.sort((a, b) => {
        const x = key(a);
        const y = key(b);
        const c = x < y ? -1 : x > y ? 1 : 0;
        return order === 'asc' ? c : -c;
      });
      return { runs: runs.slice(offset, offset + limit), total: runs.length };
    },
    async getRun({ runId }): Promise<RunDetail> {
      const r = get(runId);
      const stored = r.config as unknown as StoredRunConfig;
      return {
        ...(await sum(r)),
        options: optionsOf(r),
        checkpoints: store.checkpoints(runId).map((c) => ({ step: c.step, path: c.path, bytes: c.bytes, createdAt: c.createdAt })),
        evals: sup.getMetrics(runId, -1).evals.map((e) => evalToContract(runId, e)),
        outDir: stored.options.out ?? null,
        plan: runPlanToContract(r.plan),
      };
    },
    async getTelemetry({ runId, limit }) {
      get(runId);
      const rows = sup.systemSamples(runId).filter((r) => typeof (r.payload as TelemetrySample | null)?.t === 'number');
      const kept = thin(rows, limit);
      return { runId, samples: kept.map((r) => telemetryToContract(r.payload as TelemetrySample)), thinned: kept.length < rows.length };
    },
    async getMetrics({ runId, sinceStep, limit }) {
      get(runId);
      const m = sup.getMetrics(runId, sinceStep);
      const steps = m.steps.slice(0, limit).map((s) => stepToContract(runId, s));
      const lastReturned = steps.length ? steps[steps.length - 1].step : sinceStep;
      const evals = m.evals.filter((e) => e.step <= lastReturned || steps.length === m.steps.length).map((e) => evalToContract(runId, e));
      return { runId, steps, evals, latestStep: store.lastStep(runId) > 0 ? store.lastStep(runId) : -1 };
    },
    async deleteRun({ runId }) {
      get(runId);
      try {
        await sup.deleteRun(runId);
      } catch (e) {
        throw new SpillwayError('CONFLICT', (e as Error).message);
      }
      return { deleted: true as const };
    },
    async exportRun({ runId, kind, dest, overwrite }) {
      const r = get(runId);
      const stored = r.config as unknown as StoredRunConfig;
      const existing = await stat(dest).catch(() => null);
      if (existing && !overwrite) {
        throw new SpillwayError('CONFLICT', `${dest} already exists; export again with overwrite to replace it`, { name: 'DestinationExists' });
      }
      if (kind === 'metrics-csv') {
        if (existing?.isDirectory()) throw new SpillwayError('BAD_REQUEST', `${dest} is a folder; give a file name for the CSV`);
        const m = sup.getMetrics(runId, -1);
        await replaceFile(dest, (tmp) => writeFile(tmp, metricsCsv(m.steps, m.evals)));
      } else {
        const model = stored.options.out;
        if (!model) throw new SpillwayError('NOT_FOUND', `run ${runId} saved no model`);
        const weights = await savedWeights(model);
        if (!weights) throw new SpillwayError('NOT_FOUND', `run ${runId} has no saved model yet (${model})`);
        if (kind === 'seed-log') {
          if (existing?.isDirectory()) throw new SpillwayError('BAD_REQUEST', `${dest} is a folder; give a file name for the seed log`);
          await replaceFile(dest, (tmp) => copyFile(join(model, 'seedlog.jsonl'), tmp));
        } else {
          if (existing) await clearModelFolder(dest, existing.isDirectory());
          await cp(model, dest, { recursive: true, errorOnExist: true, force: false });
        }
      }
      const st = await stat(dest);
      const copied = st.isDirectory() ? await savedWeights(dest) : null;
      return { path: dest, bytes: copied ? (await stat(copied)).size : st.size };
    },
    async getSettings() {
      return settings();
    },
    async updateSettings(patch) {
      // dataDir is read-only: chosen when the backend starts (--data-dir, $SPILLWAY_DATA_DIR).
      const { dataDir: _readOnly, ...writable } = patch as Partial<Settings>;
      const { dataDir: _current, ...next } = { ...settings(), ...writable };
      store.setSetting(SETTINGS_KEY, next);
      return settings();
    },
    onEvent(listener: EventListener) {
      return sup.subscribe('*', (e: RunEvent) => {
        const at = Date.now();
        switch (e.type) {
          // Live events take the same shape as the rows getMetrics returns.
          case 'step':
            // A run over several ranks: each rank's share of the step goes live with it (the store keeps the run's figures).
            listener({ event: 'stepMetrics', payload: { ...stepToContract(e.runId, { ...e, time: e.at, io: e.io ?? null }), ...(e.ranks ? { ranks: e.ranks } : {}) } });
            break;
          case 'eval':
            listener({ event: 'evalMetrics', payload: evalToContract(e.runId, { ...e, time: e.at }) });
            break;
          case 'status': {
            const r = sup.getRun(e.runId);
            listener({ event: 'runStatus', payload: { runId: e.runId, status: contractStatus(e.status), stepsDone: r?.stepsDone ?? 0, error: e.error, at } });
            break;
          }
          case 'log':
            listener({ event: 'log', payload: { runId: e.runId, level: 'info', message: e.message, at } });
            break;
          case 'checkpoint':
            listener({ event: 'log', payload: { runId: e.runId, level: 'info', message: `checkpoint at step ${e.step}: ${e.path}`, at } });
            break;
          default:
            break;
        }
      });
    },
    async shutdown() {
      await sup.close();
    },
  };
}

/** The telemetry sampler as an event source: samples while anything runs, every samplingIntervalMs (read from the settings when sampling starts). */
export function telemetrySource(sup: RunSupervisor, sampler = new Sampler()): EventSource & { stop(): void } {
  let running = false;
  const listeners = new Set<EventListener>();
  sampler.onSample((s) => {
    const e: AnyEvent = { event: 'telemetry', payload: telemetryToContract(s) };
    for (const l of listeners) l(e);
    for (const r of sup.listRuns()) {
      if (!sup.isActive(r.id)) continue;
      // The run's own GPU (by bus id: NVML's order is not CUDA's), none for a CPU run.
      const gpu = s.gpu.state === 'ok' ? runGpu(s.gpu.devices, runDeviceOf(r)) : null;
      sup.recordSystemSample({
        runId: r.id,
        time: s.t,
        cpuPercent: s.cpu ? s.cpu.total * 100 : null,
        ramUsedBytes: s.memory?.usedBytes ?? null,
        gpuPercent: gpu?.utilization != null ? gpu.utilization * 100 : null,
        gpuMemUsedBytes: gpu?.memoryUsedBytes ?? null,
        payload: s,
      });
    }
  });
  const unsubscribe = sup.subscribe('*', (e) => {
    if (e.type === 'step') sampler.recordStep(stepTimesFromEvent(e));
    const active = sup.listRuns().some((r) => sup.isActive(r.id));
    if (active && !running) {
      running = true;
      // The drive whose throughput and busy time are shown: the run's first spill folder, else the data folder's.
      const spill = (sup.getRun(e.runId)?.config as unknown as StoredRunConfig | undefined)?.options?.spillDirs?.[0];
      sampler.start({ intervalMs: storedSettings(sup).samplingIntervalMs, spillDir: spill ?? sup.dataDir, enginePid: sup.enginePid(e.runId) });
    } else if (!active && running) {
      running = false;
      sampler.stop();
    } else if (active && e.type === 'start') {
      sampler.setEnginePid(sup.enginePid(e.runId));
    }
  });
  return {
    onEvent(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    stop() {
      unsubscribe();
      if (running) sampler.stop();
    },
  };
}
