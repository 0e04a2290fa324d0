// The planner on synthetic models with fixed rates: placement order, budgets,
// shortfalls with amounts, bytes per link, the floor and what bounds it. Every
// expectation is derived here from the inputs.
import { describe, expect, it } from 'vitest';

import { activationBytes, forwardFlops, formatBytes, makePlan, parseBytes } from '../../../electron/engine/planner.js';
import type { PlanInput, PlannerModel, PlannerRates } from '../../../electron/engine/planner.js';
import { HOME } from '../../../electron/engine/native.js';

const C = 64;
const V = 100;
const L = 6;
const BLOCK = 12 * C * C + 13 * C; // parameters of one OPT-like block
function model(layers = L): PlannerModel {
  return {
    name: 'synthetic',
    config: { hidden: C, heads: 4, intermediate: 4 * C, vocabSize: V, tiedEmbeddings: true },
    units: [
      { kind: 'embed', index: -1, parameters: V * C + 130 * C },
      ...Array.from({ length: layers }, (_, i) => ({ kind: 'block' as const, index: i, parameters: BLOCK })),
      { kind: 'head', index: -1, parameters: 2 * C },
    ],
  };
}
const RATES: PlannerRates = {
  h2dBytesPerS: 25e9,
  d2hBytesPerS: 25e9,
  ssdReadBytesPerS: 7e9,
  ssdWriteBytesPerS: 5e9,
  gemmFlopsPerS: 1e12,
  cpuUpdateElemsPerS: 1e9,
  date: 'fixed',
};
const B = 2;
const T = 16;
const base = (over: Partial<PlanInput> = {}): PlanInput => ({
  model: model(),
  computeDevice: 'gpu',
  budgets: {},
  spillDir: '/spill',
  precision: 'f32',
  batchSize: B,
  maxLength: T,
  rates: RATES,
  ...over,
});

// Quantities the tests derive from the inputs (the engine's rules, ENGINE-SPEC).
const m = model();
const blockBytes = 4 * BLOCK;
const embedHead = 4 * (m.units[0].parameters + m.units[m.units.length - 1].parameters);
const largest = Math.max(4 * m.units[0].parameters, 4 * (2 * C + V * C), blockBytes); // a tied head materialises the embedding
const working = 3 * largest;
const acts = 4 * (B * T * (5 * C + 2 * 4 * C + V) + B * 4 * T * T);
const fixed = embedHead + working + acts;
const spillSlot = Math.ceil(blockBytes / 4096) * 4096;

