// How a run's masters, update mode and spill folders are shown (Live, Runs, `runs show`), and what the
// New run plan says its step time is for.
import { describe, expect, it } from 'vitest';

import { formatRunStorage, runStorage, type RunPlan } from '../../electron/common/contract.ts';
import { dataTokensLine } from '../../renderer/src/lib/precision.ts';
import { formatStorage, shortPath, storageLine } from '../../renderer/src/lib/tiers.ts';

const streamed: RunPlan = {
  homes: { device: 1, cpu: 0, ssd: 3 },
  predictedStepMs: null,
  floorMs: null,
  bound: null,
  linkBytes: null,
  linkMs: null,
  ioWaitMs: null,
};
const resident: RunPlan = { ...streamed, homes: { device: 4, cpu: 0, ssd: 0 } };

describe('run storage line', () => {
  it('is absent for a run that sets none of them and streams no blocks', () => {
    expect(runStorage({}, false)).toBeNull();
    expect(storageLine({}, null)).toBeNull();
    expect(storageLine({ offload: 'auto' }, resident)).toBeNull();
    expect(storageLine({ offload: 'none' }, null)).toBeNull();
    expect(storageLine(null, streamed)).toBeNull();
  });

  it('shows the defaults for a run that streams blocks', () => {
    expect(storageLine({ offload: 'auto' }, streamed)).toBe('masters fp32 · updates auto');
    expect(storageLine({ offload: 'cpu' }, null)).toBe('masters fp32 · updates auto');
  });

  it('shows what a run sets, with short spill folders', () => {
    expect(storageLine({ masters: 'bf16' }, null)).toBe('masters bf16 · updates auto');
    expect(storageLine({ updateOn: 'home' }, null)).toBe('masters fp32 · updates at home');
    expect(storageLine({ offload: 'ssd', spillDirs: ['/mnt/nvme0/spill'] }, null)).toBe('masters fp32 · updates auto · spill nvme0/spill');
    expect(
      storageLine({ offload: 'auto', masters: 'fp16', updateOn: 'device', spillDirs: ['/mnt/a/s', '/mnt/b/s'] }, streamed),
    ).toBe('masters fp16 · updates on device · spill a/s, b/s');
  });

  it('the summary form and the full-path form (runs show)', () => {
    const s = runStorage({ masters: 'bf16', spillDirs: ['/mnt/a/spill'] }, false)!;
    expect(s).toEqual({ masters: 'bf16', updateOn: 'auto', spillDirs: ['/mnt/a/spill'] });
    expect(formatRunStorage(s)).toBe('masters bf16 · updates auto · spill /mnt/a/spill');
    expect(formatStorage(s)).toBe('masters bf16 · updates auto · spill a/spill');
    expect(formatStorage(null)).toBeNull();
    expect(formatStorage(undefined)).toBeNull();
    expect(shortPath('spill')).toBe('spill');
    expect(shortPath('C:\\data\\spill')).toBe('data/spill');
  });
});

describe('plan tokens line', () => {
  it("says the step is for the dataset's mean length, or for batch × max length", () => {
    expect(dataTokensLine({ meanPerExample: 23.4375, examples: 512, perStep: 375 })).toBe(
      "Step time for the dataset's mean length: 23.4 tokens per example, 375 per step (512 examples).",
    );
    expect(dataTokensLine({ meanPerExample: 412.6, examples: 3, perStep: 6601.6 })).toMatch(/413 tokens per example, 6602 per step/);
    expect(dataTokensLine(null)).toMatch(/^Step time for batch × max length tokens/);
    expect(dataTokensLine(undefined)).toMatch(/batch × max length/);
  });
});
