// `spillway`: train, score and inspect from a terminal. Training and scoring
// run in an engine host process; this process only parses, prints and relays.
// The flags of train, score and plan come from the options schema
// (electron/common/options.ts, read by ./flags.ts).
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { formatDuration, parseBytes } from '../common/format.js';
import { PlanRequest, RunOptions, ScoreOptions, TrainOptions } from '../common/contract.js';
import { ESTIMATOR_DEFAULTS, RunFields, filled } from '../common/options.js';
import type { RunOptionsInput } from '../common/contract.js';
import { formatInspect, formatRefused, inspectModel, inspectRefused, isModelError } from '../model/index.js';
import { packageRoot } from '../engine/native.js';
import { openblasCoreChoice } from '../engine/blas-core.js';
import { startEngineJob } from '../engine/runner.js';
import type { ScoreEvent } from '../engine/score.js';
import type { EvalEvent, TrainEvent } from '../engine/trainer.js';
import { formatPlan } from '../engine/planner.js';
import type { PlanInput } from '../engine/planner.js';
import { distPlan, formatDistPlan } from '../engine/dist-plan.js';
import type { DistPlan } from '../engine/dist-plan.js';
import type { Parallel } from '../common/options.js';
import { planFor, toPlanResult } from '../engine/plan-result.js';
import { deviceListing, effectiveGemm, resolveDevice } from '../engine/device.js';
import { resolveDataDir } from '../services/paths.js';
import { RunSupervisor, runsCommand, RUNS_USAGE } from '../services/runs/index.js';
import { telemetrySource } from '../services/runs/operations.js';
import type { RunEvent, StoredRunConfig } from '../services/runs/index.js';
import type { RunRecord } from '../services/store/types.js';
import { readCheckpointState } from '../engine/checkpoint.js';
import { cmdServe } from '../server/serve-command.js';
import { cmdChat, cmdGenerate, GENERATE_USAGE } from './generate.js';
import { argOptions, helpLines, optionsFromFlags } from './flags.js';
import type { ArgValues } from './flags.js';
import { isStdoutClosed, out, stdoutClosed, watchOutput } from './output.js';
import { ProgressLine } from './progress.js';

/** What `spillway plan` takes of the run options, and the plan request's sequence length (its other flags are its own). */
const PlanFields = RunFields.pick({
  model: true,
  gpuMem: true,
  cpuMem: true,
  ssdMem: true,
  spillDirs: true,
  updateOn: true,
  masters: true,
  batchSize: true,
  q: true,
  writeBackEvery: true,
  steps: true,
  device: true,
  gemm: true,
  ranks: true,
  parallel: true,
  groups: true,
  sliced: true,
  trainable: true,
  rank: true,
  targets: true,
  sparseFraction: true,
  threads: true,
}).extend({ maxLength: PlanRequest.shape.maxLength });
/** `spillway plan`'s exit status when the plan does not fit. */
export const EXIT_DOES_NOT_FIT = 2;

