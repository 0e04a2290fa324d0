// One ZO-SGD step of the CPU engine against a PyTorch MeZO step with the same
// noise (tests/reference/mezo.py). Tolerances: seeds exact; noise within
// 1e-6 * max(1, |z|) of the float64 reference; L+ and L- within 1e-5; the
// projected gradient within 1e-2 absolute (a 1e-5 loss error divided by 2 eps);
// updated parameters within 1e-4 absolute, while the step itself moves them
// by far more than that.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { packBatch } from '../../electron/engine/batch.js';
import { loadNative } from '../../electron/engine/native.js';
import { FIXTURE_MODELS, GOLDEN, loadEngine, maxAbsDiff, readF32Tensors, readJson, toExamples } from '../helpers/engine.js';
import type { GoldenExample } from '../helpers/engine.js';

interface MezoGolden {
  magic: string;
  version: number;
  model: string;
  inputs: {
    run_seed_str: string;
    step: number;
    q: number;
    lr: number;
    eps: number;
    weight_decay: number;
    noise: 'gaussian' | 'rademacher';
    batch: GoldenExample[];
  };
  outputs: {
    seeds: string[];
    loss_plus: number[];
    loss_minus: number[];
    projected_grad: number[];
    skipped: boolean;
    updated_params: string;
  };
  z_samples: { perturbation: number; name: string; tensor_id: number; index: number; z: number }[];
}

describe.each(['opt-tiny', 'llama-tiny', 'qwen2-tiny'])('a MeZO step on %s', (name) => {
  const g = readJson<MezoGolden>(join(GOLDEN, `mezo-${name}.json`));
  const native = loadNative();

  it('draws the reference noise from the reference seeds', () => {
    expect(g.magic).toBe('spillway-golden-mezo');
    const seeds = g.outputs.seeds.map((_, j) => native.stepSeed(BigInt(g.inputs.run_seed_str), g.inputs.step, j).toString());
    expect(seeds).toEqual(g.outputs.seeds);
    expect(g.z_samples.length).toBeGreaterThan(0);
    for (const s of g.z_samples) {
      expect(native.fnv1a32(s.name)).toBe(s.tensor_id);
      const z = native.noise({ seed: BigInt(g.outputs.seeds[s.perturbation]), id: s.tensor_id, start: s.index, count: 1, kind: g.inputs.noise })[0];
      expect(Math.abs(z - s.z)).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(s.z)));
    }
  });

  it('matches the reference losses, projected gradients and updated weights', async () => {
    const dir = join(FIXTURE_MODELS, name);
    const engine = await loadEngine(dir);
    const before = new Map(engine.tensorNames().map((t) => [t.name, engine.getTensor(t.name)]));
    const r = await engine.step(packBatch(toExamples(g.inputs.batch)), {
      seed: BigInt(g.inputs.run_seed_str),
      step: g.inputs.step,
      q: g.inputs.q,
      lr: g.inputs.lr,
      eps: g.inputs.eps,
      weightDecay: g.inputs.weight_decay,
      noise: g.inputs.noise,
    });
    expect(r.skipped).toBe(g.outputs.skipped);
    expect(r.seeds.map(String)).toEqual(g.outputs.seeds);
    r.lossPlus.forEach((l, j) => expect(Math.abs(l - g.outputs.loss_plus[j])).toBeLessThan(1e-5));
    r.lossMinus.forEach((l, j) => expect(Math.abs(l - g.outputs.loss_minus[j])).toBeLessThan(1e-5));
    r.projectedGrad.forEach((v, j) => expect(Math.abs(v - g.outputs.projected_grad[j])).toBeLessThan(1e-2));

    const ref = await readF32Tensors(join(GOLDEN, g.outputs.updated_params));
    let moved = 0;
    for (const { name: t } of engine.tensorNames()) {
      const mine = engine.getTensor(t);
      const theirs = ref.get(t);
      expect(theirs, `reference has ${t}`).toBeDefined();
      expect(maxAbsDiff(mine, theirs as Float32Array)).toBeLessThan(1e-4);
      moved = Math.max(moved, maxAbsDiff(mine, before.get(t) as Float32Array));
    }
    expect(moved).toBeGreaterThan(1e-3);
  });
});
