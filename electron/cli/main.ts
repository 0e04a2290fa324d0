// `spillway`: train, score and inspect from a terminal. Training and scoring
// run in an engine host process; this process only parses, prints and relays.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import type { TaskTemplate } from '../data/index.js';
import { formatInspect, inspectModel } from '../model/index.js';
import { packageRoot } from '../engine/native.js';
import { startEngineJob } from '../engine/runner.js';
import { resolveDataDir } from '../services/paths.js';
import { RunSupervisor, runsCommand, RUNS_USAGE } from '../services/runs/index.js';
import type { RunEvent } from '../services/runs/index.js';
import type { ScoreOptions } from '../engine/score.js';
import { TRAIN_DEFAULTS } from '../engine/trainer.js';
import { formatPlan, parseBytes, splitFolders } from '../engine/planner.js';
import type { UpdateMode } from '../engine/planner.js';
import { planFor, toPlanResult } from '../engine/plan-result.js';
import type { TrainEvent, TrainOptions } from '../engine/trainer.js';
import { ProgressLine } from './progress.js';
import { cmdServe } from '../server/serve-command.js';

const USAGE = `spillway — zeroth-order fine-tuning of language models larger than the GPU

Usage:
  spillway train [options]        fine-tune with MeZO (no options: the embedded demo)
  spillway score --model M --data D [--task T] [--json]
                                  per-example loss and accuracy, no training
  spillway inspect <model> [--json]
                                  architecture, parameters, dtype, size, support
  spillway plan --model M [--gpu-mem 24GB --cpu-mem 2GB --spill DIR[,DIR...] --ssd-mem 100GB
                --batch-size 16 --max-length 256 --update-on auto|home|device
                --masters fp32|bf16|fp16 --recalibrate] [--json]
                                  where every unit lives (SSD blocks striped over the
                                  spill folders), where each is updated, memory per tier,
                                  bytes per step per link, predicted step time and its floor
  spillway doctor [--spill DIR] [--clean-spill] [--json]
                                  what this machine has: CUDA, GPUs, cuBLAS, NVML,
                                  BLAS, io_uring, O_DIRECT on the spill folder
  spillway serve [--host H] [--port N] [--static DIR]
                                  the app's backend for a browser (127.0.0.1 + token)
  spillway help

Train options:
  --model PATH          Hugging Face model folder or HF cache entry (models--org--name)
  --data FILE           training data (.jsonl, .csv, .parquet)
  --eval-data FILE      held-out data (default: --eval-fraction of --data)
  --eval-fraction F     fraction of --data held out when no --eval-data (default 0.1)
  --task T              sst2 | rte | classify | text | completion | chat (default sst2)
  --label-words W       classify: label words as JSON ('[" bad"," good"]') or comma-separated
  --label-map M         classify: JSON object from dataset label to label-word index
  --prompt P            classify: prompt with {text} (default "{text} It was")
  --chat-format F       chat: messages (OpenAI) | sharegpt | alpaca (default: found from the fields)
  --messages-field F    chat: the list of turns (default messages, else conversations)
  --role-field F        chat: a turn's role key (default role, or from)
  --content-field F     chat: a turn's text key (default content, or value)
  --role-map M          chat: the data's role names, 'Customer=user,Agent=assistant' or a JSON object
  --instruction-field F, --input-field F, --output-field F
                        chat, Alpaca rows: field names (default instruction, input, output)
  --system-prompt S     chat: a system turn for conversations that have none
  --chat-template NAME  chat: which of the model's named chat templates (default "default")
  --template-vars J     chat: more chat template variables as JSON, e.g. '{"enable_thinking": false}'
  --steps N             steps (default 1000)          --batch-size N   (default 16)
  --lr X                learning rate (default 1e-6)  --eps X          (default 1e-3)
  --weight-decay X      (default 0)                   --q N            perturbations per step (default 1)
  --schedule S          constant | linear | cosine    --warmup N       warm-up steps (default 0)
  --noise K             gaussian | rademacher         --seed N         (default 0)
  --eval-every N        evaluate every N steps (default: start and end only)
  --eval-max N          at most N held-out examples per evaluation
  --max-length N        truncate sequences to N tokens
  --threads N           CPU threads (default: all cores)
  --offload T           where the blocks live between visits: none (default), cpu, ssd, auto
  --gpu-mem X           device memory budget (24GB, 512MiB, bytes); with --cpu-mem or --ssd-mem:
  --cpu-mem X           the planner places blocks (device first, then CPU, then SSD): --offload auto
  --ssd-mem X           spill file budget (default: the free space of --spill)
  --spill DIR[,DIR...]  spill folder(s) for --offload ssd / auto (a preallocated file each, removed at
                        the end); several folders (drives): SSD blocks are striped over them
  --write-back-every K  --offload ssd: rewrite a block every K updates, replaying in between (default 1)
  --update-on M         streamed blocks: auto (the planner's cost model, default), home (host threads
                        where the master lives) or device (on the device, then copied home: ZO2's way)
  --masters P           fp32 (default), bf16 or fp16: masters in that format, every update rounded
                        stochastically; streamed blocks move and are stored in half the bytes
  --out DIR             save the fine-tuned model (Hugging Face folder + seed log) here
  --checkpoint-every N  write a checkpoint every N steps (and on stop) into --checkpoint-dir
                        (without it: every 100 steps, quietly, into the run's folder)
  --checkpoint-dir DIR  where checkpoints go (the two newest are kept)
  --resume DIR          continue from a checkpoint folder (same options as the first run; --ranks may differ)
  --ranks N             N engine processes share each step (started with Open MPI's mpirun; one per GPU,
                        or per group of cores: the cores are shared among the ranks of a machine)
  --parallel P          data (default: each rank its shard of the batch), perturbation (each rank q/N of
                        the perturbations on the whole batch), 2d (--groups G perturbation groups of N/G)
  --groups G            --parallel 2d: perturbation groups
  --rank-timeout S      seconds a rank waits for the others before it names them and ends the run (120)
  --hostfile FILE       Open MPI host file: ranks on several machines (same install path on each)
  --no-zero-shot        skip the evaluation before the first step
  --json                one JSON object per line: start, step, eval, done, error
  --data-dir DIR        where runs are recorded (default $SPILLWAY_DATA_DIR, else
                        $XDG_DATA_HOME/spillway or ~/.local/share/spillway)

Runs:
${RUNS_USAGE.replace(/^Usage:\n/, '')}`;

