// The planner on OPT-1.3B … OPT-175B shapes for three machines, with the
// bandwidths of ALGORITHMS.md §5 assumed (not measured), next to ZO2's
// published GPU-memory figures (§2): where each block lives, where its update
// runs (at home or on the device, chosen by the cost model), and SSD striping
// over two drives. Writes bench/results/planner-table.md.
//   npm run build:ts && npm run bench:planner
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { packageRoot } from '../electron/engine/native.js';
import { formatBytes, makePlan } from '../electron/engine/planner.js';
import type { PlannerModel, PlannerRates, SpillRates } from '../electron/engine/planner.js';

interface OptShape {
  name: string;
  layers: number;
  hidden: number;
  heads: number;
  /** ZO2 GPU memory, GB (NVML, fp16, batch 1, sequence 2048), ALGORITHMS.md §2; null: not published. */
  zo2: number | null;
}

const OPT: OptShape[] = [
  { name: 'OPT-1.3B', layers: 24, hidden: 2048, heads: 32, zo2: 3.75 },
  { name: 'OPT-2.7B', layers: 32, hidden: 2560, heads: 32, zo2: null },
  { name: 'OPT-6.7B', layers: 32, hidden: 4096, heads: 32, zo2: 4.99 },
  { name: 'OPT-13B', layers: 40, hidden: 5120, heads: 40, zo2: 6.18 },
  { name: 'OPT-30B', layers: 48, hidden: 7168, heads: 56, zo2: 8.86 },
  { name: 'OPT-66B', layers: 64, hidden: 9216, heads: 72, zo2: 12.07 },
  { name: 'OPT-175B', layers: 96, hidden: 12288, heads: 96, zo2: 18.04 },
];
const VOCAB = 50272;
const POSITIONS = 2048;

/** OPT units: embeddings (tokens + learned positions, offset 2), blocks (q/k/v/o, fc1/fc2 with biases, two layer norms), final norm + tied head. */
function optModel(s: OptShape): PlannerModel {
  const C = s.hidden;
  return {
    name: s.name,
    config: { hidden: C, heads: s.heads, intermediate: 4 * C, vocabSize: VOCAB, tiedEmbeddings: true },
    units: [
      // The engine perturbs one tensor group at a time: its working copies are the largest group
      // (fc1 with its bias in a block; the head's norm and the tied embedding); embeddings on the fly.
      { kind: 'embed', index: -1, parameters: VOCAB * C + (POSITIONS + 2) * C, maxGroupParameters: 0 },
      ...Array.from({ length: s.layers }, (_, i) => ({ kind: 'block' as const, index: i, parameters: 12 * C * C + 13 * C, maxGroupParameters: 4 * C * C + 4 * C })),
      { kind: 'head', index: -1, parameters: 2 * C, maxGroupParameters: 2 * C + VOCAB * C },
    ],
  };
}

interface Machine {
  label: string;
  gpu: number;
  ram: number;
  rates: PlannerRates;
  /** Spill folders, each on its own drive (st_dev), with that drive's rates. */
  spill: { dir: string; device: string; rates: SpillRates }[];
  assumptions: string;
}