const USAGE = `spillway — zeroth-order fine-tuning of language models larger than the GPU

Usage:
  spillway train [options]        fine-tune with MeZO (no options: the embedded demo)
  spillway score --model M --data D [--task T] [--per-example] [--json]
                                  mean loss and accuracy of a model on a dataset, no training
  spillway generate --model M --prompt P [--prompt P2 ...] [--chat] [--max-new-tokens N] [--json]
                                  text from a model (several prompts decode together),
                                  streamed as it is written
  spillway chat --model M [--system-prompt S] [--json]
                                  a conversation in the model's chat template, one turn
                                  per line
  spillway inspect <model> [--json]
                                  architecture, parameters, dtype, size, support
  spillway plan --model M [options] [--json]
                                  where every unit lives (SSD blocks striped over the
                                  spill folders), where each is updated, memory per tier,
                                  bytes per step per link, predicted step and run time;
                                  exit status ${EXIT_DOES_NOT_FIT} when the plan does not fit
  spillway doctor [--spill DIR] [--clean-spill] [--json]
                                  what this machine has: CUDA, GPUs, cuBLAS, NVML,
                                  BLAS, io_uring, O_DIRECT on the spill folder
  spillway serve [--host H] [--port N] [--static DIR]
                                  the app's backend for a browser (127.0.0.1 + token)
  spillway help

Train options:
${helpLines(TrainOptions, { task: true })}
  --json                one JSON object per line: start (with the run id), step, eval, checkpoint,
                        done, error
  --data-dir DIR        where runs are recorded (default $SPILLWAY_DATA_DIR, else
                        $XDG_DATA_HOME/spillway or ~/.local/share/spillway)

Score options: --model, --data, the task flags, --threads, --batch-size, --max-length, --device and
--gemm as in train, and
  --per-example         one line per example (loss, and correct or wrong when classifying)
  --json                one JSON object per line: each example, then the summary

${GENERATE_USAGE}

Plan options:
${helpLines(PlanFields)}
  --interconnect I      with --ranks: how the GPUs of a machine reach each other, pcie (default) or nvlink;
                        over NVLink streamed blocks are sliced (each GPU uploads 1/N, then all-gather)
  --all-gather-bandwidth X
                        bytes/s a GPU receives in an all-gather (default: NVLink 350GB, PCIe the H2D rate)
  --ranks-per-machine N with --ranks: ranks on one machine (default all of them); --cpu-mem is then the
                        machine's, shared among its ranks
  --calibration-bytes X size of the SSD test file when calibrating (default 64MiB)
  --recalibrate         measure this machine again instead of using the cached calibration
  --json                the plan as one JSON object
  --data-dir DIR        where the calibration is cached

Runs:
${RUNS_USAGE.replace(/^Usage:\n/, '')}`;

function fail(message: string, json: boolean): never {
  if (json) out(JSON.stringify({ type: 'error', message }) + '\n');
  else process.stderr.write(`spillway: ${message}\n`);
  process.exit(1);
}

interface DemoSpec {
  model: string;
  data: { train: string; eval: string };
  task: { template: string; labelWords?: string[] };
  steps: number;
  batchSize: number;
  lr: number;
  eps: number;
  evalEvery: number;
  seed: number;
  evalMax?: number;
}

/** The embedded demo's options (resources/demo.json), over which train's flags apply when neither --model nor --data is given. */
export function demoOptions(): RunOptionsInput {
  const res = join(packageRoot(), 'resources');
  const demo = JSON.parse(readFileSync(join(res, 'demo.json'), 'utf8')) as DemoSpec;
  return {
    model: join(res, demo.model),
    train: join(res, demo.data.train),
    eval: join(res, demo.data.eval),
    task: { kind: demo.task.template, ...(demo.task.labelWords ? { labelWords: demo.task.labelWords } : {}) } as RunOptionsInput['task'],
    steps: demo.steps,
    batchSize: demo.batchSize,
    lr: demo.lr,
    eps: demo.eps,
    evalEvery: demo.evalEvery,
    seed: demo.seed,
    evalMax: demo.evalMax ?? 0,
  };
}

const TRAIN_FLAGS = {
  ...argOptions(TrainOptions, { task: true }),
  json: { type: 'boolean' },
  'data-dir': { type: 'string' },
} as const;

/**
 * train's flags as the options the run starts with: over the demo's when neither --model nor --data
 * is given, over the resumed run's (`resumed`) with --resume.
 */
