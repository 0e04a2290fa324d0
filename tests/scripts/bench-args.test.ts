// The benchmarks' flags (bench/common.ts, benchArgs): --help lists them with their defaults, and a
// flag that is not there is named, with the list, instead of a bare parser stack.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { benchArgs } from '../../bench/common.js';
import { ROOT } from '../helpers/engine.js';

const run = promisify(execFile);
const ZO_STEP = join(ROOT, 'dist', 'bench', 'zo-step.js');

describe('benchmark flags', () => {
  it('reads numbers, strings and switches, and names what does not read', () => {
    const defaults = { threads: 2, anchors: 'torch2', quick: false };
    expect(benchArgs(['--threads', '4', '--quick'], defaults)).toEqual({ threads: 4, anchors: 'torch2', quick: true });
    expect(() => benchArgs(['--threads', 'two'], defaults)).toThrow('--threads expects a number, got "two"');
    expect(() => benchArgs(['--thread', '4'], defaults)).toThrow(/Unknown option '--thread'[\s\S]*--threads <number>\s+\(default 2\)[\s\S]*--anchors <string>\s+\(default torch2\)[\s\S]*--quick/);
  });

  it('`node dist/bench/zo-step.js --help` lists its flags and runs nothing', async () => {
    const r = await run(process.execPath, [ZO_STEP, '--help']);
    expect(r.stdout).toMatch(/--anchors <string>/);
    expect(r.stdout).toMatch(/--out <string>/);
    expect(r.stderr).toBe('');
  });

  it('an unknown flag fails with its name and the flags there are', async () => {
    const err = await run(process.execPath, [ZO_STEP, '--anchor', 'torch2']).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).not.toBe(0);
    expect(err?.stderr).toMatch(/Unknown option '--anchor'/);
    expect(err?.stderr).toMatch(/--anchors <string>/);
  });
});
