// The compute device of a run, a score or a plan. The CUDA devices are the addon's
// cudaDevices(): the CUDA runtime's own list, so CUDA_VISIBLE_DEVICES (which devices, and in
// what order when it names several) and CUDA_DEVICE_ORDER (FASTEST_FIRST, CUDA's default, or
// PCI_BUS_ID) apply exactly as in the engine process that computes: `cuda:N` is the runtime's
// index N. NVML, which telemetry reads, ignores both variables and numbers every GPU of the
// machine in PCI bus order (nvidia-smi's order), so a run's GPU is found among NVML's by its PCI
// bus id (samePciBus), never by index.
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';

import type { CudaDevice, DeviceList, RunDevice } from '../common/contract.js';
import type { Device, Gemm } from '../common/options.js';
import { formatBytes } from './safe-write.js';
import { loadNative } from './native.js';

/** What the addon's cudaDevices() answers (pciBusId since this round; older addons lack it). */
export interface NativeCudaReport {
  compiled: boolean;
  state: string;
  detail?: string;
  driverVersion?: number;
  runtimeVersion?: number;
  devices?: {
    index: number;
    name: string;
    totalBytes: number;
    freeBytes: number | null;
    computeCapability: string;
    multiprocessors: number;
    pciBusId?: string | null;
  }[];
}

/** Where the CUDA devices come from: the addon, or (tests, demos of a GPU machine's picker) a recorded report. */
export type DeviceSource = () => NativeCudaReport;

export const nativeDeviceSource: DeviceSource = () => loadNative().cudaDevices() as unknown as NativeCudaReport;

/**
 * A recorded cudaDevices() report (a JSON file) as the device source: what a GPU machine answered,
 * so the device picker can be shown and tested on a machine without one. Only the listing reads
 * it: runs resolve their device against the engine's own report.
 */
export function recordedDeviceSource(file: string): DeviceSource {
  return () => {
    const r = JSON.parse(readFileSync(file, 'utf8')) as NativeCudaReport;
    if (typeof r?.compiled !== 'boolean' || typeof r.state !== 'string') throw new Error(`${file} is not a recorded cudaDevices() report (compiled, state, devices)`);
    return r;
  };
}

/** $SPILLWAY_DEVICE_LIST names a recorded report for the backend's device listing; unset: the addon. */
export function deviceSourceFromEnv(env: NodeJS.ProcessEnv = process.env): DeviceSource | undefined {
  return env.SPILLWAY_DEVICE_LIST ? recordedDeviceSource(env.SPILLWAY_DEVICE_LIST) : undefined;
}

/** The devices as the contract lists them, with what `auto` takes on this machine and why. */
export function deviceListing(source: DeviceSource = nativeDeviceSource, env: NodeJS.ProcessEnv = process.env): DeviceList {
  let r: NativeCudaReport;
  try {
    r = source();
  } catch (e) {
    r = { compiled: false, state: 'unavailable', detail: (e as Error).message };
  }
  const devices: CudaDevice[] = (r.devices ?? []).map((d) => ({
    index: d.index,
    id: `cuda:${d.index}`,
    name: d.name,
    totalBytes: Math.max(0, Math.round(d.totalBytes)),
    freeBytes: d.freeBytes === null || d.freeBytes === undefined ? null : Math.max(0, Math.round(d.freeBytes)),
    computeCapability: d.computeCapability,
    multiprocessors: d.multiprocessors,
    pciBusId: d.pciBusId ?? null,
  }));
  const list: DeviceList = {
    cudaCompiled: r.compiled,
    cudaState: r.state,
    cudaDetail: r.detail ?? '',
    driverVersion: r.driverVersion ?? 0,
    runtimeVersion: r.runtimeVersion ?? 0,
    devices: r.state === 'ok' ? devices : [],
    cpu: { name: cpus()[0]?.model?.trim() || 'CPU', cores: availableParallelism(), memoryBytes: totalmem() },
    auto: 'cpu',
    autoReason: '',
    visibleDevices: env.CUDA_VISIBLE_DEVICES ?? null,
    deviceOrder: env.CUDA_DEVICE_ORDER ?? null,
  };
  const auto = resolveDevice('auto', list);
  return { ...list, auto: auto.id, autoReason: auto.reason };
}

/** A device asked for that this engine or machine cannot give. */
export class DeviceError extends Error {
  override name = 'DeviceError';
}

export interface ResolvedDevice {
  asked: Device;
  /** 'cpu' or 'cuda:N': what Engine({device}) and calibrate({device}) take. */
  id: string;
  kind: 'cpu' | 'cuda';
  name: string;
  /** The CUDA device; null on the CPU. */
  cuda: CudaDevice | null;
  /** Which device and why, one sentence (the run's log line). */
  reason: string;
}

/** "NVIDIA H100 80GB HBM3, 78.2 GiB free of 79.2 GiB". */
export function describeCuda(d: CudaDevice): string {
  const free = d.freeBytes === null ? 'free memory unknown (no NVML)' : `${formatBytes(d.freeBytes)} free`;
  return `${d.name}, ${free} of ${formatBytes(d.totalBytes)}`;
}

/** Why the CUDA devices cannot be used, from the listing: not compiled in, no driver, a driver too old, none present. */
function cudaAbsence(l: DeviceList): string {
  if (!l.cudaCompiled && !l.cudaDetail) return 'this build of the engine has no CUDA backend (nvcc was not found when it was built)';
  if (l.cudaDetail) return `CUDA reports ${l.cudaState}: ${l.cudaDetail}`;
  return `CUDA reports ${l.cudaState}`;
}

