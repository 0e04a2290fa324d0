// The run options, once: one zod schema that the CLI parses its flags into,
// the API validates startRun with, the supervisor stores, and the engine host
// and the trainer receive. Each field carries its bounds (what the engine
// accepts), its default, and its CLI flag and help line (the `flags`
// registry), so that a new option is written here and nowhere else: the
// CLI's flag and help, the GUI's contract, the stored options and the
// trainer's input follow from it.
//
// Also the one spelling of each concept the options, the planner and the
// engine share: master precision (Masters), the home tier of a unit (Home),
// noise, schedule, update mode, offload, the trainable set and the estimator.
//
// No Node imports: the renderer loads this file.

import { z } from 'zod';

// ---------------------------------------------------------------------------
// Names

/** Precision of the masters: float32, or bfloat16 / float16 with stochastic rounding of every update. */
export const Masters = choice(['fp32', 'bf16', 'fp16'], 'master precision');
/** Where a unit's master lives between its visits to the compute device. */
export const Home = choice(['device', 'cpu', 'ssd'], 'home tier');
export const NoiseKind = choice(['gaussian', 'rademacher'], 'noise');
export const Schedule = choice(['constant', 'linear', 'cosine'], 'schedule');
/** Where streamed blocks are updated: by the planner's cost model, at home (host threads), or on the compute device (then written back). */
export const UpdateMode = choice(['auto', 'home', 'device'], 'update mode');
/** Where the blocks live: resident (none), all on the CPU or the SSD, or placed by the planner (auto) under the budgets. */
export const Offload = choice(['none', 'cpu', 'ssd', 'auto'], 'offload');
/**
 * What a step trains (native/src/zo/trainable.h): every weight, the small weights of each block matrix
 * (Sparse MeZO), or adapters over a frozen base (LoRA; LoLDU's diagonal of an LU decomposition; the
 * task's label words' rows of the embedding, what peft calls trainable tokens).
 */
export const TrainableSet = choice(['full', 'lora', 'loldu', 'sparse', 'tokens'], 'trainable set');
/** The sets that train over a frozen base, read and never written, and save an adapter (lora, loldu, tokens). */
export const freezesBase = (t: TrainableSet): boolean => t === 'lora' || t === 'loldu' || t === 'tokens';
/** The task kinds that have label words (the rows --train tokens trains). */
export const LABEL_WORD_TASKS: readonly string[] = ['sst2', 'rte', 'classify'];
/** How a step estimates its direction: MeZO's two-point SPSA, or FZOO's one-sided probes normalised by their losses' spread. */
export const Estimator = choice(['mezo', 'fzoo'], 'estimator');
/** A block matrix an adapter may target, by its role in the engine's spec (native/src/arch/params.cpp); qkv is GPT-2's fused one. */
export const AdapterTarget = choice(['q', 'k', 'v', 'o', 'qkv', 'fc1', 'fc2', 'gate', 'up', 'down'], 'target matrix');
/**
 * The precision of the GEMMs on a CUDA device: fp32 (cublasSgemm), tf32 (tensor cores, fp32 in and
 * out) or bf16 (operands rounded to bf16, fp32 accumulation). The CPU backend computes in fp32.
 */
export const Gemm = choice(['fp32', 'tf32', 'bf16'], 'GEMM precision');
/**
 * The compute device: auto (the first CUDA device when the engine is built with CUDA and one is
 * present, else the CPU), cpu, or a CUDA device by the CUDA runtime's index: cuda is cuda:0, and N
 * counts the devices CUDA_VISIBLE_DEVICES leaves, in CUDA_DEVICE_ORDER's order.
 */
export const Device = (() => {
  const error = (iss: { input?: unknown }) => `unknown device ${shown(iss.input)} (auto, cpu, cuda or cuda:N)`;
  const indexed = z.templateLiteral(['cuda:', z.int()]).refine((d) => /^cuda:\d{1,4}$/.test(d), { error });
  return z.union([z.enum(['auto', 'cpu', 'cuda']), indexed], { error });
})();
/** How the ranks of a run share a step (ALGORITHMS.md §7): each its shard of the batch, each its share of the q perturbations, or both. */
export const Parallel = choice(['data', 'perturbation', '2d'], 'parallelism');

export type Masters = z.output<typeof Masters>;
export type Home = z.output<typeof Home>;
export type NoiseKind = z.output<typeof NoiseKind>;
export type Schedule = z.output<typeof Schedule>;
export type UpdateMode = z.output<typeof UpdateMode>;
export type Offload = z.output<typeof Offload>;
export type TrainableSet = z.output<typeof TrainableSet>;
export type Estimator = z.output<typeof Estimator>;
export type AdapterTarget = z.output<typeof AdapterTarget>;
export type Gemm = z.output<typeof Gemm>;
export type Device = z.output<typeof Device>;
export type Parallel = z.output<typeof Parallel>;