function fail(message: string, json: boolean): never {
  if (json) process.stdout.write(JSON.stringify({ type: 'error', message }) + '\n');
  else process.stderr.write(`spillway: ${message}\n`);
  process.exit(1);
}

/** --spill values: each a folder, or a comma-separated list of folders (a path that exists is taken whole). */
function spillFolders(v: string | string[] | boolean | undefined): string[] {
  const vals = typeof v === 'string' ? [v] : Array.isArray(v) ? v : [];
  return vals.flatMap((x) => (existsSync(x) ? [x] : splitFolders(x)));
}

function num(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`--${name} expects a number, got "${v}"`);
  return n;
}

function parseLabelWords(v: string): string[] {
  const t = v.trim();
  if (t.startsWith('[')) {
    const parsed = JSON.parse(t) as unknown;
    if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) throw new Error('--label-words must be a JSON array of strings');
    return parsed as string[];
  }
  return v.split(',');
}

/** The chat task's flags (column mapping, template choice), shared by train and score. */
const CHAT_FLAGS = {
  'chat-format': { type: 'string' },
  'messages-field': { type: 'string' },
  'role-field': { type: 'string' },
  'content-field': { type: 'string' },
  'role-map': { type: 'string' },
  'instruction-field': { type: 'string' },
  'input-field': { type: 'string' },
  'output-field': { type: 'string' },
  'system-prompt': { type: 'string' },
  'chat-template': { type: 'string' },
  'template-vars': { type: 'string' },
} as const;