export function trainOptionsFromArgs(v: ArgValues, resumed?: Record<string, unknown>): TrainOptions {
  const demo = !resumed && v.model === undefined && v.data === undefined;
  if (!demo && !resumed && v.model === undefined) throw new Error('--model is required with --data');
  if (!demo && !resumed && v.data === undefined) throw new Error('--data is required with --model');
  const base: Record<string, unknown> = demo ? { ...demoOptions() } : { ...resumed };
  // A budget without --offload: the planner places the blocks.
  if (v.offload === undefined && (v['gpu-mem'] ?? v['cpu-mem'] ?? v['ssd-mem']) !== undefined) base.offload = 'auto';
  // The demo's lr and eps are MeZO's on every weight: another trainable set takes its own defaults
  // (the adapters' 1e-4 / 1e-2, the label words' rows 1e-2 / 1e-3) unless --lr or --eps says otherwise.
  if (demo && v.train !== undefined && v.train !== 'full') {
    delete base.lr;
    delete base.eps;
  }
  const o = optionsFromFlags(TrainOptions, v, base, 'train');
  if (o.checkpointEvery && !o.checkpointDir) throw new Error('--checkpoint-every needs --checkpoint-dir');
  return filled(o);
}

/**
 * How to try a saved run: a model folder chats as it is; an adapter (lora, loldu, tokens) through its
 * merged folder, which --merge writes (chat and generate load Hugging Face folders).
 */
function tryIt(out: string): string {
  if (!existsSync(join(out, 'adapter_config.json'))) return `try it: spillway chat --model ${out}`;
  if (existsSync(join(out, 'merged', 'config.json'))) return `try it: spillway chat --model ${join(out, 'merged')}`;
  return 'a peft adapter over the base model: load it with peft, or train with --merge to chat with it here';
}

const pct = (x: number | null | undefined) => (x === null || x === undefined ? 'n/a' : `${(x * 100).toFixed(1)}%`);

/** "cuda:0 (NVIDIA H100 80GB HBM3, gemm fp32)" or "cpu × 8 threads". */
const onWhat = (e: { backend: string; threads: number; device?: { id: string } }) => (e.device && e.device.id !== 'cpu' ? e.backend : `${e.backend} × ${e.threads} threads`);

/** Generated answers' exact match and F1, when the evaluation scored them. */
const answerWords = (e: EvalEvent) => (e.exactMatch != null ? `, exact match ${pct(e.exactMatch)}, F1 ${pct(e.f1)}` : '');

/** An evaluation in a few words: accuracy and loss when classifying, the loss otherwise (and generated answers' scores). */
const evalWords = (e: EvalEvent) =>
  (e.accuracy === null ? `held-out loss ${e.loss.toFixed(4)}` : `held-out accuracy ${pct(e.accuracy)}, loss ${e.loss.toFixed(4)}`) + answerWords(e);

/** Before → after: accuracy (and its lift in points) when classifying, else the held-out loss. */
function evalChange(before: EvalEvent | null, after: EvalEvent | null): string {
  if (before?.accuracy != null || after?.accuracy != null) {
    const a = before?.accuracy ?? null;
    const b = after?.accuracy ?? null;
    const lift = a !== null && b !== null ? ` (${b >= a ? '+' : ''}${((b - a) * 100).toFixed(1)} points)` : '';
    return `held-out accuracy ${pct(a)} → ${pct(b)}${lift}`;
  }
  const loss = (e: EvalEvent | null) => (e ? e.loss.toFixed(4) : 'n/a');
  const answers =
    before?.exactMatch != null || after?.exactMatch != null
      ? `; exact match ${pct(before?.exactMatch)} → ${pct(after?.exactMatch)}, F1 ${pct(before?.f1)} → ${pct(after?.f1)}`
      : '';
  return before || after ? `held-out loss ${loss(before)} → ${loss(after)}${answers}` : 'no held-out evaluation';
}

/**
 * What `train --resume DIR` continues: the run the checkpoint names, when this data folder has it
 * (its stored options are the base the flags change), else the checkpoint's own options, under the
 * checkpoint's run id when that is free here (the run keeps its identity across machines).
 */
async function resumeTarget(sup: RunSupervisor, dir: string): Promise<{ run: RunRecord | null; id: string | undefined; base: Record<string, unknown> }> {
  const state = await readCheckpointState(dir);
  const run = state.run_id ? sup.getRun(state.run_id) : null;
  const strip = ({ resumeFrom: _r, allowOptionChanges: _a, runId: _i, ...rest }: Record<string, unknown>) => rest;
  if (run) return { run, id: run.id, base: strip((run.config as unknown as StoredRunConfig).options as unknown as Record<string, unknown>) };
  return { run: null, id: state.run_id, base: strip(state.options as Record<string, unknown>) };
}

