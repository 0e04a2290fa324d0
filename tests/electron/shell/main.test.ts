// The Electron shell's logic with `electron` mocked: window options,
// single-instance lock, CSP, navigation and window-open blocking, the app://
// protocol, IPC allow-list and sender check, native dialogs that allow what
// is picked, and quitting with a checkpoint.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it, vi } from 'vitest';

vi.mock('electron', async () => (await import('./fake-electron.js')).electronModule);

import { CANCEL_CHANNEL, METHOD_CHANNELS, RunOptions, type CallOutcome } from '../../../electron/common/contract.js';
import { APP_URL, menuTemplate, runApp, windowOptions } from '../../../electron/main.js';
import { CONTENT_SECURITY_POLICY } from '../../../electron/server/static.js';
import { createServices } from '../../../electron/services/api.js';
import { FakeRuns } from '../common/fake-runs.js';
import { app, FakeWebContents, fakeIpcRenderer, resetElectron, state } from './fake-electron.js';

async function started(runs = new FakeRuns()) {
  const services = createServices({ runs });
  expect(await runApp({ services, rendererDir: null, preload: '/app/preload.cjs', log: () => {} })).toBe(true);
  const window = state.windows[0];
  return { runs, services, window, renderer: fakeIpcRenderer(window.webContents) };
}

beforeEach(() => resetElectron());

describe('window', () => {
  it('isolates the renderer: context isolation, sandbox, no Node, no webviews', () => {
    const o = windowOptions('/app/preload.cjs');
    expect(o.webPreferences).toMatchObject({
      preload: '/app/preload.cjs',
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
    });
  });

  it('opens one window on the app page, with its menu, shown when ready', async () => {
    const { window } = await started();
    expect(state.windows).toHaveLength(1);
    expect(window.options).toEqual(windowOptions('/app/preload.cjs'));
    expect(window.webContents.url).toBe(APP_URL);
    expect(window.shown).toBe(true);
    expect((state.menu as { template: unknown }).template).toEqual(menuTemplate());
  });
});

describe('single instance', () => {
  it('quits at once when another instance holds the lock', async () => {
    state.singleInstanceLock = false;
    expect(await runApp({ services: createServices({ runs: new FakeRuns() }), rendererDir: null, preload: '/p' })).toBe(false);
    expect(state.quitCalls).toBe(1);
    expect(state.windows).toHaveLength(0);
    expect(state.handlers.size).toBe(0);
  });

  it('focuses (and restores) the existing window when a second instance starts', async () => {
    const { window } = await started();
    window.minimized = true;
    app.emit('second-instance');
    expect(window.minimized).toBe(false);
    expect(window.focused).toBe(1);
  });
});

describe('security', () => {
  it('sets the strict CSP on every response, replacing any other', async () => {
    await started();
    let out: Record<string, string[]> | null = null;
    state.headersListener!({ responseHeaders: { 'content-security-policy': ["default-src *"], 'X-Other': ['kept'] } }, (r) => (out = r.responseHeaders));
    expect(out).toEqual({ 'X-Other': ['kept'], 'Content-Security-Policy': [CONTENT_SECURITY_POLICY] });
    expect(CONTENT_SECURITY_POLICY).toMatch(/^default-src 'self'; /);
    expect(CONTENT_SECURITY_POLICY).not.toMatch(/https?:|unsafe-inline|unsafe-eval|\*/);
  });

  it('prevents navigation, redirects and webviews, and denies new windows, for every webContents', async () => {
    const { window } = await started();
    const devtools = new FakeWebContents();
    app.emit('web-contents-created', {}, devtools);
    for (const wc of [window.webContents, devtools]) {
      for (const ev of ['will-navigate', 'will-redirect', 'will-attach-webview']) {
        const preventDefault = vi.fn();
        wc.emit(ev, { preventDefault }, 'https://evil.example/');
        expect(preventDefault).toHaveBeenCalled();
      }
      expect(wc.windowOpenHandler!({ url: 'https://evil.example/' })).toEqual({ action: 'deny' });
    }
  });

  it('denies permission requests (camera, notifications, ...)', async () => {
    await started();
    const cb = vi.fn();
    state.permissionHandler!({}, 'media', cb);
    expect(cb).toHaveBeenCalledWith(false);
  });

  it('serves the renderer on app://spillway with the CSP, and nothing else', async () => {
    await started();
    expect(state.schemes).toEqual([{ scheme: 'app', privileges: { standard: true, secure: true, supportFetchAPI: true } }]);
    const handler = state.protocolHandlers.get('app')!;
    const page = await handler({ url: APP_URL });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toBe(CONTENT_SECURITY_POLICY);
    expect(await page.text()).toContain('Spillway');
    expect((await handler({ url: 'app://other/index.html' })).status).toBe(404);
    expect((await handler({ url: 'app://spillway/%2e%2e/%2e%2e/etc/passwd' })).status).toBe(404);
  });
});

