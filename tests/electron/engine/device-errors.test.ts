// Engine errors a GPU user meets, told with what to do: told apart by the binding's code (from the
// native error type) or, for engines built before the codes, by the engine's message; anything
// else passes through untouched. The codes are checked on the real addon where this machine can
// provoke them (the CPU backend's arena refuses beyond its budget as a GPU does).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import type { RunDevice } from '../../../electron/common/contract.js';
import { classifyEngineError, DeviceFailure, deviceFailure, resumeDeviceNote } from '../../../electron/engine/device-errors.js';
import { deviceListing } from '../../../electron/engine/device.js';
import type { NativeCudaReport } from '../../../electron/engine/device.js';
import { loadNative } from '../../../electron/engine/native.js';
import { engineSpec } from '../../../electron/engine/spec.js';
import { loadModelInfo } from '../../../electron/model/index.js';
import { DEMO_TOKENIZER_DIR } from '../../helpers/tiny-model.js';

const h100 = deviceListing(() => JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'fixtures', 'gpu', 'h100-cuda-devices.json'), 'utf8')) as NativeCudaReport).devices[0];
const onH100: RunDevice = { asked: 'auto', id: 'cuda:0', name: h100.name, gemm: 'fp32', backend: 'cuda:0 (NVIDIA H100 80GB HBM3, gemm fp32)', pciBusId: h100.pciBusId };
const onCpu: RunDevice = { asked: 'cpu', id: 'cpu', name: 'CPU, 2 cores', gemm: 'fp32', backend: 'cpu', pciBusId: null };
const coded = (message: string, code: string) => Object.assign(new Error(message), { code });

describe('classifyEngineError', () => {
  it("takes the binding's code first, the engine's message for older builds, and nothing else", () => {
    expect(classifyEngineError(coded('anything', 'EDEVICEMEM'))).toBe('device-memory');
    expect(classifyEngineError(coded('anything', 'EDEVICELOST'))).toBe('device-lost');
    expect(classifyEngineError(new Error('CUDA device 0 (NVIDIA H100 80GB HBM3) cannot allocate 1125899906842624 bytes (…): … [out of memory]'))).toBe('device-memory');
    expect(classifyEngineError(new Error('CUDA error in cudaMemcpyAsync at backend_cuda.cu:12: cudaErrorIllegalAddress (an illegal memory access was encountered)'))).toBe('device-lost');
    expect(classifyEngineError(new Error('CUDA error in cudaStreamSynchronize: cudaErrorECCUncorrectable (uncorrectable ECC error encountered)'))).toBe('device-lost');
    // Host memory, a full disk, a bad batch: not the device's.
    for (const m of ['out of memory', 'ENOSPC: no space left on device', 'batch offsets must not be empty']) expect(classifyEngineError(coded(m, 'EENGINE'))).toBeNull();
    expect(classifyEngineError('a string')).toBeNull();
  });
});

