// The plan of a run that trains a subset (issue 15): trainable and frozen bytes apart with where each
// lives, and a frozen base (lora, loldu) read and never written: no update, replay or write-back in
// its I/O and time, working copies for the adapted matrices only. First on fixed rates (expectations
// derived from the model's shapes here), then against what the real engine reports when loaded with
// the plan's homes (tier info, adapterBytes, trainable elements, bytes moved by a step).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Masters } from '../../../electron/common/options.js';
import { packBatch } from '../../../electron/engine/batch.js';
import { loadNative } from '../../../electron/engine/native.js';
import type { NativeEngine, NativeTrainSpec } from '../../../electron/engine/native.js';
import { formatPlan, makePlan, plannerModel } from '../../../electron/engine/planner.js';
import type { PlanInput, PlanTrainable, PlannerModel, PlannerRates } from '../../../electron/engine/planner.js';
import { engineSpec } from '../../../electron/engine/spec.js';
import { loadModelInfo } from '../../../electron/model/index.js';
import type { ModelInfo } from '../../../electron/model/index.js';
import { FIXTURE_MODELS, GOLDEN, readJson, toExamples } from '../../helpers/engine.js';
import type { GoldenExample } from '../../helpers/engine.js';
import { SYNTHETIC_RATES } from '../../helpers/planner-model.js';

// The shared fixed rates, with a device update rate and per-block times so that every term of the
// step shows in the expectations.
const RATES: PlannerRates = { ...SYNTHETIC_RATES, deviceUpdateElemsPerS: 1e10, blockForwardMs: 2, blockPerturbMs: 1 };

let info: ModelInfo;
let model: PlannerModel;
beforeAll(async () => {
  info = await loadModelInfo(join(FIXTURE_MODELS, 'llama-tiny'));
  model = plannerModel(info);
});

const LORA: PlanTrainable = { set: 'lora', rank: 4, targets: ['q', 'v', 'down'] };
const LOLDU: PlanTrainable = { set: 'loldu', rank: 4, targets: ['q', 'v'] };
const SPARSE: PlanTrainable = { set: 'sparse', fraction: 0.3 };
const TOKENS: PlanTrainable = { set: 'tokens', tokens: 3 };
const blocks = () => model.units.filter((u) => u.kind === 'block');
const pad = (n: number) => Math.ceil(n / 16) * 16;
const sum = (b: { device: number; cpu: number; ssd: number }) => b.device + b.cpu + b.ssd;

/** A GPU plan whose device holds what must stay and one staging slot, and whose CPU budget holds no block: every block on the SSD. */
function ssdInput(over: Partial<PlanInput> = {}): PlanInput {
  const loose = makePlan({ model, computeDevice: 'gpu', budgets: {}, masters: 'fp32', batchSize: 2, maxLength: 16, rates: RATES });
  const fixed = loose.memory.device - blocks().reduce((n, u) => n + 4 * u.parameters, 0);
  return {
    model,
    computeDevice: 'gpu',
    // One staging slot and half a block more (two slots would hold the two blocks); the CPU holds its I/O and read-ahead buffers.
    budgets: { device: fixed + 1.5 * Math.max(...blocks().map((u) => u.slotBytes!)), cpu: 128 * 2 ** 20 + 3 * (over.masters === 'bf16' ? 2 : 4) * blocks()[0].parameters },
    spillDirs: ['/spill'],
    masters: 'fp32',
    batchSize: 2,
    maxLength: 16,
    rates: RATES,
    ...over,
  };
}

