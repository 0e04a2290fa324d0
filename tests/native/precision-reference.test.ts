// bf16/fp16 masters against the independent numpy reference (tests/reference/precision.py):
// the rounding at load (nearest even) and one ZO update with stochastic rounding must match
// bit for bit. Rademacher noise keeps every product exact, so the reference's float64
// arithmetic equals the engine's fused multiply-adds; weight decay is included.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { packBatch } from '../../electron/engine/batch.js';
import { loadNative } from '../../electron/engine/native.js';
import type { NativeEngine } from '../../electron/engine/native.js';
import type { Masters } from '../../electron/common/options.js';
import { engineSpec } from '../../electron/engine/spec.js';
import { loadModelInfo } from '../../electron/model/index.js';
import { FIXTURE_MODELS, GOLDEN, ROOT, readJson, toExamples } from '../helpers/engine.js';
import type { GoldenExample } from '../helpers/engine.js';
import { debianPythonWith } from '../helpers/python.js';


const work = mkdtempSync(join(tmpdir(), 'spw-precision-'));

async function open(masters: Masters | undefined, ssd: boolean): Promise<NativeEngine> {
  const info = await loadModelInfo(join(FIXTURE_MODELS, 'llama-tiny'));
  const e = new (loadNative().Engine)({ threads: 2 });
  const n = info.units.length;
  const homes = Array.from({ length: n }, (_, i) => (ssd && i > 0 && i < n - 1 ? 'ssd' : 'device'));
  await e.load(engineSpec(info), { homes, spillDirs: [work], masters });
  return e;
}

describe('bf16/fp16 masters vs the numpy reference', () => {
  for (const masters of ['bf16', 'fp16'] as const) {
    for (const ssd of [false, true]) {
      it(`${masters}${ssd ? ', blocks on the SSD' : ', resident'}: load rounding and one stochastically rounded update match bit for bit`, async () => {
        const plain = await open(undefined, false);
        const e = await open(masters, ssd);
        const names = e.tensorNames().map((t) => t.name);
        const original = new Map(names.map((n) => [n, plain.getTensor(n)]));
        const loaded = new Map(names.map((n) => [n, e.getTensor(n)]));
        const batch = packBatch(toExamples(readJson<{ examples: { batch: GoldenExample[] } }>(join(GOLDEN, 'llama-tiny.json')).examples.batch));
        // Resident: a large step (every weight moves); SSD: a step far below one ulp for most
        // weights, where only stochastic rounding moves some of them.
        const lr = ssd ? 1e-6 : 2e-2;
        const weightDecay = 0.5;
        const q = 2;
        const r = await e.step(batch, { seed: 11n, step: 3, q, lr, eps: 1e-3, weightDecay, noise: 'rademacher' });
        expect(r.skipped).toBe(false);
        // The engine's coefficients: float(lr * g / q) with lr as float32, and decay = float(lr) * wd in float32.
        const lr32 = Math.fround(lr);
        const terms = r.seeds.map((s, j) => [s.toString(), Math.fround((lr32 * r.projectedGrad[j]) / q)]);
        const decay = Math.fround(lr32 * Math.fround(weightDecay));
        const tensors: Record<string, { original: number[]; loaded: number[]; after: number[]; decay: boolean }> = {};
        // Norm weights and biases take no decay: the engine says which tensors do.
        for (const t of e.tensorNames())
          tensors[t.name] = { original: [...original.get(t.name)!], loaded: [...loaded.get(t.name)!], after: [...e.getTensor(t.name)], decay: t.decay };
        expect(Object.values(tensors).some((t) => t.decay)).toBe(true);
        expect(Object.values(tensors).some((t) => !t.decay)).toBe(true);
        expect(Object.keys(tensors).length).toBeGreaterThan(3);
        const file = join(work, `${masters}-${ssd}.json`);
        writeFileSync(file, JSON.stringify({ dtype: masters, terms, decay, kind: 'rademacher', tensors }));
        const out = execFileSync(debianPythonWith('numpy'), [join(ROOT, 'tests', 'reference', 'precision.py'), 'check', file], { cwd: join(ROOT, 'tests', 'reference') }).toString();
        const summary = JSON.parse(out.trim().split('\n').at(-1)!) as { elements: number; mismatches: number; moved: number };
        expect(summary.elements).toBeGreaterThan(1000);
        if (ssd) {
          expect(summary.moved).toBeGreaterThan(0);
          expect(summary.moved).toBeLessThan(summary.elements / 2);
        } else {
          expect(summary.moved).toBeGreaterThan(summary.elements * 0.9);
        }
        expect(summary.mismatches, out).toBe(0);
        e.close();
        plain.close();
      });
    }
  }

  it('passes the reference\'s own self-test (unbiased, neighbours only)', () => {
    const out = execFileSync(debianPythonWith('numpy'), [join(ROOT, 'tests', 'reference', 'precision.py'), 'selftest'], { cwd: join(ROOT, 'tests', 'reference') }).toString();
    expect(out).toMatch(/bf16: unbiased/);
    expect(out).toMatch(/fp16: unbiased/);
  });
});
