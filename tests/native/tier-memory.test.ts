// Peak host memory, measured: with its blocks on the SSD tier a model's engine
// process peaks far below the same model held resident (the blocks' masters
// leave host memory once written to the spill file; one staging slot and the
// prefetch buffers remain). Measured as VmHWM of a real child process.
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

import { ROOT } from '../helpers/engine.js';
import { makeTinyLlama } from '../helpers/tiny-model.js';

const run = promisify(execFile);
let work: string;
let model: string;
const HIDDEN = 512;
const LAYERS = 16;
// Per block: q, k, v, o (C x C) + gate, up, down (2C x C each) = 10 C^2 floats.
const BLOCK_BYTES = 10 * HIDDEN * HIDDEN * 4;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-tiermem-'));
  model = await makeTinyLlama(join(work, 'm'), { hidden: HIDDEN, layers: LAYERS, seed: 2 });
});

async function peakKiB(offload: 'none' | 'ssd'): Promise<{ hwm: number; tiers: Record<string, number> }> {
  const script = `
    const { readFileSync } = await import('node:fs');
    const { loadModelInfo } = await import(${JSON.stringify(join(ROOT, 'dist/electron/model/index.js'))});
    const { engineSpec } = await import(${JSON.stringify(join(ROOT, 'dist/electron/engine/spec.js'))});
    const { packBatch } = await import(${JSON.stringify(join(ROOT, 'dist/electron/engine/batch.js'))});
    const { loadNative } = await import(${JSON.stringify(join(ROOT, 'dist/electron/engine/native.js'))});
    const info = await loadModelInfo(${JSON.stringify(model)});
    const e = new (loadNative().Engine)({ threads: 2 });
    const homes = info.units.map((u) => (u.kind === 'block' && ${JSON.stringify(offload)} === 'ssd' ? 'ssd' : 'device'));
    await e.load(engineSpec(info), { homes, spillDirs: [${JSON.stringify(work)}] });
    const batch = packBatch([{ kind: 'lm', label: -1, source: 'x', sequences: [{ tokens: [1, 2, 3, 4, 5, 6, 7, 8], scoreStart: 1, scoreEnd: 8 }] }]);
    await e.step(batch, { seed: 1n, step: 0, q: 1, lr: 1e-3, eps: 1e-3, weightDecay: 0, noise: 'gaussian' });
    const hwm = Number(/VmHWM:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
    console.log(JSON.stringify({ hwm, tiers: e.info().tiers }));`;
  const r = await run(process.execPath, ['--input-type=module', '-e', script], { maxBuffer: 1 << 20 });
  return JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as { hwm: number; tiers: Record<string, number> };
}

describe('host memory with the SSD tier', () => {
  it('peaks lower by about the blocks moved to the SSD', async () => {
    const resident = await peakKiB('none');
    const spilled = await peakKiB('ssd');
    const blocks = LAYERS * BLOCK_BYTES;
    expect(spilled.tiers.ssdBytes).toBeGreaterThanOrEqual(blocks);
    // What stays in host memory for the SSD tier: one staging slot, the I/O buffer and the
    // prefetch buffers (each one block). The peak must drop by the blocks minus those,
    // give or take 8 MiB of allocator and runtime noise.
    const savedBytes = (resident.hwm - spilled.hwm) * 1024;
    const kept = spilled.tiers.deviceStageBytes + spilled.tiers.cpuBytes;
    console.log(`peak host memory: resident ${resident.hwm} KiB, SSD tier ${spilled.hwm} KiB, blocks ${blocks >> 10} KiB, buffers ${kept >> 10} KiB`);
    expect(savedBytes).toBeGreaterThan(blocks - kept - 8 * 2 ** 20);
  });
});
