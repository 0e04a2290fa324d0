// Model folders: resolving a path (plain folder, Hugging Face cache entry or
// snapshot), reading config + safetensors headers, mapping tensors to units
// by role, and scanning roots for models.

import { promises as fsp } from 'node:fs';
import type { Dirent } from 'node:fs';
import * as path from 'node:path';
import { isDir, isFile, statOrNull } from '../node/files.js';
import type { CheckpointFacts, Dtype, ModelInfo, TensorRef, UnsupportedModel } from './types.js';
import { ModelError, describeError } from './errors.js';
import { readSafetensorsHeader, numelOf, type UnsupportedDtypeTensor } from './safetensors.js';
import { readModelConfig } from './config.js';
import { type Checkpoint, TensorPicker } from './arch/tensors.js';

// ---------------------------------------------------------------------------
// Resolving a path

export interface ResolvedModelDir {
  /** Folder holding config.json (the snapshot folder for the HF cache). */
  dir: string;
  /** Folder name, or "org/name" for the HF cache. */
  name: string;
  /** The `models--org--name` folder when the model comes from the HF cache. */
  cacheRepo: string | null;
  /** Snapshot revision (folder name) for the HF cache. */
  revision: string | null;
}

/** "models--org--name" -> "org/name"; null when not a cache repo folder name. */
export function cacheRepoName(folder: string): string | null {
  if (!folder.startsWith('models--')) return null;
  const rest = folder.slice('models--'.length);
  if (!rest) return null;
  return rest.split('--').join('/');
}

/**
 * Turns a user-given path into the folder holding config.json. Accepts a
 * model folder, a HF cache repo folder (`models--org--name`: refs/main, else
 * the only snapshot, else the newest), or a snapshot folder inside one.
 */
export async function resolveModelDir(p: string): Promise<ResolvedModelDir> {
  const abs = path.resolve(p);
  const st = await statOrNull(abs);
  if (!st) throw new ModelError(`model path ${abs} does not exist`, { file: abs });
  if (!st.isDirectory()) {
    if (path.basename(abs) === 'config.json') return resolveModelDir(path.dirname(abs));
    throw new ModelError(`model path ${abs} is not a folder`, { file: abs });
  }
  const base = path.basename(abs);
  const repoName = cacheRepoName(base);
  if (repoName !== null && (await isDir(path.join(abs, 'snapshots')))) {
    const rev = await pickSnapshot(abs);
    return { dir: path.join(abs, 'snapshots', rev), name: repoName, cacheRepo: abs, revision: rev };
  }
  // A snapshot folder: <cache>/models--org--name/snapshots/<rev>
  const parent = path.dirname(abs);
  const grand = path.dirname(parent);
  if (path.basename(parent) === 'snapshots') {
    const n = cacheRepoName(path.basename(grand));
    if (n !== null) return { dir: abs, name: n, cacheRepo: grand, revision: base };
  }
  return { dir: abs, name: base, cacheRepo: null, revision: null };
}

async function pickSnapshot(repo: string): Promise<string> {
  const snapDir = path.join(repo, 'snapshots');
  try {
    const ref = (await fsp.readFile(path.join(repo, 'refs', 'main'), 'utf8')).trim();
    if (ref && !ref.includes('/') && !ref.includes('\\') && (await isDir(path.join(snapDir, ref)))) return ref;
  } catch {
    /* no refs/main */
  }
  const entries = await fsp.readdir(snapDir, { withFileTypes: true });
  const snaps: { name: string; mtime: number }[] = [];
  for (const e of entries) {
    const full = path.join(snapDir, e.name);
    const s = await statOrNull(full);
    if (s?.isDirectory()) snaps.push({ name: e.name, mtime: s.mtimeMs });
  }
  if (snaps.length === 0) {
    throw new ModelError(`Hugging Face cache entry ${repo} has no snapshot (download incomplete?)`, { file: repo });
  }
  snaps.sort((a, b) => b.mtime - a.mtime || (a.name < b.name ? -1 : 1));
  return snaps[0].name;
}

// ---------------------------------------------------------------------------
// Loading