async function cmdTrain(argv: string[]): Promise<number> {
  const values: ArgValues = parseArgs({ args: argv, options: TRAIN_FLAGS, allowPositionals: false }).values;
  const json = values.json === true;
  const resumeDir = typeof values.resume === 'string' ? resolve(values.resume) : undefined;
  let options!: TrainOptions;
  // Flags are checked before the store opens; a resume's options start from its run's, read from the store.
  try {
    if (!resumeDir) options = trainOptionsFromArgs(values);
  } catch (e) {
    fail((e as Error).message, json);
  }
  let supervisor: RunSupervisor;
  try {
    supervisor = RunSupervisor.open(resolveDataDir({ explicit: values['data-dir'] as string | undefined }));
  } catch (e) {
    fail((e as Error).message, json);
  }
  let target: Awaited<ReturnType<typeof resumeTarget>> | null = null;
  try {
    supervisor.recover();
    if (resumeDir) {
      target = await resumeTarget(supervisor, resumeDir);
      options = trainOptionsFromArgs(values, target.base);
    }
  } catch (e) {
    await supervisor.close();
    fail((e as Error).message, json);
  }
  const isDemo = !resumeDir && values.model === undefined && values.data === undefined;
  const progress = new ProgressLine(process.stderr, !json && process.stderr.isTTY === true);
  let zeroShot: EvalEvent | null = null;
  const onEvent = (e: TrainEvent & { runId: string }) => {
    const { runId: eventRun, ...event } = e;
    if (json) {
      // The start names the run (spillway runs show ID); the other lines are the engine's events.
      if (event.type !== 'log' && event.type !== 'ready') out(JSON.stringify(event.type === 'start' ? { ...event, runId: eventRun } : event) + '\n');
      return;
    }
    switch (event.type) {
      case 'log':
        progress.log(event.message);
        break;
      case 'start':
        progress.log(
          `${isDemo ? 'demo: ' : ''}run ${eventRun}: ${event.model} (${event.architecture}, ${(event.parameters / 1e6).toFixed(2)}M parameters) on ${onWhat(event)}; ` +
            `${event.trainExamples} training / ${event.evalExamples} held-out examples; ${event.steps} steps of batch ${event.batchSize}`,
        );
        if (event.plan) {
          const p = event.plan;
          const ms = (x: number | null) => (x === null ? 'n/a' : `${x.toFixed(1)} ms`);
          progress.log(
            `plan: ${p.homes.device} units on the device, ${p.homes.cpu} on the CPU, ${p.homes.ssd} on the SSD; ` +
              `predicted ${ms(p.predictedStepMs)} per step, floor ${ms(p.floorMs)}${p.bound ? ` (${p.bound})` : ''}`,
          );
        }
        if (event.world) {
          const w = event.world;
          const hosts = [...new Set(w.ranks.map((r) => r.host))];
          const how = w.parallel === '2d' ? `2d: ${w.groups} perturbation groups of ${w.shards}` : `${w.parallel} parallel`;
          progress.log(
            `${w.size} ranks (${how}) on ${hosts.join(', ')}, ${w.ranks[0]?.threads ?? 1} thread(s) each, ${w.library}; ` +
              `a rank silent for ${w.timeoutS} s at an exchange is named and the run ended`,
          );
        }
        progress.total = event.steps;
        break;
      case 'eval':
        if (event.step === 0) {
          zeroShot = event;
          progress.log(`zero-shot (before training): ${evalWords(event)}`);
        } else {
          progress.log(`step ${event.step}: ${evalWords(event)}`);
        }
        break;
      case 'checkpoint':
        progress.log(`checkpoint at step ${event.step}: ${event.path}`);
        break;
      case 'step':
        progress.update(event.step, `loss ${event.loss.toFixed(4)}  ${event.stepMs.toFixed(0)} ms/step  ${Math.round(event.tokensPerS)} tok/s`);
        break;
      case 'done':
        progress.finish();
        process.stderr.write(
          `${event.status === 'completed' ? 'done' : 'stopped'}: ${event.steps} steps in ${formatDuration(event.wallS * 1000)}; ` +
            evalChange(zeroShot, event.eval) +
            (event.skippedSteps ? `; ${event.skippedSteps} steps skipped (non-finite)` : '') +
            (event.out ? `\nsaved to ${event.out} (${tryIt(event.out)})` : '') +
            '\n',
        );
        break;
    }
  };
  // Checkpoints the person did not ask for go quietly into the run's folder.
  const showCheckpoints = values['checkpoint-dir'] !== undefined || (options.checkpointDir !== undefined && !target?.run);
  let runId: string | undefined;
  for (const n of supervisor.store.notices) progress.log(n);
  // The machine's telemetry is kept with the run, as the app keeps it (runs show, the GUI's Runs page).
  const telemetry = telemetrySource(supervisor);
  supervisor.subscribe('*', (e: RunEvent) => {
    if (e.type === 'status') return;
    // Before the run is recorded its checks report progress (this process starts one run).
    if (runId === undefined ? e.type !== 'log' : e.runId !== runId) return;
    if (e.type === 'checkpoint' && !showCheckpoints) return;
    onEvent(e);
  });
  const finish = async (message: string | null): Promise<number> => {
    telemetry.stop();
    await supervisor.close();
    if (message === null) return 0;
    progress.finish();
    fail(message, json);
  };
  try {
    // Every run keeps its final model (the run's folder without --out): to try it and export it.
    if (target?.run) runId = (await supervisor.resume(target.run.id, { checkpoint: resumeDir, options })).id;
    else runId = (await supervisor.start({ options, ...(target?.id ? { id: target.id } : {}) })).id;
  } catch (e) {
    return finish((e as Error).message);
  }
  const id = runId;
  let interrupted = 0;
  process.on('SIGINT', () => {
    interrupted++;
    if (interrupted === 1) {
      progress.log('stopping after the current step (Ctrl-C again to kill)…');
      void supervisor.stop(id, { graceMs: null });
    } else {
      void supervisor.kill(id);
    }
  });
  // The reader of --json went away (`| head`): stop the run as Ctrl-C would, with a checkpoint.
  void stdoutClosed.then(() => {
    if (supervisor.isActive(id)) void supervisor.stop(id, { graceMs: null });
  });
  const run = await supervisor.waitFor(id);
  return finish(run.error);
}

