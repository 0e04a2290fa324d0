// The failures a GPU user meets, told as what happened, what was expected and what to change:
// out of device memory (the engine's budget refusing an allocation, or CUDA's own), and a GPU
// that failed mid-run (lost, reset, an uncorrectable ECC error: CUDA's sticky errors, after which
// the process cannot use the device again). Any other error passes through as it is. The run is
// then marked failed with this message by the supervisor; its checkpoints are untouched.
import type { RunDevice } from '../common/contract.js';
import type { CudaDevice } from '../common/contract.js';
import { formatBytes } from './safe-write.js';
import type { Plan } from './planner.js';

export type DeviceFailureKind = 'device-memory' | 'device-lost';

/** An engine error explained for a person; `cause` keeps the engine's own message. */
export class DeviceFailure extends Error {
  override name = 'DeviceFailure';
  constructor(
    readonly kind: DeviceFailureKind,
    message: string,
    options: { cause: unknown },
  ) {
    super(message, options);
  }
}

/**
 * CUDA errors after which the context is unusable ("To continue using CUDA, the process must be
 * terminated": driver_types.h), and those a device that is gone or failing answers with.
 */
const STICKY = [
  'cudaErrorIllegalAddress',
  'cudaErrorLaunchTimeout',
  'cudaErrorHardwareStackError',
  'cudaErrorIllegalInstruction',
  'cudaErrorMisalignedAddress',
  'cudaErrorInvalidAddressSpace',
  'cudaErrorInvalidPc',
  'cudaErrorLaunchFailure',
  'cudaErrorMpsClientTerminated',
  'cudaErrorECCUncorrectable',
  'cudaErrorNvlinkUncorrectable',
  'cudaErrorDevicesUnavailable',
  'cudaErrorDeviceUninitialized',
  'cudaErrorContextIsDestroyed',
  'cudaErrorNoDevice',
  'cudaErrorSystemNotReady',
  'cudaErrorExternalDevice',
  'cudaErrorUnknown',
];

/** What kind of device failure an engine error is, by the binding's code or the engine's message; null: not one. */
export function classifyEngineError(e: unknown): DeviceFailureKind | null {
  if (!(e instanceof Error) || e instanceof DeviceFailure) return null;
  const code = (e as { code?: unknown }).code;
  if (code === 'EDEVICEMEM') return 'device-memory';
  if (code === 'EDEVICELOST') return 'device-lost';
  const m = e.message;
  if (/device memory budget exceeded|cudaErrorMemoryAllocation|CUDA device \d+ .*cannot allocate/.test(m)) return 'device-memory';
  if (STICKY.some((name) => m.includes(name))) return 'device-lost';
  return null;
}

export interface FailureContext {
  device: RunDevice;
  /** The CUDA device's memory as the run found it at the start; null on the CPU. */
  cuda: CudaDevice | null;
  /** --gpu-mem, when given. */
  gpuMem: number | undefined;
  /** The plan the run was placed by (its device memory), when it had one. */
  plan: Plan | null;
  /** What is left to resume from ("the last checkpoint (step 40) is intact at …"); null before the first step. */
  checkpoint: string | null;
  /** Where it happened: "loading the model", "step 12". */
  when: string;
}

/** The engine error `e` as a DeviceFailure when it is one (else `e` itself), with what to change. */
export function deviceFailure(e: unknown, c: FailureContext): unknown {
  const kind = classifyEngineError(e);
  if (!kind) return e;
  const engineSaid = (e as Error).message;
  const on = `${c.device.id} (${c.device.name})`;
  const kept = c.checkpoint ? ` ${capital(c.checkpoint)}.` : '';
  if (kind === 'device-memory') {
    const expected = c.plan ? `the plan expected ${formatBytes(c.plan.memory.device)} on the device` : 'the run had no plan (--offload none keeps every block on the device)';
    const free = c.cuda ? (c.cuda.freeBytes === null ? `of ${formatBytes(c.cuda.totalBytes)} (free memory unknown)` : `${formatBytes(c.cuda.freeBytes)} of ${formatBytes(c.cuda.totalBytes)} were free at the start`) : '';
    const budget = c.gpuMem !== undefined ? `; --gpu-mem ${formatBytes(c.gpuMem)}` : '';
    const change = [
      c.plan ? (c.gpuMem !== undefined ? 'a lower --gpu-mem (the planner streams more blocks)' : '--gpu-mem below the free memory (the planner streams more blocks)') : '--offload auto (the planner streams what does not fit)',
      '--masters bf16 (half the bytes per block)',
      'a smaller --batch-size or --max-length (activations)',
      ...(c.cuda ? ['closing what else runs on the GPU (nvidia-smi lists it)'] : []),
    ];
    return new DeviceFailure(
      kind,
      `out of device memory on ${on} while ${c.when}: ${expected}${free ? `; ${free}` : ''}${budget}. ` +
        `Try ${change.join(', or ')}.${kept} The engine said: ${engineSaid}`,
      { cause: e },
    );
  }
  return new DeviceFailure(
    kind,
    `the GPU ${on} failed while ${c.when}: it was lost, reset or hit an uncorrectable error (nvidia-smi and the kernel log's Xid lines say which), ` +
      `or a kernel faulted.${kept} Resume the run once the GPU is back, or on another device (--device): ` +
      `losses are then not bit-comparable across devices. The engine said: ${engineSaid}`,
    { cause: e },
  );
}

const capital = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/**
 * The note a resume on another device gets: the steps before ran elsewhere, so the losses from here
 * on are not bit-comparable with an uninterrupted run there. null: same device kind, GPU model and
 * GEMM precision (or a checkpoint that does not say).
 */
export function resumeDeviceNote(before: RunDevice | undefined, now: RunDevice): string | null {
  if (!before) return null;
  const kind = (d: RunDevice) => (d.id === 'cpu' ? 'cpu' : 'cuda');
  const differs: string[] = [];
  if (kind(before) !== kind(now)) differs.push(`${kind(before) === 'cpu' ? 'the CPU' : 'a CUDA GPU'} before, ${kind(now) === 'cpu' ? 'the CPU' : 'a CUDA GPU'} now`);
  else if (kind(now) === 'cuda' && before.name !== now.name) differs.push(`${before.name} before, ${now.name} now`);
  if (before.gemm !== now.gemm) differs.push(`GEMMs in ${before.gemm} before, ${now.gemm} now`);
  if (!differs.length) return null;
  return `resuming on ${now.id} (${now.name}) a run checkpointed on ${before.id} (${before.name}): ${differs.join('; ')}. ` +
    'The checkpoint loads exactly, but losses from here on are not bit-comparable with an uninterrupted run on either device.';
}
