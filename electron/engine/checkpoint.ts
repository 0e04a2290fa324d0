// Checkpoint and saved-model folders: what they hold beside the weights
// (spillway.json, the seed log, a manifest of checksums), which run wrote them,
// and how they are read back. A resume trusts nothing it has not checked: every
// file the manifest lists must have its size and SHA-256, the weights must be
// finite, and the seed log must be the run's (one entry per perturbation, in
// order, each seed the run seed's, each coefficient its lr × g / q). Every
// refusal names the file and says what is wrong.
import { createHash } from 'node:crypto';
import { open, readdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import type { TrainOptions } from '../common/options.js';
import type { RunDevice } from '../common/contract.js';
import { readSafetensorsHeader } from '../model/index.js';
import { isFile } from '../node/files.js';
import type { FileData, FolderFile } from './safe-write.js';

export const WEIGHTS_FILE = 'model.safetensors';
/** An adapter run's checkpoint holds the adapters' trained tensors instead of the (frozen) model. */
export const TRAINED_FILE = 'trainable.safetensors';
export const STATE_FILE = 'spillway.json';
export const SEED_LOG_FILE = 'seedlog.jsonl';
export const MANIFEST_FILE = 'manifest.json';
const MANIFEST_FORMAT = 'spillway-manifest';
const MANIFEST_VERSION = 1;
/** The files a checkpoint cannot be resumed without: a manifest that leaves one out is damaged. */
// Besides the weights: the model's (WEIGHTS_FILE) or an adapter run's (TRAINED_FILE).
const REQUIRED_FILES = [STATE_FILE, SEED_LOG_FILE];

/** An option a resume changed on purpose (--allow-option-changes), kept in every later checkpoint. */
export interface OptionChange {
  /** The steps done when the change took effect. */
  step: number;
  option: string;
  from: unknown;
  to: unknown;
}

/** What a checkpoint folder records beside the model, in spillway.json. */
export interface CheckpointState {
  status: 'checkpoint' | 'completed' | 'stopped';
  steps_done: number;
  steps_planned: number;
  base_model: string;
  /** The run that wrote it (absent in folders written before runs were named). */
  run_id?: string;
  options: Partial<TrainOptions>;
  option_changes?: OptionChange[];
  /** The device the steps so far ran on (absent in checkpoints written before it was kept). */
  device?: RunDevice;
}

/** One perturbation of one step: what reproduces the update, and what the step measured (its metrics row). */
export interface SeedLogEntry {
  step: number;
  seed: string;
  /** lr_t * g / q: the coefficient of z in the update. */
  coef: number;
  /** null when non-finite (the step was skipped). */
  projected_grad: number | null;
  lr: number;
  skipped: boolean;
  /** The step's loss (mean over its perturbations), this perturbation's two losses, when the step ended (ms since 1970), its engine time and its tokens. */
  loss?: number | null;
  loss_plus?: number | null;
  loss_minus?: number | null;
  at?: number;
  step_ms?: number;
  tokens?: number;
}

/** A checkpoint or saved model that cannot be trusted: the file and what is wrong with it. */
export class CheckpointError extends Error {
  constructor(
    readonly file: string,
    detail: string,
  ) {
    super(`${file}: ${detail}`);
    this.name = 'CheckpointError';
  }
}

const damaged = (file: string, detail: string) => new CheckpointError(file, `${detail}; the checkpoint is damaged`);

// ---------------------------------------------------------------------------
// Manifest

interface ManifestEntry {
  name: string;
  bytes: number;
  sha256: string;
}

interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: number;
  files: ManifestEntry[];
}

function chunksOf(data: FileData): readonly Uint8Array[] {
  if (typeof data === 'string') return [Buffer.from(data, 'utf8')];
  return data instanceof Uint8Array ? [data] : data;
}

