// What a large dataset costs before the first step: `spillway train` on a
// generated SST-2-style JSONL file (20 MB, 200 MB and 2 GB by default, written
// under bench/work/, never committed), timed from the command's start to its
// first step, with the peak RSS of the engine host (VmHWM) at that moment; and
// `spillway score` timed to its first printed example. Each size runs on this
// checkout and, with --before DIR, on another built checkout (the code before
// a change) in the same session, side by side.
//
//   npm run build:ts && npm run bench:dataset-load -- --before /tmp/spillway-before
//   npm run bench:dataset-load -- --report       # results/dataset-load.md again from its .json
//
// The earlier loader read and tokenised the whole file first (the issue saw
// 131 s and ~3 GB at 200 MB on an idle machine; at 2 GB it needs tens of GB). So
// it runs whole only at its smallest size (--before-sizes); at the larger ones
// it gets a V8 heap limit (--before-heap MiB) and a time limit (--before-limit
// s), and the table says how far it got (its memory when stopped).
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';

import { parseBytes } from '../electron/common/format.js';
import { formatBytes } from '../electron/engine/safe-write.js';
import { benchArgs, RESULTS, ROOT, WORK } from './common.js';
import { engineOf } from './faults/processes.js';
import { Rng } from './make-model.js';

const WORDS = (
  'the a film movie story plot cast acting script pacing ending humor score soundtrack scene scenes director camera ' +
  'was is feels seems felt looked sounded remained became great good fine dull boring sharp stale moving clever ' +
  'sloppy brilliant weak strong warm cold bright dark quiet loud long short slow fast funny sad tender numbing and ' +
  'but yet still never always often rarely mostly not very quite rather too so really I we you it they this that'
).split(' ');

/** An SST-2-style JSONL file of about `bytes` (seeded: the same file every time). */
async function makeDataset(file: string, bytes: number): Promise<number> {
  if (existsSync(file) && Math.abs(statSync(file).size - bytes) < bytes * 0.01) return readRowsMeta(file);
  const rng = new Rng(0x5eed);
  const out = createWriteStream(file);
  let written = 0;
  let rows = 0;
  let chunk: string[] = [];
  while (written < bytes) {
    const n = 20 + rng.int(40);
    const words = Array.from({ length: n }, () => WORDS[rng.int(WORDS.length)]);
    const line = JSON.stringify({ sentence: words.join(' ') + '.', label: rng.int(2) }) + '\n';
    chunk.push(line);
    written += Buffer.byteLength(line);
    rows++;
    if (chunk.length === 10_000) {
      if (!out.write(chunk.join(''))) await new Promise<void>((r) => out.once('drain', () => r()));
      chunk = [];
    }
  }
  out.write(chunk.join(''));
  await new Promise<void>((r, j) => out.end((e?: Error | null) => (e ? j(e) : r())));
  writeFileSync(file + '.rows', String(rows));
  return rows;
}

function readRowsMeta(file: string): number {
  return existsSync(file + '.rows') ? Number(readFileSync(file + '.rows', 'utf8')) : Number.NaN;
}

/** VmHWM (peak resident set) of a process, bytes; 0 when it is gone. */
function peakRss(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

interface Measure {
  build: string;
  command: 'train' | 'score';
  size: number;
  rows: number;
  /** Seconds from the command's start to its first step (train) or first example (score); null when none came. */
  firstS: number | null;
  /** Peak RSS of the engine host up to then (or to its end), bytes. */
  enginePeak: number;
  outcome: string;
}

/** Runs one command of one build on one file until its first step or example, then ends it. */
function measure(build: { name: string; root: string; heapMiB: number | null }, command: 'train' | 'score', file: string, size: number, rows: number, limitS: number): Promise<Measure> {
  const data = join(WORK, `dataset-load-data-${process.pid}`);
  rmSync(data, { recursive: true, force: true });
  const model = join(ROOT, 'resources', 'models', 'spillway-demo');
  const args =
    command === 'train'
      ? ['train', '--model', model, '--data', file, '--task', 'sst2', '--eval-fraction', '0', '--no-zero-shot', '--steps', '1', '--batch-size', '16', '--threads', '2', '--json', '--data-dir', data]
      : ['score', '--model', model, '--data', file, '--task', 'sst2', '--batch-size', '16', '--threads', '2', '--json'];
  const env = { ...process.env, ...(build.heapMiB ? { NODE_OPTIONS: `--max-old-space-size=${build.heapMiB}` } : {}) };
  const t0 = Date.now();
  const child = spawn(process.execPath, [join(build.root, 'bin', 'spillway.js'), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve) => {
    let engine: number | null = null;
    let peak = 0;
    let out = '';
    let err = '';
    let settled = false;
    const sample = () => {
      if (engine !== null) peak = Math.max(peak, peakRss(engine));
      else void engineOf(child.pid as number).then((p) => (engine ??= p));
    };
    const timer = setInterval(sample, 100);
    const finish = (firstS: number | null, outcome: string) => {
      if (settled) return;
      settled = true;
      sample();
      clearInterval(timer);
      clearTimeout(limit);
      if (engine !== null) {
        try {
          process.kill(engine, 'SIGKILL');
        } catch {
          // ended
        }
      }
      child.kill('SIGKILL');
      rmSync(data, { recursive: true, force: true });
      resolve({ build: build.name, command, size, rows, firstS, enginePeak: peak, outcome });
    };
    const limit = setTimeout(() => finish(null, `no ${command === 'train' ? 'step' : 'example'} within ${limitS} s`), limitS * 1000);
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (/"type":"(step|example)"/.test(out)) finish((Date.now() - t0) / 1000, 'ok');
    });
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('exit', (code, signal) => {
      const why = /heap out of memory|Allocation failed/i.test(out + err) ? 'the engine host ran out of its V8 heap' : (out + err).trim().split('\n').pop() ?? '';
      finish(null, `ended (${signal ?? `exit ${code}`}) before its first ${command === 'train' ? 'step' : 'example'}: ${why.slice(0, 200)}`);
    });
  });
}

