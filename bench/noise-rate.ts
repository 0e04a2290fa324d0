// `npm run bench:noise`: what the CPU backend's perturbation noise costs per element (z alone,
// the forwards' pair of perturbed copies, the update), on each generator of this build
// (SPILLWAY_NOISE_ISA = avx2, avx512; with --scalar the scalar definition too) and on other builds of native/bench/noise_rate.cpp
// (`--also main=PATH`: another checkout's engine, built as bench/README.md says), taking turns
// round by round so that each round's ratios see the same load. Writes
// bench/results/noise-cpu.{json,md}.
//
//   node dist/bench/noise-rate.js [--also main=/tmp/noise_rate_main] [--scalar] [--rounds 5]
//                                 [--threads 1] [--elements 2359296] [--reps 5] [--out noise-cpu]
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

import { RESULTS, ROOT, benchArgs, machineBusyMs, machineInfo, machineLine, median, runChild } from './common.js';

const NOISE_RATE = join(ROOT, 'native', 'build', 'noise_rate');
const OPS = ['noise', 'perturb_pair', 'update'] as const;
const WHAT: Record<(typeof OPS)[number], string> = {
  noise: 'z alone (noise_fill)',
  perturb_pair: 'theta + eps z and theta - eps z from one pass (the forwards\' noise phase)',
  update: 'theta -= coef z, z regenerated (the step\'s update, one perturbation)',
};

interface Build {
  label: string;
  bin: string;
  env: NodeJS.ProcessEnv;
}

async function main(): Promise<void> {
  const args = benchArgs(process.argv.slice(2), { also: '', scalar: false, rounds: 5, threads: 1, elements: 768 * 3072, reps: 5, out: 'noise-cpu' });
  if (!existsSync(NOISE_RATE)) throw new Error(`${NOISE_RATE} is missing: run npm run build:native`);
  const machine = machineInfo();
  const others: Build[] = args.also
    ? args.also.split(',').map((spec) => {
        const eq = spec.indexOf('=');
        if (eq <= 0) throw new Error(`--also ${spec}: expected LABEL=PATH to a noise_rate binary`);
        const bin = spec.slice(eq + 1);
        if (!existsSync(bin)) throw new Error(`--also ${spec}: ${bin} does not exist`);
        return { label: spec.slice(0, eq), bin, env: {} };
      })
    : [];
  const isas = [...(args.scalar ? ['scalar'] : []), 'avx2', ...(machine.simd.includes('avx512f') ? ['avx512'] : [])];
  const builds: Build[] = [...others, ...isas.map((isa) => ({ label: `this build, ${isa}`, bin: NOISE_RATE, env: { SPILLWAY_NOISE_ISA: isa } }))];
  const baseline = builds[others.length ? 0 : builds.findIndex((b) => b.env.SPILLWAY_NOISE_ISA === 'avx2')];

  // cpuNs[build][op][round], and the machine's busy cores while each build ran (itself included).
  const cpuNs = builds.map(() => OPS.map(() => [] as number[]));
  const busyCores = builds.map(() => [] as number[]);
  for (let r = 0; r < args.rounds; r++) {
    for (let k = 0; k < builds.length; k++) {
      const i = (k + r) % builds.length;  // who goes first rotates
      const b = builds[i];
      const busy0 = machineBusyMs();
      const t0 = Date.now();
      const lines = await runChild(b.bin, ['--threads', String(args.threads), '--reps', String(args.reps), '--elements', String(args.elements)], {
        ...process.env,
        ...b.env,
      });
      busyCores[i].push((machineBusyMs() - busy0) / Math.max(1, Date.now() - t0));
      for (const l of lines) {
        const o = JSON.parse(l) as { op: (typeof OPS)[number]; cpuNsPerElement: number };
        cpuNs[i][OPS.indexOf(o.op)].push(o.cpuNsPerElement);
      }
      process.stderr.write(`round ${r + 1}/${args.rounds}: ${b.label}\n`);
    }
  }

  const bi = builds.indexOf(baseline);
  const rows = builds.map((b, i) => ({
    label: b.label,
    busyCores: { median: median(busyCores[i]), max: Math.max(...busyCores[i]) },
    ops: Object.fromEntries(
      OPS.map((op, o) => {
        const ratios = cpuNs[i][o].map((v, r) => v / cpuNs[bi][o][r]);
        return [op, { cpuNsPerElement: median(cpuNs[i][o]), rounds: cpuNs[i][o], vsBaseline: median(ratios), range: [Math.min(...ratios), Math.max(...ratios)] }];
      }),
    ),
  }));

  const fmt = (x: number, d = 2) => x.toFixed(d);
  const md: string[] = [
    '# Perturbation noise on the CPU: cost per element, by generator and build',
    '',
    `Elements per call: ${args.elements} (an OPT-125M fc1 weight), float32, Gaussian; ${args.threads} thread(s); each build runs ` +
      `\`native/build/noise_rate\` (native/bench/noise_rate.cpp: the CPU backend's noise_fill, perturb_pair and zo_update), ` +
      `best of ${args.reps} repetitions by CPU time (user + system, all threads) after one untimed call; ${args.rounds} rounds, the builds taking turns ` +
      '(who goes first rotates). A figure is the median over rounds; a ratio is the median of the rounds\' ratios to the baseline ' +
      `(**${baseline.label}**), with their range. Every generator gives the same bits (tests/native/noise.test.ts).`,
    '',
    `${machineLine(machine)}; load average at the end ${os.loadavg().map((l) => fmt(l)).join(' / ')} (1 / 5 / 15 min).`,
    '',
    '| build | op | CPU ns / element | vs baseline (range) | machine busy while it ran, cores (median / max, itself included) |',
    '|---|---|---|---|---|',
    ...rows.flatMap((r) =>
      OPS.map(
        (op) =>
          `| ${r.label} | ${op} | ${fmt(r.ops[op].cpuNsPerElement, 3)} | ${fmt(r.ops[op].vsBaseline)} (${fmt(r.ops[op].range[0])} – ${fmt(r.ops[op].range[1])}) | ${fmt(r.busyCores.median)} / ${fmt(r.busyCores.max)} |`,
      ),
    ),
    '',
    ...OPS.map((op) => `- ${op}: ${WHAT[op]}.`),
    '',
    `Command: \`npm run build:native && node dist/bench/noise-rate.js${args.also ? ` --also ${args.also}` : ''}${args.scalar ? ' --scalar' : ''} --rounds ${args.rounds} --threads ${args.threads}\` (see bench/README.md).`,
  ];
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(join(RESULTS, `${args.out}.json`), JSON.stringify({ machine, loadavg: os.loadavg(), args, baseline: baseline.label, rows }, null, 2) + '\n');
  writeFileSync(join(RESULTS, `${args.out}.md`), md.join('\n') + '\n');
  process.stdout.write(md.join('\n') + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
