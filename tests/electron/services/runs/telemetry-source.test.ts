// telemetrySource reads the sampling interval from the settings each time sampling starts, and
// supervisorOperations keeps the data folder read-only.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { storedSettings, supervisorOperations, telemetrySource } from '../../../../electron/services/runs/operations.js';
import type { RunSupervisor } from '../../../../electron/services/runs/supervisor.js';
import { RunStore } from '../../../../electron/services/store/run-store.js';
import type { Sampler } from '../../../../electron/services/telemetry/index.js';

let dir: string;
let store: RunStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'spw-telemetry-source-'));
  store = RunStore.open(dir);
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Just enough of a supervisor: one run whose activity the test switches, and its event stream. */
function fakeSupervisor() {
  let active = false;
  let listener: ((e: { type: string; runId: string }) => void) | null = null;
  const sup = {
    store,
    dataDir: dir,
    listRuns: () => [{ id: 'r1' }],
    getRun: () => ({ id: 'r1', config: { options: {} } }),
    isActive: () => active,
    enginePid: () => 1234,
    recordSystemSample: () => {},
    subscribe: (_: string, l: (e: { type: string; runId: string }) => void) => {
      listener = l;
      return () => (listener = null);
    },
  };
  const emit = (type: string, nowActive: boolean) => {
    active = nowActive;
    listener?.({ type, runId: 'r1' });
  };
  return { sup: sup as unknown as RunSupervisor, emit };
}

function fakeSampler() {
  const starts: number[] = [];
  let stops = 0;
  const sampler = {
    onSample: () => () => {},
    start: (o: { intervalMs: number }) => starts.push(o.intervalMs),
    stop: () => stops++,
    setEnginePid: () => {},
    recordStep: () => {},
  };
  return { sampler: sampler as unknown as Sampler, starts, stops: () => stops };
}

describe('telemetrySource', () => {
  it('samples at the interval in the settings when sampling starts', async () => {
    const { sup, emit } = fakeSupervisor();
    const { sampler, starts, stops } = fakeSampler();
    const source = telemetrySource(sup, sampler);
    emit('start', true);
    expect(starts).toEqual([1000]);
    emit('status', false);
    expect(stops()).toBe(1);

    await supervisorOperations(sup).updateSettings({ samplingIntervalMs: 250 }, { signal: new AbortController().signal });
    emit('start', true);
    expect(starts).toEqual([1000, 250]);
    source.stop();
    expect(stops()).toBe(2);
  });
});

describe('settings in the store', () => {
  it('report the data folder, and never store or take one', async () => {
    const { sup } = fakeSupervisor();
    const ops = supervisorOperations(sup);
    const ctx = { signal: new AbortController().signal };
    expect(await ops.getSettings({}, ctx)).toMatchObject({ dataDir: dir, samplingIntervalMs: 1000 });
    const s = await ops.updateSettings({ threads: 2, dataDir: '/elsewhere' } as never, ctx);
    expect(s).toMatchObject({ threads: 2, dataDir: dir });
    expect(store.getSetting<Record<string, unknown>>('settings')).not.toHaveProperty('dataDir');
    expect(storedSettings(sup).threads).toBe(2);
  });
});