const WEIGHTS = 'model.safetensors';
const INDEX = 'model.safetensors.index.json';

async function readJson(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new ModelError(`cannot read ${file}: ${describeError(e)}`, { file, cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelError(`${file} is not valid JSON: ${describeError(e)}`, { file, cause: e });
  }
}

/** Reads the headers of model.safetensors or of every shard of the index. */
async function readCheckpoint(dir: string): Promise<Checkpoint> {
  const single = path.join(dir, WEIGHTS);
  const index = path.join(dir, INDEX);
  let shards: string[];
  let weightMap: Map<string, string> | null = null;
  if (await isFile(index)) {
    const json = await readJson(index);
    if (typeof json !== 'object' || json === null || Array.isArray(json)) {
      throw new ModelError(`${index} must hold a JSON object`, { file: index });
    }
    const wm = (json as Record<string, unknown>).weight_map;
    if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) {
      throw new ModelError(`${index} has no "weight_map" object`, { file: index, field: 'weight_map' });
    }
    weightMap = new Map();
    const shardSet = new Set<string>();
    for (const [name, shard] of Object.entries(wm as Record<string, unknown>)) {
      if (typeof shard !== 'string' || !shard || path.isAbsolute(shard) || shard.split(/[\\/]/).includes('..')) {
        throw new ModelError(`${index}: tensor "${name}" maps to an invalid shard ${JSON.stringify(shard)}`, {
          file: index,
          tensor: name,
        });
      }
      weightMap.set(name, shard);
      shardSet.add(shard);
    }
    if (shardSet.size === 0) throw new ModelError(`${index} lists no tensors`, { file: index });
    shards = [...shardSet].sort();
  } else if (await isFile(single)) {
    shards = [WEIGHTS];
  } else {
    const names = await fsp.readdir(dir).catch(() => [] as string[]);
    const bin = names.find((n) => n === 'pytorch_model.bin' || n === 'pytorch_model.bin.index.json');
    const other = names.filter((n) => n.endsWith('.safetensors'));
    if (bin) {
      throw new ModelError(
        `${dir} has only PyTorch .bin weights (${bin}); convert the checkpoint to safetensors`,
        { file: path.join(dir, bin), kind: 'unsupported' },
      );
    }
    throw new ModelError(
      `${dir} has no ${WEIGHTS} or ${INDEX}${other.length ? ` (found ${other.join(', ')})` : ''}`,
      { file: single },
    );
  }

  const tensors: TensorRef[] = [];
  const unsupported = new Map<string, UnsupportedDtypeTensor>();
  const owner = new Map<string, string>(); // tensor -> shard
  const realFiles = new Set<string>();
  const shardTensorNames = new Map<string, Set<string>>();
  let sizeOnDisk = 0;
  for (const shard of shards) {
    const p = path.join(dir, shard);
    let real: string;
    try {
      real = await fsp.realpath(p);
    } catch (e) {
      throw new ModelError(
        weightMap ? `shard ${shard} listed in ${index} is missing (${p})` : `cannot open ${p}: ${describeError(e)}`,
        { file: p, cause: e },
      );
    }
    const h = await readSafetensorsHeader(real);
    if (!realFiles.has(real)) {
      realFiles.add(real);
      sizeOnDisk += h.fileSize;
    }
    const names = new Set<string>();
    const add = (name: string) => {
      const prev = owner.get(name);
      if (prev !== undefined) {
        throw new ModelError(`tensor "${name}" appears in both ${prev} and ${shard} (in ${dir})`, {
          file: p,
          tensor: name,
        });
      }
      owner.set(name, shard);
      names.add(name);
    };
    for (const t of h.tensors) {
      add(t.name);
      tensors.push(t);
    }
    for (const u of h.unsupported) {
      add(u.name);
      unsupported.set(u.name, u);
    }
    shardTensorNames.set(shard, names);
  }
  if (weightMap) {
    for (const [name, shard] of weightMap) {
      if (!shardTensorNames.get(shard)?.has(name)) {
        const actual = owner.get(name);
        throw new ModelError(
          `tensor "${name}" is listed in ${index} under ${shard} but ${actual ? `is stored in ${actual}` : `is not in that file`}`,
          { file: path.join(dir, shard), tensor: name },
        );
      }
    }
  }
  return { tensors, unsupported, weightFiles: [...realFiles], sizeOnDisk };
}