describe('deviceFailure', () => {
  const memory = coded('CUDA device 0 (NVIDIA H100 80GB HBM3) cannot allocate 8589934592 bytes (8192.0 MiB): 1048576 bytes (1.0 MiB) free of 85017493504 [out of memory]', 'EDEVICEMEM');

  it('out of device memory: what the plan expected, what was free, the budget, what to change, the checkpoint left', () => {
    const plan = { memory: { device: 70e9, cpu: 1e9, ssd: 0 } } as Parameters<typeof deviceFailure>[1]['plan'];
    const f = deviceFailure(memory, { device: onH100, cuda: h100, gpuMem: undefined, plan, checkpoint: 'the last checkpoint (step 40) is intact at /runs/x/step-00000040', when: 'running step 41' });
    expect(f).toBeInstanceOf(DeviceFailure);
    const m = (f as DeviceFailure).message;
    expect(m).toMatch(/^out of device memory on cuda:0 \(NVIDIA H100 80GB HBM3\) while running step 41: the plan expected 65\.2 GiB on the device; 79\.2 GiB of 79\.2 GiB were free at the start\./);
    expect(m).toContain('Try --gpu-mem below the free memory (the planner streams more blocks), or --masters bf16');
    expect(m).toContain('or closing what else runs on the GPU (nvidia-smi lists it).');
    expect(m).toContain('The last checkpoint (step 40) is intact at /runs/x/step-00000040.');
    expect(m.endsWith(`The engine said: ${memory.message}`)).toBe(true);
    expect((f as DeviceFailure).cause).toBe(memory);
    // Without a plan (--offload none) the advice is the planner.
    const bare = deviceFailure(memory, { device: onH100, cuda: h100, gpuMem: 20e9, plan: null, checkpoint: null, when: 'loading the model' }) as Error;
    expect(bare.message).toContain('the run had no plan (--offload none keeps every block on the device)');
    expect(bare.message).toContain('--gpu-mem 18.6 GiB');
    expect(bare.message).toContain('Try --offload auto (the planner streams what does not fit)');
  });

  it('a GPU that failed: what may have happened, and how to go on', () => {
    const lost = coded('CUDA error in cudaEventSynchronize at backend_cuda.cu:818: cudaErrorLaunchFailure (unspecified launch failure)', 'EDEVICELOST');
    const m = (deviceFailure(lost, { device: onH100, cuda: h100, gpuMem: undefined, plan: null, checkpoint: 'the last checkpoint (step 7) is intact at /c', when: 'running step 8' }) as Error).message;
    expect(m).toMatch(/^the GPU cuda:0 \(NVIDIA H100 80GB HBM3\) failed while running step 8: it was lost, reset or hit an uncorrectable error/);
    expect(m).toContain('The last checkpoint (step 7) is intact at /c. Resume the run once the GPU is back, or on another device (--device): losses are then not bit-comparable across devices.');
  });

  it('passes any other error through as it is', () => {
    const disk = coded('checkpoint not written: no space left on /runs', 'ENOSPC');
    expect(deviceFailure(disk, { device: onCpu, cuda: null, gpuMem: undefined, plan: null, checkpoint: null, when: 'x' })).toBe(disk);
  });
});

describe('resumeDeviceNote', () => {
  it('says when the backend, the GPU model or the GEMM precision changed, and nothing otherwise', () => {
    expect(resumeDeviceNote(undefined, onCpu)).toBeNull();
    expect(resumeDeviceNote(onCpu, { ...onCpu, asked: 'auto' })).toBeNull();
    expect(resumeDeviceNote(onH100, { ...onH100, id: 'cuda:1' })).toBeNull();
    expect(resumeDeviceNote(onH100, onCpu)).toBe(
      'resuming on cpu (CPU, 2 cores) a run checkpointed on cuda:0 (NVIDIA H100 80GB HBM3): a CUDA GPU before, the CPU now. ' +
        'The checkpoint loads exactly, but losses from here on are not bit-comparable with an uninterrupted run on either device.',
    );
    expect(resumeDeviceNote(onH100, { ...onH100, name: 'NVIDIA A100-SXM4-80GB' })).toContain('NVIDIA H100 80GB HBM3 before, NVIDIA A100-SXM4-80GB now');
    expect(resumeDeviceNote(onH100, { ...onH100, gemm: 'tf32' })).toContain('GEMMs in fp32 before, tf32 now');
  });
});

describe('the addon', () => {
  const native = loadNative();

  it('rejects an allocation beyond the device budget with EDEVICEMEM', async () => {
    const engine = new native.Engine({ threads: 1, deviceMemory: 1024 });
    const info = await loadModelInfo(DEMO_TOKENIZER_DIR);
    const err = await engine.load(engineSpec(info)).then(
      async () => {
        const batch = { tokens: new Int32Array([1, 2, 3, 4]), seqStart: new Int32Array([0, 4]), scoreStart: new Int32Array([1]), scoreEnd: new Int32Array([4]), exampleStart: new Int32Array([0, 1]), exampleKind: new Int32Array([0]), label: new Int32Array([-1]) };
        return engine.score(batch).then(() => null, (e: unknown) => e);
      },
      (e: unknown) => e,
    );
    engine.close();
    expect(err).toMatchObject({ code: 'EDEVICEMEM', message: expect.stringMatching(/^device memory budget exceeded on /) });
    expect(classifyEngineError(err)).toBe('device-memory');
  });

  it('refuses a GEMM precision it does not know, and a CUDA device where there is none', () => {
    expect(() => new native.Engine({ threads: 1, gemm: 'tf23' as 'tf32' })).toThrow("field 'gemm' must be 'fp32', 'tf32' or 'bf16', not 'tf23'");
    if (native.cudaDevices().state !== 'ok') expect(() => new native.Engine({ threads: 1, device: 'cuda' })).toThrow(/^device 'cuda' asked for, but (CUDA reports no device|this build of the engine has no CUDA backend)/);
  });
});
