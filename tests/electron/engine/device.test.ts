// The compute device: --device and --gemm as the schema and the CLI read them, `auto` and the
// CUDA devices resolved against a listing (the recorded H100 report, and the states a machine
// without a GPU answers), the GPU budget a plan takes, and NVML's devices matched to CUDA's by
// bus id. The listings are recorded answers of the addon's cudaDevices(): this machine has no GPU.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { optionsFromFlags } from '../../../electron/cli/flags.js';
import { RunOptions, samePciBus, TrainOptions } from '../../../electron/common/contract.js';
import type { DeviceList } from '../../../electron/common/contract.js';
import {
  defaultGpuBudget,
  DeviceError,
  deviceListing,
  effectiveGemm,
  gpuHeadroom,
  GPU_HEADROOM,
  recordedDeviceSource,
  resolveDevice,
} from '../../../electron/engine/device.js';
import type { NativeCudaReport } from '../../../electron/engine/device.js';
import { runGpu } from '../../../electron/services/runs/operations.js';

const FIXTURES = join(import.meta.dirname, '..', '..', 'fixtures', 'gpu');
const H100 = join(FIXTURES, 'h100-cuda-devices.json');
const h100 = () => JSON.parse(readFileSync(H100, 'utf8')) as NativeCudaReport;
const base = { model: '/m', train: '/d.jsonl', task: { kind: 'sst2' as const } };
const listing = (r: NativeCudaReport, env: NodeJS.ProcessEnv = {}): DeviceList => deviceListing(() => r, env);

/** Two GPUs as CUDA numbers them under CUDA_DEVICE_ORDER=FASTEST_FIRST: the faster one, on the higher bus, first. */
function twoGpus(): NativeCudaReport {
  const r = h100();
  const d = r.devices![0];
  return {
    ...r,
    devices: [
      { ...d, index: 0, name: 'NVIDIA H100 80GB HBM3', pciBusId: '0000:86:00.0' },
      { ...d, index: 1, name: 'NVIDIA A10', totalBytes: 24e9, freeBytes: 23e9, computeCapability: '8.6', pciBusId: '0000:3B:00.0' },
    ],
  };
}

describe('--device and --gemm', () => {
  it('default to auto and fp32-unless-said, and take cpu, cuda and cuda:N', () => {
    const o = RunOptions.parse(base);
    expect(o.device).toBe('auto');
    expect(o.gemm).toBeUndefined();
    for (const d of ['auto', 'cpu', 'cuda', 'cuda:0', 'cuda:7', 'cuda:1023']) expect(RunOptions.parse({ ...base, device: d }).device).toBe(d);
    expect(RunOptions.parse({ ...base, gemm: 'tf32' }).gemm).toBe('tf32');
  });

  it('refuse anything else, saying what is accepted', () => {
    for (const d of ['gpu', 'CUDA', 'cuda:', 'cuda:-1', 'cuda:1.5', 'cuda:12345', 'cuda:0 ', 3]) {
      const r = RunOptions.safeParse({ ...base, device: d });
      expect(r.success, String(d)).toBe(false);
      expect(r.error!.issues[0].message).toContain('(auto, cpu, cuda or cuda:N)');
    }
    expect(RunOptions.safeParse({ ...base, gemm: 'fp16' }).error!.issues[0].message).toBe('unknown GEMM precision fp16 (fp32, tf32, bf16)');
  });

  it('come from the command line through the schema, a bad one named by its flag', () => {
    const o = optionsFromFlags(TrainOptions, { model: '/m', data: '/d.jsonl', device: 'cuda:1', gemm: 'bf16' }, {}, 'train');
    expect([o.device, o.gemm]).toEqual(['cuda:1', 'bf16']);
    expect(() => optionsFromFlags(TrainOptions, { model: '/m', data: '/d.jsonl', device: 'gpu' }, {}, 'train')).toThrow(
      '--device: unknown device "gpu" (auto, cpu, cuda or cuda:N)',
    );
  });
});