// ---------------------------------------------------------------------------
// Bounds

/** Steps and step counts (warm-up, evaluation and checkpoint intervals). */
export const MAX_STEPS = 100_000_000;
/** Perturbations per step: each keeps two hidden-state buffers in the engine (native/src/engine.cpp refuses more). */
export const MAX_Q = 64;
/**
 * CPU threads one engine may start. Above the cores present the engine uses the cores (binding.cpp);
 * this bound keeps a typo from reaching it at all.
 */
export const MAX_THREADS = 1024;
export const MAX_BATCH = 65536;
/** Tokens per sequence. */
export const MAX_LENGTH = 1 << 20;
export const MAX_WRITE_BACK_EVERY = 1_000_000;
/** Spill folders one run may stripe over. */
export const MAX_SPILL_DIRS = 64;
/** Engine processes (ranks) one run may start. */
export const MAX_RANKS = 4096;
/** Seconds a rank waits for the others at an exchange before it names them and ends the run, by default. */
export const DEFAULT_RANK_TIMEOUT_S = 120;
/** A run started without checkpointEvery writes a checkpoint every this many steps (the two newest are kept). */
export const DEFAULT_CHECKPOINT_EVERY = 100;
/** Adapter rank (LoRA, LoLDU). */
export const MAX_RANK = 4096;
/** Tokens one generation may add to each prompt. */
export const MAX_NEW_TOKENS = 1 << 16;
/** Prompts decoded together in one request. */
export const MAX_PROMPTS = 256;
export const MAX_STOP_STRINGS = 16;

function shown(input: unknown): string {
  return typeof input === 'string' ? JSON.stringify(input) : String(input);
}

function choice<const T extends readonly [string, ...string[]]>(values: T, noun: string) {
  const word = (x: unknown) => (typeof x === 'string' && /^[\w.-]+$/.test(x) ? x : shown(x));
  return z.enum(values, { error: (iss) => `unknown ${noun} ${word(iss.input)} (${values.join(', ')})` });
}

/** An integer in [min, max]; the message names the range and what was given. */
export function int(min: number, max: number) {
  const error = (iss: { input?: unknown }) => `expected an integer from ${min} to ${max}, got ${shown(iss.input)}`;
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
}

/** A finite number above `min` (or at least it, `inclusive`), and below `below` or at most `max` when given. */
function real(min: number, o: { inclusive: boolean; below?: number; max?: number }) {
  const upper = o.below !== undefined ? ` and < ${o.below}` : o.max !== undefined ? ` and <= ${o.max}` : '';
  const range = `${o.inclusive ? '>=' : '>'} ${min}${upper}`;
  const error = (iss: { input?: unknown }) => `expected a finite number ${range}, got ${shown(iss.input)}`;
  let s = o.inclusive ? z.number({ error }).min(min, { error }) : z.number({ error }).gt(min, { error });
  if (o.below !== undefined) s = s.lt(o.below, { error });
  if (o.max !== undefined) s = s.max(o.max, { error });
  return s;
}

/** A run's id: the supervisor's stamp and suffix, or any name of word characters (a run created elsewhere). */
export const RunId = z.string().regex(/^[\w.-]{1,200}$/, { error: 'expected a run id (letters, digits, _ . -)' });

/** A byte count. */
export const Bytes = int(0, Number.MAX_SAFE_INTEGER);
/** A file path of its own: a schema registered with a flag must not be shared (the registry keys on it). */
const path = () => z.string().min(1).max(4096);
export const FilePath = path();

// ---------------------------------------------------------------------------
// CLI metadata

/** How a field appears on the command line. */
export interface FlagMeta {
  /** The flag, without its dashes. */
  flag: string;
  /** The value's placeholder in the help ('N', 'X', 'DIR'); absent for switches. */
  arg?: string;
  help: string;
  /**
   * How the flag's text becomes the value (numbers, choices and switches need nothing):
   * bytes: "24GB", "512MiB" or a count; path: resolved against the working folder;
   * folders: comma-separated folders, the flag repeatable; off: a switch that sets false;
   * words: a JSON array of strings or a comma-separated list; list: the flag repeatable, each
   * one item (text that may hold commas); json: a JSON value;
   * pairs: name=value pairs separated by commas, or a JSON object.
   */
  read?: 'bytes' | 'path' | 'folders' | 'off' | 'words' | 'list' | 'json' | 'pairs';
}

/** The CLI flag of each field that has one (electron/cli/flags.ts reads it). */
export const flags = z.registry<FlagMeta>();

/** What an allowed folder is for: reading models or datasets, spilling blocks, writing results (exports, run outputs). */
export const RootKind = z.enum(['models', 'datasets', 'spill', 'export']);
export type RootKind = z.output<typeof RootKind>;

