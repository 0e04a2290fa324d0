// The tiered store on the CPU backend: blocks whose masters live in CPU memory
// or on the SSD (spill files striped over folders, O_DIRECT, checksummed, lazy
// write-back with replay) stream through one or two device staging slots, and
// are updated at home or on the device with write-back. Whatever the placement,
// K, prefetch depth, slots and update mode, the loss trajectory and the final
// weights are bit-identical to the all-resident run.
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { packBatch } from '../../electron/engine/batch.js';
import { loadNative } from '../../electron/engine/native.js';
import type { Home } from '../../electron/common/options.js';
import type { NativeEngine, TierPlacement } from '../../electron/engine/native.js';
import { engineSpec } from '../../electron/engine/spec.js';
import { loadModelInfo } from '../../electron/model/index.js';
import { FIXTURE_MODELS, GOLDEN, readJson, toExamples } from '../helpers/engine.js';
import { makeTinyLlama } from '../helpers/tiny-model.js';
import type { GoldenExample } from '../helpers/engine.js';

const spill = mkdtempSync(join(tmpdir(), 'spw-spill-'));
const spill2 = mkdtempSync(join(tmpdir(), 'spw-spill2-'));
const opened: NativeEngine[] = [];
afterAll(() => {
  // Closing removes each engine's spill file (a process that exits never garbage-collects them).
  for (const e of opened) e.close();
  expect(readdirSync(spill).filter((n) => n.endsWith('.spill'))).toEqual([]);
  expect(readdirSync(spill2).filter((n) => n.endsWith('.spill'))).toEqual([]);
});

type Extra = Partial<Omit<TierPlacement, 'deviceUpdate'>> & { deviceUpdate?: (units: number) => boolean[] };

async function engineFor(name: string, homes: (units: number) => Home[], extra: Extra = {}): Promise<NativeEngine> {
  const info = await loadModelInfo(join(FIXTURE_MODELS, name));
  const e = new (loadNative().Engine)({ threads: 2 });
  const n = info.units.length;
  await e.load(engineSpec(info), { homes: homes(n), spillDirs: [spill], ...extra, deviceUpdate: extra.deviceUpdate?.(n) });
  opened.push(e);
  return e;
}

const blocksOn = (home: Home) => (n: number): Home[] => Array.from({ length: n }, (_, i) => (i === 0 || i === n - 1 ? 'device' : home));
const onDevice = (n: number) => Array.from({ length: n }, () => true);
const alternating = (n: number): Home[] => Array.from({ length: n }, (_, i) => (i === 0 || i === n - 1 ? 'device' : i % 2 ? 'ssd' : 'cpu'));

async function steps(e: NativeEngine, name: string, from: number, n: number): Promise<number[]> {
  const batch = packBatch(toExamples(readJson<{ examples: { batch: GoldenExample[] } }>(join(GOLDEN, `${name}.json`)).examples.batch));
  const losses: number[] = [];
  for (let step = from; step < from + n; step++) {
    const r = await e.step(batch, { seed: 5n, step, q: 2, lr: 1e-2, eps: 1e-3, weightDecay: 0.1, noise: 'gaussian' });
    losses.push(...r.lossPlus, ...r.lossMinus);
  }
  return losses;
}

async function run(e: NativeEngine, name: string, n: number): Promise<{ losses: number[]; weights: Map<string, Float32Array> }> {
  const losses = await steps(e, name, 0, n);
  return { losses, weights: new Map(e.tensorNames().map((t) => [t.name, e.getTensor(t.name)])) };
}

function expectSameBits(a: Map<string, Float32Array>, b: Map<string, Float32Array>): void {
  expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
  for (const [k, v] of a) expect(Buffer.from((b.get(k) as Float32Array).buffer).equals(Buffer.from(v.buffer)), k).toBe(true);
}

