// `spillway plan` and planner-placed training, as a person runs them.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { ROOT } from '../helpers/engine.js';
import { jsonLines, runSpillway } from '../helpers/cli.js';

const DEMO_MODEL = join(ROOT, 'resources', 'models', 'spillway-demo');

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'spw-plan-'));
});

const spillway = (args: string[]) => runSpillway(args, join(work, 'data'));
const lines = jsonLines;

interface PlanJson {
  strategy: string;
  units: { kind: string; bytes: number; parameters: number; home: string; updateOn: string; updateMs: number | null; deviceToHostBytes: number; spillIndex: number | null }[];
  memory: { gpu: number; cpu: number; ssd: number };
  linkBytesPerStep: Record<string, number>;
  predictedStepMs: number | null;
  floorMs: number | null;
  bound: string | null;
  calibratedAt: string | null;
  feasible: boolean;
  shortfalls: string[];
  calibration: { machine: { cpu: string; spillDir: string | null }; date: string; block?: { source: string; zoMs: number } };
  spillDirs: string[];
  ssd: { folders: { dir: string; device: string | null; mount?: string | null; units: number }[]; devices: number; summed: boolean } | null;
  steps: number;
  predictedRunMs: number | null;
  updateMode: string;
  update: { mode: string; homeUnits: number; deviceUnits: number; reason: string };
  deviceUpdate: boolean[];
  computeSource: { block: string; head: string } | null;
  timeTerms: Record<string, number> | null;
}

