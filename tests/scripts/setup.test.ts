// scripts/setup.sh on a simulated fresh machine: apt-get, dpkg-query, sudo, id, node and python3
// are stand-ins on a PATH that holds nothing else but the few tools the script uses, so what it
// would install, and how it asks for root, can be checked without touching this machine.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { ROOT } from '../helpers/engine.js';

const SCRIPT = join(ROOT, 'scripts', 'setup.sh');
const TOOLS = ['sed', 'sort', 'head', 'cat', 'mkdir', 'rm', 'dirname', 'env', 'cp'];
const BUILD = ['g++', 'make', 'cmake', 'python3', 'libopenblas-dev', 'liburing-dev'];

let dir: string;
let bin: string;
let log: string;

function stub(name: string, body: string): void {
  const path = join(bin, name);
  writeFileSync(path, `#!/bin/bash\n${body}\n`);
  chmodSync(path, 0o755);
}

/** Installed packages (dpkg) and commands present; `root` says what `id -u` answers. */
function machine(o: { packages?: string[]; commands?: string[]; root?: boolean; sudo?: boolean; node?: string }): void {
  for (const t of TOOLS) {
    const real = spawnSync('bash', ['-c', `command -v ${t}`], { encoding: 'utf8' }).stdout.trim();
    symlinkSync(real, join(bin, t));
  }
  const installed = (o.packages ?? []).join(' ');
  stub('dpkg-query', `for p in ${installed}; do [ "$p" = "\${@: -1}" ] && { printf 'install ok installed'; exit 0; }; done; exit 1`);
  stub('apt-get', `echo "apt-get $*" >> ${log}`);
  stub('id', `echo ${o.root ? 0 : 1000}`);
  stub('node', `echo ${o.node ?? 'v20.20.0'}`);
  if (o.sudo) stub('sudo', `echo "sudo $1" >> ${log}; "$@"`);
  for (const c of o.commands ?? []) stub(c, 'exit 0');
}

function setup(...args: string[]): { code: number | null; out: string; err: string; calls: string[] } {
  const r = spawnSync('/bin/bash', [SCRIPT, ...args], {
    encoding: 'utf8',
    env: { PATH: bin, HOME: dir, SPILLWAY_VENV: join(dir, 'venv'), PIP_INDEX_URL: 'file:///index/simple' },
  });
  const calls = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : [];
  return { code: r.status, out: r.stdout, err: r.stderr, calls };
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'spw-setup-'));
  bin = join(dir, 'bin');
  log = join(dir, 'calls.log');
  spawnSync('mkdir', [bin]);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('scripts/setup.sh', () => {
  it('without root or sudo, installs nothing and prints the exact command to run as root', () => {
    machine({});
    const r = setup();
    expect(r.code).not.toBe(0);
    expect(r.calls).toEqual([]);
    for (const p of BUILD) expect(r.out).toMatch(new RegExp(`^  ${p.replaceAll('+', '\\+')} +\\S`, 'm'));
    expect(r.err).toContain(`apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${BUILD.join(' ')}`);
  });

  it('as root, installs only what is missing, with apt-get directly', () => {
    machine({ root: true, commands: ['g++', 'make', 'cmake', 'python3'], packages: ['liburing-dev'] });
    const r = setup();
    expect(r.code).toBe(0);
    expect(r.calls).toEqual(['apt-get update -qq', 'apt-get install -y -qq --no-install-recommends libopenblas-dev']);
    expect(r.out).toMatch(/libopenblas-dev +BLAS/);
    expect(r.out).not.toMatch(/liburing-dev +io_uring/);
  });

  it('as a user with sudo, asks sudo; with --test it adds Chromium, the PyTorch references and MPI', () => {
    machine({ sudo: true, commands: ['g++', 'make', 'cmake', 'python3'], packages: ['libopenblas-dev', 'liburing-dev', 'python3-venv'] });
    const r = setup('--test', '--check');
    expect(r.code).toBe(1);
    const listed = [...r.out.matchAll(/^  (\S+) +/gm)].map((m) => m[1]);
    expect(listed).toEqual(['chromium', 'python3-torch', 'python3-numpy', 'openmpi-bin', 'libopenmpi-dev']);
    expect(r.calls).toEqual([]);
    const installing = setup('--test');
    expect(installing.calls.slice(0, 4)).toEqual([
      'sudo apt-get',
      'apt-get update -qq',
      'sudo env',
      `apt-get install -y -qq --no-install-recommends ${listed.join(' ')}`,
    ]);
  });

  it('has nothing to do on a machine that has everything', () => {
    machine({ commands: ['g++', 'make', 'cmake', 'python3'], packages: ['libopenblas-dev', 'liburing-dev'] });
    const r = setup();
    expect(r.code).toBe(0);
    expect(r.calls).toEqual([]);
    expect(r.out).toMatch(/all present/);
  });

  it('refuses a Node older than the build needs, saying which it found', () => {
    machine({ commands: ['g++', 'make', 'cmake', 'python3'], packages: ['libopenblas-dev', 'liburing-dev'], node: 'v18.19.0' });
    const r = setup();
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/Node 18\.19\.0 found; Spillway needs Node >= 20\.\d+/);
  });

  it('makes the reference venv offline once; a second run with the same requirements does nothing', () => {
    const all = ['libopenblas-dev', 'liburing-dev', 'chromium', 'python3-torch', 'python3-numpy', 'python3-venv', 'openmpi-bin', 'libopenmpi-dev'];
    machine({ commands: ['g++', 'make', 'cmake'], packages: all });
    // python3 -m venv DIR puts this same stand-in at DIR/bin/python; -m pip logs what it was asked.
    stub('python3', `if [ "$1" = --version ]; then echo Python 3.11.2; elif [ "$2" = venv ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; else echo "pip[$PIP_INDEX_URL] \${*:3}" >> ${log}; fi`);
    const first = setup('--test');
    expect(first.code).toBe(0);
    expect(first.calls).toHaveLength(1);
    expect(first.calls[0]).toMatch(/^pip\[file:\/\/\/index\/simple\] install .*torch==2\.13\.0\+cpu transformers==5\.18\.0 peft tokenizers safetensors jinja2 numpy$/);
    const second = setup('--test');
    expect(second.code).toBe(0);
    expect(second.calls).toHaveLength(1);
    expect(second.out).toMatch(/venv .*: up to date/);
  });
});
