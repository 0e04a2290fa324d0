// The telemetry sampler: reads the machine every intervalMs while a run is active and hands
// each sample to its listeners. Rates and fractions need two readings, so start() takes a
// baseline and the first sample comes one interval later. Nothing here throws into the
// caller: a reading that fails becomes a null part with its reason in `reasons`.
//
// Cost: the /proc part is synchronous (a handful of reads of small in-memory files); the
// GPU part runs on a native worker thread (NVML's PCIe counters block ~20 ms each).
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { nvmlGpuSource } from './gpu.js';
import type { GpuSource } from './gpu.js';
import {
  cpuUsage,
  diskRates,
  readDiskstats,
  readMeminfo,
  readProcessRss,
  readProcStat,
  resolveBlockDevice,
} from './procfs.js';
import type { BlockDevice, DiskCounters, MemInfo, ProcStat } from './procfs.js';
import type { EngineCounters, GpuSample, StepTimes, TelemetrySample } from './types.js';

export interface SamplerOptions {
  /** Default 1000. */
  intervalMs?: number;
  /** The run's spill folder: its block device is the one whose traffic is reported. */
  spillDir?: string;
  /** The engine host process, for its resident memory. */
  enginePid?: number;
}

export interface SamplerDeps {
  /** GPU reader; NVML through the native addon by default. */
  gpu?: GpuSource;
}

export type SampleListener = (sample: TelemetrySample) => void;

export interface SamplerStats {
  samples: number;
  /** Synchronous (JavaScript thread) time per sample: /proc reads, deltas, assembly. */
  meanCostMs: number;
  maxCostMs: number;
}

type Reasons = NonNullable<TelemetrySample['reasons']>;

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** CPU times from os.cpus(), where /proc/stat cannot be read (not Linux). */
function osProcStat(): ProcStat {
  const perCore = os.cpus().map((c) => {
    const t = c.times;
    const total = t.user + t.nice + t.sys + t.idle + t.irq;
    return { busy: total - t.idle, total };
  });
  const sum = perCore.reduce((a, c) => ({ busy: a.busy + c.busy, total: a.total + c.total }), { busy: 0, total: 0 });
  return { total: sum, perCore };
}

function osMeminfo(): MemInfo {
  const total = os.totalmem();
  const available = os.freemem();
  return { totalBytes: total, availableBytes: available, usedBytes: total - available };
}

/** Step event → what recordStep takes: the full phase times when the event carries them, else stepMs. */
export function stepTimesFromEvent(ev: {
  step: number;
  stepMs?: number;
  times?: object;
}): StepTimes {
  const phaseMs: Record<string, number> = {};
  if (ev.times) {
    for (const [k, v] of Object.entries(ev.times)) if (typeof v === 'number' && Number.isFinite(v)) phaseMs[k] = v;
  } else if (typeof ev.stepMs === 'number' && Number.isFinite(ev.stepMs)) {
    phaseMs.totalMs = ev.stepMs;
  }
  return { step: ev.step, phaseMs };
}

export class Sampler {
  private readonly gpuSource: GpuSource;
  private readonly listeners = new Set<SampleListener>();
  private timer: NodeJS.Timeout | null = null;
  private intervalMs = 1000;
  private spillDir: string | undefined;
  private enginePid: number | undefined;
  private busyTick = false;
  private generation = 0;

  private prevAt = 0; // performance.now() of the previous reading
  private prevStat: ProcStat | null = null;
  private procStatOk = true;
  private disk: BlockDevice | null = null;
  private diskReason: string | undefined;
  private prevDisk: DiskCounters | null = null;
  private lastGpu: GpuSample = { state: 'absent', reason: 'not sampled yet', devices: [] };
  private gpuInFlight: Promise<GpuSample> | null = null;
  private pendingEngine: EngineCounters | null = null;

  private costTotalMs = 0;
  private costMaxMs = 0;
  private count = 0;

  constructor(deps: SamplerDeps = {}) {
    this.gpuSource = deps.gpu ?? nvmlGpuSource();
  }

  get running(): boolean {
    return this.timer !== null;
  }

  get stats(): SamplerStats {
    return {
      samples: this.count,
      meanCostMs: this.count ? this.costTotalMs / this.count : 0,
      maxCostMs: this.costMaxMs,
    };
  }