describe('spillway plan', () => {
  it('prints the demo model plan as JSON, calibrated and cached on first use', async () => {
    const spill = mkdtempSync(join(tmpdir(), 'spw-plan-spill-'));
    const r = await spillway(['plan', '--model', DEMO_MODEL, '--spill', spill, '--batch-size', '4', '--max-length', '32', '--calibration-bytes', '16MiB', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const p = JSON.parse(r.stdout) as PlanJson;
    expect(p.feasible).toBe(true);
    expect(p.strategy).toBe('all-resident');
    expect(p.units.map((u) => u.kind)).toEqual(['embed', 'block', 'block', 'block', 'block', 'head']);
    expect(p.units.every((u) => u.bytes === 4 * u.parameters)).toBe(true);
    expect(p.predictedStepMs).toBeGreaterThan(0);
    expect(p.floorMs).toBeGreaterThan(0);
    expect(p.floorMs!).toBeLessThanOrEqual(p.predictedStepMs!);
    expect(p.bound).toBe('compute');
    expect(p.calibratedAt).toBe(p.calibration.date);
    expect(p.calibration.machine.spillDir).toBe(spill);
    // The demo's block ran at the plan's shape (4 × 32 tokens); the head is estimated from FLOPs.
    expect(p.computeSource).toEqual({ block: 'measured', head: 'estimated' });
    expect(p.calibration.block).toMatchObject({ source: 'measured' });
    expect(p.spillDirs).toEqual([spill]);
    expect(p.units.every((u) => u.updateOn === 'device' && u.spillIndex === null)).toBe(true);

    // A CPU budget below the blocks: the plan spills, and the second call reuses the cached calibration.
    const blocks = p.units.filter((u) => u.kind === 'block');
    const b = blocks[0].bytes;
    const budget = p.memory.cpu - b / 2;
    const s = await spillway(['plan', '--model', DEMO_MODEL, '--spill', spill, '--batch-size', '4', '--max-length', '32', '--cpu-mem', String(budget), '--json']);
    const q = JSON.parse(s.stdout) as PlanJson;
    expect(q.calibration.date).toBe(p.calibration.date);
    expect(q.strategy).toBe('tiered');
    const onSsd = q.units.filter((u) => u.home === 'ssd');
    expect(onSsd.length).toBeGreaterThan(0);
    expect(q.memory.cpu).toBeLessThanOrEqual(budget);
    const ssdBytes = onSsd.reduce((n, u) => n + u.bytes, 0);
    expect(q.linkBytesPerStep).toMatchObject({ ssdRead: ssdBytes, ssdWrite: ssdBytes, hostToDevice: ssdBytes, deviceToHost: 0 });
    // On the CPU backend the device is the host: updating there only adds the write-back copy, so updates stay at home.
    expect(onSsd.every((u) => u.updateOn === 'home' && u.spillIndex === 0)).toBe(true);
    expect(q.update).toMatchObject({ mode: 'auto', deviceUnits: 0 });

    // Forced: every streamed block updated on the device, written back home.
    const d = JSON.parse((await spillway(['plan', '--model', DEMO_MODEL, '--spill', spill, '--batch-size', '4', '--max-length', '32', '--cpu-mem', String(budget), '--update-on', 'device', '--json'])).stdout) as PlanJson;
    expect(d.updateMode).toBe('device');
    expect(d.units.filter((u) => u.home === 'ssd').every((u) => u.updateOn === 'device' && u.deviceToHostBytes === u.bytes)).toBe(true);
    expect(d.deviceUpdate).toEqual(d.units.map((u) => u.home === 'ssd'));
    expect(d.linkBytesPerStep.deviceToHost).toBe(ssdBytes);
    expect(d.timeTerms!.deviceToHostMs).toBeGreaterThan(0);
    const bad = await spillway(['plan', '--model', DEMO_MODEL, '--update-on', 'gpu']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--update-on: unknown update mode gpu \(auto, home, device\)/);

    // A plan that does not fit says so and exits with status 2 (scripts can tell it from an error, 1).
    const human = await spillway(['plan', '--model', DEMO_MODEL, '--cpu-mem', '1000']);
    expect(human.code).toBe(2);
    expect(human.stdout).toMatch(/DOES NOT FIT/);
    expect(human.stdout).toMatch(/short: CPU memory: .* but the budget is 1000 B \(short by [\d.]+ MiB\)/);
  });
});

describe('spillway plan, read by a person', () => {
  it('names the spill folder\'s filesystem, says which links carry nothing or were not measured, and gives the whole run\'s time', async () => {
    const spill = mkdtempSync(join(tmpdir(), 'spw-plan-fs-'));
    const args = ['plan', '--model', DEMO_MODEL, '--batch-size', '4', '--max-length', '32', '--calibration-bytes', '16MiB'];
    const fits = JSON.parse((await spillway([...args, '--spill', spill, '--json'])).stdout) as PlanJson;
    // Half a block short of all-resident: blocks go to the SSD of that folder.
    const budget = String(fits.memory.cpu - fits.units.find((u) => u.kind === 'block')!.bytes / 2);
    const r = await spillway([...args, '--spill', spill, '--cpu-mem', budget, '--steps', '500']);
    expect(r.code, r.stderr).toBe(0);
    // The filesystem by its mount point (as stat(1) finds it), not st_dev's number.
    const mount = execFileSync('stat', ['-c', '%m', spill], { encoding: 'utf8' }).trim();
    expect(r.stdout).toContain(`#0 ${spill}: `);
    expect(r.stdout).toMatch(new RegExp(`#0 .*; on ${mount.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(`));
    expect(r.stdout).not.toMatch(/; device \d+;/);
    // The whole run beside the step, and the floor explained by a document the product ships.
    const j = JSON.parse((await spillway([...args, '--spill', spill, '--cpu-mem', budget, '--steps', '500', '--json'])).stdout) as PlanJson;
    expect(j.steps).toBe(500);
    expect(j.predictedRunMs).toBeCloseTo(500 * j.predictedStepMs!, 6);
    expect(r.stdout).toMatch(/predicted step [\d.]+ m?s; 500 steps \d/);
    expect(r.stdout).not.toMatch(/ALGORITHMS\.md/);
    expect(r.stdout).toMatch(/docs\/TIERED-STORE\.md/);
    expect(existsSync(join(ROOT, 'docs', 'TIERED-STORE.md'))).toBe(true);

    // Without a spill folder the SSD's rate is unknown: the link says so (and the plan does not fit).
    const none = await spillway([...args, '--cpu-mem', budget]);
    expect(none.code).toBe(2);
    expect(none.stdout).not.toMatch(/Infinity|NaN/);
    expect(none.stdout).toMatch(/SSD read unmeasured/);
    // A link nothing crosses says so rather than "0 ms".
    expect(r.stdout).toMatch(/D2H none/);
  });
});

describe('spillway plan --spill A,B', () => {
  it('stripes the SSD blocks over the folders, calibrated each; folders on one filesystem are not summed', async () => {
    const a = mkdtempSync(join(tmpdir(), 'spw-plan-a-'));
    const b = mkdtempSync(join(tmpdir(), 'spw-plan-b-'));
    const c = mkdtempSync(join(tmpdir(), 'spw-plan-c-'));
    const args = ['plan', '--model', DEMO_MODEL, '--batch-size', '4', '--max-length', '32', '--calibration-bytes', '16MiB', '--cpu-mem', '1MB', '--json'];
    // A comma-separated list, and a repeated flag: the same three folders.
    const r = await spillway([...args, '--spill', `${a},${b}`, '--spill', c]);
    // 1 MB does not fit (see below): the plan is printed all the same, with exit status 2.
    expect(r.code, r.stderr).toBe(2);
    const p = JSON.parse(r.stdout) as PlanJson;
    expect(p.spillDirs).toEqual([a, b, c]);
    const ssd = p.units.filter((u) => u.home === 'ssd');
    expect(ssd.length).toBe(4);
    expect(ssd.map((u) => u.spillIndex)).toEqual([0, 1, 2, 0]);
    expect(p.ssd!.folders.map((f) => f.units)).toEqual([2, 1, 1]);
    expect(p.ssd).toMatchObject({ devices: 1, summed: false });
    expect(new Set(p.ssd!.folders.map((f) => f.device)).size).toBe(1);

    const human = await spillway(['plan', '--model', DEMO_MODEL, '--batch-size', '4', '--max-length', '32', '--cpu-mem', '1MB', '--spill', `${a},${b}`]);
    expect(human.code, human.stderr).toBe(2);
    expect(human.stdout).toMatch(/#0 .*#1/s);
    expect(human.stdout).toMatch(/one device: not summed/);
    expect(human.stdout).toMatch(/updates \(auto\): 4 streamed units at home, 0 on the device/);

    // Training takes the same folders; 1 MB cannot hold what must stay in memory: refused before any step, saying why.
    const train = await spillway(['train', '--steps', '1', '--spill', `${a},${b}`, '--cpu-mem', '1MB', '--json']);
    expect(train.code).toBe(1);
    expect(train.stdout + train.stderr).toMatch(/the plan does not fit: CPU memory: .* but the budget is 976.6 KiB \(short by/);
  });
});

describe('spillway train --cpu-mem', () => {
  it('puts blocks on the SSD when the CPU budget is smaller than the model and trains with the resident losses', async () => {
    const spill = mkdtempSync(join(tmpdir(), 'spw-train-spill-'));
    const common = ['--steps', '3', '--max-length', '64', '--no-zero-shot', '--eval-max', '4', '--json'];
    const plan = JSON.parse((await spillway(['plan', '--model', DEMO_MODEL, '--batch-size', '16', '--max-length', '64', '--spill', spill, '--calibration-bytes', '16MiB', '--json'])).stdout) as PlanJson;
    const blocks = plan.units.filter((u) => u.kind === 'block');
    const b = blocks[0].bytes;
    // All resident needs plan.memory.cpu; streaming adds a staging slot, an I/O buffer and up to two
    // read-ahead buffers (one block each): the deepest read-ahead that fits is used, then as many
    // blocks as fit stay resident and the rest go to the SSD.
    const budget = plan.memory.cpu - b / 2;
    const nonBlocks = plan.memory.cpu - blocks.length * b;
    let expectResident = -1;
    for (let p = 2; p >= 0 && expectResident < 0; p--) expectResident = Math.floor((budget - nonBlocks - (2 + p) * b) / b);

    const resident = await spillway(['train', ...common]);
    expect(resident.code, resident.stderr).toBe(0);
    const tiered = await spillway(['train', ...common, '--cpu-mem', String(budget), '--spill', spill]);
    expect(tiered.code, tiered.stderr).toBe(0);
    const start = lines(tiered.stdout).find((e) => e.type === 'start') as { plan: { homes: Record<string, number>; predictedStepMs: number; floorMs: number } };
    expect(start.plan.homes).toEqual({ device: 2 + expectResident, cpu: 0, ssd: blocks.length - expectResident });
    expect(start.plan.homes.ssd).toBeGreaterThan(0);
    expect(start.plan.predictedStepMs).toBeGreaterThan(0);
    expect(start.plan.floorMs).toBeGreaterThan(0);
    const losses = (out: string) => lines(out).filter((e) => e.type === 'step').map((e) => [e.lossPlus, e.lossMinus]);
    expect(losses(tiered.stdout)).toHaveLength(3);
    expect(losses(tiered.stdout)).toEqual(losses(resident.stdout));
  });

  it('trains with bf16 masters the same whatever the placement: resident, SSD striped over two folders with device updates', async () => {
    const a = mkdtempSync(join(tmpdir(), 'spw-train-a-'));
    const b = mkdtempSync(join(tmpdir(), 'spw-train-b-'));
    const common = ['--steps', '3', '--max-length', '64', '--no-zero-shot', '--eval-max', '4', '--json', '--masters', 'bf16'];
    const resident = await spillway(['train', ...common]);
    expect(resident.code, resident.stderr).toBe(0);
    const striped = await spillway(['train', ...common, '--offload', 'ssd', '--spill', `${a},${b}`, '--update-on', 'device', '--write-back-every', '2']);
    expect(striped.code, striped.stderr).toBe(0);
    const losses = (out: string) => lines(out).filter((e) => e.type === 'step').map((e) => [e.lossPlus, e.lossMinus]);
    expect(losses(striped.stdout)).toHaveLength(3);
    expect(losses(striped.stdout)).toEqual(losses(resident.stdout));
    // Both folders were used (each step read from the SSD), and fp32 masters give other losses.
    const io = lines(striped.stdout).filter((e) => e.type === 'step').map((e) => e.io as { ssdReadBytes: number; d2hBytes: number });
    expect(io.every((x) => x.ssdReadBytes > 0)).toBe(true);
    expect(io.slice(1).some((x) => x.d2hBytes > 0)).toBe(true);
    const fp32 = await spillway(['train', ...common.filter((x) => x !== '--masters' && x !== 'bf16')]);
    expect(losses(fp32.stdout)).not.toEqual(losses(resident.stdout));
    const bad = await spillway(['train', ...common.slice(0, -2), '--masters', 'fp8']);
    expect(bad.code).not.toBe(0);
    expect(bad.stdout + bad.stderr).toMatch(/unknown master precision fp8 \(fp32, bf16, fp16\)/);
  });
});

describe('spillway plan --train', () => {
  interface TrainablePlan extends PlanJson {
    breakdown: { workingCopies: number; adapters: number };
    trainable: { set: string; elements: number; baseFrozen: boolean; bytes: Record<string, number>; frozenBytes: Record<string, number> };
  }
  it('shows a lora run\'s adapters apart from its frozen base, which the run then reads from the SSD and never writes', async () => {
    const spill = mkdtempSync(join(tmpdir(), 'spw-plan-lora-'));
    const shape = ['--model', DEMO_MODEL, '--batch-size', '16', '--max-length', '64', '--spill', spill, '--calibration-bytes', '16MiB'];
    const lora = ['--train', 'lora', '--rank', '4', '--targets', 'q,v'];
    const planOf = async (args: string[]) => {
      const r = await spillway(['plan', ...shape, ...args, '--json']);
      expect([0, 2], r.stderr).toContain(r.code);
      return JSON.parse(r.stdout) as TrainablePlan;
    };
    // A CPU budget half a block short of everything resident: some blocks go to the SSD.
    const loose = await planOf(lora);
    const block = loose.units.find((u) => u.kind === 'block')!.bytes;
    const budget = ['--cpu-mem', String(loose.memory.cpu - block / 2)];
    const p = await planOf([...lora, ...budget]);
    const full = await planOf(budget);
    expect(p.feasible).toBe(true);
    expect(p.units.some((u) => u.home === 'ssd')).toBe(true);
    expect(p.trainable).toMatchObject({ set: 'lora', baseFrozen: true, bytes: { device: p.breakdown.adapters, cpu: 0, ssd: 0 } });
    expect(p.breakdown.adapters).toBeGreaterThan(0);
    expect(p.trainable.frozenBytes.ssd).toBe(p.memory.ssd);
    expect(full.trainable).toMatchObject({ set: 'full', baseFrozen: false, frozenBytes: { device: 0, cpu: 0, ssd: 0 } });
    expect(p.linkBytesPerStep.ssdWrite).toBe(0);
    expect(p.linkBytesPerStep.deviceToHost).toBe(0);
    expect(p.breakdown.workingCopies).toBeLessThan(full.breakdown.workingCopies);
    const text = await spillway(['plan', ...shape, ...lora, ...budget]);
    expect(text.stdout).toMatch(/what trains: lora rank 4 on q, v; \d+ elements a step moves/);
    expect(text.stdout).toMatch(/frozen .* read only: never updated, replayed or written back/);
    expect(text.stdout).toMatch(/block \d .* ssd +frozen \(read only\)/);

    // The run placed by that plan: its start event carries it, and each step's measured I/O agrees.
    const run = await spillway(['train', ...lora, ...budget, '--spill', spill, '--steps', '3', '--max-length', '64', '--no-zero-shot', '--eval-max', '4', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const start = lines(run.stdout).find((e) => e.type === 'start') as { plan: { homes: Record<string, number>; linkBytes: Record<string, number> } };
    expect(start.plan.homes.ssd).toBe(p.units.filter((u) => u.home === 'ssd').length);
    expect(start.plan.linkBytes).toMatchObject({ ssdWrite: 0, deviceToHost: 0, ssdRead: p.linkBytesPerStep.ssdRead });
    const io = lines(run.stdout).filter((e) => e.type === 'step').map((e) => e.io as { ssdReadBytes: number; ssdWriteBytes: number; d2hBytes: number });
    expect(io).toHaveLength(3);
    for (const s of io) {
      expect(s).toMatchObject({ ssdWriteBytes: 0, d2hBytes: 0 });
      // The blocks' bytes, read as their 4 KiB-aligned slots: at least the plan's figure, at most the spill file.
      expect(s.ssdReadBytes).toBeGreaterThanOrEqual(p.linkBytesPerStep.ssdRead);
      expect(s.ssdReadBytes).toBeLessThanOrEqual(p.memory.ssd);
    }
  });
});