/** The allowed folder a path option must lie in, and how a refusal names it (electron/services/api.ts checks it). */
export interface PathMeta {
  kind: RootKind;
  what: string;
}

export const pathKinds = z.registry<PathMeta>();

/**
 * An option that shapes a run's trajectory (its batches, its noise, its updates): a resume that
 * changes one would continue another run than the one checkpointed, so it is refused unless asked
 * for on purpose (--allow-option-changes), and then recorded with the run (electron/engine/trainer.ts).
 * Options that only move work around (threads, placement, budgets) keep the trajectory bit for bit.
 */
export interface TrajectoryMeta {
  /** The option matters only when this holds of the run's options. */
  onlyIf?: (o: Readonly<Record<string, unknown>>) => boolean;
}

export const trajectory = z.registry<TrajectoryMeta>();

/** A JSON value: dataset cells are converted to this before they cross (bigint → string, Date → ISO). */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export const JsonValue: z.ZodType<JsonValue> = z.lazy(() =>
  z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(JsonValue), z.record(z.string(), JsonValue)]),
);

// ---------------------------------------------------------------------------
// Task templates (mirrors electron/data/templates.ts): the kind is --task, the fields its flags.

const taskFlag = {
  labelWords: { flag: 'label-words', arg: 'W', read: 'words', help: `label words as JSON ('[" bad"," good"]') or comma-separated` },
  labelMap: { flag: 'label-map', arg: 'M', read: 'json', help: 'classify: JSON object from dataset label to label-word index' },
  prompt: { flag: 'prompt', arg: 'P', help: 'classify: prompt with {text} (default "{text} It was")' },
} satisfies Record<string, FlagMeta>;

/** A chat field name of the data (a column mapping). */
const field = (flag: string, help: string) => z.string().min(1).optional().register(flags, { flag, arg: 'F', help: `chat: ${help}` });

/** A system turn put before each conversation that has none. */
const SystemPrompt = z.string().optional().register(flags, { flag: 'system-prompt', arg: 'S', help: 'chat: a system turn for conversations that have none' });
/** Which of the model's named chat templates (default "default"). */
const TemplateName = z
  .string()
  .min(1)
  .optional()
  .register(flags, { flag: 'chat-template', arg: 'NAME', help: 'chat: which of the model\'s named chat templates (default "default")' });
/** More variables for the chat template, e.g. {"enable_thinking": false}. */
const TemplateVariables = z
  .record(z.string(), z.lazy(() => JsonValue), { error: 'expected a JSON object' })
  .optional()
  .register(flags, { flag: 'template-vars', arg: 'J', read: 'json', help: `chat: more chat template variables as JSON, e.g. '{"enable_thinking": false}'` });

const LabelWords = z.array(z.string().min(1)).min(2).max(64);
const LabelPair = z.array(z.string().min(1)).length(2);

export const TaskTemplate = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('sst2'),
    sentenceField: z.string().optional(),
    labelField: z.string().optional(),
    labelWords: LabelPair.optional().register(flags, taskFlag.labelWords),
  }),
  z.object({
    kind: z.literal('rte'),
    premiseField: z.string().optional(),
    hypothesisField: z.string().optional(),
    labelField: z.string().optional(),
    labelWords: LabelPair.optional().register(flags, taskFlag.labelWords),
  }),
  z.object({
    kind: z.literal('classify'),
    textField: z.string().optional(),
    labelField: z.string().optional(),
    labelWords: LabelWords.register(flags, taskFlag.labelWords),
    labelMap: z.record(z.string(), z.number().int().nonnegative()).optional().register(flags, taskFlag.labelMap),
    prompt: z.string().includes('{text}').optional().register(flags, taskFlag.prompt),
  }),
  z.object({ kind: z.literal('text'), textField: z.string().optional() }),
  z.object({
    kind: z.literal('completion'),
    promptField: z.string().optional(),
    completionField: z.string().optional(),
    appendEos: z.boolean().optional(),
  }),
  z.object({
    kind: z.literal('chat'),
    /** How rows are laid out; absent: found from each row's fields. */
    format: z
      .enum(['messages', 'sharegpt', 'alpaca'])
      .optional()
      .register(flags, { flag: 'chat-format', arg: 'F', help: 'chat: messages (OpenAI), sharegpt or alpaca (default: found from the fields)' }),
    messagesField: field('messages-field', 'the list of turns (default messages, else conversations)'),
    roleField: field('role-field', "a turn's role key (default role, or from)"),
    contentField: field('content-field', "a turn's text key (default content, or value)"),
    /** The dataset's role names → roles, on top of the usual ones (human, gpt, model, ...). */
    roleMap: z
      .record(z.string(), choice(['system', 'user', 'assistant', 'tool'], 'role'))
      .optional()
      .register(flags, { flag: 'role-map', arg: 'M', read: 'pairs', help: "chat: the data's role names, 'Customer=user,Agent=assistant' or a JSON object" }),
    instructionField: field('instruction-field', 'Alpaca rows: the instruction (default instruction)'),
    inputField: field('input-field', 'Alpaca rows: the input (default input)'),
    outputField: field('output-field', 'Alpaca rows: the output (default output)'),
    systemField: z.string().min(1).optional(),
    historyField: z.string().min(1).optional(),
    systemPrompt: SystemPrompt,
    templateName: TemplateName,
    templateVariables: TemplateVariables,
  }),
]);
export type TaskTemplate = z.output<typeof TaskTemplate>;
export type TaskKind = TaskTemplate['kind'];
export const TASK_KINDS = TaskTemplate.options.map((o) => o.shape.kind.value) as TaskKind[];
/** The task when none is named. */
export const DEFAULT_TASK: TaskKind = 'sst2';