describe('resolveDevice', () => {
  it('auto takes the first CUDA device, naming it and its memory', () => {
    const d = resolveDevice('auto', listing(h100()));
    expect(d).toMatchObject({ id: 'cuda:0', kind: 'cuda', name: 'NVIDIA H100 80GB HBM3' });
    expect(d.reason).toBe('device auto: cuda:0, NVIDIA H100 80GB HBM3, 79.2 GiB free of 79.2 GiB');
  });

  it('auto falls back to the CPU and says why: no device, no driver, a driver too old, no CUDA in this build', () => {
    const cases: [NativeCudaReport, string][] = [
      [{ compiled: true, state: 'no device', detail: 'no CUDA driver (libcuda.so.1) on this machine', devices: [] }, 'CUDA reports no device: no CUDA driver (libcuda.so.1) on this machine'],
      [{ compiled: true, state: 'no device', detail: 'the CUDA driver (12020) is older than this build\'s runtime (13000)', devices: [] }, 'is older than this build'],
      [{ compiled: true, state: 'no device', detail: 'the CUDA driver reports no device', devices: [] }, 'the CUDA driver reports no device'],
      [{ compiled: false, state: 'CUDA not compiled in' }, 'this build of the engine has no CUDA backend'],
    ];
    for (const [report, why] of cases) {
      const d = resolveDevice('auto', listing(report));
      expect(d.id).toBe('cpu');
      expect(d.reason).toMatch(/^device auto: the CPU, because /);
      expect(d.reason).toContain(why);
    }
  });

  it('a CUDA device asked for that is not there is an error that says why, never the CPU in silence', () => {
    expect(() => resolveDevice('cuda', listing({ compiled: true, state: 'no device', detail: 'no CUDA driver (libcuda.so.1) on this machine' }))).toThrow(
      new DeviceError('device cuda asked for, but CUDA reports no device: no CUDA driver (libcuda.so.1) on this machine; use --device cpu or auto'),
    );
    expect(() => resolveDevice('cuda:0', listing({ compiled: false, state: 'CUDA not compiled in' }))).toThrow(/no CUDA backend/);
    expect(() => resolveDevice('cuda:2', listing(twoGpus()))).toThrow(
      'device cuda:2 asked for, but CUDA lists 2 devices: cuda:0 (NVIDIA H100 80GB HBM3), cuda:1 (NVIDIA A10)',
    );
    expect(resolveDevice('cuda:1', listing(twoGpus()))).toMatchObject({ id: 'cuda:1', name: 'NVIDIA A10' });
    expect(resolveDevice('cpu', listing(twoGpus()))).toMatchObject({ id: 'cpu', kind: 'cpu', cuda: null });
  });

  it('names CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER when they are set (they pick and order what CUDA lists)', () => {
    const l = listing(twoGpus(), { CUDA_VISIBLE_DEVICES: '1,0', CUDA_DEVICE_ORDER: 'PCI_BUS_ID' });
    expect(l.visibleDevices).toBe('1,0');
    expect(resolveDevice('auto', l).reason).toBe(
      'device auto: cuda:0, NVIDIA H100 80GB HBM3, 79.2 GiB free of 79.2 GiB (the first of 2; --device cuda:N picks another) (CUDA_VISIBLE_DEVICES=1,0, CUDA_DEVICE_ORDER=PCI_BUS_ID)',
    );
    expect(() => resolveDevice('cuda:5', l)).toThrow('(CUDA_VISIBLE_DEVICES=1,0, CUDA_DEVICE_ORDER=PCI_BUS_ID)');
  });

  it('a listing that cannot be read is no device, with the reason', () => {
    const l = deviceListing(() => {
      throw new Error('the native engine is not built');
    });
    expect(l).toMatchObject({ cudaCompiled: false, cudaState: 'unavailable', devices: [], auto: 'cpu' });
    expect(l.autoReason).toContain('the native engine is not built');
  });

  it('a recorded report is read as the device source, and a file that is not one is refused', () => {
    expect(listing(recordedDeviceSource(H100)())).toMatchObject({ auto: 'cuda:0', devices: [{ id: 'cuda:0', pciBusId: '0000:00:06.0' }] });
    expect(() => recordedDeviceSource(join(FIXTURES, 'h100-calibration.json'))()).toThrow('is not a recorded cudaDevices() report');
  });
});

