// The distributed layer (native/src/dist) on real Open MPI: native/build/dist_ops and dist_abi
// run under mpirun with 2 and 3 ranks on this machine (the CPU backend; no GPU involved).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { mpirunCommand } from '../../electron/engine/mpirun.js';
import { ROOT } from '../helpers/engine.js';

const exec = promisify(execFile);
const BUILD = join(ROOT, 'native', 'build');
const asRoot = process.getuid?.() === 0;

async function mpirun(ranks: number, argv: string[]): Promise<{ code: number; out: string; seconds: number }> {
  const { command, args } = mpirunCommand({ ranks, asRoot }, argv);
  const t0 = performance.now();
  try {
    // A hang guard only (below vitest's 180 s): every case ends on its own in seconds.
    const r = await exec(command, args, { timeout: 150_000 });
    return { code: 0, out: r.stdout + r.stderr, seconds: (performance.now() - t0) / 1000 };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout + err.stderr, seconds: (performance.now() - t0) / 1000 };
  }
}

// The ranks' lines without mpirun's --tag-output prefix.
const lines = (out: string) => out.split('\n').map((l) => l.replace(/^\[\d+,\d+\]<std\w+>:/, ''));
const okLines = (out: string) => lines(out).filter((l) => l.startsWith('ok '));
const failLines = (out: string) => lines(out).filter((l) => l.startsWith('FAIL'));

describe('the step layout (no transport)', () => {
  it('shares perturbations and examples among ranks and reassembles every loss', async () => {
    const r = await exec(join(BUILD, 'dist_ops'), ['layout']);
    expect(r.stdout).toMatch(/^0 failed$/m);
    expect(r.stdout).not.toMatch(/FAIL/);
  });
});

describe('Open MPI through dlopen', () => {
  it.skipIf(!existsSync(join(BUILD, 'dist_abi')))("our prototypes match Open MPI's mpi.h and handles", async () => {
    const r = await exec(join(BUILD, 'dist_abi'), []);
    expect(r.stdout).toMatch(/^ok predefined handles of libmpi\.so\.40/m);
  });

  it('exchanges contributions and step losses among 2 and 3 ranks', async () => {
    for (const n of [2, 3]) {
      const r = await mpirun(n, [join(BUILD, 'dist_ops'), 'exchange']);
      expect(failLines(r.out)).toEqual([]);
      expect(r.code).toBe(0);
      // Per rank: the contributions, its local rank, and one line per number of groups that divides n.
      const groupings = [1, 2, 3].filter((g) => n % g === 0).length;
      expect(okLines(r.out).length).toBe(n * (2 + groupings));
      for (let rank = 0; rank < n; rank++) expect(r.out).toMatch(new RegExp(`rank ${rank}: 0 failed`));
    }
  });

  it('gathers 3 MB slices from every rank in place', async () => {
    const r = await mpirun(2, [join(BUILD, 'dist_ops'), 'all-gather']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/ok rank 0: every slice in place/);
    expect(r.out).toMatch(/ok rank 1: every slice in place/);
  });

  // The late rank sleeps 600 s: the run ends well before that only if MPI_Abort ended it. The
  // times are checked against the deadlines they come from, with room for a loaded machine.
  it('names a rank that does not arrive within the timeout, and MPI_Abort ends every rank', async () => {
    // Rank 2 of 3 is late at an exchange with a 4 s timeout (rank 0 waits 4 s, the others 4 s and the 1 s grace).
    const r = await mpirun(3, [join(BUILD, 'dist_ops'), 'late', '2', '600', '4']);
    expect(r.code).not.toBe(0);
    const line = lines(r.out).find((l) => l.includes('rank 0: DistError')) ?? '';
    const m = /DistError after (\d+\.\d\d) s naming 2: rank 2 \(pid \d+ on \S+\) has not taken part in the late test's exchange within 4\.0 s/.exec(line);
    expect(m, r.out).not.toBeNull();
    expect(Number(m?.[1])).toBeGreaterThanOrEqual(4);
    expect(Number(m?.[1])).toBeLessThan(4 + 30);
    expect(r.seconds).toBeLessThan(120);
  });

  it('the others name rank 0 when rank 0 is the one missing (after the timeout and the grace)', async () => {
    const r = await mpirun(2, [join(BUILD, 'dist_ops'), 'late', '0', '600', '4']);
    expect(r.code).not.toBe(0);
    const m = /rank 1: DistError after (\d+\.\d\d) s naming 0: rank 1 waited 5\.0 s for the late test's exchange from rank 0/.exec(r.out);
    expect(m, r.out).not.toBeNull();
    expect(Number(m?.[1])).toBeGreaterThanOrEqual(5);
    expect(Number(m?.[1])).toBeLessThan(5 + 30);
    expect(r.seconds).toBeLessThan(120);
  });
});