function jsonObject(text: string, flag: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`${flag} expects a JSON object: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${flag} expects a JSON object`);
  return v as Record<string, unknown>;
}

function chatTask(v: Record<string, string | boolean | undefined>): TaskTemplate {
  const s = (k: keyof typeof CHAT_FLAGS) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const t: Extract<TaskTemplate, { kind: 'chat' }> = { kind: 'chat' };
  const format = s('chat-format');
  if (format !== undefined) {
    if (format !== 'messages' && format !== 'sharegpt' && format !== 'alpaca') throw new Error(`--chat-format must be messages, sharegpt or alpaca, got "${format}"`);
    t.format = format;
  }
  const fields = [
    ['messages-field', 'messagesField'],
    ['role-field', 'roleField'],
    ['content-field', 'contentField'],
    ['instruction-field', 'instructionField'],
    ['input-field', 'inputField'],
    ['output-field', 'outputField'],
  ] as const;
  for (const [flag, key] of fields) if (s(flag)) t[key] = s(flag);
  const roleMap = s('role-map');
  if (roleMap !== undefined) {
    const entries = roleMap.trim().startsWith('{')
      ? Object.entries(jsonObject(roleMap, '--role-map'))
      : roleMap.split(',').filter((p) => p.trim()).map((p) => {
          const eq = p.lastIndexOf('=');
          if (eq <= 0) throw new Error(`--role-map: write name=role pairs separated by commas, got "${p}"`);
          return [p.slice(0, eq).trim(), p.slice(eq + 1).trim()];
        });
    t.roleMap = Object.fromEntries(entries) as NonNullable<typeof t.roleMap>;
  }
  if (s('system-prompt') !== undefined) t.systemPrompt = s('system-prompt');
  if (s('chat-template') !== undefined) t.templateName = s('chat-template');
  if (s('template-vars') !== undefined) t.templateVariables = jsonObject(s('template-vars')!, '--template-vars') as NonNullable<typeof t.templateVariables>;
  return t;
}