const GiB = 2 ** 30;
const MACHINES: Machine[] = [
  {
    label: '24 GB GPU, 256 GB RAM, one 7 GB/s NVMe',
    gpu: 24 * GiB,
    ram: 256 * GiB,
    rates: { h2dBytesPerS: 25e9, d2hBytesPerS: 25e9, ssdReadBytesPerS: 7e9, ssdWriteBytesPerS: 6e9, gemmFlopsPerS: 60e12, cpuUpdateElemsPerS: 2e9, deviceUpdateElemsPerS: 5e10, hostThreads: 16, date: 'assumed' },
    spill: [{ dir: '/nvme0', device: 'nvme0', rates: { readBytesPerS: 7e9, writeBytesPerS: 6e9 } }],
    assumptions:
      'PCIe 4.0 x16 pinned H2D and D2H 25 GB/s (§5); one NVMe Gen4 drive 7 GB/s read (§5), 6 GB/s write (assumed); ' +
      'FP32 GEMM 60 TFLOP/s (RTX 4090 class, assumed); update at home 2·10⁹ floats/s on 16 threads, on the GPU 5·10¹⁰ floats/s (assumed).',
  },
  {
    label: '24 GB GPU, 256 GB RAM, two 7 GB/s NVMe drives (striped)',
    gpu: 24 * GiB,
    ram: 256 * GiB,
    rates: { h2dBytesPerS: 25e9, d2hBytesPerS: 25e9, ssdReadBytesPerS: 7e9, ssdWriteBytesPerS: 6e9, gemmFlopsPerS: 60e12, cpuUpdateElemsPerS: 2e9, deviceUpdateElemsPerS: 5e10, hostThreads: 16, date: 'assumed' },
    spill: [
      { dir: '/nvme0', device: 'nvme0', rates: { readBytesPerS: 7e9, writeBytesPerS: 6e9 } },
      { dir: '/nvme1', device: 'nvme1', rates: { readBytesPerS: 7e9, writeBytesPerS: 6e9 } },
    ],
    assumptions: 'as above, with SSD blocks striped round-robin over two drives (one spill folder on each): 14 GB/s read, 12 GB/s write together.',
  },
  {
    label: '80 GB GPU, 128 GB RAM, H2D 55 GB/s',
    gpu: 80 * GiB,
    ram: 128 * GiB,
    rates: { h2dBytesPerS: 55e9, d2hBytesPerS: 55e9, ssdReadBytesPerS: 12e9, ssdWriteBytesPerS: 10e9, gemmFlopsPerS: 50e12, cpuUpdateElemsPerS: 4e9, deviceUpdateElemsPerS: 1e11, hostThreads: 32, date: 'assumed' },
    spill: [{ dir: '/nvme0', device: 'nvme0', rates: { readBytesPerS: 12e9, writeBytesPerS: 10e9 } }],
    assumptions:
      'PCIe 5.0 x16 H2D and D2H 55 GB/s (§5, H100); one NVMe Gen5 drive 12 GB/s read (§5), 10 GB/s write (assumed); ' +
      'FP32 GEMM 50 TFLOP/s (H100, non-tensor-core, assumed); update at home 4·10⁹ floats/s on 32 threads, on the GPU 10¹¹ floats/s (assumed).',
  },
];

const BATCH = 1;
const SEQ = 2048;
const gb = (b: number) => `${(b / 1e9).toFixed(2)} GB`;
const time = (ms: number | null) => (ms === null ? 'n/a' : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);