  /** Adds a listener; returns the function that removes it. A listener that throws is ignored. */
  onSample(listener: SampleListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Starts (or restarts with new options). The first sample comes after one interval. */
  start(options: SamplerOptions = {}): void {
    this.stop();
    this.generation++;
    this.intervalMs = Math.max(50, options.intervalMs ?? 1000);
    this.spillDir = options.spillDir;
    this.enginePid = options.enginePid;
    this.pendingEngine = null;
    this.disk = null;
    this.diskReason = undefined;
    this.resolveDisk();
    // Baseline readings for the deltas.
    this.prevAt = performance.now();
    this.prevStat = this.readStat().stat;
    this.prevDisk = this.readDisk().counters;
    this.kickGpu();
    const gen = this.generation;
    this.timer = setInterval(() => void this.tick(gen), this.intervalMs);
    // Telemetry alone must not keep the process alive.
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.generation++;
  }

  /** The engine process changed (a resume starts a new host); undefined: no engine now. */
  setEnginePid(pid: number | undefined): void {
    this.enginePid = pid;
  }

  /** Merges one engine step into the counters of the next sample. */
  recordStep(step: StepTimes): void {
    const e = (this.pendingEngine ??= { steps: 0, lastStep: step.step, phaseMs: {} });
    e.steps++;
    e.lastStep = step.step;
    for (const [k, v] of Object.entries(step.phaseMs)) {
      if (Number.isFinite(v)) e.phaseMs[k] = (e.phaseMs[k] ?? 0) + v;
    }
  }

  /** Reads one sample now, against the previous reading (for tests and on-demand use). */
  async sampleNow(): Promise<TelemetrySample> {
    return this.read();
  }

  // ------------------------------------------------------------ internals

  private resolveDisk(): void {
    if (!this.spillDir) {
      this.diskReason = 'no spill folder';
      return;
    }
    const r = resolveBlockDevice(this.spillDir);
    if (r.ok) {
      this.disk = r.device;
      this.diskReason = undefined;
    } else this.diskReason = r.reason;
  }

  private readStat(): { stat: ProcStat | null; reason?: string } {
    try {
      if (this.procStatOk) return { stat: readProcStat() };
    } catch {
      this.procStatOk = false;
    }
    try {
      return { stat: osProcStat() };
    } catch (e) {
      return { stat: null, reason: message(e) };
    }
  }

  private readDisk(): { counters: DiskCounters | null; reason?: string } {
    if (!this.disk) return { counters: null, reason: this.diskReason };
    try {
      const c = readDiskstats().get(this.disk.device);
      if (!c) return { counters: null, reason: `${this.disk.device} is not in /proc/diskstats` };
      return { counters: c };
    } catch (e) {
      return { counters: null, reason: `cannot read /proc/diskstats: ${message(e)}` };
    }
  }

  /** Starts a GPU reading unless one is still in flight; the result lands in lastGpu. */
  private kickGpu(): Promise<GpuSample> {
    if (this.gpuInFlight) return this.gpuInFlight;
    const p = this.gpuSource()
      .catch((e: unknown): GpuSample => ({ state: 'unavailable', reason: message(e), devices: [] }))
      .then((g) => {
        this.lastGpu = g;
        this.gpuInFlight = null;
        return g;
      });
    this.gpuInFlight = p;
    return p;
  }

  private async tick(gen: number): Promise<void> {
    if (this.busyTick) return; // a slow GPU reading: skip rather than pile up
    this.busyTick = true;
    try {
      const s = await this.read();
      if (gen !== this.generation) return; // stopped meanwhile
      for (const l of this.listeners) {
        try {
          l(s);
        } catch {
          // a listener's failure is its own; sampling goes on
        }
      }
    } catch {
      // read() does not throw; this is belt and braces for the timer
    } finally {
      this.busyTick = false;
    }
  }

  private async read(): Promise<TelemetrySample> {
    const t0 = performance.now();
    const gpuPending = this.kickGpu();
    const reasons: Reasons = {};
    const t = Date.now();
    const elapsed = t0 - this.prevAt;
    this.prevAt = t0;

    // CPU
    const { stat, reason: statReason } = this.readStat();
    let cpu: TelemetrySample['cpu'] = null;
    if (stat && this.prevStat) cpu = cpuUsage(this.prevStat, stat);
    else reasons.cpu = statReason ?? 'no previous CPU reading';
    if (stat) this.prevStat = stat;

    // Memory
    let memory: TelemetrySample['memory'] = null;
    try {
      let mem: MemInfo;
      try {
        mem = readMeminfo();
      } catch {
        mem = osMeminfo();
      }
      memory = { ...mem, engineRssBytes: null };
      if (this.enginePid === undefined) reasons.engineRss = 'no engine process';
      else {
        try {
          memory.engineRssBytes =
            this.enginePid === process.pid ? process.memoryUsage.rss() : readProcessRss(this.enginePid);
          if (memory.engineRssBytes === null) reasons.engineRss = `process ${this.enginePid} has no resident set`;
        } catch {
          reasons.engineRss = `engine process ${this.enginePid} is gone`;
        }
      }
    } catch (e) {
      reasons.memory = message(e);
    }

    // Disk: a spill folder created after start() is resolved on a later tick.
    if (!this.disk && this.spillDir && this.diskReason?.startsWith('cannot stat')) this.resolveDisk();
    const { counters, reason: diskReason } = this.readDisk();
    let disk: TelemetrySample['disk'] = null;
    if (counters && this.prevDisk && this.disk && this.prevDisk.name === counters.name) {
      disk = {
        device: this.disk.device,
        partition: this.disk.partition,
        ...(this.disk.label ? { label: this.disk.label } : {}),
        ...diskRates(this.prevDisk, counters, elapsed),
      };
    } else reasons.disk = diskReason ?? 'no previous disk reading';
    this.prevDisk = counters;

    const engine = this.pendingEngine;
    this.pendingEngine = null;
    this.recordCost(performance.now() - t0);

    // The GPU reading started at the top of this sample (or the one still in flight); one
    // that hangs past most of an interval gives way to the last reading, so samples go on.
    const gpu = await this.within(gpuPending, this.intervalMs * 0.8);
    const sample: TelemetrySample = { t, intervalMs: elapsed, cpu, memory, disk, gpu, engine };
    if (Object.keys(reasons).length) sample.reasons = reasons;
    return sample;
  }

  private within(p: Promise<GpuSample>, ms: number): Promise<GpuSample> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(this.lastGpu), ms);
      void p.then((g) => {
        clearTimeout(timer);
        resolve(g);
      });
    });
  }

  private recordCost(ms: number): void {
    this.count++;
    this.costTotalMs += ms;
    if (ms > this.costMaxMs) this.costMaxMs = ms;
  }
}