// ---------------------------------------------------------------------------
// Run options

const SpillDirs = z.array(FilePath).max(MAX_SPILL_DIRS);

/**
 * The defaults that depend on other options, filled in after parsing (so that a value given is
 * never overridden): MeZO-LoRA's lr 1e-4 and eps 1e-2 for the adapter sets (MeZO's full-parameter
 * 1e-6 and 1e-3 otherwise), FZOO's Rademacher probes, 4 of them, against MeZO's Gaussian 1, and the
 * adapters' rank.
 */
export const TRAIN_DEFAULTS = {
  full: { lr: 1e-6, eps: 1e-3 },
  sparse: { lr: 1e-6, eps: 1e-3 },
  lora: { lr: 1e-4, eps: 1e-2, rank: 8 },
  loldu: { lr: 1e-4, eps: 1e-2, rank: 8 },
  tokens: { lr: 1e-2, eps: 1e-3 },
} as const;
export const ESTIMATOR_DEFAULTS = {
  mezo: { noise: 'gaussian', q: 1 },
  fzoo: { noise: 'rademacher', q: 4 },
} as const;

type Defaulted = { trainable: TrainableSet; estimator: Estimator; lr?: number; eps?: number; noise?: NoiseKind; q?: number; rank?: number };
/** The options with every default that depends on another option filled in. */
export function withTrainDefaults<T extends Defaulted>(o: T): T & { lr: number; eps: number; noise: NoiseKind; q: number; rank: number } {
  const t: { lr: number; eps: number; rank?: number } = TRAIN_DEFAULTS[o.trainable];
  const e = ESTIMATOR_DEFAULTS[o.estimator];
  return { ...o, lr: o.lr ?? t.lr, eps: o.eps ?? t.eps, noise: o.noise ?? e.noise, q: o.q ?? e.q, rank: o.rank ?? t.rank ?? 8 };
}

/** The trajectory options of the adapter sets count only in runs of them (options saved before the sets existed have none). */
const ADAPTER_RUN = (o: Readonly<Record<string, unknown>>) => o.trainable === 'lora' || o.trainable === 'loldu';

