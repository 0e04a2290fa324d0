// The preload as Electron's sandbox loads it: one CommonJS file (built by
// scripts/build-preload.mjs) that may require nothing but `electron`, and that
// exposes exactly window.spillway = {call, cancel, on}.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';

import { ROOT } from '../../helpers/engine.js';

const BUNDLE = join(ROOT, 'dist', 'electron', 'preload.cjs');

describe('the bundled preload', () => {
  it('exists after the build and requires only electron', () => {
    expect(existsSync(BUNDLE), 'run npm run build:ts').toBe(true);
    const required: string[] = [];
    const exposed: Record<string, unknown> = {};
    const invoked: unknown[] = [];
    const fakeElectron = {
      contextBridge: { exposeInMainWorld: (key: string, api: unknown) => (exposed[key] = api) },
      ipcRenderer: {
        invoke: (channel: string, msg: unknown) => {
          invoked.push([channel, msg]);
          return Promise.resolve({ ok: true, result: null });
        },
        send: () => {},
        on: () => {},
        removeListener: () => {},
      },
    };
    const module = { exports: {} };
    runInNewContext(readFileSync(BUNDLE, 'utf8'), {
      module,
      exports: module.exports,
      require: (name: string) => {
        required.push(name);
        if (name !== 'electron') throw new Error(`the sandboxed preload cannot require ${name}`);
        return fakeElectron;
      },
    });
    expect(required).toEqual(['electron']);
    const bridge = exposed.spillway as Record<string, unknown>;
    expect(Object.keys(bridge).sort()).toEqual(['call', 'cancel', 'on']);
    void (bridge.call as (m: string, p: unknown) => Promise<unknown>)('listRuns', {});
    expect(invoked).toHaveLength(1);
    expect(String((invoked[0] as unknown[])[0])).toMatch(/listRuns/);
  });
});