export function buildTask(kind: string, v: Record<string, string | boolean | undefined>): TaskTemplate {
  const labelWords = typeof v['label-words'] === 'string' ? parseLabelWords(v['label-words']) : undefined;
  switch (kind) {
    case 'sst2':
      return { kind: 'sst2', ...(labelWords ? { labelWords } : {}) };
    case 'rte':
      return { kind: 'rte', ...(labelWords ? { labelWords } : {}) };
    case 'classify': {
      if (!labelWords) throw new Error('--task classify needs --label-words');
      const labelMap = typeof v['label-map'] === 'string' ? (JSON.parse(v['label-map']) as Record<string, number>) : undefined;
      const prompt = typeof v.prompt === 'string' ? v.prompt : undefined;
      return { kind: 'classify', labelWords, ...(labelMap ? { labelMap } : {}), ...(prompt ? { prompt } : {}) };
    }
    case 'text':
      return { kind: 'text' };
    case 'completion':
      return { kind: 'completion' };
    case 'chat':
      return chatTask(v);
    default:
      throw new Error(`unknown task "${kind}" (sst2, rte, classify, text, completion, chat)`);
  }
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

export function demoOptions(): TrainOptions {
  const res = join(packageRoot(), 'resources');
  const demo = JSON.parse(readFileSync(join(res, 'demo.json'), 'utf8')) as DemoSpec;
  return {
    ...TRAIN_DEFAULTS,
    model: join(res, demo.model),
    train: join(res, demo.data.train),
    eval: join(res, demo.data.eval),
    task: buildTask(demo.task.template, { 'label-words': demo.task.labelWords ? JSON.stringify(demo.task.labelWords) : undefined }),
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
  model: { type: 'string' },
  data: { type: 'string' },
  'eval-data': { type: 'string' },
  'eval-fraction': { type: 'string' },
  task: { type: 'string' },
  'label-words': { type: 'string' },
  'label-map': { type: 'string' },
  prompt: { type: 'string' },
  ...CHAT_FLAGS,
  steps: { type: 'string' },
  'batch-size': { type: 'string' },
  lr: { type: 'string' },
  eps: { type: 'string' },
  'weight-decay': { type: 'string' },
  q: { type: 'string' },
  schedule: { type: 'string' },
  warmup: { type: 'string' },
  noise: { type: 'string' },
  seed: { type: 'string' },
  'eval-every': { type: 'string' },
  'eval-max': { type: 'string' },
  'max-length': { type: 'string' },
  threads: { type: 'string' },
  out: { type: 'string' },
  'checkpoint-every': { type: 'string' },
  offload: { type: 'string' },
  'gpu-mem': { type: 'string' },
  'cpu-mem': { type: 'string' },
  'ssd-mem': { type: 'string' },
  spill: { type: 'string', multiple: true },
  'write-back-every': { type: 'string' },
  'update-on': { type: 'string' },
  masters: { type: 'string' },
  'checkpoint-dir': { type: 'string' },
  resume: { type: 'string' },
  ranks: { type: 'string' },
  parallel: { type: 'string' },
  groups: { type: 'string' },
  'rank-timeout': { type: 'string' },
  hostfile: { type: 'string' },
  'no-zero-shot': { type: 'boolean' },
  json: { type: 'boolean' },
  'data-dir': { type: 'string' },
} as const;

export function trainOptionsFromArgs(v: Record<string, string | string[] | boolean | undefined>): TrainOptions {
  const anyModelFlag = v.model !== undefined || v.data !== undefined;
  // Only --spill may be repeated (a list); the task flags are single strings.
  const taskFlags = v as Record<string, string | boolean | undefined>;
  let base: TrainOptions;
  if (!anyModelFlag) {
    base = demoOptions();
  } else {
    if (typeof v.model !== 'string') throw new Error('--model is required with --data');
    if (typeof v.data !== 'string') throw new Error('--data is required with --model');
    base = {
      ...TRAIN_DEFAULTS,
      model: resolve(v.model),
      train: resolve(v.data),
      task: buildTask(typeof v.task === 'string' ? v.task : 'sst2', taskFlags),
    };
  }
  if (anyModelFlag && typeof v['eval-data'] === 'string') base.eval = resolve(v['eval-data']);
  if (!anyModelFlag && typeof v.task === 'string') base.task = buildTask(v.task, taskFlags);
  const s = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const spill = spillFolders(v.spill).map((d) => resolve(d));
  const o: TrainOptions = {
    ...base,
    evalFraction: num(s('eval-fraction'), 'eval-fraction', base.evalFraction),
    steps: num(s('steps'), 'steps', base.steps),
    batchSize: num(s('batch-size'), 'batch-size', base.batchSize),
    lr: num(s('lr'), 'lr', base.lr),
    eps: num(s('eps'), 'eps', base.eps),
    weightDecay: num(s('weight-decay'), 'weight-decay', base.weightDecay),
    q: num(s('q'), 'q', base.q),
    schedule: (s('schedule') ?? base.schedule) as TrainOptions['schedule'],
    warmupSteps: num(s('warmup'), 'warmup', base.warmupSteps),
    noise: (s('noise') ?? base.noise) as TrainOptions['noise'],
    seed: num(s('seed'), 'seed', base.seed),
    evalEvery: num(s('eval-every'), 'eval-every', base.evalEvery),
    evalMax: num(s('eval-max'), 'eval-max', base.evalMax),
    threads: num(s('threads'), 'threads', base.threads),
    maxLength: s('max-length') !== undefined ? num(s('max-length'), 'max-length', 0) : base.maxLength,
    out: s('out') !== undefined ? resolve(s('out') as string) : base.out,
    zeroShot: v['no-zero-shot'] ? false : base.zeroShot,
    checkpointEvery: num(s('checkpoint-every'), 'checkpoint-every', 0),
    checkpointDir: s('checkpoint-dir') !== undefined ? resolve(s('checkpoint-dir') as string) : undefined,
    resumeFrom: s('resume') !== undefined ? resolve(s('resume') as string) : undefined,
    offload: (s('offload') ?? (s('gpu-mem') ?? s('cpu-mem') ?? s('ssd-mem') ? 'auto' : base.offload)) as TrainOptions['offload'],
    gpuMem: s('gpu-mem') !== undefined ? parseBytes(s('gpu-mem') as string) : base.gpuMem,
    cpuMem: s('cpu-mem') !== undefined ? parseBytes(s('cpu-mem') as string) : base.cpuMem,
    ssdMem: s('ssd-mem') !== undefined ? parseBytes(s('ssd-mem') as string) : base.ssdMem,
    spillDir: spill.length ? spill[0] : base.spillDir,
    spillDirs: spill.length > 1 ? spill : base.spillDirs,
    writeBackEvery: s('write-back-every') !== undefined ? num(s('write-back-every'), 'write-back-every', 1) : base.writeBackEvery,
    updateOn: (s('update-on') ?? base.updateOn) as TrainOptions['updateOn'],
    masters: (s('masters') ?? base.masters) as TrainOptions['masters'],
    ...(s('ranks') !== undefined ? { ranks: num(s('ranks'), 'ranks', 1) } : {}),
    ...(s('parallel') !== undefined ? { parallel: s('parallel') as TrainOptions['parallel'] } : {}),
    ...(s('groups') !== undefined ? { groups: num(s('groups'), 'groups', 1) } : {}),
    ...(s('rank-timeout') !== undefined ? { rankTimeout: num(s('rank-timeout'), 'rank-timeout', 120) } : {}),
    ...(s('hostfile') !== undefined ? { hostfile: resolve(s('hostfile') as string) } : {}),
  };
  if (o.checkpointEvery && !o.checkpointDir) throw new Error('--checkpoint-every needs --checkpoint-dir');
  return o;
}

function pct(x: number | null | undefined): string {
  return x === null || x === undefined ? 'n/a' : `${(x * 100).toFixed(1)}%`;
}

async function cmdTrain(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: TRAIN_FLAGS, allowPositionals: false });
  const json = values.json === true;
  let options: TrainOptions;
  try {
    options = trainOptionsFromArgs(values);
  } catch (e) {
    fail((e as Error).message, json);
  }
  const isDemo = values.model === undefined && values.data === undefined;
  const progress = new ProgressLine(process.stderr, !json && process.stderr.isTTY === true);
  let zeroShot: number | null = null;
  let lastEval: number | null = null;
  const onEvent = (raw: unknown) => {
    const e = raw as TrainEvent;
    if (json) {
      if (e.type !== 'log') process.stdout.write(JSON.stringify(e) + '\n');
      return;
    }
    switch (e.type) {
      case 'log':
        progress.log(e.message);
        break;
      case 'start':
        progress.log(
          `${isDemo ? 'demo: ' : ''}${e.model} (${e.architecture}, ${(e.parameters / 1e6).toFixed(2)}M parameters) on ${e.backend} × ${e.threads} threads; ` +
            `${e.train_examples} training / ${e.eval_examples} held-out examples; ${e.steps} steps of batch ${e.batch_size}`,
        );
        if (e.plan) {
          const p = e.plan;
          const ms = (x: number | null) => (x === null ? 'n/a' : `${x.toFixed(1)} ms`);
          progress.log(
            `plan: ${p.homes.device} units on the device, ${p.homes.cpu} on the CPU, ${p.homes.ssd} on the SSD; ` +
              `predicted ${ms(p.predicted_step_ms)} per step, floor ${ms(p.floor_ms)}${p.bound ? ` (${p.bound})` : ''}`,
          );
        }
        progress.total = e.steps;
        break;
      case 'eval':
        if (e.step === 0) {
          zeroShot = e.accuracy;
          progress.log(`zero-shot (before training): held-out accuracy ${pct(e.accuracy)}, loss ${e.loss.toFixed(4)}`);
        } else {
          lastEval = e.accuracy;
          progress.log(`step ${e.step}: held-out accuracy ${pct(e.accuracy)}, loss ${e.loss.toFixed(4)}`);
        }
        break;
      case 'checkpoint':
        progress.log(`checkpoint at step ${e.step}: ${e.path}`);
        break;
      case 'step':
        progress.update(e.step, `loss ${e.loss.toFixed(4)}  ${e.step_ms.toFixed(0)} ms/step  ${Math.round(e.tokens_per_s)} tok/s`);
        break;
      case 'done': {
        progress.finish();
        const lift = zeroShot !== null && lastEval !== null ? ` (${((lastEval - zeroShot) * 100 >= 0 ? '+' : '')}${((lastEval - zeroShot) * 100).toFixed(1)} points)` : '';
        process.stderr.write(
          `${e.status === 'completed' ? 'done' : 'stopped'}: ${e.steps} steps in ${e.wall_s.toFixed(1)} s; ` +
            `held-out accuracy ${pct(zeroShot)} → ${pct(e.eval?.accuracy)}${lift}` +
            (e.skipped_steps ? `; ${e.skipped_steps} steps skipped (non-finite)` : '') +
            (e.out ? `\nsaved to ${e.out}` : '') +
            '\n',
        );
        break;
      }
    }
  };
  // Checkpoints the person did not ask for go quietly into the run's folder.
  const showCheckpoints = values['checkpoint-dir'] !== undefined;
  if (values['checkpoint-every'] === undefined) delete options.checkpointEvery;
  let supervisor: RunSupervisor;
  let runId: string;
  try {
    supervisor = RunSupervisor.open(resolveDataDir({ explicit: values['data-dir'] }));
  } catch (e) {
    fail((e as Error).message, json);
  }
  for (const n of supervisor.store.notices) progress.log(n);
  supervisor.recover();
  supervisor.subscribe('*', (e: RunEvent) => {
    if (e.type === 'status' || e.runId !== runId) return;
    if (e.type === 'checkpoint' && !showCheckpoints) return;
    const { runId: _, ...event } = e;
    onEvent(event);
  });
  const finish = async (message: string | null): Promise<number> => {
    await supervisor.close();
    if (message === null) return 0;
    progress.finish();
    fail(message, json);
  };
  try {
    runId = (await supervisor.start({ options, saveModel: false })).id;
  } catch (e) {
    return finish((e as Error).message);
  }
  let interrupted = 0;
  process.on('SIGINT', () => {
    interrupted++;
    if (interrupted === 1) {
      progress.log('stopping after the current step (Ctrl-C again to kill)…');
      void supervisor.stop(runId, { graceMs: null });
    } else {
      void supervisor.kill(runId);
    }
  });
  const run = await supervisor.waitFor(runId);
  return finish(run.error);
}