/** A run's options as the UI and the CLI give them; omitted fields take their defaults. */
export const RunFields = z.object({
  model: path()
    .register(flags, { flag: 'model', arg: 'PATH', read: 'path', help: 'Hugging Face model folder or HF cache entry (models--org--name)' })
    .register(pathKinds, { kind: 'models', what: 'the model folder' }),
  train: path()
    .register(flags, { flag: 'data', arg: 'FILE', read: 'path', help: 'training data (.jsonl, .csv, .parquet)' })
    .register(pathKinds, { kind: 'datasets', what: 'the training data' })
    .register(trajectory, {}),
  eval: FilePath.optional()
    .register(flags, { flag: 'eval-data', arg: 'FILE', read: 'path', help: 'held-out data (default: --eval-fraction of --data)' })
    .register(pathKinds, { kind: 'datasets', what: 'the evaluation data' }),
  evalFraction: real(0, { inclusive: true, below: 1 })
    .default(0.1)
    .register(flags, { flag: 'eval-fraction', arg: 'F', help: 'fraction of --data held out when there is no --eval-data' })
    .register(trajectory, { onlyIf: (o) => o.eval === undefined }),
  task: TaskTemplate.register(trajectory, {}),
  // A longer run keeps its trajectory under a constant rate; a decaying schedule is spread over the steps.
  steps: int(0, MAX_STEPS)
    .default(1000)
    .register(flags, { flag: 'steps', arg: 'N', help: 'training steps' })
    .register(trajectory, { onlyIf: (o) => (o.schedule ?? 'constant') !== 'constant' }),
  batchSize: int(1, MAX_BATCH).default(16).register(flags, { flag: 'batch-size', arg: 'N', help: 'examples per step' }).register(trajectory, {}),
  trainable: TrainableSet.default('full')
    .register(flags, {
      flag: 'train',
      arg: 'SET',
      help: 'what trains: full (every weight), lora (adapters on --targets, the base frozen), loldu (the diagonal of an LU decomposition of --targets, the base frozen), sparse (the smallest --sparse-fraction of each block matrix) or tokens (the rows of the task\'s label words in the embedding and the tied head, the base frozen)',
    })
    .register(trajectory, { onlyIf: (o) => (o.trainable ?? 'full') !== 'full' }),
  rank: int(1, MAX_RANK)
    .optional()
    .register(flags, { flag: 'rank', arg: 'R', help: "lora and loldu: the adapters' rank (default 8)" })
    .register(trajectory, { onlyIf: ADAPTER_RUN }),
  loraAlpha: real(0, { inclusive: false })
    .default(16)
    .register(flags, { flag: 'lora-alpha', arg: 'X', help: 'lora: the delta is scaled by alpha / rank' })
    .register(trajectory, { onlyIf: (o) => o.trainable === 'lora' }),
  targets: z
    .array(AdapterTarget)
    .min(1, { error: 'expected at least one target matrix' })
    .default(['q', 'v'])
    .register(flags, { flag: 'targets', arg: 'T', read: 'words', help: 'lora and loldu: the block matrices adapted, comma-separated (q, k, v, o, fc1, fc2, gate, up, down; default q,v)' })
    .register(trajectory, { onlyIf: ADAPTER_RUN }),
  sparseFraction: real(0, { inclusive: false })
    .max(1, { error: (iss) => `expected a finite number > 0 and <= 1, got ${shown(iss.input)}` })
    .default(0.25)
    .register(flags, { flag: 'sparse-fraction', arg: 'F', help: 'sparse: the share of each block matrix that trains, its smallest weights' })
    .register(trajectory, { onlyIf: (o) => o.trainable === 'sparse' }),
  estimator: Estimator.default('mezo')
    .register(flags, {
      flag: 'estimator',
      arg: 'E',
      help: "mezo (two forwards per perturbation) or fzoo (--q one-sided probes around the unperturbed loss, the step divided by their losses' standard deviation)",
    })
    .register(trajectory, { onlyIf: (o) => (o.estimator ?? 'mezo') !== 'mezo' }),
  lr: real(0, { inclusive: true })
    .optional()
    .register(flags, { flag: 'lr', arg: 'X', help: 'learning rate (default 1e-6; 1e-4 with --train lora or loldu)' })
    .register(trajectory, {}),
  eps: real(0, { inclusive: false })
    .optional()
    .register(flags, { flag: 'eps', arg: 'X', help: 'perturbation scale (default 1e-3; 1e-2 with --train lora or loldu)' })
    .register(trajectory, {}),
  weightDecay: real(0, { inclusive: true })
    .default(0)
    .register(flags, { flag: 'weight-decay', arg: 'X', help: 'weight decay (not on biases and norms)' })
    .register(trajectory, {}),
  q: int(1, MAX_Q)
    .optional()
    .register(flags, { flag: 'q', arg: 'N', help: 'perturbations per step (default 1); with --estimator fzoo the probes (at least 2, default 4)' })
    .register(trajectory, {}),
  schedule: Schedule.default('constant')
    .register(flags, { flag: 'schedule', arg: 'S', help: 'learning-rate schedule: constant, linear or cosine' })
    .register(trajectory, {}),
  warmupSteps: int(0, MAX_STEPS).default(0).register(flags, { flag: 'warmup', arg: 'N', help: 'warm-up steps' }).register(trajectory, {}),
  noise: NoiseKind.optional()
    .register(flags, { flag: 'noise', arg: 'K', help: 'perturbation noise: gaussian or rademacher (default gaussian; rademacher with --estimator fzoo)' })
    .register(trajectory, {}),
  seed: int(0, Number.MAX_SAFE_INTEGER)
    .default(0)
    .register(flags, { flag: 'seed', arg: 'N', help: 'run seed (noise, data order, held-out split)' })
    .register(trajectory, {}),
  evalEvery: int(0, MAX_STEPS).default(0).register(flags, { flag: 'eval-every', arg: 'N', help: 'evaluate every N steps (0: at the start and the end only)' }),
  evalMax: int(0, MAX_STEPS).default(0).register(flags, { flag: 'eval-max', arg: 'N', help: 'at most N held-out examples per evaluation (0: all)' }),
  threads: int(0, MAX_THREADS).default(0).register(flags, { flag: 'threads', arg: 'N', help: "CPU threads (0: all cores; more than the machine's cores run as many as it has)" }),
  device: Device.default('auto').register(flags, {
    flag: 'device',
    arg: 'D',
    help: 'where the forwards run: auto (the first CUDA device when there is one, else the CPU), cpu, cuda or cuda:N (N counts the devices CUDA_VISIBLE_DEVICES leaves, in CUDA_DEVICE_ORDER)',
  }),
  gemm: Gemm.optional().register(flags, {
    flag: 'gemm',
    arg: 'P',
    help: 'GEMM precision on a CUDA device: fp32 (default), tf32 or bf16 (tensor cores, fp32 accumulation); $SPILLWAY_GEMM overrides; the CPU computes in fp32',
  }),
  maxLength: int(1, MAX_LENGTH)
    .optional()
    .register(flags, { flag: 'max-length', arg: 'N', help: "truncate sequences to N tokens (default: the model's position limit)" })
    .register(trajectory, {}),
  out: FilePath.optional()
    .register(flags, {
      flag: 'out',
      arg: 'DIR',
      read: 'path',
      help: 'save the fine-tuned model here with its seed log: a Hugging Face folder, or with --train lora or loldu a peft adapter (adapter_config.json, adapter_model.safetensors)',
    })
    .register(pathKinds, { kind: 'export', what: 'the output folder' }),
  merge: z.boolean().default(false).register(flags, { flag: 'merge', help: 'lora and loldu: also save the base with the adapter merged in, a Hugging Face folder in --out/merged' }),
  zeroShot: z.boolean().default(true).register(flags, { flag: 'no-zero-shot', read: 'off', help: 'skip the evaluation before the first step' }),
  checkpointEvery: int(0, MAX_STEPS)
    .optional()
    .register(flags, { flag: 'checkpoint-every', arg: 'N', help: `write a checkpoint every N steps and on stop into --checkpoint-dir (default: every ${DEFAULT_CHECKPOINT_EVERY} steps, quietly, into the run's folder)` }),
  offload: Offload.optional().register(flags, {
    flag: 'offload',
    arg: 'T',
    help: 'where the blocks live between visits: none, cpu, ssd, or auto: placed by the planner under --gpu-mem (default: the GPU\'s free memory less a headroom), --cpu-mem and --ssd-mem. Default: auto on a CUDA device or when a budget is given, else none',
  }),
  gpuMem: Bytes.optional().register(flags, { flag: 'gpu-mem', arg: 'X', read: 'bytes', help: 'device memory budget (24GB, 512MiB or bytes), enforced by the engine' }),
  cpuMem: Bytes.optional().register(flags, { flag: 'cpu-mem', arg: 'X', read: 'bytes', help: 'CPU memory budget: the planner places blocks on the device first, then the CPU, then the SSD' }),
  ssdMem: Bytes.optional().register(flags, { flag: 'ssd-mem', arg: 'X', read: 'bytes', help: 'spill file budget (default: the free space of --spill)' }),
  spillDirs: SpillDirs.optional()
    .register(flags, {
      flag: 'spill',
      arg: 'DIR[,DIR...]',
      read: 'folders',
      help: 'spill folders for --offload ssd or auto (a preallocated file each, removed at the end); SSD blocks are striped over several (drives)',
    })
    .register(pathKinds, { kind: 'spill', what: 'the spill folder' }),
  writeBackEvery: int(1, MAX_WRITE_BACK_EVERY)
    .optional()
    .register(flags, { flag: 'write-back-every', arg: 'K', help: 'SSD blocks: rewrite a block every K updates, replaying them in between (default 1)' }),
  updateOn: UpdateMode.optional().register(flags, {
    flag: 'update-on',
    arg: 'M',
    help: "streamed blocks are updated by the plan's cost model (auto, default), at home by host threads (home), or on the device and copied home (device)",
  }),
  masters: Masters.optional().register(flags, {
    flag: 'masters',
    arg: 'P',
    help: 'fp32 (default), bf16 or fp16: masters in that format, every update rounded stochastically; streamed blocks move and are stored in half the bytes',
  }),
  generationEval: z.boolean().default(true).register(flags, {
    flag: 'no-generation-eval',
    read: 'off',
    help: 'completion tasks: skip the exact match and token F1 of greedily generated answers at each evaluation',
  }),
  evalMaxNewTokens: int(1, MAX_NEW_TOKENS)
    .default(50)
    .register(flags, { flag: 'eval-max-new-tokens', arg: 'N', help: 'completion tasks: tokens generated at most per held-out answer' }),
  ranks: int(1, MAX_RANKS)
    .default(1)
    .register(flags, {
      flag: 'ranks',
      arg: 'N',
      help: "engine processes sharing each step, started with Open MPI's mpirun: one per GPU, or per group of cores (a machine's cores are shared among its ranks)",
    }),
  parallel: Parallel.default('data').register(flags, {
    flag: 'parallel',
    arg: 'P',
    help: 'how the ranks share a step: data (each rank its shard of the batch), perturbation (each q/N of the perturbations on the whole batch), 2d (--groups G perturbation groups of N/G data-parallel ranks)',
  }),
  groups: int(1, MAX_RANKS).optional().register(flags, { flag: 'groups', arg: 'G', help: '--parallel 2d: the number of perturbation groups (a divisor of --ranks)' }),
  sliced: z
    .boolean()
    .default(false)
    .register(flags, {
      flag: 'sliced',
      help: "with --ranks: DistZO2's sliced transfer; CPU-homed blocks live once per machine in memory its ranks share, each rank uploads 1/N of a block and the slices are exchanged (NCCL between GPUs, MPI on the CPU); those blocks are updated on the device",
    }),
  rankTimeout: real(0, { inclusive: false })
    .default(DEFAULT_RANK_TIMEOUT_S)
    .register(flags, {
      flag: 'rank-timeout',
      arg: 'S',
      help: 'seconds a rank waits for the others at an exchange before it names the missing ranks and ends the run',
    }),
  hostfile: FilePath.optional()
    .register(flags, {
      flag: 'hostfile',
      arg: 'FILE',
      read: 'path',
      help: 'Open MPI host file ("host slots=N" lines): ranks on several machines, each with Spillway at the same path',
    })
    .register(pathKinds, { kind: 'datasets', what: 'the MPI host file' }),
});

