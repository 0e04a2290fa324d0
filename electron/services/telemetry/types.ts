// Telemetry samples: one a second while a run is active, stored with the run.
// Everything here is plain JSON (numbers, strings, null, arrays, objects): a sample
// goes through JSON.stringify / JSON.parse unchanged.

export interface CpuSample {
  /** Busy fraction of all cores together over the interval, 0..1. */
  total: number;
  /** Busy fraction per core (cpu0, cpu1, ...), 0..1. */
  perCore: number[];
}

export interface MemorySample {
  usedBytes: number;
  /** MemAvailable: what can be allocated without swapping (page cache counts as available). */
  availableBytes: number;
  totalBytes: number;
  /** Resident set of the engine process; null when no engine pid is known or it is gone. */
  engineRssBytes: number | null;
}

export interface DiskSample {
  /** Kernel name of the whole block device (the diskstats line read): 'nvme0n1', 'sda', 'dm-0'. */
  device: string;
  /** The partition holding the folder ('nvme0n1p2'), or null when the folder is on the whole device. */
  partition: string | null;
  /** Device-mapper name ('vg0-root') or similar, when the kernel has one. */
  label?: string;
  readBytesPerS: number;
  writeBytesPerS: number;
  /** Fraction of the interval the device had I/O in flight (io_ticks), 0..1. */
  busy: number;
}

export interface GpuDeviceSample {
  /** NVML index (PCI bus order; CUDA's order may differ: match by pciBusId). */
  index: number;
  name: string;
  pciBusId: string | null;
  /** Each value is null when NVML does not support it on this device. */
  utilization: number | null;
  memoryUsedBytes: number | null;
  memoryTotalBytes: number | null;
  pcieRxBytesPerS: number | null;
  pcieTxBytesPerS: number | null;
  powerW: number | null;
  temperatureC: number | null;
}

export interface GpuSample {
  /** 'absent': no NVIDIA driver/library or no GPU (a state, not an error); 'unavailable': NVML failed. */
  state: 'ok' | 'absent' | 'unavailable';
  reason?: string;
  devices: GpuDeviceSample[];
}

/** Engine counters merged from step events over the interval (null in a sample when no step ended in it). */
export interface EngineCounters {
  /** Steps that ended during the interval. */
  steps: number;
  /** The last step number seen. */
  lastStep: number;
  /** Per-phase time summed over those steps, by phase name (noiseMs, forwardMs, headMs, updateMs, totalMs...). */
  phaseMs: Record<string, number>;
}

export interface TelemetrySample {
  /** Epoch milliseconds at which the sample was read. */
  t: number;
  /** Milliseconds covered by the rates and fractions (time since the previous reading). */
  intervalMs: number;
  cpu: CpuSample | null;
  memory: MemorySample | null;
  /** Null when there is no spill folder, or it is on a filesystem without a block device (tmpfs...). */
  disk: DiskSample | null;
  gpu: GpuSample;
  engine: EngineCounters | null;
  /** Why a part is null (cpu, memory, disk, engineRss): errors become fields, never exceptions. */
  reasons?: Partial<Record<'cpu' | 'memory' | 'disk' | 'engineRss', string>>;
}

/** What the supervisor hands the sampler for each engine step (see stepTimesFromEvent). */
export interface StepTimes {
  step: number;
  phaseMs: Record<string, number>;
}