async function cmdScore(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      data: { type: 'string' },
      task: { type: 'string' },
      'label-words': { type: 'string' },
      'label-map': { type: 'string' },
      prompt: { type: 'string' },
      ...CHAT_FLAGS,
      threads: { type: 'string' },
      'batch-size': { type: 'string' },
      'max-length': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const json = values.json === true;
  let options: ScoreOptions;
  try {
    if (!values.model || !values.data) throw new Error('score needs --model and --data');
    options = {
      model: resolve(values.model),
      data: resolve(values.data),
      task: buildTask(values.task ?? 'sst2', values),
      threads: num(values.threads, 'threads', 0),
      batchSize: num(values['batch-size'], 'batch-size', 16),
      maxLength: values['max-length'] !== undefined ? num(values['max-length'], 'max-length', 0) : undefined,
    };
  } catch (e) {
    fail((e as Error).message, json);
  }
  const onEvent = (raw: unknown) => {
    const e = raw as { type: string } & Record<string, unknown>;
    if (e.type === 'log') {
      if (!json) process.stderr.write(`${String(e.message)}\n`);
      return;
    }
    if (e.type === 'start') return;
    if (json) {
      process.stdout.write(JSON.stringify(e) + '\n');
    } else if (e.type === 'example') {
      const c = e.correct === null ? '' : e.correct ? '  correct' : '  wrong';
      process.stdout.write(`${String(e.source)}  loss ${(e.loss as number).toFixed(4)}${c}\n`);
    } else if (e.type === 'summary') {
      process.stdout.write(`${String(e.examples)} examples: mean loss ${(e.loss as number).toFixed(4)}, accuracy ${pct(e.accuracy as number | null)}\n`);
    }
  };
  const job = startEngineJob({ type: 'score', options }, onEvent);
  try {
    await job.done;
    return 0;
  } catch (e) {
    fail((e as Error).message, json);
  }
}