/**
 * Options that are each valid but do not go together, as the schema's issues (the CLI and the
 * New run form show them beside the field). `--merge` without `--out` is the trainer's to refuse:
 * a run started from the app always has an output folder.
 */
function checkCombined<T extends { trainable: TrainableSet; estimator: Estimator; q?: number; merge: boolean; ranks: number; task: { kind: string } }>(o: T, ctx: z.RefinementCtx<T>): void {
  // Several ranks exchange MeZO's loss pairs and may share CPU homes the trainable sets read at load.
  if (o.ranks > 1 && (o.trainable !== 'full' || o.estimator !== 'mezo')) {
    ctx.addIssue({ code: 'custom', path: ['ranks'], message: `several ranks train every weight with MeZO; the trainable set ${o.trainable} and the ${o.estimator} estimator run on one rank` });
  }
  if (o.merge && !freezesBase(o.trainable)) {
    ctx.addIssue({ code: 'custom', path: ['merge'], message: 'merging saves the base with its adapter merged in: it needs the trainable set lora, loldu or tokens' });
  }
  if (o.trainable === 'tokens' && !LABEL_WORD_TASKS.includes(o.task.kind)) {
    ctx.addIssue({ code: 'custom', path: ['trainable'], message: `the trainable set tokens trains the rows of the task's label words: it needs a task with label words (${LABEL_WORD_TASKS.join(', ')}), not ${o.task.kind}` });
  }
  if (o.estimator === 'fzoo' && o.q !== undefined && o.q < 2) {
    ctx.addIssue({ code: 'custom', path: ['q'], message: `the fzoo estimator needs at least 2 probes, got ${o.q}: the spread of their losses scales the step` });
  }
}