const SCORE_FLAGS = {
  ...argOptions(ScoreOptions, { task: true }),
  'per-example': { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

async function cmdScore(argv: string[]): Promise<number> {
  const values: ArgValues = parseArgs({ args: argv, options: SCORE_FLAGS }).values;
  const json = values.json === true;
  const perExample = json || values['per-example'] === true;
  let options: ScoreOptions;
  try {
    if (values.model === undefined || values.data === undefined) throw new Error('score needs --model and --data');
    options = optionsFromFlags(ScoreOptions, values, {}, 'score');
  } catch (e) {
    fail((e as Error).message, json);
  }
  const onEvent = (raw: unknown) => {
    const e = raw as ScoreEvent;
    if (e.type === 'log') {
      if (!json) process.stderr.write(`${e.message}\n`);
      return;
    }
    if (json) {
      if (e.type === 'example' || e.type === 'summary') out(JSON.stringify(e) + '\n');
    } else if (e.type === 'example') {
      if (!perExample) return;
      const c = e.correct === null ? '' : e.correct ? '  correct' : '  wrong';
      out(`${e.source}  loss ${e.loss.toFixed(4)}${c}\n`);
    } else if (e.type === 'summary') {
      const acc = e.accuracy === null ? '' : `, accuracy ${pct(e.accuracy)}`;
      out(`${e.examples} examples: mean loss ${e.loss.toFixed(4)}${acc} (${formatDuration(e.wallS * 1000)})\n`);
    }
  };
  const job = startEngineJob({ type: 'score', options }, onEvent);
  // Nobody reads the rest (`| head`): end the engine and leave quietly.
  void stdoutClosed.then(() => job.kill());
  try {
    await job.done;
    return 0;
  } catch (e) {
    if (isStdoutClosed()) return 0;
    fail((e as Error).message, json);
  }
}

async function cmdInspect(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { json: { type: 'boolean' } }, allowPositionals: true });
  const json = values.json === true;
  if (positionals.length !== 1) fail('inspect needs exactly one model path', json);
  try {
    const report = await inspectModel(resolve(positionals[0]));
    out(json ? JSON.stringify(report) + '\n' : formatInspect(report) + '\n');
    return 0;
  } catch (e) {
    const message = (e as Error).message;
    // A model the engine refuses still has a size, dtypes and an architecture name worth showing.
    const refused = isModelError(e) ? await inspectRefused(resolve(positionals[0]), message) : null;
    if (!refused) fail(message, json);
    if (json) {
      out(JSON.stringify({ type: 'error', message, model: refused }) + '\n');
    } else {
      out(formatRefused(refused) + '\n');
      process.stderr.write(`spillway: ${message}\n`);
    }
    return 1;
  }
}

