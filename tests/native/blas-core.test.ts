// OpenBLAS's kernels (electron/engine/blas-core.ts): the loader asks for the ones the CPU's flags
// allow where nobody set OPENBLAS_CORETYPE, because Debian's OpenBLAS 0.3.21 falls back to its
// Prescott (SSE3) kernels on CPUs newer than it knows, and decoding's products ran at half speed.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { chooseOpenblasCore, openblasCoreChoice, openblasCoreFor } from '../../electron/engine/blas-core.js';
import { ROOT } from '../helpers/engine.js';

const run = promisify(execFile);

/** A /proc/cpuinfo of one processor with these flags. */
const cpuinfo = (vendor: string, flags: string) => `processor\t: 0\nvendor_id\t: ${vendor}\ncpu family\t: 6\nflags\t\t: ${flags}\n\n`;
const BASE = 'fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx lm pni ssse3 sse4_1 sse4_2 popcnt';

describe("OpenBLAS's kernels for the CPU", () => {
  it('names the best kernels the flags allow', () => {
    // An Emerald Rapids guest as this project's CI machines show it (no avx512_bf16 passed through).
    const avx512 = `${BASE} fma avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni`;
    expect(openblasCoreFor(cpuinfo('GenuineIntel', avx512))).toBe('SkylakeX');
    expect(openblasCoreFor(cpuinfo('AuthenticAMD', `${avx512} avx512_bf16`))).toBe('Cooperlake');
    expect(openblasCoreFor(cpuinfo('AuthenticAMD', `${BASE} fma avx avx2`))).toBe('Zen');
    expect(openblasCoreFor(cpuinfo('GenuineIntel', `${BASE} fma avx avx2`))).toBe('Haswell');
    // AVX-512F alone is not SkylakeX's set (Knights Landing has no BW, DQ or VL): AVX2's then.
    expect(openblasCoreFor(cpuinfo('GenuineIntel', `${BASE} fma avx avx2 avx512f avx512cd`))).toBe('Haswell');
    // AVX without FMA, or no flags line: OpenBLAS's own choice.
    expect(openblasCoreFor(cpuinfo('GenuineIntel', `${BASE} avx`))).toBeNull();
    expect(openblasCoreFor('processor\t: 0\n')).toBeNull();
  });

  it("sets OPENBLAS_CORETYPE only where nobody set it, and never fails for a missing /proc", () => {
    const avx2 = cpuinfo('GenuineIntel', `${BASE} fma avx avx2`);
    const unset: NodeJS.ProcessEnv = {};
    expect(chooseOpenblasCore(unset, () => avx2)).toBe('Haswell');
    expect(unset.OPENBLAS_CORETYPE).toBe('Haswell');
    for (const value of ['Prescott', '']) {
      const env: NodeJS.ProcessEnv = { OPENBLAS_CORETYPE: value };
      expect(chooseOpenblasCore(env, () => avx2)).toBeNull();
      expect(env.OPENBLAS_CORETYPE).toBe(value);
    }
    const noProc: NodeJS.ProcessEnv = {};
    expect(chooseOpenblasCore(noProc, () => { throw new Error('ENOENT'); })).toBeNull();
    expect(noProc).toEqual({});
  });

  it('says a build for one target runs its own kernels, whatever OPENBLAS_CORETYPE says', () => {
    // Configuration strings as OpenBLAS 0.3.21 writes them: Debian's runtime-dispatching build,
    // and one built for a single target (TARGET=HASWELL, no DYNAMIC_ARCH).
    expect(openblasCoreChoice('OpenBLAS 0.3.21 NO_LAPACKE Haswell MAX_THREADS=64')).toEqual({ core: null, by: 'build' });
    expect(openblasCoreChoice('OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64').by).not.toBe('build');
    expect(openblasCoreChoice('none').by).not.toBe('build');
  });

  // The real addon in a child process (OpenBLAS chooses once, as it loads): its configuration
  // string names the kernels it runs, where the build dispatches at run time (DYNAMIC_ARCH: what
  // scripts/setup.sh installs); a build for one target runs that target's whatever is asked.
  const blasOf = async (env: NodeJS.ProcessEnv) => {
    const script = `import(${JSON.stringify(join(ROOT, 'dist', 'electron', 'engine', 'native.js'))}).then((m) => console.log(m.loadNative().probe().blas))`;
    const r = await run(process.execPath, ['-e', script], { env });
    return r.stdout.trim();
  };

  it("the engine's process runs the kernels picked for this CPU, or the ones a person asked for", async () => {
    const { OPENBLAS_CORETYPE: _, ...rest } = process.env;
    const picked = openblasCoreFor(readFileSync('/proc/cpuinfo', 'utf8'));
    const blas = await blasOf(rest);
    expect(blas).toMatch(/OpenBLAS/);
    if (!blas.split(' ').includes('DYNAMIC_ARCH')) {
      expect(await blasOf({ ...rest, OPENBLAS_CORETYPE: 'Prescott' })).toBe(blas);
      return;
    }
    if (picked) expect(blas.split(' ')).toContain(picked);
    expect((await blasOf({ ...rest, OPENBLAS_CORETYPE: 'Prescott' })).split(' ')).toContain('Prescott');
  });
});
