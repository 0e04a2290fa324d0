// A frozen base in the tiered store (docs/TIERED-STORE.md, "Updates"; ENGINE-SPEC "Trainable sets"):
// with lora, loldu and tokens every model tensor is read-only wherever it lives. Streamed from the CPU or
// the SSD, updated at home or on the device, the run writes nothing back (no device → host bytes,
// no SSD bytes after the spill file is made, the spill file's bytes unchanged), and its losses and
// adapters are bit-identical to the all-resident run's. A base kept in bf16 trains float32
// adapters the same way (fp16 too). Bits are compared exactly: the engine guarantees placement invariance.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import type { Home, Masters } from '../../electron/common/options.js';
import { packBatch } from '../../electron/engine/batch.js';
import { loadNative } from '../../electron/engine/native.js';
import type { NativeEngine, NativeTrainSpec, TierPlacement } from '../../electron/engine/native.js';
import { engineSpec } from '../../electron/engine/spec.js';
import { loadModelInfo } from '../../electron/model/index.js';
import { FIXTURE_MODELS, GOLDEN, readJson, toExamples } from '../helpers/engine.js';
import type { GoldenExample } from '../helpers/engine.js';

const MODEL = join(FIXTURE_MODELS, 'llama-tiny');
const spill = mkdtempSync(join(tmpdir(), 'spw-frozen-'));
const opened: NativeEngine[] = [];
afterAll(() => {
  for (const e of opened) e.close();
  expect(readdirSync(spill).filter((n) => n.endsWith('.spill'))).toEqual([]);
});

const LORA: NativeTrainSpec = { kind: 'lora', rank: 4, alpha: 8, targets: ['q', 'v', 'down'], seed: 11 };
const LOLDU: NativeTrainSpec = { kind: 'loldu', rank: 4, targets: ['q', 'v'] };
// Rows of the embedding: the tied case's merged working copy of the embedding and of the head.
const TOKENS: NativeTrainSpec = { kind: 'tokens', tokens: Int32Array.from([5, 9, 17]) };

async function open(train: NativeTrainSpec, placement?: (units: number) => Omit<TierPlacement, 'spillDirs'>): Promise<NativeEngine> {
  const info = await loadModelInfo(MODEL);
  const e = new (loadNative().Engine)({ threads: 2 });
  await e.load(engineSpec(info), placement ? { ...placement(info.units.length), spillDirs: [spill] } : undefined, train);
  opened.push(e);
  return e;
}

const blocksOn = (home: Home) => (n: number): Home[] => Array.from({ length: n }, (_, i) => (i === 0 || i === n - 1 ? 'device' : home));
const alternating = (n: number): Home[] => Array.from({ length: n }, (_, i) => (i === 0 || i === n - 1 ? 'device' : i % 2 ? 'ssd' : 'cpu'));
const all = (v: boolean) => (n: number) => Array.from({ length: n }, () => v);

const batch = packBatch(toExamples(readJson<{ examples: { batch: GoldenExample[] } }>(join(GOLDEN, 'llama-tiny.json')).examples.batch));

/** Three steps of two perturbations each (lr large enough that the adapters move in every element). */
async function train(e: NativeEngine): Promise<number[]> {
  const losses: number[] = [];
  for (let step = 0; step < 3; step++) {
    const r = await e.step(batch, { seed: 9n, step, q: 2, lr: 1e-1, eps: 1e-2, weightDecay: 0.1, noise: 'gaussian' });
    expect(r.skipped).toBe(false);
    losses.push(...r.lossPlus, ...r.lossMinus);
  }
  return losses;
}

const hashes = (e: NativeEngine) => (e.info().tiers?.spillFiles ?? []).map((f) => createHash('sha256').update(readFileSync(f)).digest('hex'));
const adapters = (e: NativeEngine) => new Map(e.trainableTensors().map((t) => [t.name, e.getTensor(t.name)]));
const model = (e: NativeEngine) => new Map(e.tensorNames().map((t) => [t.name, e.getTensor(t.name)]));
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