/** Who picked OpenBLAS's kernels, after its configuration on doctor's blas line. */
function blasKernelsNote(k: ReturnType<typeof openblasCoreChoice>): string {
  if (k.by === 'spillway') return ` (${k.core}: picked from the CPU's flags; set OPENBLAS_CORETYPE to choose others)`;
  if (k.by === 'environment') return ` (OPENBLAS_CORETYPE=${JSON.stringify(k.core)})`;
  if (k.by === 'build') return ' (built for one target: its kernels whatever OPENBLAS_CORETYPE says)';
  return '';
}

async function cmdDoctor(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' }, spill: { type: 'string' }, 'clean-spill': { type: 'boolean' } } });
  const { loadNative } = await import('../engine/native.js');
  const os = await import('node:os');
  const spill = resolve(values.spill ?? os.tmpdir());
  let native;
  try {
    native = loadNative();
  } catch (e) {
    fail((e as Error).message, values.json === true);
  }
  const cuda = native.cudaDevices();
  const probe = native.probe(spill);
  const gpu = await native.nvmlSample();
  const { deleteSpillFiles, findStaleSpillFiles } = await import('../engine/spill-files.js');
  const stale = await findStaleSpillFiles(spill);
  if (values['clean-spill']) await deleteSpillFiles(stale);
  // --ranks: Open MPI's library (dlopened by the engine) and mpirun; NCCL for the sliced transfer on GPUs.
  const dist = native.distLibraries();
  const { mpirunVersion } = await import('../engine/mpirun.js');
  const mpirun = mpirunVersion();
  const report = {
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpu: { model: os.cpus()[0]?.model ?? 'unknown', cores: os.availableParallelism(), memoryBytes: os.totalmem() },
    blas: probe.blas,
    blasKernels: openblasCoreChoice(probe.blas),
    cudaCompiled: native.cudaCompiled,
    cuda,
    cublas: probe.cublas,
    nvml: probe.nvml,
    gpu,
    ioUring: probe.ioUring,
    directIo: { folder: spill, ...probe.directIo },
    staleSpillFiles: stale.map((f) => ({ ...f, deleted: values['clean-spill'] === true })),
    mpi: { ...dist.mpi, mpirun },
    nccl: dist.nccl,
  };
  if (values.json) {
    out(JSON.stringify(report) + '\n');
    return 0;
  }
  const mark = (ok: boolean) => (ok ? 'yes' : 'no ');
  const lines = [
    `node         ${report.node} on ${report.platform}`,
    `cpu          ${report.cpu.model}, ${report.cpu.cores} cores, ${(report.cpu.memoryBytes / 2 ** 30).toFixed(1)} GiB`,
    `blas         ${report.blas}${blasKernelsNote(report.blasKernels)}`,
    `cuda         ${report.cudaCompiled ? 'compiled in' : 'not compiled in'}; ${cuda.state}${cuda.detail ? ` (${String(cuda.detail)})` : ''}`,
    ...((cuda.devices as { index: number; name: string; totalBytes: number; computeCapability: string }[] | undefined) ?? []).map(
      (d) => `  device ${d.index}     ${d.name}, ${(d.totalBytes / 2 ** 30).toFixed(1)} GiB, compute capability ${d.computeCapability}`,
    ),
    `cublas       ${mark(probe.cublas.ok)} ${probe.cublas.ok ? '' : `(${probe.cublas.detail}; GEMMs would use the built-in kernel)`}`,
    `nvml         ${mark(probe.nvml.ok)} ${probe.nvml.ok ? '' : '(no GPU telemetry)'}`,
    `io_uring     ${mark(probe.ioUring.ok)} ${probe.ioUring.detail}`,
    `O_DIRECT     ${mark(probe.directIo?.ok === true)} ${probe.directIo?.detail ?? ''}`,
    `mpi          ${mark(dist.mpi.ok && mpirun.version !== null)} ${dist.mpi.ok ? `${dist.mpi.detail}, ${mpirun.version ?? mpirun.error}` : `(${dist.mpi.detail}; --ranks needs it)`}`,
    `nccl         ${mark(dist.nccl.ok)} ${dist.nccl.ok ? dist.nccl.detail : `(${dist.nccl.detail}; the sliced transfer between GPUs needs it)`}`,
    stale.length
      ? `spill files  ${stale.length} left by engines that ended uncleanly (${(stale.reduce((n, f) => n + f.bytes, 0) / 1e9).toFixed(2)} GB)` +
        (values['clean-spill'] ? ': deleted' : `: delete them with spillway doctor --spill ${spill} --clean-spill`)
      : `spill files  none left over in ${spill}`,
  ];
  out(lines.join('\n') + '\n');
  return 0;
}

