// Which of OpenBLAS's kernels the engine's process asks for. Debian's OpenBLAS (0.3.21) picks its
// kernels from the CPU's family and model when it is loaded; on a CPU newer than it knows (Intel
// family 6 model 207, Emerald Rapids, for one) it falls back to its oldest x86-64 kernels
// (Prescott: SSE3), and its products at decoding's shapes (a few rows against a weight) ran at half
// the speed of its AVX-512 ones there (native/build/gemm_rate with SPILLWAY_CPU_GEMM=openblas,
// 1x768x3072, 1x3072x768, 4x768x50272: 7-12 GFLOP/s against 18-23). OpenBLAS reads
// OPENBLAS_CORETYPE as it loads, so the engine's loader sets it, where nobody has, to the kernels
// the CPU's flags allow: the ones OpenBLAS itself picks on the CPUs it knows (Cooperlake where
// AVX-512 has bf16, SkylakeX for the rest of AVX-512, Zen for AMD's AVX2, Haswell for Intel's).
// A training step's products are the engine's own GEMM either way (native/src/cpu/backend_cpu.cpp).
import { readFileSync } from 'node:fs';

const AVX512 = ['avx512f', 'avx512cd', 'avx512bw', 'avx512dq', 'avx512vl'];

/** OpenBLAS's name for the best kernels a CPU's /proc/cpuinfo allows; null where only its generic ones run. */
export function openblasCoreFor(cpuinfo: string): string | null {
  const flagsLine = /^flags\s*:(.*)$/m.exec(cpuinfo);
  if (!flagsLine) return null;
  const flags = new Set(flagsLine[1].trim().split(/\s+/));
  const amd = /^vendor_id\s*:\s*AuthenticAMD\s*$/m.test(cpuinfo);
  if (AVX512.every((f) => flags.has(f))) return flags.has('avx512_bf16') ? 'Cooperlake' : 'SkylakeX';
  if (flags.has('avx2') && flags.has('fma')) return amd ? 'Zen' : 'Haswell';
  return null;
}

let setHere: string | null = null;

/**
 * Who chose OpenBLAS's kernels in this process: Spillway's loader (from the CPU's flags), someone's
 * OPENBLAS_CORETYPE, or OpenBLAS itself. `config`, OpenBLAS's configuration string where known
 * (probe().blas): a build for one target (no DYNAMIC_ARCH in it) has only that target's kernels
 * and reads no OPENBLAS_CORETYPE, so its kernels are the build's whatever the variable says.
 */
export function openblasCoreChoice(config?: string): { core: string | null; by: 'spillway' | 'environment' | 'openblas' | 'build' } {
  if (config !== undefined && /OpenBLAS/.test(config) && !/\bDYNAMIC_ARCH\b/.test(config)) return { core: null, by: 'build' };
  if (setHere !== null && process.env.OPENBLAS_CORETYPE === setHere) return { core: setHere, by: 'spillway' };
  if (process.env.OPENBLAS_CORETYPE !== undefined) return { core: process.env.OPENBLAS_CORETYPE, by: 'environment' };
  return { core: null, by: 'openblas' };
}

/**
 * Sets OPENBLAS_CORETYPE in `env` (before OpenBLAS loads) where it is not set at all; a value
 * someone set, even an empty one, is theirs. Returns what it set, or null.
 */
export function chooseOpenblasCore(env: NodeJS.ProcessEnv = process.env, readCpuinfo = () => readFileSync('/proc/cpuinfo', 'utf8')): string | null {
  if (env.OPENBLAS_CORETYPE !== undefined) return null;
  let cpuinfo: string;
  try {
    cpuinfo = readCpuinfo();
  } catch {
    return null; // not Linux, or /proc not mounted: OpenBLAS picks on its own
  }
  const core = openblasCoreFor(cpuinfo);
  if (core) {
    env.OPENBLAS_CORETYPE = core;
    if (env === process.env) setHere = core;
  }
  return core;
}
