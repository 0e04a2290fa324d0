// mpirun's command line and the reading of its tagged output, on real mpirun runs.
import { spawn } from 'node:child_process';

import { describe, expect, it } from 'vitest';

import { mpirunCommand, noticedEnd, TaggedLineReader } from '../../electron/engine/mpirun.js';
import type { RankLine } from '../../electron/engine/mpirun.js';

const asRoot = process.getuid?.() === 0;

/** Runs argv on `ranks` ranks and reads its output back per rank. */
function run(ranks: number, argv: string[]): Promise<{ code: number | null; lines: RankLine[] }> {
  const { command, args } = mpirunCommand({ ranks, asRoot }, argv);
  return new Promise((resolve, reject) => {
    const lines: RankLine[] = [];
    const reader = new TaggedLineReader((l) => lines.push(l));
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.setEncoding('utf8').on('data', (d: string) => reader.push(d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => reader.push(d));
    child.on('error', reject);
    child.on('close', (code) => {
      reader.end();
      resolve({ code, lines });
    });
  });
}

describe('mpirunCommand', () => {
  it('tags output, leaves binding to the ranks, oversubscribes one machine and forwards the environment', () => {
    const { command, args } = mpirunCommand({ ranks: 4, asRoot: true, forwardEnv: ['PATH', 'SPILLWAY_X'] }, ['node', 'x.js'], { PATH: '/bin', SPILLWAY_X: '1' });
    expect(command).toBe('mpirun');
    expect(args).toEqual(['-n', '4', '--tag-output', '--bind-to', 'none', '--oversubscribe', '--allow-run-as-root', '-x', 'PATH', '-x', 'SPILLWAY_X', 'node', 'x.js']);
    const multi = mpirunCommand({ ranks: 16, hostfile: '/etc/hosts.mpi', forwardEnv: [] }, ['a'], {}).args;
    expect(multi).toContain('--hostfile');
    expect(multi).not.toContain('--oversubscribe');
    expect(() => mpirunCommand({ ranks: 0 }, [])).toThrow(/ranks must be an integer >= 1/);
  });
});

describe('TaggedLineReader on real mpirun output', () => {
  it("gives each rank its own lines back whole, long lines (re-tagged every 4 KiB) included", async () => {
    // Each rank writes a 100 000-character line between two short ones, on stdout and stderr.
    const script =
      "const r = process.env.OMPI_COMM_WORLD_RANK; const c = 'ab'[r];" +
      "process.stdout.write('first ' + r + '\\n' + c.repeat(100000) + '\\nlast ' + r + '\\n');" +
      "process.stderr.write('warn ' + r + '\\n');";
    const { code, lines } = await run(2, [process.execPath, '-e', script]);
    expect(code).toBe(0);
    for (const r of [0, 1]) {
      const out = lines.filter((l) => l.rank === r && l.stream === 'stdout').map((l) => l.text);
      expect(out).toEqual([`first ${r}`, 'ab'[r].repeat(100000), `last ${r}`]);
      expect(lines.filter((l) => l.rank === r && l.stream === 'stderr').map((l) => l.text)).toEqual([`warn ${r}`]);
    }
  });

  it("names the rank mpirun saw die, from mpirun's own lines", async () => {
    const script = "if (process.env.OMPI_COMM_WORLD_RANK === '1') process.kill(process.pid, 'SIGKILL'); else setTimeout(() => {}, 600000);";
    const t0 = performance.now();
    const { code, lines } = await run(2, [process.execPath, '-e', script]);
    const seconds = (performance.now() - t0) / 1000;
    expect(code).not.toBe(0);
    const noticed = noticedEnd(lines.filter((l) => l.rank < 0).map((l) => l.text));
    expect(noticed).toEqual({ rank: 1, how: 'exited on signal 9 (Killed)', host: expect.any(String) });
    // Rank 0 would have waited 600 s: mpirun ended it (in about a second; 120 s is room for a loaded machine).
    expect(seconds).toBeLessThan(120);
  });
});