const TIERED = ['llama-tiny', 'gpt2-tiny', 'qwen3-tiny', 'phi3-tiny', 'gptneox-tiny', 'olmo2-tiny', 'opt350m-tiny', 'gemma2-tiny', 'gemma3-tiny'];
describe.each(TIERED)('placement invariance on %s', (name) => {
  it('gives bit-identical losses and weights all resident, CPU-streamed, SSD-spilled (any K, any prefetch depth, slots, stripes, update mode) and mixed', async () => {
    const reference = await run(await engineFor(name, blocksOn('device')), name, 5);
    const two = { spillDirs: [spill, spill2] };
    for (const [label, homes, k, prefetch, extra] of [
      ['cpu', blocksOn('cpu'), 1, 2, {}],
      ['cpu, two slots', blocksOn('cpu'), 1, 2, { stageSlots: 2 }],
      ['cpu, updated on device', blocksOn('cpu'), 1, 2, { deviceUpdate: onDevice }],
      ['ssd K=1', blocksOn('ssd'), 1, 2, {}],
      ['ssd K=3 no prefetch', blocksOn('ssd'), 3, 0, {}],
      ['ssd K=3 prefetch 1', blocksOn('ssd'), 3, 1, {}],
      ['ssd K=2 two slots, two folders', blocksOn('ssd'), 2, 2, { stageSlots: 2, ...two }],
      ['ssd K=1 updated on device', blocksOn('ssd'), 1, 2, { deviceUpdate: onDevice }],
      ['ssd K=3 updated on device, two slots, no prefetch', blocksOn('ssd'), 3, 0, { deviceUpdate: onDevice, stageSlots: 2 }],
      ['mixed K=2', alternating, 2, 2, {}],
      ['mixed K=2 updated on device, two folders', alternating, 2, 1, { deviceUpdate: onDevice, stageSlots: 2, ...two }],
    ] as const) {
      const e = await engineFor(name, homes, { writeBackEvery: k, prefetch, ...(extra as Extra) });
      const r = await run(e, name, 5);
      expect(r.losses, label).toEqual(reference.losses);
      expectSameBits(reference.weights, r.weights);
    }
  });
});

