// The CPU backend's GEMMs (native/build/gemm_check): its own kernels (AVX2 everywhere, AVX-512 where
// the CPU has it) and OpenBLAS against a float64 reference with a rigorous bound ((I + 2) u sum
// |x w|), on shapes crossing every edge of the own kernels' tiles and blocks; every element of an
// own kernel's product the bits of one scalar chain (so AVX2 and AVX-512 machines agree); and the
// own kernels' same bits on 1 to 3 threads and for each stream of a side-by-side pair; and the
// head's AVX-512 sums of exponentials sum_exp's (the AVX2 loop's) bits. The
// engine's own results on the own kernel are held to transformers' by the golden tests
// (forward-golden, mezo-golden, families-transformers).
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { ROOT } from '../helpers/engine.js';

const exec = promisify(execFile);
// The AVX-512 kernel ("own" there) runs where the CPU has AVX-512F; the AVX2 one everywhere.
const hasAvx512 = /\bavx512f\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));

interface Line {
  case?: string;
  gemm?: string;
  ok?: boolean;
  avx512?: boolean;
  chainBits?: 'same' | 'differ' | null;
  worstOverBound?: number;
  sameBitsOn1To3Threads?: boolean;
  pairSameBitsAsAlone?: boolean;
  checks?: number;
  kernelSweep?: number;
  sumExpAvx512?: number;
  failed?: number;
}

describe('the CPU backend GEMMs', () => {
  it('are within the float64 reference bound, and the own kernel keeps its bits across threads and streams', async () => {
    // A failed check exits 1 with its lines printed; a crash prints no last line.
    const r = await exec(join(ROOT, 'native', 'build', 'gemm_check'), [], { maxBuffer: 1 << 22 }).catch((e) => e);
    expect(String(r.stdout), `gemm_check printed no summary; stderr: ${String(r.stderr)}`).toMatch(/"checks":\d+/);
    const lines: Line[] = String(r.stdout).trim().split('\n').map((l) => JSON.parse(l));
    const last = lines.at(-1)!;
    const bad = lines.filter(
      (l) => l.ok === false || l.sameBitsOn1To3Threads === false || l.pairSameBitsAsAlone === false || l.chainBits === 'differ',
    );
    expect(bad).toEqual([]);
    expect(last.ok).toBe(true);
    expect(last.avx512).toBe(hasAvx512);
    // Every GEMM ran every case, and each case was held to the bound.
    const owns = hasAvx512 ? ['avx2', 'own'] : ['avx2'];
    const cases = new Set(lines.filter((l) => l.worstOverBound !== undefined).map((l) => l.case));
    expect(cases.size).toBeGreaterThanOrEqual(10);
    for (const g of ['openblas', ...owns])
      expect(lines.filter((l) => l.gemm === g && l.worstOverBound !== undefined).length).toBe(cases.size * 4);
    // The own kernels' products (16 rows or more, any depth) were held to the chain's bits.
    for (const g of owns) expect(lines.filter((l) => l.gemm === g && l.chainBits === 'same').length).toBeGreaterThanOrEqual(9 * 4);
    expect(lines.filter((l) => l.gemm === 'openblas' && l.chainBits !== null).length).toBe(0);
    expect(lines.filter((l) => l.sameBitsOn1To3Threads === true).length).toBe(6 * owns.length);
    // gemm_rate --kernel's sweep gives the chain's bits (AVX-512 only): its rate is the kernel's.
    expect(lines.filter((l) => l.kernelSweep !== undefined && l.ok === true).length).toBe(hasAvx512 ? 3 : 0);
    // The head's AVX-512 sums of exponentials give sum_exp's bits on over a thousand rows (AVX-512 only).
    const sums = lines.filter((l) => l.sumExpAvx512 !== undefined);
    expect(sums.length).toBe(hasAvx512 ? 1 : 0);
    for (const l of sums) expect([l.sumExpAvx512! > 1000, l.ok]).toEqual([true, true]);
  }, 120_000);
});
