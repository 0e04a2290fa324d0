// `npm run bench:gemm`: the float32 GEMM libraries Debian offers, at the shapes of the CPU ZO
// step (OPT-125M, the batch shapes of `npm run bench`), against the engine's GEMMs (its own
// AVX-512 and AVX2 kernels, and OpenBLAS as it ran before: SPILLWAY_CPU_GEMM), on the same threads. Writes bench/results/gemm-libs-cpu.{json,md}: what the engine's choice of
// library rests on.
//
//   node dist/bench/gemm-libs.js [--threads 2] [--reps 5] [--rounds 2] [--shapes 16x64,4x256,1x512]
//
// Each library is dlopen'ed by native/build/gemm_rate (--blas / --dnnl) and runs on its own
// threads; a library that is not installed is listed as such. MKL comes through torch 2 (the venv).
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';

import { OPT_125M } from './make-model.js';
import { BENCH, RESULTS, ROOT, machineInfo, machineLine, median, venvPython } from './common.js';

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
  /** Why it cannot run on this machine, where it cannot. */
  missing?: string;
}

function candidates(threads: number, venvPython: string, simd: string[]): Candidate[] {
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
    {
      label: 'spillway cpu backend, own AVX-512 kernel (one call per column band)',
      pkg: 'spillway',
      cmd: GEMM_RATE,
      args: [],
      env: { SPILLWAY_CPU_GEMM: 'own' },
      missing: simd.includes('avx512f') ? undefined : 'no AVX-512F on this CPU',
    },
    {
      label: 'spillway cpu backend, own AVX2 kernel (one call per column band)',
      pkg: 'spillway',
      cmd: GEMM_RATE,
      args: [],
      env: { SPILLWAY_CPU_GEMM: 'avx2' },
    },
    {
      label: 'spillway cpu backend, OpenBLAS single-threaded per column band',
      pkg: 'libopenblas0-pthread',
      cmd: GEMM_RATE,
      args: [],
      env: { SPILLWAY_CPU_GEMM: 'openblas' },
    },
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
  const machine = machineInfo();
  const cands = candidates(o.threads, venvPython(), machine.simd);
  const present = cands.filter((c) => !c.missing && (!c.path || existsSync(c.path)));
  const rates = new Map<string, number[]>(); // label|shape -> best GFLOP/s of each round
  const cpuRates = new Map<string, number[]>(); // label|shape -> best GFLOP per CPU second of each round
  const loads: number[] = []; // 1-minute load average as each library's run starts
  for (let round = 0; round < o.rounds; round++)
    for (const c of present) {
      process.stderr.write(`[gemm] round ${round + 1}/${o.rounds}: ${c.label}\n`);
      loads.push(os.loadavg()[0]);
      for (const r of await run(c.cmd, [...c.args, '--threads', String(o.threads), '--reps', String(o.reps), ...gemms], c.env)) {
        const key = `${c.label}|${r.shape as string}`;
        rates.set(key, [...(rates.get(key) ?? []), r.gflops as number]);
        cpuRates.set(key, [...(cpuRates.get(key) ?? []), r.gflopsPerCpuSecond as number]);
      }
    }
  const cell = (m: Map<string, number[]>, label: string, g: string) => median(m.get(`${label}|${g}`) ?? [0]);
  const engine = present[0];
  // The engine's rate over the best other library's, per shape: below 1, that library would serve the step better.
  const ratioRow = (m: Map<string, number[]>, what: string) =>
    `| **spillway / best other, ${what}** | ${gemms
      .map((g) => {
        const others = present.slice(1).map((c) => ({ c, r: cell(m, c.label, g) }));
        const best = others.reduce((a, b) => (b.r > a.r ? b : a));
        return `${(cell(m, engine.label, g) / best.r).toFixed(2)} (${best.c.label})`;
      })
      .join(' | ')} |`;
  const lines = [
    '# Float32 GEMM libraries at the CPU ZO step\'s shapes',
    '',
    `out[M, N] = x[M, K] W^T, ${o.threads} threads, best of ${o.reps} repetitions per round, ${o.rounds} rounds interleaved; each cell gives ` +
      "the median over rounds of each round's best: GFLOP/s in wall time, then GFLOP per CPU second (all threads; a library whose threads " +
      'spin while they wait counts the spinning). Shapes: the projections (N tokens x 768 x 768, x 3072, 3072 x 768) and the ' +
      `head (scored rows x 768 x ${V}) of batches ${o.shapes.join(', ')}.`,
    '',
    `${machineLine(machine)}. 1-minute load average ${Math.min(...loads).toFixed(1)} – ${Math.max(...loads).toFixed(1)} on ${machine.cores} cores during the run` +
      (Math.max(...loads) > machine.cores ? ': **the machine was shared**, rates are as measured under that load (the spread across rounds is in the JSON).' : '.'),
    '',
    `| library (Debian package) | ${gemms.join(' | ')} |`,
    `|---|${gemms.map(() => '---').join('|')}|`,
    ...present.map(
      (c) =>
        `| ${c.label} (${c.pkg}) | ${gemms.map((g) => `${cell(rates, c.label, g).toFixed(0)}; ${cell(cpuRates, c.label, g).toFixed(0)}`).join(' | ')} |`,
    ),
    ...(present.length > 1 ? [ratioRow(rates, 'wall time'), ratioRow(cpuRates, 'per CPU second')] : []),
    ...cands.filter((c) => !present.includes(c)).map((c) => `| ${c.label} (${c.pkg}): ${c.missing ?? 'not installed'} | ${gemms.map(() => '–').join(' | ')} |`),
    '',
    `Command: \`npm run build && ${process.argv.length > 2 ? `node dist/bench/gemm-libs.js ${process.argv.slice(2).join(' ')}` : 'npm run bench:gemm'}\`.`,
    '',
  ];
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(
    join(RESULTS, 'gemm-libs-cpu.json'),
    JSON.stringify({ bench: 'gemm-libs-cpu', ...o, machine, loads, gemms, rates: Object.fromEntries(rates), cpuRates: Object.fromEntries(cpuRates) }, null, 2) + '\n',
  );
  writeFileSync(join(RESULTS, 'gemm-libs-cpu.md'), lines.join('\n'));
  process.stdout.write(lines.join('\n'));
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
