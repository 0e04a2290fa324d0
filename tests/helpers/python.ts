// The Python interpreters the tests compare against.
//
// - debianPython: Debian's /usr/bin/python3 with python3-torch (PyTorch 1.13) and numpy: the
//   readable references in tests/reference/ were written against it.
// - venvPython: a virtual environment with PyTorch 2.13 (CPU), transformers, peft, tokenizers,
//   safetensors and jinja2, installed offline from the machine's local package index by
//   `scripts/setup.sh --test` at $SPILLWAY_VENV (default ~/.cache/spillway/venv): the real Hugging
//   Face implementations the engine, the chat templates and the adapters are checked against.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const debianPython = '/usr/bin/python3';

/**
 * Debian's interpreter, once it imports `modules`; throws with the command that installs them
 * otherwise (the references are part of the suite: a machine without them fails, it does not skip).
 */
export function debianPythonWith(...modules: string[]): string {
  try {
    execFileSync(debianPython, ['-c', `import ${modules.join(', ')}`], { stdio: 'ignore' });
  } catch {
    throw new Error(`${debianPython} cannot import ${modules.join(', ')}: the readable references need python3-torch and python3-numpy, installed by \`bash scripts/setup.sh --test\``);
  }
  return debianPython;
}

export function venvDir(): string {
  return process.env.SPILLWAY_VENV || join(homedir(), '.cache', 'spillway', 'venv');
}

/** The venv's interpreter; throws with the command that creates it when it is missing (tests need it: no silent skip). */
export function venvPython(): string {
  const py = join(venvDir(), 'bin', 'python');
  if (!existsSync(py)) {
    throw new Error(`${py} not found: the reference environment (torch 2.13, transformers) is made by \`bash scripts/setup.sh --test\``);
  }
  return py;
}

/**
 * Jobs for tests/reference/hf_tiny.py (tiny models made, run and loaded back by transformers, in
 * the venv): one process for the list, one result per job.
 */
export function transformersJobs(jobs: unknown[]): unknown[] {
  return JSON.parse(
    execFileSync(venvPython(), [join(import.meta.dirname, '..', 'reference', 'hf_tiny.py')], {
      input: JSON.stringify(jobs),
      env: { ...process.env, OMP_NUM_THREADS: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
      maxBuffer: 1 << 28,
      timeout: 600_000,
    }).toString(),
  ) as unknown[];
}