describe('the planner', () => {
  it('keeps everything on the device when the device budget allows, with nothing on any link', () => {
    const p = makePlan(base({ budgets: { device: fixed + L * blockBytes } }));
    expect(p.feasible).toBe(true);
    expect(p.count).toEqual({ device: L + 2, cpu: 0, ssd: 0 });
    expect(p.homes.every((h) => h === HOME.device)).toBe(true);
    expect(p.memory).toEqual({ device: fixed + L * blockBytes, cpu: 0, ssd: 0 });
    expect(p.breakdown.activations).toBe(acts);
    expect(activationBytes(m.config, B, T)).toBe(acts);
    expect(p.linkBytesPerStep).toEqual({ hostToDevice: 0, deviceToHost: 0, ssdRead: 0, ssdWrite: 0 });
    expect(p.bound).toBe('compute');
  });

  it('places blocks device first, then CPU, then SSD, within every budget', () => {
    const onDevice = 2;
    const onCpu = 1;
    const device = fixed + blockBytes /* staging slot */ + onDevice * blockBytes + blockBytes / 2;
    const cpu = blockBytes /* I/O buffer */ + onCpu * blockBytes + blockBytes / 2;
    const p = makePlan(base({ budgets: { device, cpu }, writeBackEvery: 4, q: 2 }));
    const onSsd = L - onDevice - onCpu;
    expect(p.feasible).toBe(true);
    expect(p.units.map((u) => u.home)).toEqual([
      'device',
      ...Array<string>(onDevice).fill('device'),
      ...Array<string>(onCpu).fill('cpu'),
      ...Array<string>(onSsd).fill('ssd'),
      'device',
    ]);
    expect(p.memory.device).toBe(fixed + blockBytes + onDevice * blockBytes);
    expect(p.memory.device).toBeLessThanOrEqual(device);
    expect(p.memory.cpu).toBe(blockBytes + onCpu * blockBytes);
    expect(p.memory.cpu).toBeLessThanOrEqual(cpu);
    expect(p.memory.ssd).toBe(onSsd * spillSlot);
    // q = 2 perturbations: every streamed block crosses H2D and every SSD block is read once per perturbation; written every K = 4.
    expect(p.linkBytesPerStep).toEqual({
      hostToDevice: 2 * (onCpu + onSsd) * blockBytes,
      deviceToHost: 0,
      ssdRead: 2 * onSsd * blockBytes,
      ssdWrite: (onSsd * blockBytes) / 4,
    });
  });

  it('computes the floor as the largest term and the prediction with SSD traffic overlapping compute', () => {
    const p = makePlan(base({ budgets: { device: fixed + blockBytes, cpu: blockBytes } }));
    // Nothing fits beside the staging slot on the device, and the CPU holds only the I/O buffer: every block on the SSD.
    expect(p.count).toEqual({ device: 2, cpu: 0, ssd: L });
    const ssd = L * blockBytes;
    const t = p.times!;
    expect(t.hostToDeviceMs).toBeCloseTo((1000 * ssd) / RATES.h2dBytesPerS, 9);
    expect(t.ssdReadMs).toBeCloseTo((1000 * ssd) / (RATES.ssdReadBytesPerS as number), 9);
    expect(t.ssdWriteMs).toBeCloseTo((1000 * ssd) / (RATES.ssdWriteBytesPerS as number), 9);
    expect(t.computeMs).toBeCloseTo((1000 * 2 * forwardFlops(m, B, T).total) / RATES.gemmFlopsPerS, 9);
    expect(t.cpuUpdateMs).toBeCloseTo((1000 * L * BLOCK) / RATES.cpuUpdateElemsPerS, 9);
    const terms = { compute: t.computeMs, 'host-to-device': t.hostToDeviceMs, 'ssd-read': t.ssdReadMs, 'ssd-write': t.ssdWriteMs, 'cpu-update': t.cpuUpdateMs };
    const [bound, floor] = Object.entries(terms).reduce((a, b) => (b[1] > a[1] ? b : a));
    expect(p.bound).toBe(bound);
    expect(p.floorMs).toBeCloseTo(floor, 9);
    // K = 1: no replay. SSD reads and write-backs run on prefetch threads beside compute + upload;
    // updates at home follow.
    const predicted = Math.max(t.computeMs + t.hostToDeviceMs, t.ssdReadMs + t.ssdWriteMs) + t.cpuUpdateMs;
    expect(p.predictedStepMs).toBeCloseTo(predicted, 9);
    expect(p.notes.join(' ')).toMatch(/prefetched on their own threads/);
  });

  it('says exactly what is short and by how much', () => {
    const device = fixed - 1000;
    const p = makePlan(base({ budgets: { device } }));
    expect(p.feasible).toBe(false);
    const need = fixed + blockBytes;
    expect(p.shortfalls[0]).toContain(`needs ${formatBytes(need)}`);
    expect(p.shortfalls[0]).toContain(`short by ${formatBytes(need - device)}`);

    const noSpill = makePlan(base({ budgets: { device: fixed + blockBytes, cpu: blockBytes }, spillDir: null }));
    expect(noSpill.shortfalls.join(' ')).toContain(`SSD: ${L} blocks (${formatBytes(L * blockBytes)})`);
    expect(noSpill.shortfalls.join(' ')).toMatch(/no spill folder/);

    const ssd = 2 * spillSlot;
    const small = makePlan(base({ budgets: { device: fixed + blockBytes, cpu: blockBytes, ssd } }));
    expect(small.shortfalls.join(' ')).toContain(`short by ${formatBytes(L * spillSlot - ssd)}`);

    const bf16 = makePlan(base({ precision: 'bf16' }));
    expect(bf16.shortfalls.join(' ')).toMatch(/bf16 masters are not implemented yet/);
  });

  it('on the CPU backend counts the device arena against the CPU budget and skips the CPU tier', () => {
    const cpu = fixed + 2 * blockBytes /* slot + buffer */ + 2 * blockBytes + blockBytes / 3;
    const p = makePlan(base({ computeDevice: 'cpu', budgets: { cpu } }));
    expect(p.count).toEqual({ device: 2 + 2, cpu: 0, ssd: L - 2 });
    expect(p.memory.device + p.memory.cpu).toBeLessThanOrEqual(cpu);
  });

  it('reads sizes the way people write them', () => {
    expect(parseBytes('24GB')).toBe(24e9);
    expect(parseBytes('512MiB')).toBe(512 * 2 ** 20);
    expect(parseBytes('1000')).toBe(1000);
    expect(() => parseBytes('lots')).toThrow(/cannot read/);
  });

  it('has no times without a calibration', () => {
    const p = makePlan(base({ rates: null }));
    expect(p.predictedStepMs).toBeNull();
    expect(p.floorMs).toBeNull();
    expect(p.notes.join(' ')).toMatch(/calibrat/);
  });
});
