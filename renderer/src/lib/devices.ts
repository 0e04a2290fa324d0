// The compute devices as New run offers them, and a run's device in a few words.

import type { CudaDevice, Device, DeviceList, RunDevice } from '../../../electron/common/contract.ts';
import { formatBytes } from './format.ts';

export interface DeviceChoice {
  /** What --device takes: auto, cpu, cuda:N. */
  value: Device;
  label: string;
  /** A CUDA device's memory, for the plan and the tooltip. */
  cuda: CudaDevice | null;
}

/** "NVIDIA H100 80GB HBM3 · 78.2 GiB free of 79.6 GiB". */
export function cudaLabel(d: CudaDevice): string {
  return `${d.name} · ${d.freeBytes === null ? 'free memory unknown' : `${formatBytes(d.freeBytes)} free`} of ${formatBytes(d.totalBytes)}`;
}

/** Auto (saying what it takes), the CPU, then each CUDA device with its name and free / total memory. */
export function deviceChoices(list: DeviceList | null): DeviceChoice[] {
  if (!list) return [{ value: 'auto', label: 'Auto', cuda: null }, { value: 'cpu', label: 'CPU', cuda: null }];
  const auto = list.devices.find((d) => d.id === list.auto) ?? null;
  return [
    { value: 'auto', label: `Auto: ${auto ? `${auto.id}, ${auto.name}` : 'the CPU (no CUDA device)'}`, cuda: auto },
    { value: 'cpu', label: `CPU · ${list.cpu.name}, ${list.cpu.cores} cores, ${formatBytes(list.cpu.memoryBytes)}`, cuda: null },
    ...list.devices.map((d) => ({ value: `cuda:${d.index}` as const, label: `${d.id} · ${cudaLabel(d)}`, cuda: d })),
  ];
}

/** Why there is no CUDA device to pick (null when there are some). */
export function noCudaReason(list: DeviceList | null): string | null {
  if (!list || list.devices.length) return null;
  if (!list.cudaCompiled) return 'This build of the engine has no CUDA backend: runs compute on the CPU.';
  return `No CUDA device: ${list.cudaDetail || list.cudaState}. Runs compute on the CPU.`;
}

/** "cuda:0 · NVIDIA H100 80GB HBM3 · tf32" or "CPU". */
export function runDeviceLabel(d: RunDevice | null | undefined): string {
  if (!d) return '—';
  return d.id === 'cpu' ? 'CPU' : `${d.id} · ${d.name} · ${d.gemm}`;
}