describe('the SSD tier', () => {
  it('keeps masters off the host, streams through one slot, reads each block once per step and writes back every K updates', async () => {
    const resident = await engineFor('llama-tiny', blocksOn('device'));
    const spilled = await engineFor('llama-tiny', blocksOn('ssd'), { writeBackEvery: 3 });
    const ri = resident.info().tiers!;
    const si = spilled.info().tiers!;
    expect(si.ssdBytes).toBeGreaterThan(0);
    expect(si.deviceWeightBytes).toBeLessThan(ri.deviceWeightBytes);
    expect(si.deviceStageBytes).toBeGreaterThan(0);
    expect(si.deviceStageBytes).toBeLessThan(ri.deviceWeightBytes);
    expect(existsSync(si.spillFile)).toBe(true);
    const writesAtLoad = si.ssdWriteBytes;
    // 3 steps of q = 2: both perturbations share one visit, so every block is read once per
    // step and queues one update; K = 3, so nothing is rewritten until a read finds 3 pending.
    await steps(spilled, 'llama-tiny', 0, 3);
    const after = spilled.info().tiers!;
    expect(after.stageSlots).toBe(1);
    expect(after.ssdReadBytes).toBe(3 * writesAtLoad);
    expect(after.ssdWriteBytes).toBe(writesAtLoad);
    await steps(spilled, 'llama-tiny', 3, 1);
    expect(spilled.info().tiers!.ssdWriteBytes).toBe(2 * writesAtLoad);
    expect(spilled.info().tiers!.h2dBytes).toBeGreaterThan(0);
  });

  it('reads and writes through io_uring, and the pread fallback gives the same bits', async () => {
    const ring = await engineFor('llama-tiny', blocksOn('ssd'), { writeBackEvery: 2 });
    expect(ring.info().tiers!.ioPath).toBe('io_uring');
    process.env.SPILLWAY_IO = 'pread';
    let plain: NativeEngine;
    try {
      plain = await engineFor('llama-tiny', blocksOn('ssd'), { writeBackEvery: 2 });
    } finally {
      delete process.env.SPILLWAY_IO;
    }
    expect(plain.info().tiers!.ioPath).toBe('pread');
    const a = await run(ring, 'llama-tiny', 4);
    const b = await run(plain, 'llama-tiny', 4);
    expect(b.losses).toEqual(a.losses);
    expectSameBits(a.weights, b.weights);
    expect(ring.info().tiers!.ssdReadBytes).toBe(plain.info().tiers!.ssdReadBytes);
  });

  it('moves multi-megabyte blocks through the queue (many 1 MiB requests) without changing a bit', async () => {
    // 10 MiB blocks: each read and write-back is ten 1 MiB requests in flight together.
    const dir = await makeTinyLlama(join(spill, 'wide'), { hidden: 512, layers: 2, seed: 7 });
    const info = await loadModelInfo(dir);
    const batch = packBatch([{ kind: 'lm', label: -1, source: 'x', sequences: [{ tokens: [1, 9, 33, 7, 250, 4, 18, 2], scoreStart: 1, scoreEnd: 8 }] }]);
    const losses = async (homes: Home[]) => {
      const e = new (loadNative().Engine)({ threads: 2 });
      await e.load(engineSpec(info), { homes, spillDirs: [spill], writeBackEvery: 1 });
      opened.push(e);
      const out: number[] = [];
      for (let step = 0; step < 3; step++) {
        const r = await e.step(batch, { seed: 9n, step, q: 1, lr: 1e-2, eps: 1e-3, weightDecay: 0, noise: 'gaussian' });
        out.push(...r.lossPlus, ...r.lossMinus);
      }
      return { out, tiers: e.info().tiers! };
    };
    const resident = await losses(blocksOn('device')(info.units.length));
    const spilled = await losses(blocksOn('ssd')(info.units.length));
    expect(spilled.out).toEqual(resident.out);
    expect(spilled.tiers.ssdReadBytes).toBeGreaterThanOrEqual(3 * 2 * 10 * 512 * 512 * 4);
  });

  it('stripes SSD blocks over several spill folders, one file each', async () => {
    const e = await engineFor('gpt2-tiny', blocksOn('ssd'), { spillDirs: [spill, spill2] });
    const t = e.info().tiers!;
    expect(t.spillFiles).toHaveLength(2);
    expect(t.spillFiles[0].startsWith(spill + '/')).toBe(true);
    expect(t.spillFiles[1].startsWith(spill2 + '/')).toBe(true);
    expect(t.spillFiles.every((f) => existsSync(f))).toBe(true);
    const sizes = t.spillFiles.map((f) => statSync(f).size);
    expect(sizes[0] + sizes[1]).toBe(t.ssdBytes);
    // gpt2-tiny's blocks are all the same size: an even count splits evenly.
    const blocks = (await loadModelInfo(join(FIXTURE_MODELS, 'gpt2-tiny'))).units.filter((u) => u.kind === 'block').length;
    expect(sizes[0]).toBe(Math.ceil(blocks / 2) * (t.ssdBytes / blocks));
    await steps(e, 'gpt2-tiny', 0, 1);
    expect(e.info().tiers!.ssdReadBytes).toBe(t.ssdBytes);
    await expect(engineFor('gpt2-tiny', blocksOn('ssd'), { spillDirs: [spill, '/nonexistent-spill'] })).rejects.toThrow(/spill folder \/nonexistent-spill is not usable/);
  });

  it('updates on the device and writes back: CPU homes every visit, SSD homes every K', async () => {
    const cpu = await engineFor('llama-tiny', blocksOn('cpu'), { deviceUpdate: onDevice });
    await steps(cpu, 'llama-tiny', 0, 3);
    // Step 0 has nothing pending; steps 1 and 2 apply the previous update on the device and copy every block back.
    const blockBytes = cpu.info().tiers!.h2dBytes / 3;
    expect(cpu.info().tiers!.d2hBytes).toBe(2 * blockBytes);
    const home = await engineFor('llama-tiny', blocksOn('cpu'));
    await steps(home, 'llama-tiny', 0, 3);
    expect(home.info().tiers!.d2hBytes).toBe(0);

    const ssd = await engineFor('llama-tiny', blocksOn('ssd'), { deviceUpdate: onDevice, writeBackEvery: 2 });
    const atLoad = ssd.info().tiers!.ssdWriteBytes;
    await steps(ssd, 'llama-tiny', 0, 3);
    // Visits at steps 1 and 2 find 1 and 2 pending updates: only the second writes back (K = 2).
    expect(ssd.info().tiers!.ssdWriteBytes).toBe(2 * atLoad);
    expect(ssd.info().tiers!.d2hBytes).toBeGreaterThan(0);
  });

  it('detects corrupted spill data and names the block and the file', async () => {
    const e = await engineFor('llama-tiny', blocksOn('ssd'));
    const file = e.info().tiers!.spillFile;
    const fd = openSync(file, 'r+');
    const b = Buffer.alloc(4);
    readSync(fd, b, 0, 4, 64);
    b[0] ^= 0xff;
    writeSync(fd, b, 0, 4, 64);
    closeSync(fd);
    const batch = packBatch(toExamples(readJson<{ examples: { batch: GoldenExample[] } }>(join(GOLDEN, 'llama-tiny.json')).examples.batch));
    await expect(e.score(batch)).rejects.toThrow(/spill data of block 0 is corrupt .*spillway-.*\.spill/);
  });

  it('refuses impossible placements clearly', async () => {
    const info = await loadModelInfo(join(FIXTURE_MODELS, 'llama-tiny'));
    const E = loadNative().Engine;
    await expect(new E({ threads: 1 }).load(engineSpec(info), { homes: ['ssd', 'device', 'device', 'device'] })).rejects.toThrow(/embeddings and the head stay on the compute device/);
    await expect(new E({ threads: 1 }).load(engineSpec(info), { homes: ['device', 'ssd', 'device', 'device'] })).rejects.toThrow(/need a spill folder/);
    await expect(new E({ threads: 1 }).load(engineSpec(info), { homes: ['device', 'ssd', 'device', 'device'], spillDirs: ['/nonexistent-spill'] })).rejects.toThrow(/spill folder \/nonexistent-spill is not usable/);
    await expect(new E({ threads: 1 }).load(engineSpec(info), { homes: ['device', 'device'] })).rejects.toThrow(/2 homes for 4 units/);
  });
});

