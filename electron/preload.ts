// The preload: exposes `window.spillway` ({call, cancel, on}) and nothing
// else. Only the contract's channels can be reached through it; everything
// else is rejected here, and main validates again.
//
// A sandboxed preload cannot load ES modules or local files: build:ts bundles
// this file with channels.ts into one CommonJS script,
// dist/electron/preload.cjs (scripts/build-preload.mjs), which main loads.

import { contextBridge, ipcRenderer } from 'electron';
import type { IpcRendererEvent } from 'electron';

import { BRIDGE_KEY, CANCEL_CHANNEL, EVENT_CHANNELS, isEventName, isMethodName, METHOD_CHANNELS } from './common/channels.js';
import type { CallOutcome, SpillwayBridge } from './common/contract.js';

type IpcRendererLike = Pick<typeof ipcRenderer, 'invoke' | 'send' | 'on' | 'removeListener'>;

const MAX_CALL_ID = 100;

export function createBridge(ipc: IpcRendererLike): SpillwayBridge {
  let counter = 0;
  return {
    call(method: string, params: unknown, callId?: string): Promise<CallOutcome> {
      if (!isMethodName(method)) {
        return Promise.resolve({
          ok: false,
          error: { name: 'SpillwayError', code: 'UNKNOWN_METHOD', message: `unknown method ${JSON.stringify(String(method)).slice(0, 120)}` },
        });
      }
      const id = typeof callId === 'string' && callId.length > 0 && callId.length <= MAX_CALL_ID ? callId : `p${++counter}`;
      return ipc.invoke(METHOD_CHANNELS[method], { id, params }) as Promise<CallOutcome>;
    },
    cancel(callId: string): void {
      if (typeof callId === 'string' && callId.length > 0 && callId.length <= MAX_CALL_ID) ipc.send(CANCEL_CHANNEL, callId);
    },
    on(event: string, listener: (payload: unknown) => void): () => void {
      if (!isEventName(event)) throw new Error(`unknown event ${JSON.stringify(String(event)).slice(0, 120)}`);
      if (typeof listener !== 'function') throw new Error('listener must be a function');
      const channel = EVENT_CHANNELS[event];
      const handler = (_e: IpcRendererEvent, payload: unknown) => listener(payload);
      ipc.on(channel, handler);
      return () => {
        ipc.removeListener(channel, handler);
      };
    },
  };
}

contextBridge.exposeInMainWorld(BRIDGE_KEY, createBridge(ipcRenderer));
