// `spillway inspect <model>`: a JSON-able summary of a model folder and its
// human-readable rendering.

import type { ArchFamily, CheckpointFacts, Dtype, ModelInfo, NormKind, RopeSpec, UnitKind } from './types.js';
import { architectureName, checkpointFacts, loadModelInfo, resolveModelDir } from './folder.js';

export interface InspectReport {
  name: string;
  dir: string;
  architecture: string;
  family: ArchFamily;
  parameterCount: number;
  /** Parameter count per dtype. */
  dtypes: Partial<Record<Dtype, number>>;
  sizeOnDisk: number;
  weightFiles: number;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  vocabSize: number;
  maxPositions: number;
  norm: NormKind;
  activation: string;
  /** RoPE base of the model's rotary table; 0 for learned positions. */
  ropeTheta: number;
  /** The RoPE scaling of the model's rotary table ("llama3 x32", "yarn x4", ...); '' when none. */
  ropeScaling: string;
  /** Dims of each head that turn (less than headDim with partial rotary); 0 for learned positions. */
  rotaryDim: number;
  /** Layers that turn q and k (fewer than layers where some have no RoPE, e.g. SmolLM3). */
  ropeLayers: number;
  /** The widest sliding window of any layer (0: none) and how many layers slide one. */
  slidingWindow: number;
  slidingLayers: number;
  tiedEmbeddings: boolean;
  tokenizer: 'tokenizer.json' | 'vocab+merges' | null;
  /** Tensors in the checkpoint that no unit uses (known buffers aside). */
  unusedTensors: number;
  units: { kind: UnitKind; count: number; tensorsPerUnit: number; parametersPerUnit: number }[];
}

function ropeScaling(r: RopeSpec | undefined): string {
  if (!r || r.type === 'default') return '';
  return r.factor ? `${r.type} x${r.factor}` : r.type;
}

export function buildInspectReport(info: ModelInfo): InspectReport {
  const c = info.config;
  const groups = new Map<UnitKind, { count: number; tensors: number; params: number }>();
  const used = new Set<string>();
  for (const u of info.units) {
    const g = groups.get(u.kind) ?? { count: 0, tensors: 0, params: 0 };
    g.count++;
    for (const t of Object.values(u.tensors)) {
      used.add(t.name);
      g.tensors++;
      g.params += t.shape.reduce((a, b) => a * b, 1);
    }
    groups.set(u.kind, g);
  }
  const order: UnitKind[] = ['embed', 'block', 'head'];
  return {
    name: info.name,
    dir: info.dir,
    architecture: c.hfArchitecture,
    family: c.family,
    parameterCount: info.parameterCount,
    dtypes: { ...info.dtypes },
    sizeOnDisk: info.sizeOnDisk,
    weightFiles: new Set(info.tensors.map((t) => t.file)).size,
    layers: c.layers,
    hidden: c.hidden,
    heads: c.heads,
    kvHeads: c.kvHeads,
    headDim: c.headDim,
    intermediate: c.intermediate,
    vocabSize: c.vocabSize,
    maxPositions: c.maxPositions,
    norm: c.norm,
    activation: c.activation,
    ropeTheta: c.ropes[0]?.theta ?? 0,
    ropeScaling: ropeScaling(c.ropes[0]),
    rotaryDim: c.ropes[0]?.rotaryDim ?? 0,
    ropeLayers: c.layerAttention.filter((l) => l.rope >= 0).length,
    slidingWindow: Math.max(0, ...c.layerAttention.map((l) => l.window)),
    slidingLayers: c.layerAttention.filter((l) => l.window > 0).length,
    tiedEmbeddings: c.tiedEmbeddings,
    tokenizer: info.tokenizer?.kind ?? null,
    unusedTensors: info.tensors.filter((t) => !used.has(t.name) && !info.buffers.includes(t.name)).length,
    units: order
      .filter((k) => groups.has(k))
      .map((k) => {
        const g = groups.get(k)!;
        return {
          kind: k,
          count: g.count,
          tensorsPerUnit: Math.round(g.tensors / g.count),
          parametersPerUnit: Math.round(g.params / g.count),
        };
      }),
  };
}

/** Loads the model at `path` and summarises it. Throws ModelError. */
export async function inspectModel(path: string): Promise<InspectReport> {
  return buildInspectReport(await loadModelInfo(path));
}

