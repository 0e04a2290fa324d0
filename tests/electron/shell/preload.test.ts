// The preload exposes `window.spillway` with call/cancel/on and nothing
// else, and only lets the contract's channels through.
import { beforeEach, describe, expect, it, vi } from 'vitest';

vi.mock('electron', async () => (await import('./fake-electron.js')).electronModule);

import { EVENT_CHANNELS, METHOD_CHANNELS, type SpillwayBridge } from '../../../electron/common/contract.js';
import { createBridge } from '../../../electron/preload.js';
import { FakeWebContents, fakeIpcRenderer, state } from './fake-electron.js';

function recordingIpc() {
  const calls: { kind: string; channel: string; args: unknown[] }[] = [];
  const ipc = {
    invoke: async (channel: string, ...args: unknown[]) => {
      calls.push({ kind: 'invoke', channel, args });
      return { ok: true, result: null };
    },
    send: (channel: string, ...args: unknown[]) => void calls.push({ kind: 'send', channel, args }),
    on: (channel: string, ...args: unknown[]) => (calls.push({ kind: 'on', channel, args }), ipc),
    removeListener: (channel: string, ...args: unknown[]) => (calls.push({ kind: 'off', channel, args }), ipc),
  };
  return { ipc, calls };
}

describe('preload', () => {
  beforeEach(() => {
    state.currentRenderer = null;
  });

  it('exposes exactly window.spillway = {call, cancel, on}', async () => {
    const exposed = state.exposed;
    expect(Object.keys(exposed)).toEqual(['spillway']);
    expect(Object.keys(exposed.spillway as object).sort()).toEqual(['call', 'cancel', 'on']);
  });

  it('maps methods to their channels, with a call id', async () => {
    const { ipc, calls } = recordingIpc();
    const bridge = createBridge(ipc as never);
    await bridge.call('listRuns', { limit: 3 }, 'id-9');
    await bridge.call('getSettings', {});
    expect(calls[0]).toEqual({ kind: 'invoke', channel: METHOD_CHANNELS.listRuns, args: [{ id: 'id-9', params: { limit: 3 } }] });
    expect(calls[1].args[0]).toEqual({ id: 'p1', params: {} });
  });

  it('rejects methods and events outside the allow-list without touching IPC', async () => {
    const { ipc, calls } = recordingIpc();
    const bridge: SpillwayBridge = createBridge(ipc as never);
    expect(await bridge.call('readFile', '/etc/passwd')).toEqual({ ok: false, error: expect.objectContaining({ code: 'UNKNOWN_METHOD' }) });
    expect(await bridge.call('constructor', {})).toEqual({ ok: false, error: expect.objectContaining({ code: 'UNKNOWN_METHOD' }) });
    expect(() => bridge.on('spillway:call:plan', () => {})).toThrow('unknown event');
    expect(() => bridge.on('toString', () => {})).toThrow('unknown event');
    bridge.cancel(42 as never);
    bridge.cancel('x'.repeat(1000));
    expect(calls).toEqual([]);
  });

  it('hands listeners the payload only (never the IPC event) and unsubscribes', async () => {
    const wc = new FakeWebContents();
    const bridge = createBridge(fakeIpcRenderer(wc) as never);
    const got: unknown[] = [];
    const off = bridge.on('log', (...args: unknown[]) => got.push(args));
    wc.send(EVENT_CHANNELS.log, { message: 'hi' });
    off();
    wc.send(EVENT_CHANNELS.log, { message: 'gone' });
    expect(got).toEqual([[{ message: 'hi' }]]);
    expect(wc.renderer.listenerCount(EVENT_CHANNELS.log)).toBe(0);
  });
});