// bf16/fp16 masters: every placement and update mode rounds the same values with the
// same counter-based bits, so the invariance holds in each precision too.
describe.each(['bf16', 'fp16'] as const)('%s masters', (masters) => {
  const representable = (v: Float32Array) => {
    const out = new Float32Array(v.length);
    if (masters === 'bf16') {
      const u = new Uint32Array(v.buffer, v.byteOffset, v.length);
      return u.every((x) => (x & 0xffff) === 0);
    }
    // fp16: every value survives a round trip through a half (Float16Array is not in Node 20: check via the spacing).
    for (let i = 0; i < v.length; i++) {
      const a = Math.abs(v[i]);
      const q = a < 2 ** -14 ? 2 ** -24 : 2 ** (Math.floor(Math.log2(a)) - 10);
      out[i] = Math.round(a / q) * q;
      if (out[i] !== a || a > 65504) return false;
    }
    return true;
  };

  it('keeps the format\'s values and is placement-invariant (resident, CPU, SSD, device updates, two slots)', async () => {
    const name = 'llama-tiny';
    const reference = await run(await engineFor(name, blocksOn('device'), { masters }), name, 4);
    for (const w of reference.weights.values()) expect(representable(w)).toBe(true);
    const fp32 = await run(await engineFor(name, blocksOn('device')), name, 4);
    expect(reference.losses).not.toEqual(fp32.losses);
    for (const [label, homes, extra] of [
      ['cpu', blocksOn('cpu'), {}],
      ['cpu updated on device, two slots', blocksOn('cpu'), { deviceUpdate: onDevice, stageSlots: 2 }],
      ['ssd K=2', blocksOn('ssd'), { writeBackEvery: 2 }],
      ['ssd K=3 updated on device, no prefetch', blocksOn('ssd'), { writeBackEvery: 3, deviceUpdate: onDevice, prefetch: 0 }],
      ['mixed, two folders', alternating, { writeBackEvery: 2, spillDirs: [spill, spill2] }],
    ] as const) {
      const e = await engineFor(name, homes, { masters, ...(extra as Extra) });
      const r = await run(e, name, 4);
      expect(r.losses, label).toEqual(reference.losses);
      expectSameBits(reference.weights, r.weights);
    }
  });

  it('stores and moves streamed blocks in half the bytes', async () => {
    const full = await engineFor('llama-tiny', blocksOn('ssd'));
    const half = await engineFor('llama-tiny', blocksOn('ssd'), { masters });
    expect(half.info().tiers!.masters).toBe(masters);
    expect(half.info().tiers!.ssdBytes).toBeLessThan(full.info().tiers!.ssdBytes);
    await steps(full, 'llama-tiny', 0, 1);
    await steps(half, 'llama-tiny', 0, 1);
    expect(half.info().tiers!.h2dBytes * 2).toBe(full.info().tiers!.h2dBytes);
    // Resident blocks are kept in 16 bits on the device as well (embeddings and head stay float32).
    const resFull = (await engineFor('llama-tiny', blocksOn('device'))).info().tiers!;
    const resHalf = (await engineFor('llama-tiny', blocksOn('device'), { masters })).info().tiers!;
    const blockBytes = resFull.deviceWeightBytes - full.info().tiers!.deviceWeightBytes; // the SSD engine keeps only embeddings and head
    expect(blockBytes).toBeGreaterThan(0);
    expect(resHalf.deviceWeightBytes).toBe(full.info().tiers!.deviceWeightBytes + blockBytes / 2);
    const cpuFull = await engineFor('llama-tiny', blocksOn('cpu'));
    const cpuHalf = await engineFor('llama-tiny', blocksOn('cpu'), { masters });
    expect(cpuHalf.info().tiers!.cpuBytes).toBeLessThan(cpuFull.info().tiers!.cpuBytes * 0.6);
  });
});

