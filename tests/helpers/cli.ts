// The `spillway` command as a person runs it: a child process with 2 threads and its own data
// folder; never throws, the exit code is part of the answer.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { ROOT } from './engine.js';

const run = promisify(execFile);
export const BIN = join(ROOT, 'bin', 'spillway.js');

export async function runSpillway(args: string[], dataDir: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [BIN, ...args], { env: { ...process.env, SPILLWAY_THREADS: '2', SPILLWAY_DATA_DIR: dataDir, ...env }, maxBuffer: 64 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** The objects of `--json` output, one per line. */
export const jsonLines = (s: string) => s.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