const PLAN_FLAGS = {
  ...argOptions(PlanFields),
  interconnect: { type: 'string' },
  'all-gather-bandwidth': { type: 'string' },
  'ranks-per-machine': { type: 'string' },
  'calibration-bytes': { type: 'string' },
  recalibrate: { type: 'boolean' },
  json: { type: 'boolean' },
  'data-dir': { type: 'string' },
} as const;

/** plan --ranks N: the plan of each rank and each link when N ranks share the step (dist-plan.ts). */
function rankPlan(input: PlanInput, o: { ranks: number; parallel: Parallel; groups?: number; q: number; batchSize: number; sliced: boolean }, values: ArgValues): DistPlan {
  const kind = (values.interconnect as string | undefined) ?? 'pcie';
  if (kind !== 'pcie' && kind !== 'nvlink') throw new Error(`--interconnect must be pcie or nvlink, got ${JSON.stringify(kind)}`);
  const h2d = input.rates?.h2dBytesPerS;
  if (!h2d) throw new Error('plan --ranks needs the rates of this machine (its calibration)');
  const bw = typeof values['all-gather-bandwidth'] === 'string' ? parseBytes(values['all-gather-bandwidth']) : kind === 'nvlink' ? 350e9 : h2d;
  const perMachine = typeof values['ranks-per-machine'] === 'string' ? Number(values['ranks-per-machine']) : o.ranks;
  if (!Number.isInteger(perMachine) || perMachine < 1) throw new Error(`--ranks-per-machine must be an integer >= 1, got ${JSON.stringify(values['ranks-per-machine'])}`);
  return distPlan(input, {
    ranks: o.ranks,
    ranksPerMachine: perMachine,
    parallel: o.parallel,
    groups: o.groups,
    q: o.q,
    batchSize: o.batchSize,
    interconnect: { kind, allGatherBytesPerS: bw },
    sliced: o.sliced,
  });
}

