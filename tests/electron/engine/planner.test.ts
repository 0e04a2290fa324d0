// The planner on synthetic models with fixed rates: placement order, budgets,
// shortfalls with amounts, bytes per link, the floor and what bounds it,
// striping over spill folders, and where updates run. Every expectation is
// derived here from the inputs.
import { describe, expect, it } from 'vitest';

import { ENGINE_RUNTIME_BYTES, activationBytes, forwardFlops, formatBytes, makePlan } from '../../../electron/engine/planner.js';
import { parseBytes } from '../../../electron/common/format.js';
import type { PlanInput } from '../../../electron/engine/planner.js';
import { BLOCK, C, SYNTHETIC_LAYERS as L, SYNTHETIC_RATES as RATES, V, syntheticModel as model } from '../../helpers/planner-model.js';

const B = 2;
const T = 16;
const base = (over: Partial<PlanInput> = {}): PlanInput => ({
  model: model(),
  computeDevice: 'gpu',
  budgets: {},
  spillDirs: ['/spill'],
  masters: 'fp32',
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
const working = 2 * largest; // z and the perturbed working copy
// Per activation stream: its hidden state and the engine's arena (a, tmp [C]; q, att [C]; k, v [C]; m1, m2 [4C]);
// once: the logits and the attention scores.
const perStream = C + (2 * C + 2 * C + 2 * C + 2 * 4 * C);
const actsFor = (streams: number) => 4 * (B * T * (streams * perStream + V) + B * 4 * T * T);
const acts = actsFor(2);
const fixed = embedHead + working + acts;
// On the CPU a pair's -eps working copy too, the size of the largest block group (these units give no groups: a block).
const fixedCpu = fixed + blockBytes;
const spillSlot = Math.ceil(blockBytes / 4096) * 4096;
// Streaming on a GPU: two staging slots on the device and one I/O buffer on the host.
const slots = 2 * blockBytes;

describe('the planner', () => {
  it('keeps everything on the device when the device budget allows, with nothing on any link', () => {
    const p = makePlan(base({ budgets: { device: fixed + L * blockBytes } }));
    expect(p.feasible).toBe(true);
    expect(p.count).toEqual({ device: L + 2, cpu: 0, ssd: 0 });
    expect(p.homes.every((h) => h === 'device')).toBe(true);
    // The engine process itself is the only CPU memory.
    expect(p.memory).toEqual({ device: fixed + L * blockBytes, cpu: ENGINE_RUNTIME_BYTES, ssd: 0 });
    expect(p.breakdown.activations).toBe(acts);
    expect(activationBytes(m.config, B, T)).toBe(acts);
    expect(p.linkBytesPerStep).toEqual({ hostToDevice: 0, deviceToHost: 0, ssdRead: 0, ssdWrite: 0 });
    expect(p.bound).toBe('compute');
  });

  it('places blocks device first, then CPU, then SSD, within every budget', () => {
    const onDevice = 2;
    const onCpu = 1;
    // q = 2: four activation streams (the + and - of each perturbation), two more hidden states than q = 1.
    const fixedQ2 = fixed + actsFor(4) - actsFor(2);
    const device = fixedQ2 + slots + onDevice * blockBytes + blockBytes / 2;
    // The engine process, the I/O buffer and two read-ahead buffers (each the largest block), then one CPU block.
    const cpu = ENGINE_RUNTIME_BYTES + 3 * blockBytes + onCpu * blockBytes + blockBytes / 2;
    const p = makePlan(base({ budgets: { device, cpu }, writeBackEvery: 4, q: 2 }));
    expect(p.prefetch).toBe(2);
    expect(p.breakdown.prefetchBuffers).toBe(2 * blockBytes);
    const onSsd = L - onDevice - onCpu;
    expect(p.feasible).toBe(true);
    expect(p.units.map((u) => u.home)).toEqual([
      'device',
      ...Array<string>(onDevice).fill('device'),
      ...Array<string>(onCpu).fill('cpu'),
      ...Array<string>(onSsd).fill('ssd'),
      'device',
    ]);
    expect(p.breakdown.activations).toBe(actsFor(4));
    expect(p.memory.device).toBe(fixedQ2 + slots + onDevice * blockBytes);
    expect(p.memory.device).toBeLessThanOrEqual(device);
    expect(p.memory.cpu).toBe(ENGINE_RUNTIME_BYTES + 3 * blockBytes + onCpu * blockBytes);
    expect(p.memory.cpu).toBeLessThanOrEqual(cpu);
    expect(p.memory.ssd).toBe(onSsd * spillSlot);
    // q = 2 perturbations share one visit of each block: every streamed block crosses H2D and every SSD
    // block is read once per step; written every K = 4. No device update rate: updates stay at home.
    expect(p.linkBytesPerStep).toEqual({
      hostToDevice: (onCpu + onSsd) * blockBytes,
      deviceToHost: 0,
      ssdRead: onSsd * blockBytes,
      ssdWrite: (onSsd * blockBytes) / 4,
    });
    expect(p.units.filter((u) => u.home !== 'device').every((u) => u.updateOn === 'home')).toBe(true);
    expect(p.deviceUpdate.every((d) => d === false)).toBe(true);
    expect(p.units.filter((u) => u.home === 'device').every((u) => u.updateOn === 'device')).toBe(true);
  });

  it('computes the floor as the largest term and the prediction with copies and SSD traffic overlapping compute', () => {
    const p = makePlan(base({ budgets: { device: fixed + slots, cpu: blockBytes } }));
    // Nothing fits beside the staging slots on the device, and the CPU holds only the I/O buffer: every block on the SSD.
    expect(p.count).toEqual({ device: 2, cpu: 0, ssd: L });
    const ssd = L * blockBytes;
    const t = p.times!;
    expect(t.hostToDeviceMs).toBeCloseTo((1000 * ssd) / RATES.h2dBytesPerS, 9);
    expect(t.ssdReadMs).toBeCloseTo((1000 * ssd) / (RATES.ssdReadBytesPerS as number), 9);
    expect(t.ssdWriteMs).toBeCloseTo((1000 * ssd) / (RATES.ssdWriteBytesPerS as number), 9);
    expect(t.computeMs).toBeCloseTo((1000 * 2 * forwardFlops(m, B, T).total) / RATES.gemmFlopsPerS, 9);
    // SSD blocks updated at home: the pending update is replayed when the block is next read (K = 1: one of them).
    expect(t.cpuUpdateMs).toBeCloseTo((1000 * L * BLOCK) / RATES.cpuUpdateElemsPerS, 9);
    expect(t.replayMs).toBeCloseTo(t.cpuUpdateMs, 9);
    expect(t.hostUpdateMs).toBe(0);
    const terms = { compute: t.computeMs, 'host-to-device': t.hostToDeviceMs, 'ssd-read': t.ssdReadMs, 'ssd-write': t.ssdWriteMs, 'cpu-update': t.cpuUpdateMs };
    const [bound, floor] = Object.entries(terms).reduce((a, b) => (b[1] > a[1] ? b : a));
    expect(p.bound).toBe(bound);
    expect(p.floorMs).toBeCloseTo(floor, 9);
    // SSD reads, replays and write-backs run on prefetch threads, uploads on the copy queue, beside compute.
    const predicted = Math.max(t.computeMs, t.hostToDeviceMs, t.ssdReadMs + t.ssdWriteMs + t.replayMs);
    expect(p.predictedStepMs).toBeCloseTo(predicted, 9);
    expect(p.notes.join(' ')).toMatch(/read .* ahead on prefetch threads/);
  });

  it('says exactly what is short and by how much', () => {
    const device = fixed - 1000;
    const p = makePlan(base({ budgets: { device } }));
    expect(p.feasible).toBe(false);
    // Two staging slots do not fit: the plan is made with one, and still says what is short.
    const need = fixed + blockBytes;
    expect(p.stageSlots).toBe(1);
    expect(p.shortfalls[0]).toContain(`needs ${formatBytes(need)}`);
    expect(p.shortfalls[0]).toContain(`short by ${formatBytes(need - device)}`);

    const noSpill = makePlan(base({ budgets: { device: fixed + slots, cpu: ENGINE_RUNTIME_BYTES + blockBytes }, spillDirs: [] }));
    expect(noSpill.shortfalls.join(' ')).toContain(`SSD: ${L} blocks (${formatBytes(L * blockBytes)})`);
    expect(noSpill.shortfalls.join(' ')).toMatch(/no spill folder/);

    const ssd = 2 * spillSlot;
    const small = makePlan(base({ budgets: { device: fixed + slots, cpu: ENGINE_RUNTIME_BYTES + blockBytes, ssd } }));
    expect(small.shortfalls.join(' ')).toContain(`short by ${formatBytes(L * spillSlot - ssd)}`);

    // Less CPU memory than the engine process needs: said so, with the parts.
    const starved = makePlan(base({ budgets: { cpu: ENGINE_RUNTIME_BYTES / 2 } }));
    expect(starved.feasible).toBe(false);
    expect(starved.shortfalls.join(' ')).toMatch(/CPU memory: the engine process .*short by/);
  });

  it('on the CPU backend counts the device arena against the CPU budget and skips the CPU tier', () => {
    // The engine process, one slot, the I/O buffer and one read-ahead buffer, then one resident block.
    const cpu = ENGINE_RUNTIME_BYTES + fixedCpu + 3 * blockBytes + blockBytes + blockBytes / 3;
    const p = makePlan(base({ computeDevice: 'cpu', budgets: { cpu }, prefetch: 1 }));
    expect(p.count).toEqual({ device: 2 + 1, cpu: 0, ssd: L - 1 });
    expect(p.breakdown.stage).toBe(blockBytes);
    expect(p.notes.join(' ')).toMatch(/read ahead into 1 host buffer .* counted in CPU memory/);
    // Too little for two read-ahead buffers: the read-ahead is lowered, and the plan says so.
    const shallow = makePlan(base({ computeDevice: 'cpu', budgets: { cpu: ENGINE_RUNTIME_BYTES + fixedCpu + 3 * blockBytes + blockBytes / 3 } }));
    expect(shallow.prefetch).toBe(1);
    expect(shallow.count).toEqual({ device: 2, cpu: 0, ssd: L });
    expect(shallow.notes.join(' ')).toMatch(/read-ahead lowered from 2 to 1/);
    // Room for no read-ahead at all: the engine is told 0 (and allocates none).
    const none = makePlan(base({ computeDevice: 'cpu', budgets: { cpu: ENGINE_RUNTIME_BYTES + fixedCpu + 2 * blockBytes + blockBytes / 3 } }));
    expect(none.count.ssd).toBe(L);
    expect(none.prefetch).toBe(0);
    expect(none.breakdown.prefetchBuffers).toBe(0);
    expect(none.notes.join(' ')).toMatch(/read-ahead lowered from 2 to 0/);
    // The I/O buffer counts against the shared budget too.
    const tight = makePlan(base({ computeDevice: 'cpu', budgets: { cpu: ENGINE_RUNTIME_BYTES + fixedCpu + 2 * blockBytes - 1 } }));
    expect(tight.feasible).toBe(false);
    expect(tight.shortfalls[0]).toMatch(/I\/O buffer/);
    expect(p.memory.device + p.memory.cpu).toBeLessThanOrEqual(cpu);
  });

  it('plans bf16/fp16 masters at half the bytes of every streamed block on the CPU, the SSD and the links', () => {
    const budgets = { device: fixed + slots, cpu: ENGINE_RUNTIME_BYTES + 3 * blockBytes + blockBytes / 2 };
    const f32 = makePlan(base({ budgets }));
    const bf16 = makePlan(base({ budgets, masters: 'bf16' }));
    expect(bf16.feasible).toBe(true);
    expect(bf16.bytesPerParameter).toBe(2);
    // Half-size buffers leave room for one more block on the CPU.
    expect(bf16.count.cpu).toBeGreaterThan(f32.count.cpu);
    const streamedParams = bf16.units.filter((u) => u.home !== 'device').reduce((n, u) => n + u.parameters, 0);
    expect(bf16.linkBytesPerStep.hostToDevice).toBe(2 * streamedParams);
    expect(bf16.units.filter((u) => u.home === 'ssd').every((u) => u.bytes === 2 * u.parameters)).toBe(true);
    expect(bf16.breakdown.ioBuffer).toBe(f32.breakdown.ioBuffer / 2);
    // Staging slots hold streamed blocks as stored: half the bytes too.
    expect(bf16.breakdown.stage).toBe(f32.breakdown.stage / 2);
    expect(bf16.notes.join(' ')).toMatch(/bf16 with stochastic rounding/);
    const fp16 = makePlan(base({ budgets, masters: 'fp16' }));
    expect(fp16.linkBytesPerStep).toEqual(bf16.linkBytesPerStep);
  });

  it('scales the forwards (not z and the perturbed copies) to the tokens a step really computes', () => {
    const rates = { ...RATES, blockForwardMs: 10, blockPerturbMs: 4, blockSource: 'measured' as const };
    const full = makePlan(base({ rates }));
    const quarter = makePlan(base({ rates, tokensPerStep: (B * T) / 4 }));
    expect(full.compute!.blockMs).toBe(10);
    expect(quarter.compute!.blockMs).toBeCloseTo(4 + 6 / 4, 12);
    expect(quarter.compute!.headMs).toBeCloseTo(full.compute!.headMs / 4, 12);
    expect(quarter.compute!.detail).toMatch(/scaled to \d+ tokens per step/);
    // Memory stays sized for the whole shape.
    expect(quarter.breakdown.activations).toBe(full.breakdown.activations);
    // More tokens than the shape holds cannot happen (sequences are cut at maxLength): no scaling up.
    expect(makePlan(base({ rates, tokensPerStep: 10 * B * T })).compute!.blockMs).toBe(10);
  });

  it('drops to one staging slot when two do not fit beside what must stay on the device, and says so', () => {
    const two = makePlan(base({ budgets: { device: fixed + slots } }));
    expect(two.stageSlots).toBe(2);
    const one = makePlan(base({ budgets: { device: fixed + slots - 1 } }));
    expect(one.stageSlots).toBe(1);
    expect(one.feasible).toBe(true);
    expect(one.breakdown.stage).toBe(blockBytes);
    expect(one.notes.join(' ')).toMatch(/One staging slot instead of two/);
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
  it('uses the measured block forward instead of the FLOP estimate, and says so', () => {
    const blockMs = 3.25;
    const est = makePlan(base({ q: 2 }));
    expect(est.compute).toMatchObject({ blockSource: 'estimated', headSource: 'estimated' });
    const p = makePlan(base({ q: 2, rates: { ...RATES, blockForwardMs: blockMs, blockSource: 'measured' } }));
    const headMs = (1000 * 2 * forwardFlops(m, B, T).head) / RATES.gemmFlopsPerS;
    expect(p.compute).toMatchObject({ blockMs, blockSource: 'measured', headMs, headSource: 'estimated' });
    expect(p.times!.forwardMs).toBeCloseTo(2 * (L * blockMs + headMs), 9);
    expect(p.notes.join(' ')).toMatch(/measured forward time per block/);
    const x = makePlan(base({ rates: { ...RATES, blockForwardMs: blockMs, blockSource: 'extrapolated' } }));
    expect(x.compute?.blockSource).toBe('extrapolated');
  });

  // Every block on the SSD (GPU budgets as in the floor test), striped over two folders.
  const allSsd = { device: fixed + slots, cpu: blockBytes };
  it('stripes SSD blocks round-robin over spill folders; folders on one device do not add bandwidth', () => {
    const spill = [
      { readBytesPerS: 3e9, writeBytesPerS: 2e9, device: '2049' },
      { readBytesPerS: 3.2e9, writeBytesPerS: 2.1e9, device: '2049' },
    ];
    const p = makePlan(base({ budgets: allSsd, spillDirs: ['/a', '/b'], spillInfo: [{ device: '2049' }, { device: '2049' }], rates: { ...RATES, spill } }));
    expect(p.count.ssd).toBe(L);
    expect(p.spillDirs).toEqual(['/a', '/b']);
    const idx = p.units.filter((u) => u.home === 'ssd').map((u) => u.spillIndex);
    expect(idx).toEqual(Array.from({ length: L }, (_, j) => j % 2));
    expect(p.units.filter((u) => u.home !== 'ssd').every((u) => u.spillIndex === null)).toBe(true);
    expect(p.ssd).toMatchObject({ devices: 1, summed: false, readBytesPerS: 3.2e9, writeBytesPerS: 2.1e9 });
    expect(p.ssd!.folders.map((f) => [f.units, f.bytes])).toEqual([
      [L / 2, (L / 2) * spillSlot],
      [L / 2, (L / 2) * spillSlot],
    ]);
    expect(p.memory.ssd).toBe(L * spillSlot);
    // One device: all the reads go through it, at its best measured rate.
    expect(p.times!.ssdReadMs).toBeCloseTo((1000 * L * blockBytes) / 3.2e9, 9);
    expect(p.notes.join(' ')).toMatch(/same filesystem .*does not add bandwidth/);

    // Two devices: the aggregate is the sum, and each device carries its half.
    const two = makePlan(base({ budgets: allSsd, spillDirs: ['/a', '/b'], spillInfo: [{ device: '2049' }, { device: '2065' }], rates: { ...RATES, spill } }));
    expect(two.ssd).toMatchObject({ devices: 2, summed: true, readBytesPerS: 6.2e9, writeBytesPerS: 4.1e9 });
    expect(two.times!.ssdReadMs).toBeCloseTo((1000 * (L / 2) * blockBytes) / 3e9, 9);
    expect(two.times!.ssdReadMs).toBeLessThan(p.times!.ssdReadMs);
    expect(two.notes.join(' ')).toMatch(/2 distinct devices: their bandwidths add up/);

    // One folder: exactly as before striping.
    const one = makePlan(base({ budgets: allSsd }));
    expect(one.spillDirs).toEqual(['/spill']);
    expect(one.units.filter((u) => u.home === 'ssd').every((u) => u.spillIndex === 0)).toBe(true);
    expect(one.times!.ssdReadMs).toBeCloseTo((1000 * L * blockBytes) / (RATES.ssdReadBytesPerS as number), 9);

    // A folder that cannot be used is short.
    const bad = makePlan(
      base({ budgets: allSsd, spillDirs: ['/a', '/b'], rates: { ...RATES, spill: [spill[0], { readBytesPerS: null, writeBytesPerS: null, unavailable: 'no room' }] } }),
    );
    expect(bad.feasible).toBe(false);
    expect(bad.shortfalls.join(' ')).toMatch(/spill folder \/b cannot be used: no room/);
  });

  // Every block homed in CPU memory (the device holds only what must stay and the two slots).
  const allCpu = { device: fixed + slots };
  const cpuBlocks = (p: ReturnType<typeof makePlan>) => p.units.filter((u) => u.home === 'cpu');

  it('respects a forced update mode', () => {
    const rates = { ...RATES, deviceUpdateElemsPerS: 2e10 };
    const home = makePlan(base({ budgets: allCpu, updateMode: 'home', rates }));
    expect(home.count.cpu).toBe(L);
    expect(cpuBlocks(home).every((u) => u.updateOn === 'home' && u.deviceToHostBytes === 0)).toBe(true);
    expect(home.update).toMatchObject({ mode: 'home', homeUnits: L, deviceUnits: 0 });
    expect(home.linkBytesPerStep.deviceToHost).toBe(0);
    expect(home.times!.hostUpdateMs).toBeCloseTo((1000 * L * BLOCK) / RATES.cpuUpdateElemsPerS, 9);
    expect(cpuBlocks(home)[0].updateMs).toBeCloseTo((1000 * BLOCK) / RATES.cpuUpdateElemsPerS, 9);

    const dev = makePlan(base({ budgets: allCpu, updateMode: 'device', rates, q: 2 }));
    expect(cpuBlocks(dev).every((u) => u.updateOn === 'device' && u.deviceToHostBytes === blockBytes)).toBe(true);
    expect(dev.deviceUpdate).toEqual(dev.units.map((u) => u.home === 'cpu'));
    expect(dev.update).toMatchObject({ mode: 'device', homeUnits: 0, deviceUnits: L });
    expect(dev.linkBytesPerStep.deviceToHost).toBe(L * blockBytes);
    expect(dev.times!.deviceToHostMs).toBeCloseTo((1000 * L * blockBytes) / RATES.d2hBytesPerS, 9);
    expect(dev.times!.hostUpdateMs).toBe(0);
    // q = 2 terms per element, for every unit (resident ones included), on the device.
    const all = m.units.reduce((n, u) => n + u.parameters, 0);
    expect(dev.times!.deviceUpdateMs).toBeCloseTo((1000 * 2 * all) / 2e10, 9);
    expect(cpuBlocks(dev)[0].updateMs).toBeCloseTo((1000 * 2 * BLOCK) / 2e10, 9);
    // Included in the predicted step: the device's compute time carries the device updates.
    expect(dev.times!.computeMs).toBeCloseTo(dev.times!.forwardMs + dev.times!.deviceUpdateMs, 9);
    expect(dev.predictedStepMs!).toBeGreaterThanOrEqual(dev.times!.computeMs);

    // SSD homes updated on the device are written back every K visits.
    const ssd = makePlan(base({ budgets: allSsd, updateMode: 'device', rates, writeBackEvery: 4 }));
    expect(ssd.units.filter((u) => u.home === 'ssd').every((u) => u.updateOn === 'device' && u.deviceToHostBytes === blockBytes / 4)).toBe(true);
  });

  it('auto: updates on the device when write-back is much cheaper than the host update, at home otherwise', () => {
    // Host update 10^8 floats/s (10 ns a float), device→host 25 GB/s (0.16 ns a float), device update 2·10^10/s.
    const slowHost = makePlan(base({ budgets: allCpu, rates: { ...RATES, cpuUpdateElemsPerS: 1e8, deviceUpdateElemsPerS: 2e10 } }));
    expect(slowHost.update.mode).toBe('auto');
    expect(cpuBlocks(slowHost).every((u) => u.updateOn === 'device')).toBe(true);
    expect(slowHost.update.deviceUnits).toBe(L);
    expect(slowHost.predictedStepMs!).toBeLessThan(slowHost.update.allHomeStepMs!);
    expect(slowHost.update.reason).toMatch(/auto: 6 of 6 streamed units updated on the device/);

    // Device→host at 10^8 B/s (40 ns a float) against a host update at 10^10 floats/s: at home.
    const slowLink = makePlan(base({ budgets: allCpu, rates: { ...RATES, d2hBytesPerS: 1e8, cpuUpdateElemsPerS: 1e10, deviceUpdateElemsPerS: 2e10 } }));
    expect(cpuBlocks(slowLink).every((u) => u.updateOn === 'home')).toBe(true);
    expect(slowLink.linkBytesPerStep.deviceToHost).toBe(0);
    expect(slowLink.update.allDeviceStepMs!).toBeGreaterThan(slowLink.predictedStepMs!);
    expect(slowLink.update.reason).toMatch(/auto: updates at home are fastest/);

    // Without a calibrated device update rate on a GPU, or on the CPU backend (the device is the host), at home.
    expect(cpuBlocks(makePlan(base({ budgets: allCpu, rates: { ...RATES, cpuUpdateElemsPerS: 1e8 } }))).every((u) => u.updateOn === 'home')).toBe(true);
    const onCpu = makePlan(base({ computeDevice: 'cpu', budgets: { cpu: fixed + 4 * blockBytes }, rates: { ...RATES, cpuUpdateElemsPerS: 1e8 } }));
    expect(onCpu.count.ssd).toBeGreaterThan(0);
    expect(onCpu.units.filter((u) => u.home !== 'device').every((u) => u.updateOn === 'home')).toBe(true);
  });
});