async function main(): Promise<void> {
  const a = benchArgs(process.argv.slice(2), { sizes: '20MB,200MB,2GB', before: '', 'before-sizes': '20MB,200MB', 'before-heap': 4096, limit: 900, 'before-limit': 240, score: '20MB,200MB,2GB' });
  mkdirSync(WORK, { recursive: true });
  mkdirSync(RESULTS, { recursive: true });
  const sizes = a.sizes.split(',').map((s) => parseBytes(s));
  const beforeSizes = new Set(a['before-sizes'].split(',').filter(Boolean).map((s) => parseBytes(s)));
  const scoreSizes = new Set(a.score.split(',').filter(Boolean).map((s) => parseBytes(s)));
  const builds = [
    { name: 'after', root: ROOT, heapMiB: null as number | null },
    ...(a.before ? [{ name: 'before', root: a.before, heapMiB: a['before-heap'] as number | null }] : []),
  ];
  const results: Measure[] = [];
  const load0 = loadavg()[0];
  for (const size of sizes) {
    const file = join(WORK, `sst2-${formatBytes(size).replace(/[ .]/g, '')}.jsonl`);
    process.stderr.write(`writing ${file}\n`);
    const rows = await makeDataset(file, size);
    for (const b of builds) {
      if (b.name === 'before' && !beforeSizes.has(size)) continue;
      // The earlier loader at the smallest size runs unbounded: its own peak is the figure.
      const build = b.name === 'before' && size <= Math.min(...beforeSizes) ? { ...b, heapMiB: null } : b;
      for (const command of ['train', 'score'] as const) {
        // Past its smallest size the earlier build only shows how far its train gets in the time allowed.
        if (command === 'score' && (!scoreSizes.has(size) || build.heapMiB !== null)) continue;
        process.stderr.write(`${b.name}: ${command} on ${formatBytes(size)}…\n`);
        const m = await measure(build, command, file, size, rows, b.name === 'before' ? a['before-limit'] : a.limit);
        process.stderr.write(`  ${m.firstS === null ? m.outcome : `${m.firstS.toFixed(1)} s`}, engine peak ${formatBytes(m.enginePeak)}\n`);
        results.push(m);
      }
    }
  }
  const machine = `${readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown CPU'}, ${availableParallelism()} cores, ${formatBytes(totalmem())} RAM`;
  const run: Results = { machine, command: `npm run bench:dataset-load --${process.argv.slice(2).map((x) => ` ${x}`).join('')}`, loadAverageAtStart: load0, loadAverageAtEnd: loadavg()[0], results };
  writeFileSync(join(RESULTS, 'dataset-load.json'), JSON.stringify(run, null, 2) + '\n');
  report(run);
}

interface Results {
  machine: string;
  command: string;
  loadAverageAtStart: number;
  loadAverageAtEnd: number;
  results: Measure[];
}

/** results/dataset-load.md from the run's figures, with the earlier build's over this one's where both reached their first step. */
function report(run: Results): void {
  const { results } = run;
  const row = (m: Measure) =>
    `| ${formatBytes(m.size)} (${m.rows} rows) | ${m.command} | ${m.build} | ${m.firstS === null ? '—' : `${m.firstS.toFixed(1)} s`} | ${formatBytes(m.enginePeak)} | ${m.outcome === 'ok' ? '' : m.outcome} |`;
  const ratios = results
    .filter((m) => m.build === 'after')
    .flatMap((after) => {
      const before = results.find((m) => m.build === 'before' && m.command === after.command && m.size === after.size);
      if (!before) return [];
      const time = before.firstS === null ? `> ${(Number(/within (\d+) s/.exec(before.outcome)?.[1] ?? NaN) / (after.firstS ?? NaN)).toFixed(1)}× (none in its time)` : `${(before.firstS / (after.firstS ?? NaN)).toFixed(1)}×`;
      const memory = `${before.firstS === null ? '> ' : ''}${(before.enginePeak / after.enginePeak).toFixed(1)}×`;
      return [`| ${formatBytes(after.size)} | ${after.command} | ${time} | ${memory} |`];
    });
  const md = [
    '# Large datasets: time to the first step and peak memory',
    '',
    `\`${run.command}\` on ${run.machine}; load average ${run.loadAverageAtStart.toFixed(1)} at the start and ${run.loadAverageAtEnd.toFixed(1)} at the end (a shared machine: times are inflated, memory is not).`,
    '"before": the checkout before datasets were read by index (every row read and tokenised before step 1); "after": this one.',
    '',
    'train: `--steps 1 --batch-size 16 --eval-fraction 0`, from the command\'s start to its first step; score: to its first printed example. Peak RSS: VmHWM of the engine host.',
    '',
    '| Dataset | Command | Build | First step / example | Engine peak RSS | Notes |',
    '|---|---|---|---|---|---|',
    ...results.map(row),
    '',
    '## Before over after (same run)',
    '',
    '| Dataset | Command | Time to first step / example | Engine peak RSS |',
    '|---|---|---|---|',
    ...ratios,
    '',
  ].join('\n');
  writeFileSync(join(RESULTS, 'dataset-load.md'), md);
  process.stdout.write(md);
}

void (process.argv.includes('--report') ? Promise.resolve(report(JSON.parse(readFileSync(join(RESULTS, 'dataset-load.json'), 'utf8')) as Results)) : main()).catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