async function cmdPlan(argv: string[]): Promise<number> {
  const values: ArgValues = parseArgs({ args: argv, options: PLAN_FLAGS }).values;
  const json = values.json === true;
  try {
    if (values.model === undefined) throw new Error('plan needs --model');
    const o = optionsFromFlags(PlanFields, values, {}, 'plan');
    // Planned for the device a run with these flags computes on: calibrated there, its free memory the default budget.
    const resolved = resolveDevice(o.device, deviceListing());
    const { plan, info, calibration, prefetchRequested, device, input } = await planFor({
      model: o.model,
      device: { resolved, gemm: effectiveGemm(o.gemm, resolved).gemm },
      budgets: { device: o.gpuMem, cpu: o.cpuMem, ssd: o.ssdMem },
      spillDirs: o.spillDirs ?? [],
      updateMode: o.updateOn ?? 'auto',
      trainable: { set: o.trainable, rank: o.rank, targets: o.targets, fraction: o.sparseFraction },
      masters: o.masters ?? 'fp32',
      batchSize: o.batchSize,
      maxLength: o.maxLength,
      q: o.q,
      writeBackEvery: o.writeBackEvery ?? 1,
      dataDir: resolveDataDir({ explicit: values['data-dir'] as string | undefined }),
      calibrate: values.recalibrate ? 'recalibrate' : 'measure',
      calibrationBytes: typeof values['calibration-bytes'] === 'string' ? parseBytes(values['calibration-bytes']) : undefined,
      threads: o.threads || undefined,
    });
    const runMs = plan.predictedStepMs === null ? null : plan.predictedStepMs * o.steps;
    const ranks = o.ranks > 1 ? rankPlan(input, { ...o, q: o.q ?? ESTIMATOR_DEFAULTS.mezo.q }, values) : null;
    if (json) {
      out(JSON.stringify({ ...toPlanResult(plan, info.dir, prefetchRequested, device), homes: plan.homes, memoryByTier: plan.memory, steps: o.steps, predictedRunMs: runMs, calibration, ...(ranks ? { ranks: { ...ranks, single: undefined, rank: undefined } } : {}) }) + '\n');
    } else {
      out(`${resolved.reason}${device?.gemm && resolved.kind === 'cuda' ? `; GEMMs in ${device.gemm}` : ''}\n` + formatPlan(plan, { steps: o.steps }) + '\n' + (ranks ? `\n${formatDistPlan(ranks)}\n` : ''));
    }
    return plan.feasible ? 0 : EXIT_DOES_NOT_FIT;
  } catch (e) {
    fail((e as Error).message, json);
  }
}

function asksForHelp(e: unknown): boolean {
  const err = e as { code?: string; message?: string };
  return err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && /^Unknown option '(--help|-h)'/.test(err.message ?? '');
}

export async function main(argv: string[]): Promise<number> {
  watchOutput();
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'train':
        return await cmdTrain(rest);
      case 'score':
        return await cmdScore(rest);
      case 'inspect':
        return await cmdInspect(rest);
      case 'generate':
        return await cmdGenerate(rest);
      case 'chat':
        return await cmdChat(rest);
      case 'serve':
        return await cmdServe(rest);
      case 'runs':
        return await runsCommand(rest);
      case 'doctor':
        return await cmdDoctor(rest);
      case 'plan':
        return await cmdPlan(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        out(USAGE);
        return cmd === undefined ? 1 : 0;
      default:
        process.stderr.write(`spillway: unknown command "${cmd}"\n\n${USAGE}`);
        return 1;
    }
  } catch (e) {
    // parseArgs rejects unknown flags here; `--help` or `-h` after a command is not an error but
    // a request for the usage (it is refused as unknown only where it stands as a flag, so a
    // prompt or value spelled "-h" is not taken for it).
    if (asksForHelp(e)) {
      out(USAGE);
      return 0;
    }
    process.stderr.write(`spillway: ${(e as Error).message}\n`);
    return 1;
  }
}