export const RunOptions = RunFields.overwrite(withTrainDefaults).superRefine(checkCombined);

/** What the engine host and the trainer receive: a run's options plus where its checkpoints go and what it resumes. */
export const TrainOptions = RunFields.extend({
  checkpointDir: FilePath.optional()
    .register(flags, { flag: 'checkpoint-dir', arg: 'DIR', read: 'path', help: 'where checkpoints go (the two newest are kept)' })
    .register(pathKinds, { kind: 'export', what: 'the checkpoint folder' }),
  resumeFrom: FilePath.optional()
    .register(flags, {
      flag: 'resume',
      arg: 'DIR',
      read: 'path',
      help: "continue the run that wrote this checkpoint folder, with its options (flags given change them; those that shape the trajectory need --allow-option-changes; --ranks may differ)",
    })
    .register(pathKinds, { kind: 'export', what: 'the checkpoint to resume from' }),
  allowOptionChanges: z
    .boolean()
    .default(false)
    .register(flags, { flag: 'allow-option-changes', help: 'with --resume: take options that change the trajectory (lr, seed, batch size, ...); the change is recorded with the run' }),
  /** The run this training is (its checkpoints name it; a resume refuses another run's checkpoint). */
  runId: RunId.optional(),
})
  .overwrite(withTrainDefaults)
  .superRefine(checkCombined);

// ---------------------------------------------------------------------------
// Generation (docs/ENGINE-SPEC.md, "Decoding")

/**
 * How tokens are chosen. Unset fields take the model's generation_config.json (do_sample,
 * temperature, top_k, top_p, repetition_penalty), else greedy decoding.
 */