// The planner's working-copy term is what the engine allocates: z and one perturbed copy of the
// largest group of tensors one kernel call reads (not of the whole unit).
describe('working copies', () => {
  it.each(['llama-tiny', 'gpt2-tiny', 'opt-tiny', 'qwen2-tiny'])('%s: the engine allocates exactly the plan\'s working copies, smaller than two whole units', async (name) => {
    const { makePlan, plannerModel } = await import('../../electron/engine/planner.js');
    const info = await loadModelInfo(join(FIXTURE_MODELS, name));
    const e = await engineFor(name, blocksOn('device'));
    await steps(e, name, 0, 1);
    const pm = plannerModel(info);
    const plan = makePlan({ model: pm, computeDevice: 'cpu', budgets: {}, masters: 'fp32', batchSize: 1, maxLength: 8, threads: 2, rates: null });
    expect(e.info().tiers!.scratchBytes).toBe(plan.breakdown.workingCopies);
    const largestUnit = Math.max(...pm.units.filter((u) => u.kind === 'block').map((u) => 4 * u.parameters));
    expect(plan.breakdown.workingCopies).toBeLessThan(2 * largestUnit);
  });
});

// The device memory budget: the engine's allocations are counted (on the CPU backend, its
// arena), and one beyond the budget is refused with what was asked, in use and allowed.
describe('device memory budget', () => {
  const runWith = async (deviceMemory?: number) => {
    const info = await loadModelInfo(join(FIXTURE_MODELS, 'llama-tiny'));
    const e = new (loadNative().Engine)({ threads: 2, ...(deviceMemory !== undefined ? { deviceMemory } : {}) });
    opened.push(e);
    const n = info.units.length;
    await e.load(engineSpec(info), { homes: blocksOn('cpu')(n), spillDirs: [spill] });
    await steps(e, 'llama-tiny', 0, 2);
    return e.info().tiers!;
  };

  it('holds exactly at the peak an unbudgeted run reached, and refuses one byte less', async () => {
    const free = await runWith();
    expect(free.deviceMemoryBudget).toBe(0);
    expect(free.deviceMemoryPeak).toBeGreaterThan(0);
    expect(free.deviceMemoryPeak).toBeGreaterThanOrEqual(free.deviceStageBytes + free.scratchBytes);
    const exact = await runWith(free.deviceMemoryPeak);
    expect(exact.deviceMemoryPeak).toBe(free.deviceMemoryPeak);
    expect(exact.deviceMemoryBudget).toBe(free.deviceMemoryPeak);
    await expect(runWith(free.deviceMemoryPeak - 1)).rejects.toThrow(
      /device memory budget exceeded on the CPU backend's device arena: asked for [\d.]+ MiB with [\d.]+ MiB of the [\d.]+ MiB budget in use \(--gpu-mem\)/,
    );
  });
});
