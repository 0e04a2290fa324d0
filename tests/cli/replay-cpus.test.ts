// A training run replays bit for bit on any x86-64 CPU with AVX2: every product of a step is the
// engine's own GEMM (native/src/cpu/backend_cpu.cpp, takes_own), whose AVX-512 and AVX2 kernels
// compute every element as the same chain, where OpenBLAS's bits depend on the core type it
// picked for the CPU. This machine plays two CPUs: its own (the default kernel, AVX-512 where it
// has it, with OpenBLAS's Haswell kernels) and an AVX2 one with OpenBLAS's oldest x86-64 kernels
// (SPILLWAY_CPU_GEMM=avx2, OPENBLAS_CORETYPE=Prescott). Before attention's products (64 deep or
// less on most heads, and 32 on the demo model) were the own GEMM's too, the two runs of the
// README's demo parted in the seventh digit of the loss at the first step.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { jsonLines, runSpillway } from '../helpers/cli.js';

const work = mkdtempSync(join(tmpdir(), 'spillway-replay-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Step = { type: 'step'; step: number; lossPlus: number; lossMinus: number; projectedGrad: number };

/** The README's demo run (its model and data), a few steps, in a child with `env`. */
async function demo(name: string, env: Record<string, string>): Promise<Step[]> {
  const args = ['train', '--steps', '4', '--threads', '2', '--eval-fraction', '0', '--no-zero-shot', '--json'];
  const r = await runSpillway(args, join(work, name), env);
  expect(r.code, r.stderr).toBe(0);
  return jsonLines(r.stdout).filter((e) => e.type === 'step') as Step[];
}

describe('a run on two kinds of CPU', () => {
  it("gives the same bits with the AVX-512 or the AVX2 kernel, whatever OpenBLAS's kernels", async () => {
    const here = await demo('here', { SPILLWAY_CPU_GEMM: 'own', OPENBLAS_CORETYPE: 'Haswell' });
    const avx2 = await demo('avx2', { SPILLWAY_CPU_GEMM: 'avx2', OPENBLAS_CORETYPE: 'Prescott' });
    expect(here.map((s) => s.step)).toEqual([1, 2, 3, 4]);
    expect(avx2.map((s) => s.step)).toEqual(here.map((s) => s.step));
    // The losses of both forwards at every step, and the projected gradient (their difference
    // over 2 eps, which a last-bit change anywhere in either forward moves): bit for bit. The
    // weights a step reads are the updates of the steps before, so later steps check those too.
    for (const [i, s] of here.entries()) {
      for (const k of ['lossPlus', 'lossMinus', 'projectedGrad'] as const) expect(Object.is(avx2[i][k], s[k]), `step ${s.step} ${k}: ${avx2[i][k]} vs ${s[k]}`).toBe(true);
    }
    // The run learned something to compare (the losses are not a constant).
    expect(new Set(here.map((s) => s.lossPlus)).size).toBeGreaterThan(1);
  });
});
