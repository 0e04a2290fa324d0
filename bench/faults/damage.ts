// Damaged checkpoints, for real: a checkpoint a real run wrote is copied and
// damaged one way at a time (bits flipped, NaN and Inf written, files cut
// short, edited, deleted; with its manifest left as it was, or rewritten to
// match, as a careful hand or an older version would leave it), then resumed
// through the engine host as a run resumes. Each must be refused before a
// step, with a message naming the damaged file.
import { createHash } from 'node:crypto';
import { cpSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { startEngineJob } from '../../electron/engine/runner.js';
import { MANIFEST_FILE, SEED_LOG_FILE, STATE_FILE, WEIGHTS_FILE } from '../../electron/engine/checkpoint.js';
import { readSafetensorsHeader } from '../../electron/model/index.js';
import type { TrainOptions } from '../../electron/common/options.js';

export interface DamageVariant {
  name: string;
  /** The file the refusal must name (relative to the checkpoint; '' for the folder itself). */
  file: string;
  damage(dir: string): Promise<void> | void;
}

/** Rewrites a file's entry in manifest.json to match it as it is now (damage a checksum alone would catch, hidden). */
function reseal(dir: string, name: string): void {
  const path = join(dir, MANIFEST_FILE);
  const m = JSON.parse(readFileSync(path, 'utf8')) as { files: { name: string; bytes: number; sha256: string }[] };
  const data = readFileSync(join(dir, name));
  for (const e of m.files) {
    if (e.name !== name) continue;
    e.bytes = data.length;
    e.sha256 = createHash('sha256').update(data).digest('hex');
  }
  writeFileSync(path, JSON.stringify(m, null, 2));
}

function edit(path: string, f: (b: Buffer) => Buffer | void): void {
  const b = readFileSync(path);
  writeFileSync(path, f(b) ?? b);
}

/** The byte offset of element `k` of the largest float32 tensor. */
async function floatAt(dir: string, frac: number): Promise<number> {
  const h = await readSafetensorsHeader(join(dir, WEIGHTS_FILE));
  const t = [...h.tensors].sort((a, b) => b.nbytes - a.nbytes)[0];
  return t.offset + 4 * Math.floor((t.nbytes / 4) * frac);
}

const lines = (dir: string) => readFileSync(join(dir, SEED_LOG_FILE), 'utf8').trim().split('\n');
const writeLines = (dir: string, ls: string[]) => writeFileSync(join(dir, SEED_LOG_FILE), ls.join('\n') + '\n');
const editEntry = (dir: string, k: number, f: (e: Record<string, unknown>) => void) => {
  const ls = lines(dir);
  const e = JSON.parse(ls[k]) as Record<string, unknown>;
  f(e);
  ls[k] = JSON.stringify(e);
  writeLines(dir, ls);
};

/** Every way of damaging a checkpoint the harness tries. */
export function damageVariants(otherRunId: string): DamageVariant[] {
  const W = WEIGHTS_FILE;
  const S = SEED_LOG_FILE;
  const J = STATE_FILE;
  const M = MANIFEST_FILE;
  return [
    { name: 'weights: one bit flipped in the header', file: W, damage: (d) => edit(join(d, W), (b) => void (b[12] ^= 0x20)) },
    { name: 'weights: the lowest mantissa bit of one weight flipped', file: W, damage: async (d) => { const at = await floatAt(d, 0.5); edit(join(d, W), (b) => void (b[at] ^= 1)); } },
    { name: 'weights: the sign of one weight flipped', file: W, damage: async (d) => { const at = await floatAt(d, 0); edit(join(d, W), (b) => void (b[at + 3] ^= 0x80)); } },
    { name: 'weights: one weight set to NaN, manifest rewritten to match', file: W, damage: async (d) => { const at = await floatAt(d, 0.25); edit(join(d, W), (b) => void b.writeFloatLE(Number.NaN, at)); reseal(d, W); } },
    { name: 'weights: one weight set to +Inf, manifest rewritten to match', file: W, damage: async (d) => { const at = await floatAt(d, 0.75); edit(join(d, W), (b) => void b.writeFloatLE(Number.POSITIVE_INFINITY, at)); reseal(d, W); } },
    { name: 'weights: one weight set to NaN', file: W, damage: async (d) => { const at = await floatAt(d, 0.9); edit(join(d, W), (b) => void b.writeFloatLE(Number.NaN, at)); } },
    { name: 'weights: 4 KiB zeroed mid-file', file: W, damage: (d) => edit(join(d, W), (b) => void b.fill(0, b.length >> 1, (b.length >> 1) + 4096)) },
    { name: 'weights: cut short by 4 bytes', file: W, damage: (d) => truncateSync(join(d, W), readFileSync(join(d, W)).length - 4) },
    { name: 'weights: cut short by 4 bytes, manifest rewritten to match', file: W, damage: (d) => { truncateSync(join(d, W), readFileSync(join(d, W)).length - 4); reseal(d, W); } },
    { name: 'weights: deleted', file: '', damage: (d) => unlinkSync(join(d, W)) },
    { name: 'seed log: a coefficient edited', file: S, damage: (d) => editEntry(d, 1, (e) => (e.coef = (e.coef as number) * 1.0001)) },
    { name: 'seed log: a coefficient edited, manifest rewritten to match', file: `${S}:2`, damage: (d) => { editEntry(d, 1, (e) => (e.coef = (e.coef as number) * 1.0001)); reseal(d, S); } },
    { name: 'seed log: a seed edited, manifest rewritten to match', file: `${S}:1`, damage: (d) => { editEntry(d, 0, (e) => (e.seed = '12345')); reseal(d, S); } },
    { name: 'seed log: a projected gradient edited, manifest rewritten to match', file: `${S}:3`, damage: (d) => { editEntry(d, 2, (e) => (e.projected_grad = -(e.projected_grad as number))); reseal(d, S); } },
    { name: 'seed log: the last line cut mid-way, manifest rewritten to match', file: S, damage: (d) => { const ls = lines(d); ls[ls.length - 1] = ls[ls.length - 1].slice(0, 20); writeLines(d, ls); reseal(d, S); } },
    { name: 'seed log: a line removed, manifest rewritten to match', file: S, damage: (d) => { const ls = lines(d); ls.splice(1, 1); writeLines(d, ls); reseal(d, S); } },
    { name: 'seed log: deleted', file: S, damage: (d) => unlinkSync(join(d, S)) },
    { name: 'spillway.json: cut short', file: J, damage: (d) => truncateSync(join(d, J), 40) },
    { name: 'spillway.json: steps_done raised, manifest rewritten to match', file: S, damage: (d) => { edit(join(d, J), (b) => Buffer.from(JSON.stringify({ ...JSON.parse(b.toString()), steps_done: JSON.parse(b.toString()).steps_done + 1 }))); reseal(d, J); } },
    { name: "spillway.json: another run's id, manifest rewritten to match", file: '', damage: (d) => { edit(join(d, J), (b) => Buffer.from(JSON.stringify({ ...JSON.parse(b.toString()), run_id: otherRunId }))); reseal(d, J); } },
    { name: 'config.json: hidden size edited', file: 'config.json', damage: (d) => edit(join(d, 'config.json'), (b) => Buffer.from(b.toString().replace(/"hidden_size": (\d+)/, (_m, n: string) => `"hidden_size": ${Number(n) * 2}`))) },
    { name: 'manifest: the seed log left out', file: M, damage: (d) => edit(join(d, M), (b) => Buffer.from(JSON.stringify({ ...JSON.parse(b.toString()), files: (JSON.parse(b.toString()) as { files: { name: string }[] }).files.filter((f) => f.name !== S) }))) },
    { name: 'manifest: cut short', file: M, damage: (d) => truncateSync(join(d, M), 30) },
    { name: 'no manifest (an older version\'s checkpoint): a NaN weight', file: W, damage: async (d) => { unlinkSync(join(d, M)); const at = await floatAt(d, 0.5); edit(join(d, W), (b) => void b.writeFloatLE(Number.NaN, at)); } },
    { name: 'no manifest (an older version\'s checkpoint): a coefficient edited', file: `${S}:2`, damage: (d) => { unlinkSync(join(d, M)); editEntry(d, 1, (e) => (e.coef = (e.coef as number) * 2)); } },
  ];
}

export interface DamageResult {
  name: string;
  /** Refused with a message naming the damaged file. */
  detected: boolean;
  /** The engine host died (a crash), rather than refusing. */
  crashed: boolean;
  message: string;
}

/** Resumes (as run `runId`) from a damaged copy of `checkpoint` for each variant, through the engine host. */
export async function damageCampaign(checkpoint: string, runId: string, options: TrainOptions, work: string): Promise<DamageResult[]> {
  const out: DamageResult[] = [];
  const variants = damageVariants('another-run');
  for (let i = 0; i < variants.length; i++) {
    const v = variants[i];
    const dir = join(work, `damaged-${String(i).padStart(2, '0')}`, 'step-00000006');
    rmSync(dir, { recursive: true, force: true });
    cpSync(checkpoint, dir, { recursive: true });
    await v.damage(dir);
    const job = startEngineJob({ type: 'train', options: { ...options, runId, resumeFrom: dir, checkpointDir: join(dir, '..'), steps: 8 } }, () => {});
    const r = await job.done.then(
      () => ({ message: 'resumed', crashed: false }),
      (e: Error) => ({ message: e.message, crashed: e.name === 'EngineCrashError' }),
    );
    const named = v.file === '' ? dir : join(dir, v.file);
    out.push({ name: v.name, detected: r.message !== 'resumed' && r.message.includes(named), crashed: r.crashed, message: r.message });
  }
  return out;
}