const out: string[] = [
  '# Planner table: OPT shapes on three machines',
  '',
  `Generated by \`npm run bench:planner\` (bench/planner-table.ts). Batch ${BATCH}, sequence ${SEQ}, q = 1, SSD write-back every step (K = 1).`,
  'The bandwidths are **assumptions** taken from ALGORITHMS.md §5, not measurements; the compute and update rates are assumed as stated.',
  '',
  '**The main columns are for float32 masters (4 bytes per parameter); ZO2 keeps fp16 copies** (2 bytes, no master). The last two columns',
  'plan the same model with bf16 masters (stochastic rounding; streamed blocks stored, moved and staged in 2 bytes per parameter).',
  "ZO2's GPU memory: NVML, fp16, batch 1, sequence 2048 (ALGORITHMS.md §2; 2.7B not published).",
  "Device memory includes the engine's scratch: z and the perturbed working copy of the largest tensor group one kernel reads (fc1 and its",
  'bias, or the tied 50272-row embedding the head reads), the staging slots, and an upper-bound activation estimate (per activation stream).',
  '',
  'Compute is estimated from FLOPs at the assumed GEMM rate (a calibrated plan uses the measured block forward instead).',
  'Predicted = max(compute + updates on the device, H2D, D2H, SSD read + write-back + replay) + updates at home of CPU-homed blocks',
  '(uploads and write-backs on copy queues beside the compute, SSD traffic on prefetch threads); floor = the largest single term (§5,',
  'full overlap), with the term that bounds it. Updates: where each streamed block is updated, chosen by the cost model',
  '(at home: host threads after the forwards, or replayed on the SSD read; on the device: at its next visit, then written back by a',
  'device → host copy), with the predicted step if every streamed block were updated at home.',
  '',
];
for (const m of MACHINES) {
  out.push(`## ${m.label}`, '', `Assumptions: ${m.assumptions}`, '');
  out.push('| model | fp32 weights | homes device / CPU / SSD | device memory | min. device (all blocks streamed) | CPU memory | SSD bytes | H2D per step | updates home / device (all at home) | predicted step | floor (bound) | ZO2 GPU memory (fp16) | bf16: min. device | bf16: predicted step |');
  out.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const s of OPT) {
    const spill = { spillDirs: m.spill.map((f) => f.dir), spillInfo: m.spill.map((f) => ({ device: f.device })) };
    const rates = { ...m.rates, spill: m.spill.map((f) => f.rates) };
    const p = makePlan({
      model: optModel(s),
      computeDevice: 'gpu',
      budgets: { device: m.gpu, cpu: m.ram },
      ...spill,
      masters: 'fp32',
      batchSize: BATCH,
      maxLength: SEQ,
      rates,
    });
    // The streaming minimum (ZO2's regime): every block streamed, only embeddings, head, scratch and one slot on the device.
    const minimum = makePlan({ model: optModel(s), computeDevice: 'gpu', budgets: { device: 0 }, ...spill, masters: 'fp32', batchSize: BATCH, maxLength: SEQ, rates }).memory.device;
    const bf16 = makePlan({ model: optModel(s), computeDevice: 'gpu', budgets: { device: m.gpu, cpu: m.ram }, ...spill, masters: 'bf16', batchSize: BATCH, maxLength: SEQ, rates });
    const bf16Min = makePlan({ model: optModel(s), computeDevice: 'gpu', budgets: { device: 0 }, ...spill, masters: 'bf16', batchSize: BATCH, maxLength: SEQ, rates }).memory.device;
    const streamed = p.update.homeUnits + p.update.deviceUnits;
    const updates = streamed ? `${p.update.homeUnits} / ${p.update.deviceUnits} (${time(p.update.allHomeStepMs)})` : '—';
    const fits = p.feasible ? '' : ` — does not fit: ${p.shortfalls.join('; ')}`;
    out.push(
      `| ${s.name} | ${gb(p.breakdown.weights)} | ${p.count.device} / ${p.count.cpu} / ${p.count.ssd} | ${gb(p.memory.device)} | ${gb(minimum)} | ${gb(p.memory.cpu)} | ${gb(p.memory.ssd)} | ` +
        `${gb(p.linkBytesPerStep.hostToDevice)} | ${updates} | ${time(p.predictedStepMs)} | ${time(p.floorMs)} (${p.bound ?? 'n/a'}) | ${s.zo2 === null ? '—' : `${s.zo2} GB`}${fits} | ` +
        `${gb(bf16Min)} | ${bf16.feasible ? time(bf16.predictedStepMs) : 'does not fit'} |`,
    );
  }
  out.push('');
}
out.push(
  'Device memory is a budget the planner fills: blocks are kept resident on the device while they fit (device first, then CPU, then SSD),',
  "so a big GPU holds more than ZO2's streaming minimum; the minimum for a model is its embeddings + head + scratch + two staging slots",
  '(the embeddings and head stay float32 on the device in every precision).',
  `Sizes: GB = 10⁹ bytes; GPU and RAM budgets are ${formatBytes(24 * GiB)} / ${formatBytes(256 * GiB)} and ${formatBytes(80 * GiB)} / ${formatBytes(128 * GiB)}.`,
  'CPU memory counts the engine process (128 MiB) and, when blocks live on the SSD, the read-ahead buffers (two of the largest block).',
  '',
);
const text = out.join('\n');
process.stdout.write(text);
const dir = join(packageRoot(), 'bench', 'results');
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, 'planner-table.md'), text);