describe('plan: a frozen base on fixed rates', () => {
  it('lora streams the SSD-homed base every step and writes nothing back, whatever the update mode', () => {
    const full = makePlan(ssdInput());
    expect(full.count.ssd).toBe(blocks().length);
    expect(full.linkBytesPerStep.ssdWrite).toBeGreaterThan(0);
    for (const updateMode of ['auto', 'home', 'device'] as const) {
      const lora = makePlan(ssdInput({ trainable: LORA, updateMode }));
      expect(lora.homes).toEqual(full.homes);
      expect(lora.linkBytesPerStep.ssdRead).toBe(full.linkBytesPerStep.ssdRead);
      expect(lora.linkBytesPerStep.hostToDevice).toBe(full.linkBytesPerStep.hostToDevice);
      expect(lora.linkBytesPerStep.ssdWrite).toBe(0);
      expect(lora.linkBytesPerStep.deviceToHost).toBe(0);
      expect(lora.deviceUpdate.every((d) => !d)).toBe(true);
      expect(lora.times!.ssdWriteMs).toBe(0);
      expect(lora.times!.replayMs).toBe(0);
      expect(lora.times!.hostUpdateMs).toBe(0);
      expect(lora.units.every((u) => u.updateMs === 0 && u.deviceToHostBytes === 0)).toBe(true);
      expect(lora.update.reason).toMatch(/the base is frozen \(lora\)/);
      // The same forwards and reads, none of the base's updates or writes: faster.
      expect(lora.predictedStepMs!).toBeLessThan(full.predictedStepMs!);
    }
  });

  it('counts the adapters on the device and working copies for the adapted matrices only', () => {
    const full = makePlan(ssdInput());
    const lora = makePlan(ssdInput({ trainable: LORA }));
    const adapted = blocks().flatMap((u) => u.matrices!.filter((x) => LORA.targets!.includes(x.stem)));
    expect(adapted.length).toBe(3 * blocks().length);
    // A (r, in) and B (out, r), padded to 16 floats, and once the largest adapter's noise and perturbed copy.
    const r = LORA.rank!;
    const tensors = adapted.reduce((n, x) => n + pad(r * x.in) + pad(x.out * r), 0);
    const scratch = Math.max(...adapted.map((x) => pad(r * x.in) + pad(x.out * r)));
    expect(lora.breakdown.adapters).toBe(4 * (tensors + 2 * scratch));
    expect(lora.trainable.elements).toBe(adapted.reduce((n, x) => n + r * (x.in + x.out), 0));
    expect(lora.breakdown.workingCopies).toBe(2 * 4 * Math.max(...adapted.map((x) => x.groupFloats)));
    // A bf16 base widens every block group into the working copy; z still holds only the adapted group's delta.
    const bf16 = makePlan(ssdInput({ trainable: LORA, masters: 'bf16' }));
    const blockGroup = 4 * Math.max(...blocks().map((u) => u.maxGroupParameters!));
    expect(bf16.breakdown.workingCopies).toBe(4 * Math.max(...adapted.map((x) => x.groupFloats)) + Math.max(4 * Math.max(...adapted.map((x) => x.groupFloats)), blockGroup));
    expect(lora.breakdown.workingCopies).toBeLessThan(full.breakdown.workingCopies);
    expect(full.breakdown.adapters).toBe(0);
  });

  it('shows trainable and frozen bytes apart, at the base stored precision, per home', () => {
    for (const masters of ['fp32', 'bf16'] as Masters[]) {
      const eb = masters === 'fp32' ? 4 : 2;
      const full = makePlan(ssdInput({ masters }));
      const lora = makePlan(ssdInput({ masters, trainable: LORA }));
      const ssd = blocks().reduce((n, u) => n + Math.ceil(((u.slotBytes! / 4) * eb) / 4096) * 4096, 0);
      const device = model.units.filter((u) => u.kind !== 'block').reduce((n, u) => n + u.slotBytes!, 0);
      expect(full.trainable).toMatchObject({ set: 'full', baseFrozen: false, bytes: { device, cpu: 0, ssd }, frozenBytes: { device: 0, cpu: 0, ssd: 0 } });
      expect(lora.trainable).toMatchObject({ set: 'lora', baseFrozen: true, rank: 4, bytes: { device: lora.breakdown.adapters, cpu: 0, ssd: 0 }, frozenBytes: { device, cpu: 0, ssd } });
      expect(lora.memory.ssd).toBe(ssd);
      const text = formatPlan(lora);
      expect(text).toMatch(/what trains: lora rank 4 on q, v, down; \d+ elements/);
      expect(text).toMatch(/frozen .*read only: never updated, replayed or written back/);
      expect(text).toMatch(/block 0 .* ssd +frozen \(read only\)/);
    }
  });

  it("tokens trains the label words' rows of the embedding and of the untied head, over a frozen base", () => {
    const p = makePlan(ssdInput({ trainable: TOKENS }));
    expect(model.config.tiedEmbeddings).toBe(false);
    // Three rows, a delta for the embedding and one for the head.
    const n = 2 * 3 * model.config.hidden;
    expect(p.trainable.elements).toBe(n);
    expect(p.linkBytesPerStep.ssdWrite).toBe(0);
    expect(formatPlan(p)).toContain(`what trains: tokens (the label words' rows of the embedding); ${n} elements`);
    expect(p.notes.join(' ')).toMatch(/What trains: the label words' rows \(3 tokens\) of the embedding and of the head/);
  });

  it('sparse trains at most its fraction of every block matrix and still writes its blocks back', () => {
    const sparse = makePlan(ssdInput({ trainable: SPARSE }));
    const matrices = blocks().flatMap((u) => u.matrices!);
    expect(sparse.trainable.elements).toBe(matrices.reduce((n, x) => n + Math.floor(0.3 * x.out * x.in), 0));
    expect(sparse.trainable.bytes.ssd).toBe(4 * matrices.reduce((n, x) => n + x.out * x.in, 0));
    expect(sum(sparse.trainable.bytes) + sum(sparse.trainable.frozenBytes)).toBe(sum(makePlan(ssdInput()).trainable.bytes));
    expect(sparse.linkBytesPerStep.ssdWrite).toBe(makePlan(ssdInput()).linkBytesPerStep.ssdWrite);
  });
});

// ---- against the engine

const spill = mkdtempSync(join(tmpdir(), 'spw-plan-trainable-'));
const opened: NativeEngine[] = [];
afterAll(() => opened.forEach((e) => e.close()));

const specOf = (t: PlanTrainable): NativeTrainSpec => ({
  kind: t.set,
  rank: t.rank,
  targets: t.targets,
  fraction: t.fraction,
  seed: 1,
  ...(t.set === 'tokens' ? { tokens: Int32Array.from([5, 9, 17].slice(0, t.tokens)) } : {}),
});

describe('plan: trainable and frozen figures against the engine loaded with its homes', () => {
  const batch = () => packBatch(toExamples(readJson<{ examples: { batch: GoldenExample[] } }>(join(GOLDEN, 'llama-tiny.json')).examples.batch));
  for (const t of [{ set: 'full' } as PlanTrainable, LORA, LOLDU, SPARSE, TOKENS]) {
    for (const masters of ['fp32', 'bf16'] as Masters[]) {
      it(`${t.set}, ${masters} masters, blocks on the SSD`, async () => {
        // On the CPU backend a block streams only from the SSD (a CPU home would be the same memory):
        // a CPU budget too small for anything puts every block there.
        const p = makePlan({ ...ssdInput({ trainable: t, masters }), computeDevice: 'cpu', budgets: { cpu: 1 } });
        expect(p.homes).toEqual(model.units.map((u) => (u.kind === 'block' ? 'ssd' : 'device')));
        const e = new (loadNative().Engine)({ threads: 1 });
        opened.push(e);
        await e.load(engineSpec(info), { homes: p.homes, spillDirs: [spill], masters, writeBackEvery: 1 }, specOf(t));
        // The second step's traffic: an SSD block's write-back is made when it is next read.
        await e.step(batch(), { seed: 3n, step: 0, q: 1, lr: 1e-3, eps: 1e-3, weightDecay: 0, noise: 'gaussian' });
        const t0 = e.info().tiers!;
        await e.step(batch(), { seed: 3n, step: 1, q: 1, lr: 1e-3, eps: 1e-3, weightDecay: 0, noise: 'gaussian' });
        const t1 = e.info().tiers!;
        const elements = e.info().trainable!.elements;
        if (t.set === 'sparse') {
          // Ties at a tensor's threshold train fewer than the fraction: the plan's figure is the most.
          expect(elements).toBeLessThanOrEqual(p.trainable.elements);
          expect(elements).toBeGreaterThan(0.99 * p.trainable.elements);
        } else {
          expect(elements).toBe(p.trainable.elements);
        }
        expect(t1.adapterBytes).toBe(p.breakdown.adapters);
        if (p.trainable.baseFrozen) expect(t1.scratchBytes).toBe(p.breakdown.workingCopies);
        // Model bytes as the engine holds them, trainable and frozen together, per home.
        const held = { device: p.trainable.bytes.device - p.breakdown.adapters + p.trainable.frozenBytes.device, ssd: sum({ ...p.trainable.bytes, device: 0 }) + sum({ ...p.trainable.frozenBytes, device: 0 }) };
        expect(t1.deviceWeightBytes).toBe(held.device);
        expect(t1.ssdBytes).toBe(held.ssd);
        expect(t1.ssdBytes).toBe(p.memory.ssd);
        // What a step moves: the SSD-homed blocks read once, written back only when the base trains.
        const stored = (masters === 'fp32' ? 4 : 2) * blocks().reduce((n, u) => n + u.parameters, 0);
        expect(p.linkBytesPerStep.ssdRead).toBe(stored);
        expect(t1.ssdReadBytes - t0.ssdReadBytes).toBeGreaterThanOrEqual(stored);
        expect(t1.ssdReadBytes - t0.ssdReadBytes).toBeLessThanOrEqual(p.memory.ssd);
        if (p.trainable.baseFrozen) {
          expect(p.linkBytesPerStep.ssdWrite).toBe(0);
          expect(t1.ssdWriteBytes - t0.ssdWriteBytes).toBe(0);
        } else {
          expect(p.linkBytesPerStep.ssdWrite).toBe(stored);
          expect(t1.ssdWriteBytes - t0.ssdWriteBytes).toBeGreaterThanOrEqual(stored);
          expect(t1.ssdWriteBytes - t0.ssdWriteBytes).toBeLessThanOrEqual(p.memory.ssd);
        }
      });
    }
  }
});
