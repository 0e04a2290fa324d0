// `npm run bench:gemm`: the float32 GEMM libraries Debian offers, at the shapes of the CPU ZO
// step (OPT-125M, the batch shapes of `npm run bench`), against the engine's own GEMM, on the
// same threads. Writes bench/results/gemm-libs-cpu.{json,md}: what the engine's choice of
// library rests on.
//
//   node dist/bench/gemm-libs.js [--threads 2] [--reps 5] [--rounds 2] [--shapes 16x64,4x256,1x512]
//
// Each library is dlopen'ed by native/build/gemm_rate (--blas / --dnnl) and runs on its own
// threads; a library that is not installed is listed as such. MKL comes through torch 2 (the venv).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';

import { OPT_125M } from './make-model.js';
import { BENCH, RESULTS, ROOT, median, venvPython } from './common.js';

const GEMM_RATE = join(ROOT, 'native', 'build', 'gemm_rate');
const LIB = '/usr/lib/x86_64-linux-gnu';

interface Candidate {
  label: string;
  /** Debian package that provides it. */
  pkg: string;
  cmd: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  path?: string;
}

function candidates(threads: number, venvPython: string): Candidate[] {
  const omp = { OMP_NUM_THREADS: String(threads) };
  const lib = (label: string, pkg: string, path: string, flag = '--blas', env: NodeJS.ProcessEnv = {}): Candidate => ({
    label,
    pkg,
    cmd: GEMM_RATE,
    args: [flag, path],
    env,
    path,
  });
  return [
    { label: 'spillway cpu backend (OpenBLAS single-threaded per column band)', pkg: 'libopenblas0-pthread', cmd: GEMM_RATE, args: [], env: {} },
    lib('OpenBLAS, pthreads build, own threads', 'libopenblas0-pthread', `${LIB}/openblas-pthread/libopenblas.so.0`),
    lib('OpenBLAS, OpenMP build, own threads', 'libopenblas0-openmp', `${LIB}/openblas-openmp/libopenblas.so.0`, '--blas', omp),
    lib('BLIS, pthreads build', 'libblis4-pthread', `${LIB}/blis-pthread/libblis.so.4`),
    lib('BLIS, OpenMP build', 'libblis4-openmp', `${LIB}/blis-openmp/libblis.so.4`, '--blas', omp),
    lib('oneDNN dnnl_sgemm', 'libdnnl2', `${LIB}/libdnnl.so.2`, '--dnnl', omp),
    { label: 'MKL through torch 2 (F.linear)', pkg: 'pip torch (venv)', cmd: venvPython, args: [join(BENCH, 'gemm_torch.py')], env: {}, path: venvPython },
  ];
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (out += d));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(out.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)) : reject(new Error(`${cmd} exited with ${code}`)),
    );
  });
}

async function main(): Promise<void> {
  const o = { threads: 2, reps: 5, rounds: 2, shapes: ['16x64', '4x256', '1x512'] };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`${argv[i]} needs a value`);
    if (argv[i] === '--threads') o.threads = Number(v);
    else if (argv[i] === '--reps') o.reps = Number(v);
    else if (argv[i] === '--rounds') o.rounds = Number(v);
    else if (argv[i] === '--shapes') o.shapes = v.split(',');
    else throw new Error(`unknown argument ${argv[i]}`);
    i++;
  }
  if (!existsSync(GEMM_RATE)) throw new Error(`${GEMM_RATE} not found: run \`npm run build:native\``);
  const { hidden: C, ffn: F, vocab: V } = OPT_125M;
  const gemms = [...new Set(o.shapes.flatMap((s) => {
    const [b, t] = s.split('x').map(Number);
    return [`${b * t}x${C}x${C}`, `${b * t}x${C}x${F}`, `${b * t}x${F}x${C}`, `${b * (t - 1)}x${C}x${V}`];
  }))];
  const cands = candidates(o.threads, venvPython());
  const present = cands.filter((c) => !c.path || existsSync(c.path));
  const rates = new Map<string, number[]>(); // label|shape -> best GFLOP/s of each round
  const cpuRates = new Map<string, number[]>(); // label|shape -> best GFLOP per CPU second of each round
  for (let round = 0; round < o.rounds; round++)
    for (const c of present) {
      process.stderr.write(`[gemm] round ${round + 1}/${o.rounds}: ${c.label}\n`);
      for (const r of await run(c.cmd, [...c.args, '--threads', String(o.threads), '--reps', String(o.reps), ...gemms], c.env)) {
        const key = `${c.label}|${r.shape as string}`;
        rates.set(key, [...(rates.get(key) ?? []), r.gflops as number]);
        cpuRates.set(key, [...(cpuRates.get(key) ?? []), r.gflopsPerCpuSecond as number]);
      }
    }
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const cpu = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? 'unknown';
  const lines = [
    '# Float32 GEMM libraries at the CPU ZO step\'s shapes',
    '',
    `out[M, N] = x[M, K] W^T, ${o.threads} threads, best of ${o.reps} repetitions per round, ${o.rounds} rounds interleaved; each cell gives ` +
      "the median over rounds of each round's best: GFLOP/s in wall time, then GFLOP per CPU second (all threads; a library whose threads " +
      'spin while they wait counts the spinning). Shapes: the projections (N tokens x 768 x 768, x 3072, 3072 x 768) and the ' +
      `head (scored rows x 768 x ${V}) of batches ${o.shapes.join(', ')}.`,
    '',
    `Machine: ${cpu}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB; shared with other work (see the spread across rounds in the JSON). ${new Date().toISOString()}.`,
    '',
    `| library (Debian package) | ${gemms.join(' | ')} |`,
    `|---|${gemms.map(() => '---').join('|')}|`,
    ...present.map(
      (c) =>
        `| ${c.label} (${c.pkg}) | ${gemms.map((g) => `${median(rates.get(`${c.label}|${g}`) ?? [0]).toFixed(0)}; ${median(cpuRates.get(`${c.label}|${g}`) ?? [0]).toFixed(0)}`).join(' | ')} |`,
    ),
    ...cands.filter((c) => !present.includes(c)).map((c) => `| ${c.label} (${c.pkg}): not installed | ${gemms.map(() => '–').join(' | ')} |`),
    '',
    'Command: `npm run build && npm run bench:gemm`.',
    '',
  ];
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(
    join(RESULTS, 'gemm-libs-cpu.json'),
    JSON.stringify({ bench: 'gemm-libs-cpu', ...o, cpu, gemms, rates: Object.fromEntries(rates), cpuRates: Object.fromEntries(cpuRates) }, null, 2) + '\n',
  );
  writeFileSync(join(RESULTS, 'gemm-libs-cpu.md'), lines.join('\n'));
  process.stdout.write(lines.join('\n'));
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