export function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} KB`;
  return `${n} B`;
}

export function formatParams(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

function formatDtypes(d: Partial<Record<string, number>>): string {
  const entries = Object.entries(d) as [string, number][];
  return entries
    .sort((a, b) => b[1] - a[1])
    .map(([t, n]) => (entries.length > 1 ? `${t} (${formatParams(n)})` : t))
    .join(', ');
}

const formatCount = (n: number) => `${formatParams(n)} (${n.toLocaleString('en-US')})`;
const formatSize = (bytes: number, files: number) => `${formatBytes(bytes)} in ${files} file${files === 1 ? '' : 's'}`;

function formatRows(rows: [string, string][]): string {
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

/** What `inspect` reports of a model folder the engine refuses: why, beside what its files tell. */
export interface RefusedReport {
  name: string;
  dir: string;
  /** The architecture config.json names, null when it names none or cannot be read. */
  architecture: string | null;
  checkpoint: CheckpointFacts | null;
  refused: string;
}

/**
 * The refused report of the model at `path`, `reason` being why it could not be loaded; null
 * when neither its config nor its weights can be read (nothing to report beside the reason).
 */
export async function inspectRefused(path: string, reason: string): Promise<RefusedReport | null> {
  let resolved;
  try {
    resolved = await resolveModelDir(path);
  } catch {
    return null;
  }
  const architecture = await architectureName(resolved.dir);
  const checkpoint = await checkpointFacts(resolved.dir);
  if (architecture === null && checkpoint === null) return null;
  return { name: resolved.name, dir: resolved.dir, architecture, checkpoint, refused: reason };
}

export function formatRefused(r: RefusedReport): string {
  const c = r.checkpoint;
  const rows: [string, string][] = [
    ['name', r.name],
    ['folder', r.dir],
    ['architecture', r.architecture ?? 'not named in config.json'],
    ['parameters', c ? formatCount(c.parameterCount) : 'weights unreadable'],
  ];
  if (c) rows.push(['dtypes', formatDtypes(c.dtypes) || '-'], ['size on disk', formatSize(c.sizeOnDisk, c.weightFiles)]);
  rows.push(['refused', r.refused]);
  return formatRows(rows);
}

export function formatInspect(r: InspectReport): string {
  const dtypes = formatDtypes(r.dtypes);
  const attn =
    r.kvHeads === r.heads ? `${r.heads} x ${r.headDim}` : `${r.heads} x ${r.headDim} (${r.kvHeads} kv head${r.kvHeads === 1 ? '' : 's'})`;
  const window = !r.slidingWindow
    ? ''
    : `, sliding window ${r.slidingWindow}${r.slidingLayers < r.layers ? ` on ${r.slidingLayers} of ${r.layers} layers` : ''}`;
  const scaling = r.ropeScaling ? `, ${r.ropeScaling}` : '';
  const partial = r.rotaryDim && r.rotaryDim < r.headDim ? `, ${r.rotaryDim} of ${r.headDim} dims` : '';
  const nope = r.ropeLayers < r.layers ? `, on ${r.ropeLayers} of ${r.layers} layers` : '';
  const positions = r.ropeTheta ? `${r.maxPositions} (RoPE theta ${r.ropeTheta}${scaling}${partial}${nope}${window})` : `${r.maxPositions} (learned)`;
  const rows: [string, string][] = [
    ['name', r.name],
    ['folder', r.dir],
    ['architecture', `${r.architecture} (${r.family} family)`],
    ['parameters', formatCount(r.parameterCount)],
    ['dtypes', dtypes || '-'],
    ['size on disk', formatSize(r.sizeOnDisk, r.weightFiles)],
    ['layers', String(r.layers)],
    ['hidden', String(r.hidden)],
    ['attention heads', attn],
    ['mlp width', `${r.intermediate} (${r.activation})`],
    ['norm', r.norm],
    ['vocabulary', String(r.vocabSize)],
    ['max positions', positions],
    ['tied embeddings', r.tiedEmbeddings ? 'yes' : 'no'],
    ['tokenizer', r.tokenizer ?? 'none found'],
    [
      'units',
      r.units
        .map((u) => `${u.count} ${u.kind}${u.count === 1 ? '' : 's'} (${formatParams(u.parametersPerUnit)} each)`)
        .join(', '),
    ],
  ];
  if (r.unusedTensors > 0) rows.push(['unused tensors', String(r.unusedTensors)]);
  return formatRows(rows);
}