describe('IPC', () => {
  it('handles exactly the contract channels: anything else has no handler', async () => {
    const { renderer } = await started();
    expect([...state.handlers.keys()].sort()).toEqual(Object.values(METHOD_CHANNELS).sort());
    await expect(renderer.invoke('spillway:call:dropDatabase', { id: '1', params: {} })).rejects.toThrow('No handler registered');
    await expect(renderer.invoke('fs:readFile', '/etc/passwd')).rejects.toThrow('No handler registered');
  });

  it('drops calls from unknown senders: other webContents, or a foreign page in our window', async () => {
    const { runs, window } = await started();
    const stranger = fakeIpcRenderer(new FakeWebContents(), APP_URL);
    const foreignPage = fakeIpcRenderer(window.webContents, 'https://evil.example/');
    for (const r of [stranger, foreignPage]) {
      const out = (await r.invoke(METHOD_CHANNELS.startRun, { id: '1', params: { options: { model: '/m', train: '/t', task: { kind: 'text' } } } })) as CallOutcome;
      expect(out).toEqual({ ok: false, error: expect.objectContaining({ code: 'FORBIDDEN' }) });
    }
    expect((await runs.listRuns({ sort: 'createdAt', order: 'desc', limit: 10, offset: 0 }, { signal: new AbortController().signal })).total).toBe(0);
  });

  it('ignores cancel messages from unknown senders', async () => {
    const { runs, window, renderer } = await started();
    const pending = renderer.invoke(METHOD_CHANNELS.getRun, { id: 'c1', params: { runId: 'slow' } });
    await runs.slowGetRun.first((c) => c === 'arrived');
    fakeIpcRenderer(new FakeWebContents(), APP_URL).send(CANCEL_CHANNEL, 'c1');
    fakeIpcRenderer(window.webContents, 'https://evil.example/').send(CANCEL_CHANNEL, 'c1');
    // A round trip: the cancels sent before it have been handled.
    await renderer.invoke(METHOD_CHANNELS.getSettings, { id: 'c2', params: {} });
    expect(runs.slowGetRun).not.toContain('cancelled');
    renderer.send(CANCEL_CHANNEL, 'c1');
    expect(await pending).toEqual({ ok: false, error: expect.objectContaining({ code: 'CANCELLED' }) });
  });

  it('answers a call without {id, params} with BAD_FRAME', async () => {
    const { renderer } = await started();
    expect(await renderer.invoke(METHOD_CHANNELS.getSettings, 'plain')).toEqual({ ok: false, error: expect.objectContaining({ code: 'BAD_FRAME' }) });
  });

  it('pushes events to the app window only', async () => {
    const { runs, window } = await started();
    const bystander = new FakeWebContents();
    const { id } = await runs.startRun({ options: RunOptions.parse({ model: '/m', train: '/t', task: { kind: 'text' } }) }, { signal: new AbortController().signal });
    runs.emitStep(id, 1);
    expect(window.webContents.sent.map((s) => s.channel)).toEqual(['spillway:event:runStatus', 'spillway:event:stepMetrics']);
    expect(bystander.sent).toEqual([]);
  });
});