function visibility(l: DeviceList): string {
  const parts = [
    ...(l.visibleDevices !== null ? [`CUDA_VISIBLE_DEVICES=${l.visibleDevices}`] : []),
    ...(l.deviceOrder !== null ? [`CUDA_DEVICE_ORDER=${l.deviceOrder}`] : []),
  ];
  return parts.length ? ` (${parts.join(', ')})` : '';
}

/**
 * `auto` | `cpu` | `cuda` | `cuda:N` against the listing. `auto` takes cuda:0 (the first device the
 * CUDA runtime lists) when the engine has CUDA and a device is present, else the CPU. A CUDA device
 * asked for that is not there throws a DeviceError that says why (no CUDA in this build, no driver,
 * a driver older than the runtime, an index past the last device).
 */
export function resolveDevice(asked: Device, l: DeviceList): ResolvedDevice {
  const cpuName = `${l.cpu.name}, ${l.cpu.cores} cores`;
  const onCpu = (reason: string): ResolvedDevice => ({ asked, id: 'cpu', kind: 'cpu', name: cpuName, cuda: null, reason });
  if (asked === 'cpu') return onCpu('device cpu, as asked');
  const usable = l.cudaState === 'ok' && l.devices.length > 0;
  if (asked === 'auto') {
    if (!usable) return onCpu(`device auto: the CPU, because ${cudaAbsence(l)}`);
    const d = l.devices[0];
    const others = l.devices.length > 1 ? ` (the first of ${l.devices.length}; --device cuda:N picks another)` : '';
    return { asked, id: d.id, kind: 'cuda', name: d.name, cuda: d, reason: `device auto: ${d.id}, ${describeCuda(d)}${others}${visibility(l)}` };
  }
  const index = asked === 'cuda' ? 0 : Number(asked.slice(5));
  if (!usable) throw new DeviceError(`device ${asked} asked for, but ${cudaAbsence(l)}; use --device cpu or auto`);
  const d = l.devices.find((x) => x.index === index);
  if (!d) {
    const have = l.devices.map((x) => `${x.id} (${x.name})`).join(', ');
    throw new DeviceError(`device ${asked} asked for, but CUDA lists ${l.devices.length} device${l.devices.length === 1 ? '' : 's'}${visibility(l)}: ${have}`);
  }
  return { asked, id: d.id, kind: 'cuda', name: d.name, cuda: d, reason: `device ${asked}: ${d.id}, ${describeCuda(d)}${visibility(l)}` };
}

/**
 * What a plan keeps free on a GPU when no budget is given: the CUDA context and cuBLAS' workspace
 * (outside the engine's allocations, about 0.5 GiB on an H100), the allocator's rounding and
 * pools, and room for the display or another process to grow: 1 GiB plus 2% of the device.
 */
export const GPU_HEADROOM = { fixedBytes: 2 ** 30, fraction: 0.02 };

export function gpuHeadroom(totalBytes: number): number {
  return Math.round(GPU_HEADROOM.fixedBytes + GPU_HEADROOM.fraction * totalBytes);
}

/** The device budget a plan takes on this GPU when none is given: its free memory (total without NVML) less the headroom. */
export function defaultGpuBudget(d: CudaDevice): { bytes: number; freeBytes: number | null; totalBytes: number; headroomBytes: number } {
  const headroomBytes = gpuHeadroom(d.totalBytes);
  const base = d.freeBytes ?? d.totalBytes;
  return { bytes: Math.max(0, base - headroomBytes), freeBytes: d.freeBytes, totalBytes: d.totalBytes, headroomBytes };
}

/**
 * The GEMM precision a run computes with: $SPILLWAY_GEMM over --gemm over fp32 (the default until
 * the golden tolerances are proven for tf32 on a GPU); the CPU backend computes in fp32 whatever is
 * asked. `note` says when the asked one is not what runs.
 */
export function effectiveGemm(asked: Gemm | undefined, device: Pick<ResolvedDevice, 'kind'>, env: NodeJS.ProcessEnv = process.env): { gemm: Gemm; note: string | null } {
  const fromEnv = env.SPILLWAY_GEMM?.trim().toLowerCase();
  let gemm: Gemm = asked ?? 'fp32';
  let note: string | null = null;
  if (fromEnv) {
    if (fromEnv !== 'fp32' && fromEnv !== 'tf32' && fromEnv !== 'bf16') throw new DeviceError(`SPILLWAY_GEMM must be fp32, tf32 or bf16 (got ${JSON.stringify(env.SPILLWAY_GEMM)})`);
    if (asked && asked !== fromEnv) note = `SPILLWAY_GEMM=${fromEnv} overrides --gemm ${asked}`;
    gemm = fromEnv;
  }
  if (device.kind === 'cpu' && gemm !== 'fp32') {
    return { gemm: 'fp32', note: `GEMMs run in fp32 on the CPU (${asked === gemm ? '--gemm' : 'SPILLWAY_GEMM'} ${gemm} applies on a CUDA device)` };
  }
  return { gemm, note };
}

/** The device a run records, from its resolution and the engine's own name for its backend. */
export function runDevice(d: ResolvedDevice, gemm: Gemm, backend: string): RunDevice {
  return { asked: d.asked, id: d.id, name: d.name, gemm, backend, pciBusId: d.cuda?.pciBusId ?? null, reason: d.reason };
}