/** The folder's files plus manifest.json: the size and SHA-256 of each, written last so that it covers them all. */
export function withManifest(files: readonly FolderFile[]): FolderFile[] {
  const entries: ManifestEntry[] = files.map((f) => {
    const h = createHash('sha256');
    let bytes = 0;
    for (const c of chunksOf(f.data)) {
      h.update(c);
      bytes += c.byteLength;
    }
    return { name: f.name, bytes, sha256: h.digest('hex') };
  });
  const manifest: Manifest = { format: MANIFEST_FORMAT, version: MANIFEST_VERSION, files: entries };
  return [...files, { name: MANIFEST_FILE, data: JSON.stringify(manifest, null, 2) + '\n' }];
}

function parseJsonFile(file: string, text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw damaged(file, `${what} is not valid JSON (${text.trim() ? 'truncated or edited' : 'empty'}: ${(e as Error).message})`);
  }
}

async function readManifest(dir: string): Promise<Manifest | null> {
  const file = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CheckpointError(file, `cannot be read: ${(e as Error).message}`);
  }
  const m = parseJsonFile(file, text, 'the manifest') as Partial<Manifest> | null;
  if (!m || m.format !== MANIFEST_FORMAT || !Array.isArray(m.files)) throw damaged(file, 'is not a Spillway manifest');
  if (m.version !== MANIFEST_VERSION) throw new CheckpointError(file, `manifest version ${String(m.version)} is not one this version reads (${MANIFEST_VERSION})`);
  for (const e of m.files) {
    if (!e || typeof e.name !== 'string' || !/^[\w.-]+$/.test(e.name) || !Number.isSafeInteger(e.bytes) || typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256)) {
      throw damaged(file, `lists a file it cannot describe (${JSON.stringify(e)})`);
    }
  }
  if (!m.files.some((e) => e.name === WEIGHTS_FILE || e.name === TRAINED_FILE)) throw damaged(file, `does not list ${WEIGHTS_FILE}`);
  for (const name of REQUIRED_FILES) {
    if (!m.files.some((e) => e.name === name)) throw damaged(file, `does not list ${name}`);
  }
  return m as Manifest;
}

/** Where the float32 tensors of a safetensors file lie (absolute byte ranges), to check them for NaN and Inf as the file streams by. */
async function float32Ranges(file: string): Promise<{ name: string; start: number; end: number }[]> {
  try {
    const h = await readSafetensorsHeader(file);
    return h.tensors.filter((t) => t.dtype === 'F32').map((t) => ({ name: t.name, start: t.offset, end: t.offset + t.nbytes }));
  } catch (e) {
    throw damaged(file, (e as Error).message.replace(`${file}: `, '').replace(`${file} `, ''));
  }
}

/** The first non-finite float32 in `bytes` (which starts at absolute offset `at`) within [start, end), as its absolute offset. */
function firstNonFinite(bytes: Uint8Array, at: number, start: number, end: number): number | null {
  const from = Math.max(start, at);
  const to = Math.min(end, at + bytes.byteLength);
  if (from >= to) return null;
  const off = bytes.byteOffset + (from - at);
  const n = Math.floor((to - from) / 4);
  if (off % 4 === 0) {
    const f = new Float32Array(bytes.buffer, off, n);
    for (let i = 0; i < n; i++) if (f[i] - f[i] !== 0) return from + 4 * i;
  } else {
    const v = new DataView(bytes.buffer, off, n * 4);
    for (let i = 0; i < n; i++) {
      const x = v.getFloat32(4 * i, true);
      if (x - x !== 0) return from + 4 * i;
    }
  }
  return null;
}

const READ_CHUNK = 8 << 20;

/**
 * Streams a file once: its size and SHA-256, and, for the weights, the first non-finite float32 of
 * each tensor. A checked range ends on a whole float: chunks are multiples of 4 bytes and the
 * tensors start on 4-byte offsets (the writer pads the header to 8).
 */
async function hashFile(file: string, floats: { name: string; start: number; end: number }[] = []): Promise<{ bytes: number; sha256: string; nonFinite: { tensor: string; index: number } | null }> {
  const fh = await open(file, 'r');
  const h = createHash('sha256');
  const buf = new Uint8Array(new ArrayBuffer(READ_CHUNK));
  let at = 0;
  let nonFinite: { tensor: string; index: number } | null = null;
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.byteLength, at);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      h.update(chunk);
      if (!nonFinite) {
        for (const t of floats) {
          if (t.end <= at || t.start >= at + bytesRead) continue;
          const bad = firstNonFinite(chunk, at, t.start, t.end);
          if (bad !== null) {
            nonFinite = { tensor: t.name, index: (bad - t.start) / 4 };
            break;
          }
        }
      }
      at += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return { bytes: at, sha256: h.digest('hex'), nonFinite };
}

