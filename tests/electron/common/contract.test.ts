// The contract itself: names and schemas agree, defaults, error mapping,
// and electron/common stays free of Node.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { webSocketUrlFor } from '../../../electron/common/client.js';
import {
  ClientFrame,
  EVENT_CHANNELS,
  EVENT_NAMES,
  events,
  METHOD_CHANNELS,
  METHOD_NAMES,
  RUN_METHOD_NAMES,
  RunOptions,
  methods,
  parseEvent,
  parseParams,
  parseResult,
  SpillwayError,
  toWireError,
} from '../../../electron/common/contract.js';
import { toJsonValue, unavailableRunOperations } from '../../../electron/services/api.js';

const COMMON = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../electron/common');

describe('contract', () => {
  it('has a schema and a channel for exactly each method and event name', () => {
    expect(Object.keys(methods).sort()).toEqual([...METHOD_NAMES].sort());
    expect(Object.keys(events).sort()).toEqual([...EVENT_NAMES].sort());
    for (const m of METHOD_NAMES) expect(METHOD_CHANNELS[m]).toBe(`spillway:call:${m}`);
    for (const e of EVENT_NAMES) expect(EVENT_CHANNELS[e]).toBe(`spillway:event:${e}`);
  });

  it('applies defaults to params', () => {
    expect(parseParams('listRuns', undefined)).toEqual({ sort: 'createdAt', order: 'desc', limit: 100, offset: 0 });
    expect(parseParams('getMetrics', { runId: 'r' })).toEqual({ runId: 'r', sinceStep: -1, limit: 10_000 });
    expect(parseParams('stopRun', { runId: 'r' })).toEqual({ runId: 'r', checkpoint: true });
    expect(parseParams('plan', { model: '/m' })).toMatchObject({ budgets: {}, batchSize: 16, maxLength: 256, updateOn: 'auto' });
  });

  it('carries a step\'s I/O per link (optional, for old rows and engines without tiers) and a run\'s plan', () => {
    const step = { runId: 'r', step: 1, at: 1_700_000_000_000, loss: 0.5, lossPlus: 0.6, lossMinus: 0.4, projectedGrad: 1, lr: 1e-3, stepMs: 12, tokensPerS: 100, skipped: false };
    const io = { h2dBytes: 3166208, d2hBytes: 0, ssdReadBytes: 3178496, ssdWriteBytes: 3178496, waitMs: 13.8 };
    expect(parseEvent('stepMetrics', { ...step, io })).toEqual({ event: 'stepMetrics', payload: { ...step, io } });
    expect(parseEvent('stepMetrics', step)?.payload).toEqual(step);
    expect(parseEvent('stepMetrics', { ...step, io: null })?.payload).toEqual({ ...step, io: null });
    expect(parseEvent('stepMetrics', { ...step, io: { ...io, ssdReadBytes: -1 } })).toBeNull();
    expect(parseEvent('stepMetrics', { ...step, io: { ...io, waitMs: undefined } })).toBeNull();

    const plan = {
      homes: { device: 2, cpu: 0, ssd: 4 },
      predictedStepMs: 23.3,
      floorMs: 22.9,
      bound: 'compute',
      linkBytes: { hostToDevice: 3166208, deviceToHost: 0, ssdRead: 3166208, ssdWrite: 1583104.5 },
      linkMs: null,
      ioWaitMs: 0.45,
    };
    const detail = {
      id: 'r', name: 'n', status: 'completed', model: '/m', dataset: '/d', createdAt: 1, startedAt: 1, endedAt: 2, stepsDone: 1, stepsPlanned: 1,
      lastLoss: 0.5, lastAccuracy: null, error: null, resumedFrom: null, resumable: false, options: { model: '/m', train: '/d', task: { kind: 'sst2' } },
      checkpoints: [], evals: [], outDir: null,
    };
    expect(methods.getRun.result.parse({ ...detail, plan })).toMatchObject({ plan });
    expect(methods.getRun.result.parse({ ...detail, plan: null }).plan).toBeNull();
    expect(methods.getRun.result.parse(detail).plan).toBeUndefined();
  });

  it('plan requests take masters, an update mode and several spill folders, and refuse a field they do not know', () => {
    expect(parseParams('plan', { model: '/m' })).toMatchObject({ updateOn: 'auto' });
    expect(parseParams('plan', { model: '/m' }).masters).toBeUndefined();
    // One name per concept: spillDirs (one folder or several), masters (not the planner's old precision).
    expect(() => parseParams('plan', { model: '/m', spillDir: '/s' })).toThrow(/spillDir/);
    expect(() => parseParams('plan', { model: '/m', precision: 'f32' })).toThrow(/precision/);
    const p = parseParams('plan', { model: '/m', masters: 'bf16', updateOn: 'device', spillDirs: ['/nvme0/spill', '/nvme1/spill'] });
    expect(p).toMatchObject({ masters: 'bf16', updateOn: 'device', spillDirs: ['/nvme0/spill', '/nvme1/spill'] });
    expect(() => parseParams('plan', { model: '/m', masters: 'f32' })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
    expect(() => parseParams('plan', { model: '/m', updateOn: 'gpu' })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
    expect(() => parseParams('plan', { model: '/m', spillDirs: [''] })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });

  it('bounds every numeric run option where the engine does, for a run and for the settings, naming the field', () => {
    const options = { model: '/m', train: '/d', task: { kind: 'sst2' } };
    const refused = (method: 'startRun' | 'updateSettings', params: unknown) => {
      try {
        parseParams(method, params);
      } catch (e) {
        return e as SpillwayError;
      }
      throw new Error('accepted');
    };
    const e = refused('startRun', { options: { ...options, threads: 100_000 } });
    expect(e.code).toBe('BAD_REQUEST');
    expect(e.message).toMatch(/options\.threads: expected an integer from 0 to 1024, got 100000/);
    expect(refused('updateSettings', { threads: 100_000 }).message).toMatch(/threads: expected an integer from 0 to 1024, got 100000/);
    // The engine's own limit on perturbations (two hidden-state buffers each), not a looser one.
    expect(refused('startRun', { options: { ...options, q: 65 } }).message).toMatch(/options\.q: expected an integer from 1 to 64, got 65/);
    for (const [field, value] of [['steps', -1], ['batchSize', 0], ['evalFraction', 1], ['lr', -1], ['eps', 0], ['seed', 2 ** 53], ['maxLength', 0], ['writeBackEvery', 0], ['warmupSteps', 1e9], ['cpuMem', -1]] as const) {
      expect(refused('startRun', { options: { ...options, [field]: value } }).message, field).toMatch(new RegExp(`options\\.${field}: `));
    }
    // What is in bounds passes, with the defaults filled: the trainer receives the whole options.
    expect(parseParams('startRun', { options: { ...options, threads: 1024 } }).options).toMatchObject({ threads: 1024, steps: 1000, q: 1, batchSize: 16, zeroShot: true });
    // A field the schema does not know is refused, not dropped (a misspelt option would take its default).
    expect(refused('startRun', { options: { ...options, thread: 4 } }).message).toMatch(/thread/);
  });

  it('carries masters, the update mode and several spill folders in run options through to the trainer', () => {
    const options = { model: '/m', train: '/d', task: { kind: 'sst2' }, offload: 'auto', cpuMem: 2e9, spillDirs: ['/a', '/b'], masters: 'fp16', updateOn: 'home' };
    expect(parseParams('startRun', { options }).options).toMatchObject({ spillDirs: ['/a', '/b'], masters: 'fp16', updateOn: 'home' });
    expect(() => parseParams('startRun', { options: { ...options, masters: 'int8' } })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
    expect(() => parseParams('startRun', { options: { ...options, updateOn: 'somewhere' } })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });

  it('carries the plan\'s read-ahead, bytes per parameter, spill folders, update choice and compute figures; old plans still validate', () => {
    const old = {
      model: '/m', computeDevice: 'cpu', strategy: 'tiered',
      units: [{ kind: 'block', index: 0, parameters: 10, bytes: 40, home: 'ssd' }],
      memory: { gpu: 0, cpu: 100, ssd: 4096 },
      breakdown: { weights: 40, workingCopies: 80, activations: 10 },
      linkBytesPerStep: { hostToDevice: 40, deviceToHost: 0, ssdRead: 40, ssdWrite: 40 },
      predictedStepMs: null, feasible: true, shortfalls: [], notes: [],
    };
    expect(parseResult('plan', old)).toEqual(old);
    const full = {
      ...old,
      units: [{ kind: 'block', index: 0, parameters: 10, bytes: 20, home: 'ssd', updateOn: 'device', updateMs: 0.25, deviceToHostBytes: 10, spillIndex: 1 }],
      breakdown: { ...old.breakdown, stage: 60, ioBuffer: 20, prefetchBuffers: 20, runtime: 134217728 },
      linkBytesPerStep: { hostToDevice: 20, deviceToHost: 10, ssdRead: 20, ssdWrite: 10 },
      timeTerms: { computeMs: 2, hostToDeviceMs: 0.1, deviceToHostMs: 0.1, ssdReadMs: 1, ssdWriteMs: 1, cpuUpdateMs: 0, forwardMs: 1.5, deviceUpdateMs: 0.5, hostUpdateMs: 0, replayMs: 0 },
      prefetch: 1,
      prefetchRequested: 2,
      bytesPerParameter: 2,
      spillDirs: ['/a', '/b'],
      ssd: {
        folders: [
          { dir: '/a', device: '2049', units: 0, bytes: 0, readBytesPerS: 2e9, writeBytesPerS: 1e9 },
          { dir: '/b', device: null, units: 1, bytes: 4096, readBytesPerS: null, writeBytesPerS: null, unavailable: 'O_DIRECT refused' },
        ],
        devices: 2,
        readBytesPerS: null,
        writeBytesPerS: null,
        summed: true,
      },
      update: { mode: 'auto', homeUnits: 0, deviceUnits: 1, allHomeStepMs: 3, allDeviceStepMs: 2.5, reason: 'auto: 1 of 1 streamed unit updated on the device' },
      deviceUpdate: [true],
      compute: { blockMs: 1.5, blockSource: 'measured', headMs: 0.2, headSource: 'estimated', detail: '1.50 ms per block' },
    };
    expect(parseResult('plan', full)).toEqual(full);
    expect(() => parseResult('plan', { ...full, update: { ...full.update, mode: 'gpu' } })).toThrow(expect.objectContaining({ code: 'BAD_RESULT' }));
    expect(() => parseResult('plan', { ...full, bytesPerParameter: 0 })).toThrow(expect.objectContaining({ code: 'BAD_RESULT' }));
  });

  it('refuses prototype keys as method names', () => {
    for (const m of ['__proto__', 'constructor', 'hasOwnProperty', 'toString']) {
      expect(() => parseParams(m, {})).toThrow(expect.objectContaining({ code: 'UNKNOWN_METHOD' }));
    }
    expect(parseEvent('__proto__', {})).toBeNull();
  });

  it('turns thrown values into wire errors and back', () => {
    const w = toWireError(new SpillwayError('NOT_FOUND', 'no run x'));
    expect(w).toMatchObject({ name: 'SpillwayError', code: 'NOT_FOUND', message: 'no run x' });
    expect(w.stack).toContain('no run x');
    expect(toWireError(new RangeError('bad'), false)).toEqual({ name: 'RangeError', code: 'INTERNAL', message: 'bad' });
    expect(toWireError('a string')).toEqual({ name: 'Error', code: 'INTERNAL', message: 'a string' });
    const back = SpillwayError.fromWire({ ...w, name: 'ModelError' });
    expect(back).toBeInstanceOf(SpillwayError);
    expect(back).toMatchObject({ code: 'NOT_FOUND', name: 'ModelError', remoteStack: w.stack });
  });

  it('accepts call and cancel frames only', () => {
    expect(ClientFrame.safeParse({ type: 'call', id: 1, method: 'plan', params: {} }).success).toBe(true);
    expect(ClientFrame.safeParse({ type: 'cancel', id: 'a' }).success).toBe(true);
    expect(ClientFrame.safeParse({ type: 'call', id: -1, method: 'plan' }).success).toBe(false);
    expect(ClientFrame.safeParse({ type: 'event', event: 'log' }).success).toBe(false);
  });

  it('derives the WebSocket URL from the page URL: its token when it has one, else none (the session cookie goes along)', () => {
    expect(webSocketUrlFor('http://127.0.0.1:5123/?token=abc')).toBe('ws://127.0.0.1:5123/ws?token=abc');
    expect(webSocketUrlFor('https://host.example/app/?token=x&y=1')).toBe('wss://host.example/ws?token=x');
    expect(webSocketUrlFor('http://127.0.0.1:5123/#/runs')).toBe('ws://127.0.0.1:5123/ws');
  });

  it('keeps electron/common free of Node, electron and ws imports', () => {
    for (const f of readdirSync(COMMON)) {
      const text = readFileSync(path.join(COMMON, f), 'utf8');
      const imports = [...text.matchAll(/from '([^']+)'/g)].map((m) => m[1]);
      for (const i of imports) expect(i === 'zod' || i.startsWith('./'), `${f} imports ${i}`).toBe(true);
    }
  });
});

describe('services facade', () => {
  it('converts dataset cells to JSON', () => {
    expect(toJsonValue({ a: 1n, b: 2n ** 70n, c: new Date(0), d: NaN, e: new Uint8Array(3), f: [undefined, 'x'] })).toEqual({
      a: 1,
      b: '1180591620717411303424',
      c: '1970-01-01T00:00:00.000Z',
      d: null,
      e: '<3 bytes>',
      f: [null, 'x'],
    });
  });

  it('answers UNAVAILABLE for runs until the supervisor is wired in, and keeps settings in memory', async () => {
    const ops = unavailableRunOperations();
    const ctx = { signal: new AbortController().signal };
    await expect(ops.startRun({ options: RunOptions.parse({ model: '/m', train: '/t', task: { kind: 'text' } }) }, ctx)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(await ops.listRuns({ sort: 'createdAt', order: 'desc', limit: 1, offset: 0 }, ctx)).toEqual({ runs: [], total: 0 });
    expect((await ops.updateSettings({ threads: 3 }, ctx)).threads).toBe(3);
    expect((await ops.getSettings({}, ctx)).threads).toBe(3);
    expect(RUN_METHOD_NAMES.every((m) => typeof ops[m] === 'function')).toBe(true);
  });
});
