// `spillway runs list|show|export|delete`: the run store from a terminal.
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { parseArgs } from 'node:util';

import { formatRunStorage, RunDevice, runStorage } from '../../common/contract.js';
import type { RunStorage } from '../../common/contract.js';
import { csvText } from '../../common/csv.js';
import { resolveDataDir } from '../paths.js';
import type { EvalMetric, RunRecord, StepMetric } from '../store/types.js';
import { RunSupervisor } from './supervisor.js';
import type { StoredRunConfig } from './types.js';

export const RUNS_USAGE = `Usage:
  spillway runs list [--json]                  every run, newest first
  spillway runs show ID [--json]               config, status, final metrics, last eval
  spillway runs export ID --format json|csv [--out FILE]
                                               step and eval metrics (JSON: and the telemetry kept)
  spillway runs delete ID [--yes]              remove the run's rows and files
  (ID may be any part of a run id that only one run has; --data-dir DIR picks the data folder)
`;

export interface CommandIO {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
}

const STEP_COLUMNS = ['step', 'time', 'loss', 'loss_plus', 'loss_minus', 'projected_grad', 'lr', 'step_ms', 'tokens_per_s', 'skipped', 'seed'] as const;
const EVAL_COLUMNS = ['accuracy', 'examples', 'eval_ms'] as const;
/** A step's bytes per link and wait for streamed units (empty when the engine reported none); last, so older columns keep their places. */
const IO_COLUMNS = ['h2d_bytes', 'd2h_bytes', 'ssd_read_bytes', 'ssd_write_bytes', 'io_wait_ms'] as const;
export const CSV_HEADER = ['kind', ...STEP_COLUMNS, ...EVAL_COLUMNS, ...IO_COLUMNS];

/** One table of step rows then eval rows; columns a kind lacks stay empty. */
export function metricsCsv(steps: StepMetric[], evals: EvalMetric[]): string {
  const rows: unknown[][] = [CSV_HEADER];
  for (const m of steps) {
    const io = m.io ?? null;
    rows.push([
      'step', m.step, m.time, m.loss, m.lossPlus, m.lossMinus, m.projectedGrad, m.lr, m.stepMs, m.tokensPerS, m.skipped, m.seed, null, null, null,
      io?.h2dBytes, io?.d2hBytes, io?.ssdReadBytes, io?.ssdWriteBytes, io?.waitMs,
    ]);
  }
  for (const e of evals) rows.push(['eval', e.step, e.time, e.loss, null, null, null, null, null, null, null, null, e.accuracy, e.examples, e.evalMs, null, null, null, null, null]);
  return csvText(rows);
}

const pct = (x: unknown) => (typeof x === 'number' ? `${(x * 100).toFixed(1)}%` : 'n/a');
const fixed = (x: unknown) => (typeof x === 'number' ? x.toFixed(4) : 'n/a');
const when = (t: number | null) => (t === null ? '-' : new Date(t).toISOString().replace('T', ' ').slice(0, 19));

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n') + '\n';
}

function finalAccuracy(r: RunRecord): unknown {
  return (r.finalMetrics?.eval as { accuracy?: unknown } | null | undefined)?.accuracy;
}

/** The plan a run was placed by, one line: homes, predicted step and floor. */
function planLine(p: Record<string, unknown>): string {
  const homes = (p.homes ?? {}) as Record<string, unknown>;
  const ms = (x: unknown) => (typeof x === 'number' ? `${x.toFixed(1)} ms` : 'n/a');
  return `${homes.device ?? 0} units on the device, ${homes.cpu ?? 0} on the CPU, ${homes.ssd ?? 0} on the SSD; predicted step ${ms(p.predictedStepMs)}, floor ${ms(p.floorMs)}`;
}

function listTable(runs: RunRecord[]): string {
  if (runs.length === 0) return 'no runs yet\n';
  return table([
    ['ID', 'STATUS', 'STEPS', 'LOSS', 'ACC', 'DEVICE', 'CREATED', 'NAME'],
    ...runs.map((r) => [r.id, r.status, `${r.stepsDone}/${r.stepsPlanned}`, fixed(r.finalMetrics?.finalLoss), pct(finalAccuracy(r)), runDeviceOf(r)?.id ?? '-', when(r.createdAt), r.name]),
  ]);
}

/**
 * The run's masters, update mode and spill folders (its stored options), when it sets them or streams
 * blocks (its plan homes units on the CPU or the SSD, or its offload puts them there); null otherwise.
 */
export function runStorageOf(r: RunRecord): RunStorage | null {
  const o = (r.config as unknown as StoredRunConfig | null)?.options;
  if (!o) return null;
  const homes = ((r.plan as { homes?: Record<string, unknown> } | null)?.homes ?? {}) as Record<string, unknown>;
  const count = (x: unknown) => (typeof x === 'number' && x > 0 ? x : 0);
  const streams = count(homes.cpu) + count(homes.ssd) > 0 || o.offload === 'cpu' || o.offload === 'ssd';
  return runStorage(o, streams);
}

/** The device the run's engine resolved --device to (its start event), from the stored config; null before that. */
export function runDeviceOf(r: RunRecord): RunDevice | null {
  const parsed = RunDevice.safeParse((r.config as unknown as StoredRunConfig | null)?.device);
  return parsed.success ? parsed.data : null;
}