function expectSameBits(a: Map<string, Float32Array>, b: Map<string, Float32Array>) {
  expect([...a.keys()]).toEqual([...b.keys()]);
  for (const [name, v] of a) expect(bits(v), name).toEqual(bits(b.get(name)!));
}

interface Case {
  name: string;
  homes: (n: number) => Home[];
  deviceUpdate: (n: number) => boolean[];
  writeBackEvery: number;
}
const CASES: Case[] = [
  { name: 'blocks on the SSD, updated at home, K = 1', homes: blocksOn('ssd'), deviceUpdate: all(false), writeBackEvery: 1 },
  { name: 'blocks on the SSD, updated on the device, K = 2', homes: blocksOn('ssd'), deviceUpdate: all(true), writeBackEvery: 2 },
  { name: 'blocks in CPU memory, updated at home', homes: blocksOn('cpu'), deviceUpdate: all(false), writeBackEvery: 1 },
  { name: 'blocks in CPU memory, updated on the device', homes: blocksOn('cpu'), deviceUpdate: all(true), writeBackEvery: 1 },
  { name: 'CPU and SSD blocks alternating', homes: alternating, deviceUpdate: all(false), writeBackEvery: 1 },
];

for (const [setName, spec] of [['lora', LORA], ['loldu', LOLDU], ['tokens', TOKENS]] as const) {
  for (const masters of ['fp32', 'bf16', 'fp16'] as Masters[]) {
    describe(`${setName}, ${masters} base: the frozen base is read, never written`, () => {
      let resident: { losses: number[]; adapters: Map<string, Float32Array>; model: Map<string, Float32Array> } | undefined;
      const residentRun = async () => {
        if (resident) return resident;
        // Every unit on the device (homes all 'device'): the reference the tiered runs must equal.
        const e = await open(spec, (n) => ({ homes: Array.from({ length: n }, () => 'device' as Home), masters }));
        const before = model(e);
        const losses = await train(e);
        expectSameBits(model(e), before);
        resident = { losses, adapters: adapters(e), model: before };
        return resident;
      };

      for (const c of CASES) {
        it(c.name, async () => {
          const ref = await residentRun();
          const e = await open(spec, (n) => ({ homes: c.homes(n), deviceUpdate: c.deviceUpdate(n), writeBackEvery: c.writeBackEvery, masters }));
          const t0 = e.info().tiers!;
          expect(t0.masters).toBe(masters);
          const ssd = c.homes(4).includes('ssd');
          expect(t0.spillFiles.length).toBe(ssd ? 1 : 0);
          const h0 = hashes(e);
          const losses = await train(e);
          const t1 = e.info().tiers!;
          // Streamed every step, written back never.
          expect(t1.h2dBytes).toBeGreaterThan(t0.h2dBytes);
          expect(t1.d2hBytes).toBe(0);
          expect(t1.ssdWriteBytes).toBe(t0.ssdWriteBytes);
          if (ssd) expect(t1.ssdReadBytes).toBeGreaterThan(t0.ssdReadBytes);
          expect(hashes(e)).toEqual(h0);
          // Same bits as the resident run: losses, adapters, and the base as it was loaded.
          expect(losses).toEqual(ref.losses);
          expectSameBits(adapters(e), ref.adapters);
          expectSameBits(model(e), ref.model);
        });
      }

      if (masters === 'bf16') {
        it('keeps the base in bf16 and the adapters in float32', async () => {
          const ref = await residentRun();
          // Every base value is a bf16 (its low 16 bits are 0) ...
          for (const [name, v] of ref.model) expect(bits(v).every((x) => (x & 0xffff) === 0), name).toBe(true);
          // ... while the trained adapters hold float32 values a bf16 cannot (an update of lr 0.1 moves every element).
          const trained = new Set(
            (await open(spec)).trainableTensors().filter((t) => !/loldu_(PL|U|neg_D)/.test(t.name)).map((t) => t.name),
          );
          const wide = [...ref.adapters].filter(([n]) => trained.has(n)).flatMap(([, v]) => bits(v)).filter((x) => (x & 0xffff) !== 0);
          expect(wide.length).toBeGreaterThan(0);
        });
      }
    });
  }
}
