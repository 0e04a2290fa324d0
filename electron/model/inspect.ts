// `spillway inspect <model>`: a JSON-able summary of a model folder and its
// human-readable rendering.

import type { ArchFamily, Dtype, ModelInfo, NormKind, UnitKind } from './types.js';
import { loadModelInfo } from './folder.js';

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
  /** The widest sliding window of any layer (0: none) and how many layers slide one. */
  slidingWindow: number;
  slidingLayers: number;
  tiedEmbeddings: boolean;
  tokenizer: 'tokenizer.json' | 'vocab+merges' | null;
  /** Tensors in the checkpoint that no unit uses (known buffers aside). */
  unusedTensors: number;
  units: { kind: UnitKind; count: number; tensorsPerUnit: number; parametersPerUnit: number }[];
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

export function formatInspect(r: InspectReport): string {
  const dtypes = (Object.entries(r.dtypes) as [Dtype, number][])
    .sort((a, b) => b[1] - a[1])
    .map(([d, n]) => (Object.keys(r.dtypes).length > 1 ? `${d} (${formatParams(n)})` : d))
    .join(', ');
  const attn =
    r.kvHeads === r.heads ? `${r.heads} x ${r.headDim}` : `${r.heads} x ${r.headDim} (${r.kvHeads} kv head${r.kvHeads === 1 ? '' : 's'})`;
  const window = !r.slidingWindow
    ? ''
    : `, sliding window ${r.slidingWindow}${r.slidingLayers < r.layers ? ` on ${r.slidingLayers} of ${r.layers} layers` : ''}`;
  const positions = r.ropeTheta ? `${r.maxPositions} (RoPE theta ${r.ropeTheta}${window})` : `${r.maxPositions} (learned)`;
  const rows: [string, string][] = [
    ['name', r.name],
    ['folder', r.dir],
    ['architecture', `${r.architecture} (${r.family} family)`],
    ['parameters', `${formatParams(r.parameterCount)} (${r.parameterCount.toLocaleString('en-US')})`],
    ['dtypes', dtypes || '-'],
    ['size on disk', `${formatBytes(r.sizeOnDisk)} in ${r.weightFiles} file${r.weightFiles === 1 ? '' : 's'}`],
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
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}