/** "cuda:0: NVIDIA H100 80GB HBM3, GEMMs in tf32 (asked auto)". */
export function formatRunDevice(d: RunDevice): string {
  return `${d.id}: ${d.name}${d.id === 'cpu' ? '' : `, GEMMs in ${d.gemm}`}${d.asked === d.id ? '' : ` (asked ${d.asked})`}`;
}

function showText(s: RunSupervisor, r: RunRecord): string {
  const last = s.store.lastEval(r.id);
  const storage = runStorageOf(r);
  const device = runDeviceOf(r);
  const lines = [
    `run         ${r.id}  ${r.name}`,
    `status      ${r.status}${r.error ? ` (${r.error})` : ''}`,
    `model       ${r.model}`,
    `dataset     ${r.dataset}`,
    `task        ${r.task}`,
    `steps       ${r.stepsDone}/${r.stepsPlanned}`,
    `device      ${device ? formatRunDevice(device) : `not started (asked ${(r.config as unknown as StoredRunConfig | null)?.options?.device ?? 'auto'})`}`,
    `created     ${when(r.createdAt)}   started ${when(r.startedAt)}   ended ${when(r.endedAt)}`,
    ...(r.resumedFrom ? [`resumed     from ${r.resumedFrom}`] : []),
    `final loss  ${fixed(r.finalMetrics?.finalLoss)}`,
    ...(r.plan ? [`plan        ${planLine(r.plan)}`] : []),
    ...(storage ? [`storage     ${formatRunStorage(storage)}`] : []),
    `last eval   ${last ? `step ${last.step}: accuracy ${pct(last.accuracy)}, loss ${fixed(last.loss)} (${last.examples} examples)` : 'none'}`,
    `folder      ${r.folder}`,
    ...s.store.checkpoints(r.id).map((c) => `checkpoint  step ${c.step}: ${c.path} (${c.bytes} bytes)`),
    ...s.store.artifacts(r.id).map((a) => `${a.kind.padEnd(11)} ${a.path} (${a.bytes} bytes)`),
    'config',
    JSON.stringify(r.config, null, 2).replace(/^/gm, '  '),
  ];
  return lines.join('\n') + '\n';
}

async function confirm(io: CommandIO, question: string): Promise<boolean> {
  const rl = createInterface({ input: io.stdin, output: io.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

export async function runsCommand(argv: string[], io: CommandIO = process): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      json: { type: 'boolean' },
      format: { type: 'string' },
      out: { type: 'string' },
      yes: { type: 'boolean' },
      'data-dir': { type: 'string' },
    },
  });
  const [sub, idArg] = positionals;
  const say = (s: string) => io.stderr.write(`spillway: ${s}\n`);
  if (!sub || !['list', 'show', 'export', 'delete'].includes(sub)) {
    io.stderr.write(sub ? `spillway: unknown runs command "${sub}"\n\n${RUNS_USAGE}` : RUNS_USAGE);
    return 1;
  }
  if (sub !== 'list' && !idArg) {
    say(`runs ${sub} needs a run id`);
    return 1;
  }
  if (sub === 'export' && values.format !== 'json' && values.format !== 'csv') {
    say('runs export needs --format json or --format csv');
    return 1;
  }
  const sup = RunSupervisor.open(resolveDataDir({ explicit: values['data-dir'] }));
  try {
    for (const n of sup.store.notices) say(n);
    sup.recover();
    if (sub === 'list') {
      const runs = sup.listRuns();
      io.stdout.write(values.json ? JSON.stringify(runs) + '\n' : listTable(runs));
      return 0;
    }
    const run = sup.store.findRun(idArg);
    switch (sub) {
      case 'show':
        io.stdout.write(
          values.json
            ? JSON.stringify({ ...run, lastEval: sup.store.lastEval(run.id), checkpoints: sup.store.checkpoints(run.id), artifacts: sup.store.artifacts(run.id) }) + '\n'
            : showText(sup, run),
        );
        return 0;
      case 'export': {
        const m = sup.getMetrics(run.id);
        // JSON carries the machine's telemetry kept with the run too (CPU, memory, the spill drive, NVML's GPUs).
        const text =
          values.format === 'json'
            ? JSON.stringify({ run, steps: m.steps, evals: m.evals, telemetry: sup.systemSamples(run.id).map((s) => s.payload) }, null, 2) + '\n'
            : metricsCsv(m.steps, m.evals);
        if (values.out) writeFileSync(values.out, text);
        else io.stdout.write(text);
        return 0;
      }
      case 'delete': {
        const files = sup.runFiles(run.id);
        if (!values.yes) {
          if (!io.stdin.isTTY) {
            say(`not deleting run ${run.id} without confirmation; pass --yes`);
            return 1;
          }
          const list = files.map((f) => `\n  ${f}`).join('');
          if (!(await confirm(io, `Delete run ${run.id} (${run.name}) and its files?${list}\n[y/N] `))) {
            say('nothing deleted');
            return 1;
          }
        }
        const removed = await sup.deleteRun(run.id);
        io.stdout.write(`deleted run ${run.id}${removed.length ? ` and ${removed.join(', ')}` : ''}\n`);
        return 0;
      }
    }
    return 1;
  } catch (e) {
    say((e as Error).message);
    return 1;
  } finally {
    await sup.close();
  }
}