/** FNV-1a 32-bit of the UTF-8 name: the engine's tensor id (docs/ENGINE-SPEC.md). */
export function tensorId(name: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(name, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

async function detectTokenizer(dir: string): Promise<ModelInfo['tokenizer']> {
  const extra = async (files: string[]) => {
    for (const f of ['tokenizer_config.json', 'special_tokens_map.json']) {
      if (await isFile(path.join(dir, f))) files.push(path.join(dir, f));
    }
    return files;
  };
  if (await isFile(path.join(dir, 'tokenizer.json'))) {
    return { kind: 'tokenizer.json', files: await extra([path.join(dir, 'tokenizer.json')]) };
  }
  if ((await isFile(path.join(dir, 'vocab.json'))) && (await isFile(path.join(dir, 'merges.txt')))) {
    return { kind: 'vocab+merges', files: await extra([path.join(dir, 'vocab.json'), path.join(dir, 'merges.txt')]) };
  }
  return null;
}

/**
 * Loads config.json and the safetensors headers of the model at `p` and maps
 * its tensors to units. Throws ModelError (kind 'invalid' or 'unsupported').
 */
export async function loadModelInfo(p: string): Promise<ModelInfo> {
  const { dir, name } = await resolveModelDir(p);
  const cfgFile = path.join(dir, 'config.json');
  if (!(await isFile(cfgFile))) {
    throw new ModelError(`${dir} has no config.json (not a Hugging Face model folder)`, { file: cfgFile });
  }
  const parsed = readModelConfig(await readJson(cfgFile), dir);
  const config = parsed.config;
  const ck = await readCheckpoint(dir);
  const pk = new TensorPicker(ck, dir, config.hfArchitecture);
  const units = parsed.units(pk);

  let parameterCount = 0;
  const dtypes: Partial<Record<Dtype, number>> = {};
  const ids = new Map<number, string>();
  for (const t of pk.used.values()) {
    const n = numelOf(t.shape);
    parameterCount += n;
    dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + n;
    const id = tensorId(t.name);
    const other = ids.get(id);
    if (other !== undefined) {
      throw new ModelError(
        `tensors "${other}" and "${t.name}" in ${dir} have the same id 0x${id.toString(16)} (fnv1a32 collision)`,
        { file: t.file, tensor: t.name, kind: 'unsupported' },
      );
    }
    ids.set(id, t.name);
  }
  // Report the refs the units use (GPT-2 Conv1D weights marked transposed).
  const tensors = ck.tensors.map((t) => pk.used.get(t.name) ?? t);
  const isBuffer = parsed.family.buffers;
  const buffers = isBuffer ? [...ck.tensors.map((t) => t.name), ...ck.unsupported.keys()].filter((n) => isBuffer.test(n)) : [];

  return {
    dir,
    name,
    config,
    units,
    tensors,
    buffers,
    parameterCount,
    dtypes,
    sizeOnDisk: ck.sizeOnDisk,
    tokenizer: await detectTokenizer(dir),
  };
}

/**
 * What the checkpoint in `dir` (a resolved model folder) tells of its size without knowing its
 * architecture, for a model the engine refuses; null when its weights cannot be read either.
 */
export async function checkpointFacts(dir: string): Promise<CheckpointFacts | null> {
  let ck: Checkpoint;
  try {
    ck = await readCheckpoint(dir);
  } catch {
    return null;
  }
  const dtypes: Record<string, number> = {};
  let parameterCount = 0;
  for (const t of [...ck.tensors, ...ck.unsupported.values()]) {
    const n = numelOf(t.shape);
    parameterCount += n;
    dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + n;
  }
  return { parameterCount, dtypes, sizeOnDisk: ck.sizeOnDisk, weightFiles: ck.weightFiles.length };
}

// ---------------------------------------------------------------------------
// Scanning

export interface ScanOptions {
  /** Folder levels below each root to look at (default 4). */
  maxDepth?: number;
}

const SKIP_DIRS = new Set(['node_modules', '.git', 'blobs', 'refs', '.locks', '__pycache__', '.cache-tmp']);

/**
 * Finds model folders under `roots` (plain model folders and HF cache repos,
 * e.g. ~/.cache/huggingface/hub), loading each. Folders that look like models
 * but cannot be loaded are returned in `unsupported` with the reason.
 */
export async function scanModelRoots(
  roots: string[],
  opts: ScanOptions = {},
): Promise<{ models: ModelInfo[]; unsupported: UnsupportedModel[] }> {
  const maxDepth = opts.maxDepth ?? 4;
  const models: ModelInfo[] = [];
  const unsupported: UnsupportedModel[] = [];
  const visited = new Set<string>();
  const loaded = new Set<string>();

  const tryLoad = async (target: string, fallbackName: string) => {
    let resolved: ResolvedModelDir;
    try {
      resolved = await resolveModelDir(target);
    } catch (e) {
      unsupported.push({ dir: target, name: fallbackName, hfArchitecture: null, reason: describeError(e), checkpoint: null });
      return;
    }
    const key = await fsp.realpath(resolved.dir).catch(() => resolved.dir);
    if (loaded.has(key)) return;
    loaded.add(key);
    try {
      models.push(await loadModelInfo(resolved.dir));
    } catch (e) {
      unsupported.push({
        dir: resolved.dir,
        name: resolved.name,
        hfArchitecture: await architectureName(resolved.dir),
        reason: describeError(e),
        checkpoint: await checkpointFacts(resolved.dir),
      });
    }
  };

  const walk = async (dir: string, depth: number): Promise<void> => {
    const real = await fsp.realpath(dir).catch(() => null);
    if (!real || visited.has(real)) return;
    visited.add(real);
    let entries: Dirent[];
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    const base = path.basename(dir);
    if (cacheRepoName(base) !== null && entries.some((e) => e.name === 'snapshots')) {
      await tryLoad(dir, cacheRepoName(base)!);
      return; // never descend into a cache repo
    }
    if (entries.some((e) => e.name === 'config.json' && (e.isFile() || e.isSymbolicLink()))) {
      if (await looksLikeModel(dir, entries)) await tryLoad(dir, base);
    }
    if (depth >= maxDepth) return;
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (SKIP_DIRS.has(e.name) || e.name.startsWith('datasets--') || e.name.startsWith('spaces--')) continue;
      if (!(e.isDirectory() || e.isSymbolicLink())) continue;
      const child = path.join(dir, e.name);
      if (e.isSymbolicLink() && !(await isDir(child))) continue;
      await walk(child, depth + 1);
    }
  };

  for (const r of roots) {
    const abs = path.resolve(r);
    if (!(await isDir(abs))) continue;
    await walk(abs, 0);
  }
  models.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.dir < b.dir ? -1 : 1));
  unsupported.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.dir < b.dir ? -1 : 1));
  return { models, unsupported };
}

/** A folder with config.json counts as a model if the config names an architecture or weights are present. */
async function looksLikeModel(dir: string, entries: Dirent[]): Promise<boolean> {
  if (entries.some((e) => /\.(safetensors|bin)$/.test(e.name) || e.name === INDEX)) return true;
  try {
    const json = JSON.parse(await fsp.readFile(path.join(dir, 'config.json'), 'utf8'));
    return typeof json === 'object' && json !== null && ('architectures' in json || 'model_type' in json);
  } catch {
    return false;
  }
}

/** The architecture config.json names (or its model_type), null when it names none. */
export async function architectureName(dir: string): Promise<string | null> {
  try {
    const json = JSON.parse(await fsp.readFile(path.join(dir, 'config.json'), 'utf8'));
    const a = json?.architectures;
    if (Array.isArray(a) && typeof a[0] === 'string') return a[0];
    return typeof json?.model_type === 'string' ? json.model_type : null;
  } catch {
    return null;
  }
}
