// A run's machine telemetry as chart series over elapsed time: utilisation (GPU, CPU, the spill
// drive's busy time), memory (GPU, RAM) and transfer rates (PCIe both ways from NVML, the spill
// drive's reads and writes). The GPU drawn is the run's own, found among NVML's by PCI bus id (NVML
// numbers every GPU of the machine in bus order; CUDA_VISIBLE_DEVICES does not change it).

import { samePciBus } from '../../../electron/common/contract.ts';
import type { RunDevice, TelemetrySample } from '../../../electron/common/contract.ts';
import type { Point } from './smoothing.ts';

type Gpu = TelemetrySample['gpus'][number];

export interface TelemetrySeries {
  /** Percent. */
  gpuUtil: Point[];
  cpuUtil: Point[];
  diskBusy: Point[];
  /** GiB. */
  gpuMemory: Point[];
  ram: Point[];
  /** MB/s (10^6 bytes). */
  pcieRx: Point[];
  pcieTx: Point[];
  diskRead: Point[];
  diskWrite: Point[];
  /** The GPU drawn ("NVIDIA H100 80GB HBM3"), null when the samples have none for this run. */
  gpuName: string | null;
  /** Its total memory, GiB (the memory chart's ceiling). */
  gpuMemoryTotal: number | null;
}

export const emptySeries = (): TelemetrySeries => ({
  gpuUtil: [],
  cpuUtil: [],
  diskBusy: [],
  gpuMemory: [],
  ram: [],
  pcieRx: [],
  pcieTx: [],
  diskRead: [],
  diskWrite: [],
  gpuName: null,
  gpuMemoryTotal: null,
});

/** The run's GPU among a sample's: by bus id, else the only (or first) one; none for a run on the CPU. */
export function gpuOf(gpus: readonly Gpu[], device: RunDevice | null | undefined): Gpu | null {
  if (device?.id === 'cpu') return null;
  const bus = device?.pciBusId;
  if (bus) return gpus.find((g) => samePciBus(g.pciBusId, bus)) ?? null;
  return gpus[0] ?? null;
}

const GIB = 2 ** 30;

/**
 * Appends one sample to `s` at x = seconds since `startAt` (the run's start); a sample taken before
 * the start (the sampler's first tick) is at 0. Values a sample lacks leave a gap.
 */
function addSample(s: TelemetrySeries, t: TelemetrySample, startAt: number, device: RunDevice | null | undefined): void {
  const x = Math.max(0, (t.at - startAt) / 1000);
  const push = (arr: Point[], y: number | null | undefined) => {
    if (y !== null && y !== undefined && Number.isFinite(y)) arr.push({ x, y });
  };
  push(s.cpuUtil, t.cpu ? t.cpu.utilization * 100 : null);
  push(s.ram, t.memory ? t.memory.usedBytes / GIB : null);
  push(s.diskBusy, t.disk?.busy !== undefined ? t.disk.busy * 100 : null);
  push(s.diskRead, t.disk ? t.disk.readBytesPerS / 1e6 : null);
  push(s.diskWrite, t.disk ? t.disk.writeBytesPerS / 1e6 : null);
  const g = gpuOf(t.gpus, device);
  if (g) {
    s.gpuName = g.name;
    if (g.memoryTotalBytes !== null) s.gpuMemoryTotal = g.memoryTotalBytes / GIB;
    push(s.gpuUtil, g.utilization === null ? null : g.utilization * 100);
    push(s.gpuMemory, g.memoryUsedBytes === null ? null : g.memoryUsedBytes / GIB);
    push(s.pcieRx, g.pcieRxBytesPerS === null ? null : g.pcieRxBytesPerS / 1e6);
    push(s.pcieTx, g.pcieTxBytesPerS === null ? null : g.pcieTxBytesPerS / 1e6);
  }
}

/** Series of every sample, oldest first. */
export function telemetrySeries(samples: readonly TelemetrySample[], startAt: number, device: RunDevice | null | undefined): TelemetrySeries {
  const s = emptySeries();
  for (const t of samples) addSample(s, t, startAt, device);
  return s;
}