describe('the GPU budget of a plan without --gpu-mem', () => {
  it('is the free memory less 1 GiB and 2% of the device; the total when NVML cannot say what is free', () => {
    const d = listing(h100()).devices[0];
    const headroom = GPU_HEADROOM.fixedBytes + GPU_HEADROOM.fraction * d.totalBytes;
    expect(gpuHeadroom(d.totalBytes)).toBe(Math.round(headroom));
    expect(defaultGpuBudget(d)).toEqual({ bytes: d.freeBytes! - Math.round(headroom), freeBytes: d.freeBytes, totalBytes: d.totalBytes, headroomBytes: Math.round(headroom) });
    expect(defaultGpuBudget({ ...d, freeBytes: null }).bytes).toBe(d.totalBytes - Math.round(headroom));
    expect(defaultGpuBudget({ ...d, freeBytes: 1e8 }).bytes).toBe(0);
  });
});

describe('effectiveGemm', () => {
  const cuda = { kind: 'cuda' as const };
  const cpu = { kind: 'cpu' as const };
  it('is fp32 unless asked; $SPILLWAY_GEMM overrides --gemm and says so', () => {
    expect(effectiveGemm(undefined, cuda, {})).toEqual({ gemm: 'fp32', note: null });
    expect(effectiveGemm('tf32', cuda, {})).toEqual({ gemm: 'tf32', note: null });
    expect(effectiveGemm('tf32', cuda, { SPILLWAY_GEMM: 'BF16' })).toEqual({ gemm: 'bf16', note: 'SPILLWAY_GEMM=bf16 overrides --gemm tf32' });
    expect(() => effectiveGemm(undefined, cuda, { SPILLWAY_GEMM: 'fp16' })).toThrow('SPILLWAY_GEMM must be fp32, tf32 or bf16 (got "fp16")');
  });
  it('is fp32 on the CPU whatever is asked, with a note', () => {
    expect(effectiveGemm('bf16', cpu, {})).toEqual({ gemm: 'fp32', note: 'GEMMs run in fp32 on the CPU (--gemm bf16 applies on a CUDA device)' });
  });
});

describe('NVML and CUDA numbering', () => {
  it('meet by PCI bus id in either spelling', () => {
    expect(samePciBus('0000:3B:00.0', '00000000:3b:00.0')).toBe(true);
    expect(samePciBus('0000:3B:00.0', '00000000:86:00.0')).toBe(false);
    expect(samePciBus(null, '00000000:3b:00.0')).toBe(false);
    expect(samePciBus('GPU-1234', 'GPU-1234')).toBe(false);
  });

  it("telemetry draws the run's GPU, not NVML's first", () => {
    // NVML numbers by bus (the A10 on 3B first); CUDA put the H100 (bus 86) first.
    const nvml = [
      { index: 0, name: 'NVIDIA A10', pciBusId: '00000000:3B:00.0' },
      { index: 1, name: 'NVIDIA H100 80GB HBM3', pciBusId: '00000000:86:00.0' },
    ];
    const cuda0 = listing(twoGpus()).devices[0];
    const run = { asked: 'auto', id: cuda0.id, name: cuda0.name, gemm: 'fp32' as const, backend: 'cuda:0', pciBusId: cuda0.pciBusId };
    expect(runGpu(nvml, run)?.name).toBe('NVIDIA H100 80GB HBM3');
    expect(runGpu(nvml, { ...run, id: 'cpu', pciBusId: null })).toBeNull();
    expect(runGpu(nvml, null)?.index).toBe(0);
  });
});