async function cmdInspect(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { json: { type: 'boolean' } }, allowPositionals: true });
  const json = values.json === true;
  if (positionals.length !== 1) fail('inspect needs exactly one model path', json);
  try {
    const report = await inspectModel(resolve(positionals[0]));
    process.stdout.write(json ? JSON.stringify(report) + '\n' : formatInspect(report) + '\n');
    return 0;
  } catch (e) {
    fail((e as Error).message, json);
  }
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
  const report = {
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpu: { model: os.cpus()[0]?.model ?? 'unknown', cores: os.availableParallelism(), memoryBytes: os.totalmem() },
    blas: probe.blas,
    cudaCompiled: native.cudaCompiled,
    cuda,
    cublas: probe.cublas,
    nvml: probe.nvml,
    gpu,
    ioUring: probe.ioUring,
    directIo: { folder: spill, ...probe.directIo },
    staleSpillFiles: stale.map((f) => ({ ...f, deleted: values['clean-spill'] === true })),
  };
  if (values.json) {
    process.stdout.write(JSON.stringify(report) + '\n');
    return 0;
  }
  const mark = (ok: boolean) => (ok ? 'yes' : 'no ');
  const lines = [
    `node         ${report.node} on ${report.platform}`,
    `cpu          ${report.cpu.model}, ${report.cpu.cores} cores, ${(report.cpu.memoryBytes / 2 ** 30).toFixed(1)} GiB`,
    `blas         ${report.blas}`,
    `cuda         ${report.cudaCompiled ? 'compiled in' : 'not compiled in'}; ${cuda.state}${cuda.detail ? ` (${String(cuda.detail)})` : ''}`,
    ...((cuda.devices as { index: number; name: string; totalBytes: number; computeCapability: string }[] | undefined) ?? []).map(
      (d) => `  device ${d.index}     ${d.name}, ${(d.totalBytes / 2 ** 30).toFixed(1)} GiB, compute capability ${d.computeCapability}`,
    ),
    `cublas       ${mark(probe.cublas.ok)} ${probe.cublas.ok ? '' : `(${probe.cublas.detail}; GEMMs would use the built-in kernel)`}`,
    `nvml         ${mark(probe.nvml.ok)} ${probe.nvml.ok ? '' : '(no GPU telemetry)'}`,
    `io_uring     ${mark(probe.ioUring.ok)} ${probe.ioUring.detail}`,
    `O_DIRECT     ${mark(probe.directIo?.ok === true)} ${probe.directIo?.detail ?? ''}`,
    stale.length
      ? `spill files  ${stale.length} left by engines that ended uncleanly (${(stale.reduce((n, f) => n + f.bytes, 0) / 1e9).toFixed(2)} GB)` +
        (values['clean-spill'] ? ': deleted' : `: delete them with spillway doctor --spill ${spill} --clean-spill`)
      : `spill files  none left over in ${spill}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

async function cmdPlan(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      'gpu-mem': { type: 'string' },
      'cpu-mem': { type: 'string' },
      'ssd-mem': { type: 'string' },
      spill: { type: 'string', multiple: true },
      'update-on': { type: 'string' },
      device: { type: 'string' },
      precision: { type: 'string' },
      masters: { type: 'string' },
      'batch-size': { type: 'string' },
      'max-length': { type: 'string' },
      q: { type: 'string' },
      'write-back-every': { type: 'string' },
      'calibration-bytes': { type: 'string' },
      recalibrate: { type: 'boolean' },
      json: { type: 'boolean' },
      'data-dir': { type: 'string' },
    },
  });
  const json = values.json === true;
  try {
    if (!values.model) throw new Error('plan needs --model');
    const device = values.device ?? (values['gpu-mem'] !== undefined ? 'gpu' : 'cpu');
    if (device !== 'cpu' && device !== 'gpu') throw new Error(`--device must be cpu or gpu, got "${device}"`);
    // --masters (as in train) or --precision; fp32 and f32 are the same.
    const asked = values.masters ?? values.precision ?? 'f32';
    const precision = asked === 'fp32' ? 'f32' : asked;
    if (!['f32', 'bf16', 'fp16'].includes(precision)) throw new Error(`--masters must be fp32, bf16 or fp16, got "${asked}"`);
    const bytes = (k: 'gpu-mem' | 'cpu-mem' | 'ssd-mem') => (values[k] !== undefined ? parseBytes(values[k] as string) : undefined);
    const updateMode = values['update-on'] ?? 'auto';
    if (!['auto', 'home', 'device'].includes(updateMode)) throw new Error(`--update-on must be auto, home or device, got "${updateMode}"`);
    const spillDirs = spillFolders(values.spill).map((d) => resolve(d));
    // A GPU plan calibrates the GPU when this build and machine have one.
    let calibrationDevice = 'cpu';
    if (device === 'gpu') {
      const { loadNative } = await import('../engine/native.js');
      const native = loadNative();
      if (native.cudaCompiled && native.cudaDevices().state === 'ok') calibrationDevice = 'cuda';
    }
    const { plan, info, calibration } = await planFor({
      model: resolve(values.model),
      computeDevice: device,
      calibrationDevice,
      budgets: { device: bytes('gpu-mem'), cpu: bytes('cpu-mem'), ssd: bytes('ssd-mem') },
      spillDir: spillDirs[0] ?? null,
      spillDirs,
      updateMode: updateMode as UpdateMode,
      precision: precision as 'f32' | 'bf16' | 'fp16',
      batchSize: num(values['batch-size'], 'batch-size', 16),
      maxLength: num(values['max-length'], 'max-length', 256),
      q: num(values.q, 'q', 1),
      writeBackEvery: num(values['write-back-every'], 'write-back-every', 1),
      dataDir: resolveDataDir({ explicit: values['data-dir'] }),
      calibrate: values.recalibrate ? 'recalibrate' : 'measure',
      calibrationBytes: values['calibration-bytes'] !== undefined ? parseBytes(values['calibration-bytes']) : undefined,
    });
    if (json) {
      process.stdout.write(JSON.stringify({ ...toPlanResult(plan, info.dir), homes: plan.homes, memoryByTier: plan.memory, calibration }) + '\n');
    } else {
      process.stdout.write(formatPlan(plan) + '\n');
    }
    return 0;
  } catch (e) {
    fail((e as Error).message, json);
  }
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'train':
        return await cmdTrain(rest);
      case 'score':
        return await cmdScore(rest);
      case 'inspect':
        return await cmdInspect(rest);
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
        process.stdout.write(USAGE);
        return cmd === undefined ? 1 : 0;
      default:
        process.stderr.write(`spillway: unknown command "${cmd}"\n\n${USAGE}`);
        return 1;
    }
  } catch (e) {
    // parseArgs rejects unknown flags here.
    process.stderr.write(`spillway: ${(e as Error).message}\n`);
    return 1;
  }
}