export const SamplingOptions = z.object({
  maxNewTokens: int(1, MAX_NEW_TOKENS)
    .default(256)
    .register(flags, { flag: 'max-new-tokens', arg: 'N', help: 'tokens generated at most per prompt' }),
  temperature: real(0, { inclusive: true })
    .optional()
    .register(flags, { flag: 'temperature', arg: 'T', help: "sampling temperature, 0 for greedy (default: the model's generation_config.json, else greedy)" }),
  topK: int(0, 1 << 24)
    .optional()
    .register(flags, { flag: 'top-k', arg: 'K', help: 'sample among the K most likely tokens (0: all)' }),
  topP: real(0, { inclusive: false, max: 1 })
    .optional()
    .register(flags, { flag: 'top-p', arg: 'P', help: 'sample among the most likely tokens whose mass reaches P (1: all)' }),
  repetitionPenalty: real(0, { inclusive: false })
    .optional()
    .register(flags, { flag: 'repetition-penalty', arg: 'R', help: 'divide the logits of tokens already in the text by R (1: off)' }),
  seed: int(0, Number.MAX_SAFE_INTEGER)
    .default(0)
    .register(flags, { flag: 'seed', arg: 'N', help: 'seed of the draws: the same model, prompt, options and seed give the same text' }),
  ignoreEos: z
    .boolean()
    .default(false)
    .register(flags, { flag: 'ignore-eos', help: "go on past the model's end ids, up to --max-new-tokens (benchmarks, long samples)" }),
  stop: z
    .array(z.string().min(1))
    .max(MAX_STOP_STRINGS)
    .optional()
    .register(flags, { flag: 'stop', arg: 'S', read: 'list', help: 'end a sequence where its text holds S (the text stops before it; repeatable)' }),
});

/** What a generator is loaded with and how it renders conversations (`spillway chat`, the Playground). */
export const GeneratorOptions = RunFields.pick({ model: true, threads: true, spillDirs: true, masters: true }).extend({
  offload: Offload.exclude(['auto']).optional().register(flags, {
    flag: 'offload',
    arg: 'T',
    help: 'where the blocks live between decoding steps: none (default), cpu or ssd (one pass over them per step serves every prompt)',
  }),
  templateName: TemplateName,
  templateVariables: TemplateVariables,
});

/** `spillway chat`: a generator, a system turn, and how tokens are chosen. */
export const ChatOptions = GeneratorOptions.extend({ systemPrompt: SystemPrompt }).extend(SamplingOptions.shape);

/** `spillway generate`: prompts decoded together, raw or as one user turn each. */
export const GenerateOptions = GeneratorOptions.extend({
  prompts: z
    .array(z.string().min(1))
    .min(1)
    .max(MAX_PROMPTS)
    .register(flags, { flag: 'prompt', arg: 'P', read: 'list', help: 'a prompt (repeat the flag for several: decoded together)' }),
  chat: z.boolean().default(false).register(flags, { flag: 'chat', help: "each prompt as a user turn in the model's chat template" }),
  systemPrompt: SystemPrompt,
}).extend(SamplingOptions.shape);

/** The options that differ between a checkpoint's run and its resume and shape the trajectory (the `trajectory` registry), with their values. */
export function trajectoryChanges(saved: Readonly<Record<string, unknown>>, now: Readonly<Record<string, unknown>>): { option: string; from: unknown; to: unknown }[] {
  const out: { option: string; from: unknown; to: unknown }[] = [];
  for (const [key, schema] of Object.entries(RunFields.shape as Record<string, z.ZodType>)) {
    const meta = trajectory.get(schema);
    if (!meta) continue;
    if (meta.onlyIf && !meta.onlyIf(saved) && !meta.onlyIf(now)) continue;
    const from = saved[key];
    const to = now[key];
    if (canonical(from) !== canonical(to)) out.push({ option: key, from, to });
  }
  return out;
}

/** JSON with sorted keys and undefined fields left out: equal options read equal whatever their order. */
function canonical(v: unknown): string {
  if (v === undefined) return 'undefined';
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x,
  );
}

/** Scoring a model on a dataset: the run options it shares (the data is `train`: the --data flag). */
export const ScoreOptions = RunFields.pick({ model: true, train: true, task: true, threads: true, batchSize: true, maxLength: true, device: true, gemm: true });

/** What parsing guarantees beyond the schema's types: the defaults withTrainDefaults fills in. */
export type Filled<T> = T & { lr: number; eps: number; noise: NoiseKind; q: number; rank: number };
/** The output of RunOptions or TrainOptions typed with the defaults their parse has filled in. */
export const filled = <T extends object>(parsed: T): Filled<T> => parsed as Filled<T>;
export type RunOptions = Filled<z.output<typeof RunOptions>>;
export type RunOptionsInput = z.input<typeof RunOptions>;
export type TrainOptions = Filled<z.output<typeof TrainOptions>>;
export type TrainOptionsInput = z.input<typeof TrainOptions>;
export type ScoreOptions = z.output<typeof ScoreOptions>;
export type SamplingOptions = z.output<typeof SamplingOptions>;
export type SamplingOptionsInput = z.input<typeof SamplingOptions>;
export type GeneratorOptions = z.output<typeof GeneratorOptions>;
export type ChatOptions = z.output<typeof ChatOptions>;
export type GenerateOptions = z.output<typeof GenerateOptions>;