// ---------------------------------------------------------------------------
// spillway.json and the seed log

export async function readCheckpointState(dir: string): Promise<CheckpointState> {
  const file = join(dir, STATE_FILE);
  let raw: string;
  try {
    raw = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new CheckpointError(dir, `not a Spillway checkpoint (${STATE_FILE} is missing)`);
    throw new CheckpointError(file, `cannot be read: ${(e as Error).message}`);
  }
  const state = parseJsonFile(file, raw, 'the checkpoint state') as Partial<CheckpointState> | null;
  if (!state || typeof state !== 'object' || !Number.isSafeInteger(state.steps_done) || (state.steps_done as number) < 0 || typeof state.base_model !== 'string') {
    throw damaged(file, 'does not describe a checkpoint (steps_done, base_model)');
  }
  if (state.run_id !== undefined && typeof state.run_id !== 'string') throw damaged(file, 'run_id is not a string');
  if (typeof state.options !== 'object' || state.options === null) throw damaged(file, 'holds no options');
  return state as CheckpointState;
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** One seed log line, checked field by field; errors name the file and line. */
function parseSeedLogLine(file: string, lineNo: number, text: string): SeedLogEntry {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw damaged(`${file}:${lineNo}`, `not valid JSON (truncated or edited: ${(e as Error).message})`);
  }
  const e = v as Record<string, unknown>;
  const bad = (field: string, expected: string) => damaged(`${file}:${lineNo}`, `field "${field}": expected ${expected}, got ${JSON.stringify(e?.[field])}`);
  if (!e || typeof e !== 'object' || Array.isArray(e)) throw damaged(`${file}:${lineNo}`, 'expected a JSON object');
  if (!Number.isSafeInteger(e.step) || (e.step as number) < 0) throw bad('step', 'a step number');
  if (typeof e.seed !== 'string' || !/^\d{1,20}$/.test(e.seed)) throw bad('seed', 'a 64-bit seed as a decimal string');
  if (!isNum(e.coef)) throw bad('coef', 'a finite number');
  if (e.projected_grad !== null && !isNum(e.projected_grad)) throw bad('projected_grad', 'a number or null');
  if (!isNum(e.lr) || e.lr < 0) throw bad('lr', 'a finite number >= 0');
  if (typeof e.skipped !== 'boolean') throw bad('skipped', 'true or false');
  for (const f of ['loss', 'loss_plus', 'loss_minus'] as const) if (e[f] !== undefined && e[f] !== null && !isNum(e[f])) throw bad(f, 'a number or null');
  for (const f of ['at', 'step_ms', 'tokens'] as const) if (e[f] !== undefined && (!isNum(e[f]) || (e[f] as number) < 0)) throw bad(f, 'a number >= 0');
  return e as unknown as SeedLogEntry;
}

/** The seed log of a checkpoint or saved model, every line checked (an absent log is an empty one). */
export async function readSeedLog(dir: string): Promise<SeedLogEntry[]> {
  const file = join(dir, SEED_LOG_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new CheckpointError(file, `cannot be read: ${(e as Error).message}`);
  }
  const out: SeedLogEntry[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() === '') continue;
    out.push(parseSeedLogLine(file, i + 1, lines[i]));
  }
  return out;
}

const MASK64 = (1n << 64n) - 1n;