describe('native dialogs', () => {
  it('picking a file opens the system dialog over the window, and allows that file (and no other) from then on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spw-pick-'));
    const picked = join(dir, 'picked.jsonl');
    writeFileSync(picked, '{"sentence":"fine","label":1}\n');
    writeFileSync(join(dir, 'beside.jsonl'), '{"sentence":"fine","label":1}\n');
    // No services given: the app's own, with the native picker wired in.
    expect(await runApp({ rendererDir: null, preload: '/p', log: () => {} })).toBe(true);
    const window = state.windows[0];
    const renderer = fakeIpcRenderer(window.webContents);
    const call = async (method: keyof typeof METHOD_CHANNELS, params: unknown) => (await renderer.invoke(METHOD_CHANNELS[method], { id: String(Math.random()), params })) as CallOutcome;

    expect(await call('previewDataset', { path: picked })).toMatchObject({ ok: false, error: { code: 'FORBIDDEN' } });
    state.dialogAnswers.push(picked);
    const filters = [{ name: 'Datasets', extensions: ['jsonl', 'csv', 'parquet'] }];
    expect(await call('pickPath', { kind: 'datasets', mode: 'file', title: 'Training data', filters })).toEqual({ ok: true, result: { path: picked } });
    expect(state.dialogCalls[0]).toEqual({ kind: 'open', parent: window, options: { title: 'Training data', filters, properties: ['openFile'] } });
    expect(await call('previewDataset', { path: picked })).toMatchObject({ ok: true, result: { rows: [{ line: 1 }] } });
    expect(await call('previewDataset', { path: join(dir, 'beside.jsonl') })).toMatchObject({ ok: false, error: { code: 'FORBIDDEN' } });
  });

  it('a cancelled dialog grants nothing; folders and save destinations use the matching dialogs', async () => {
    expect(await runApp({ rendererDir: null, preload: '/p', log: () => {} })).toBe(true);
    const renderer = fakeIpcRenderer(state.windows[0].webContents);
    const call = async (params: unknown) => (await renderer.invoke(METHOD_CHANNELS.pickPath, { id: String(Math.random()), params })) as CallOutcome;
    expect(await call({ kind: 'models', mode: 'folder' })).toEqual({ ok: true, result: { path: null } });
    state.dialogAnswers.push('/tmp/out.csv');
    expect(await call({ kind: 'export', mode: 'save', defaultPath: '/tmp/run.csv' })).toEqual({ ok: true, result: { path: '/tmp/out.csv' } });
    expect(state.dialogCalls.map((c) => [c.kind, c.options.properties])).toEqual([
      ['open', ['openDirectory', 'createDirectory']],
      ['save', ['showOverwriteConfirmation', 'createDirectory']],
    ]);
  });
});

describe('quit', () => {
  it('stops runs with a checkpoint before quitting, once', async () => {
    const { runs } = await started();
    const { id } = await runs.startRun({ options: RunOptions.parse({ model: '/m', train: '/t', task: { kind: 'text' } }) }, { signal: new AbortController().signal });
    app.quit();
    expect(state.quitted).toBe(false);
    app.quit(); // a second request while shutting down waits for the same shutdown
    await state.quits.first(() => true);
    expect(runs.shutdownCalls).toBe(1);
    expect((await runs.getRun({ runId: id }, { signal: new AbortController().signal })).status).toBe('stopped');
  });

  it('quits even when shutting down fails', async () => {
    const runs = new FakeRuns();
    runs.shutdown = async () => {
      throw new Error('disk full');
    };
    await started(runs);
    app.quit();
    await state.quits.first(() => true);
  });

  it('quits when the last window closes', async () => {
    await started();
    app.emit('window-all-closed');
    await state.quits.first(() => true);
  });
});