function splitmix64(x: bigint): bigint {
  x = (x + 0x9e3779b97f4a7c15n) & MASK64;
  let z = x;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

/** The seed of perturbation j at step t of a run with seed S (docs/ENGINE-SPEC.md, "Step seeds"). */
export function stepSeed(runSeed: bigint, step: number, j: number): bigint {
  return splitmix64((splitmix64(runSeed ^ ((BigInt(step) * 0xd1b54a32d192ed03n) & MASK64)) + BigInt(j)) & MASK64);
}

/** The value an option had at a step, undoing the recorded changes made at or after it. */
function optionAt<T>(state: CheckpointState, option: string, step: number, now: T): T {
  let v: unknown = now;
  const changes = (state.option_changes ?? []).filter((c) => c.option === option).sort((a, b) => b.step - a.step);
  for (const c of changes) if (c.step > step) v = c.from;
  return v as T;
}

/**
 * The seed log against its checkpoint: steps_done × q entries, step by step, each seed the one the
 * run seed gives (ENGINE-SPEC), each coefficient lr × g / q (0 when skipped). Catches an edited or
 * shortened log whatever the manifest says.
 */
function checkSeedLog(file: string, log: readonly SeedLogEntry[], state: CheckpointState): void {
  const qNow = state.options.q ?? 1;
  const fzoo = state.options.estimator === 'fzoo';
  const seedNow = BigInt(state.options.seed ?? 0);
  const steps = state.steps_done;
  let k = 0;
  for (let step = 0; step < steps; step++) {
    const q = optionAt(state, 'q', step, qNow);
    const runSeed = BigInt(optionAt(state, 'seed', step, seedNow));
    for (let j = 0; j < q; j++, k++) {
      const e = log[k];
      if (!e) throw damaged(file, `ends at entry ${k} in step ${step} of ${steps}: the log is shorter than its checkpoint`);
      const line = `${file}:${k + 1}`;
      if (e.step !== step) throw damaged(line, `entry for step ${e.step} where step ${step} was due`);
      const seed = stepSeed(runSeed, step, j);
      if (e.seed !== seed.toString()) throw damaged(line, `seed ${e.seed} is not the run's seed for step ${step} (${seed})`);
      const coef = e.skipped || e.projected_grad === null ? 0 : (e.lr * e.projected_grad) / q;
      // The engine applies coef rounded to float32 (from lr in float32): within 1e-6 relative. FZOO's
      // coef is also divided by its probes' spread, which the log does not keep: finite is what is checked.
      if (fzoo ? !Number.isFinite(e.coef) || (coef === 0 && e.coef !== 0) : Math.abs(e.coef - coef) > 1e-6 * Math.abs(coef)) {
        throw damaged(line, `coef ${e.coef} is not lr × projected_grad / q (${coef})`);
      }
    }
  }
  if (log.length !== k) throw damaged(file, `has ${log.length} entries for ${steps} steps (expected ${k})`);
}

// ---------------------------------------------------------------------------
// Opening a checkpoint to resume

export interface OpenedCheckpoint {
  dir: string;
  state: CheckpointState;
  seedLog: SeedLogEntry[];
  /** Whether a manifest vouched for every file (false for folders written before manifests). */
  verified: boolean;
}

/**
 * Reads a checkpoint and checks everything a resume relies on: the manifest's sizes and checksums,
 * finite weights, the seed log. Throws a CheckpointError naming the first file that fails.
 */
export async function openCheckpoint(dirIn: string): Promise<OpenedCheckpoint> {
  const dir = resolve(dirIn);
  const state = await readCheckpointState(dir);
  const weightsName = await weightsFileOf(dir);
  if (!weightsName) throw new CheckpointError(dir, `not a complete checkpoint (${WEIGHTS_FILE} is missing)`);
  const weights = join(dir, weightsName);
  const manifest = await readManifest(dir);
  const floats = await float32Ranges(weights);
  const checked = new Set<string>();
  for (const entry of manifest?.files ?? []) {
    const file = join(dir, entry.name);
    let got;
    try {
      got = await hashFile(file, entry.name === weightsName ? floats : []);
    } catch (e) {
      throw damaged(file, `is listed in ${MANIFEST_FILE} but cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    if (got.bytes !== entry.bytes) throw damaged(file, `has ${got.bytes} bytes; ${MANIFEST_FILE} says ${entry.bytes}`);
    if (got.sha256 !== entry.sha256) throw damaged(file, `does not match its SHA-256 in ${MANIFEST_FILE} (changed after it was written)`);
    if (got.nonFinite) throw damaged(file, `tensor "${got.nonFinite.tensor}" holds a non-finite value (element ${got.nonFinite.index})`);
    checked.add(entry.name);
  }
  if (!checked.has(weightsName)) {
    const got = await hashFile(weights, floats);
    if (got.nonFinite) throw damaged(weights, `tensor "${got.nonFinite.tensor}" holds a non-finite value (element ${got.nonFinite.index})`);
  }
  const seedLog = await readSeedLog(dir);
  checkSeedLog(join(dir, SEED_LOG_FILE), seedLog, state);
  return { dir, state, seedLog, verified: manifest !== null };
}

// ---------------------------------------------------------------------------
// A folder of checkpoints

const CHECKPOINT_NAME = /^step-\d+$/;

/** The weights file a checkpoint holds: the model's, or an adapter run's trained tensors; null when neither. */
async function weightsFileOf(dir: string): Promise<string | null> {
  for (const name of [WEIGHTS_FILE, TRAINED_FILE]) if (await isFile(join(dir, name))) return name;
  return null;
}

/** Whether dir holds a complete checkpoint (its weights and spillway.json). */
export async function isCompleteCheckpoint(dir: string): Promise<boolean> {
  return (await isFile(join(dir, STATE_FILE))) && (await weightsFileOf(dir)) !== null;
}

/** The run a checkpoint names: its id, null for a folder written before runs were named, undefined when it cannot be read. */
export async function checkpointRunId(dir: string): Promise<string | null | undefined> {
  try {
    const s = JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8')) as { run_id?: unknown };
    return typeof s.run_id === 'string' ? s.run_id : null;
  } catch {
    return undefined;
  }
}

/** The complete checkpoints under dir, oldest first, with the run each names. */
export async function listCheckpoints(dir: string): Promise<{ path: string; step: number; runId: string | null }[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => CHECKPOINT_NAME.test(n)).sort();
  const out: { path: string; step: number; runId: string | null }[] = [];
  for (const n of names) {
    const path = join(dir, n);
    if (!(await isCompleteCheckpoint(path))) continue;
    const runId = await checkpointRunId(path);
    if (runId !== undefined) out.push({ path, step: Number(n.slice(5)), runId });
  }
  return out;
}

/**
 * The newest complete checkpoint under dir, or null. With a run id, only that run's (and unnamed
 * ones, written before checkpoints named their run): a folder another run wrote into is not ours.
 */
export async function latestCheckpoint(dir: string, runId?: string): Promise<string | null> {
  const all = await listCheckpoints(dir);
  const mine = runId === undefined ? all : all.filter((c) => c.runId === runId || c.runId === null);
  return mine.at(-1)?.path ?? null;
}

/** The runs other than `runId` whose checkpoints lie in dir. */
export async function otherRunsIn(dir: string, runId: string): Promise<{ runId: string; steps: number[] }[]> {
  const byRun = new Map<string, number[]>();
  for (const c of await listCheckpoints(dir)) {
    if (c.runId === null || c.runId === runId) continue;
    byRun.set(c.runId, [...(byRun.get(c.runId) ?? []), c.step]);
  }
  return [...byRun].map(([id, steps]) => ({ runId: id, steps }));
}

/**
 * Keeps the `keep` newest checkpoints of the run, and never deletes the protected ones (the one
 * the run resumed from, its newest complete one) nor another run's. Returns how many it removed.
 */
export async function pruneCheckpoints(dir: string, keep: number, protect: readonly string[], runId?: string): Promise<number> {
  const names = (await readdir(dir)).filter((n) => CHECKPOINT_NAME.test(n)).sort();
  const kept = new Set(protect.map((p) => resolve(p)));
  const ours: string[] = [];
  for (const n of names) {
    const owner = await checkpointRunId(join(dir, n));
    // An incomplete folder (no spillway.json) is this run's failed write, or nobody's.
    if (runId === undefined || owner === runId || owner === null || owner === undefined) ours.push(n);
  }
  let removed = 0;
  for (const n of ours.slice(0, Math.max(0, ours.length - keep))) {
    if (kept.has(resolve(join(dir, n)))) continue;
    await rm(join(dir, n), { recursive: true, force: true });
    removed++;
  }
  return removed;
}
