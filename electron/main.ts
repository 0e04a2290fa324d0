// The Electron main process, kept thin: one window (single instance), the
// renderer served from app://spillway with a strict Content-Security-Policy,
// navigation and new windows blocked, the contract over IPC with a sender
// check, events pushed to the window, and runs stopped with a checkpoint on
// quit. Everything else lives in the services.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { app, BrowserWindow, dialog, ipcMain, Menu, protocol, session } from 'electron';
import type {
  BrowserWindowConstructorOptions,
  IpcMain,
  IpcMainEvent,
  IpcMainInvokeEvent,
  MenuItemConstructorOptions,
  Protocol,
  Session,
  WebContents,
} from 'electron';

import { CANCEL_CHANNEL, EVENT_CHANNELS, IpcRequest, METHOD_CHANNELS, METHOD_NAMES, type CallOutcome } from './common/contract.js';
import { nativePicker } from './dialogs.js';
import { Dispatcher } from './server/dispatch.js';
import { CONTENT_SECURITY_POLICY, readStaticFile } from './server/static.js';
import { createServices, type SpillwayServices } from './services/api.js';

export const APP_SCHEME = 'app';
export const APP_ORIGIN = `${APP_SCHEME}://spillway`;
export const APP_URL = `${APP_ORIGIN}/index.html`;
/** How long quitting waits for runs to checkpoint before giving up on them. */
export const SHUTDOWN_TIMEOUT_MS = 30_000;

export function windowOptions(preload: string): BrowserWindowConstructorOptions {
  return {
    width: 1280,
    height: 800,
    minWidth: 900,
    minHeight: 600,
    title: 'Spillway',
    show: false,
    backgroundColor: '#111318',
    webPreferences: {
      preload,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      spellcheck: false,
    },
  };
}

/** No navigation away from the app, no new windows, no webviews. */
export function hardenWebContents(wc: WebContents): void {
  wc.on('will-navigate', (event) => event.preventDefault());
  wc.on('will-redirect', (event) => event.preventDefault());
  wc.on('will-attach-webview', (event) => event.preventDefault());
  wc.setWindowOpenHandler(() => ({ action: 'deny' }));
}

/** The CSP on every response, denied permission requests. */
export function hardenSession(s: Session): void {
  s.webRequest.onHeadersReceived((details, callback) => {
    const headers = { ...(details.responseHeaders ?? {}) };
    for (const k of Object.keys(headers)) if (k.toLowerCase() === 'content-security-policy') delete headers[k];
    headers['Content-Security-Policy'] = [CONTENT_SECURITY_POLICY];
    callback({ responseHeaders: headers });
  });
  s.setPermissionRequestHandler((_wc, _permission, callback) => callback(false));
}

/** Must run before the app is ready. */
export function registerAppScheme(p: Protocol): void {
  p.registerSchemesAsPrivileged([{ scheme: APP_SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: true } }]);
}

/** Serves `rendererDir` (null: the placeholder page) at app://spillway/. */
export function serveRenderer(p: Protocol, rendererDir: string | null): void {
  p.handle(APP_SCHEME, async (request) => {
    const url = new URL(request.url);
    const file = url.host === 'spillway' ? await readStaticFile(rendererDir, url.pathname) : null;
    if (!file) return new Response('not found', { status: 404 });
    return new Response(new Uint8Array(file.body), {
      headers: { 'content-type': file.contentType, 'content-security-policy': CONTENT_SECURITY_POLICY },
    });
  });
}

/** A sender is trusted when it is one of our windows, showing a page of the app. */
export function trustedSenderCheck(windows: () => BrowserWindow[]): (e: IpcMainEvent | IpcMainInvokeEvent) => boolean {
  return (e) => {
    const url = e.senderFrame?.url ?? '';
    if (!url.startsWith(`${APP_ORIGIN}/`)) return false;
    return windows().some((w) => !w.isDestroyed() && w.webContents.id === e.sender.id);
  };
}

/** One handler per contract method (the allow-list: other channels have none), and cancel. */
export function registerIpc(
  ipc: IpcMain,
  dispatcher: Dispatcher,
  isTrusted: (e: IpcMainEvent | IpcMainInvokeEvent) => boolean,
  log: (message: string) => void = () => {},
): () => void {
  const inflight = new Map<string, AbortController>();
  for (const method of METHOD_NAMES) {
    ipc.handle(METHOD_CHANNELS[method], async (event, raw: unknown): Promise<CallOutcome> => {
      if (!isTrusted(event)) {
        log(`dropped ${method} from an unknown sender (${event.senderFrame?.url ?? 'no frame'})`);
        return { ok: false, error: { name: 'SpillwayError', code: 'FORBIDDEN', message: 'calls are accepted only from the app window' } };
      }
      const request = IpcRequest.safeParse(raw);
      if (!request.success) {
        return { ok: false, error: { name: 'SpillwayError', code: 'BAD_FRAME', message: 'an IPC call must carry {id, params}' } };
      }
      const key = `${event.sender.id}:${request.data.id}`;
      const ac = new AbortController();
      inflight.set(key, ac);
      try {
        return await dispatcher.handle(method, request.data.params, ac.signal);
      } finally {
        inflight.delete(key);
      }
    });
  }
  const onCancel = (event: IpcMainEvent, id: unknown) => {
    if (!isTrusted(event) || typeof id !== 'string') return;
    inflight.get(`${event.sender.id}:${id}`)?.abort();
  };
  ipc.on(CANCEL_CHANNEL, onCancel);
  return () => {
    for (const method of METHOD_NAMES) ipc.removeHandler(METHOD_CHANNELS[method]);
    ipc.removeListener(CANCEL_CHANNEL, onCancel);
    for (const ac of inflight.values()) ac.abort();
  };
}

/** Pushes every (validated) event to the app's windows. */
export function forwardEvents(dispatcher: Dispatcher, targets: () => WebContents[]): () => void {
  return dispatcher.onEvent((e) => {
    for (const wc of targets()) if (!wc.isDestroyed()) wc.send(EVENT_CHANNELS[e.event], e.payload);
  });
}

export function menuTemplate(): MenuItemConstructorOptions[] {
  return [
    { label: 'File', submenu: [{ role: 'quit' }] },
    { label: 'Edit', submenu: [{ role: 'undo' }, { role: 'redo' }, { type: 'separator' }, { role: 'cut' }, { role: 'copy' }, { role: 'paste' }, { role: 'selectAll' }] },
    { label: 'View', submenu: [{ role: 'reload' }, { role: 'toggleDevTools' }, { type: 'separator' }, { role: 'resetZoom' }, { role: 'zoomIn' }, { role: 'zoomOut' }, { type: 'separator' }, { role: 'togglefullscreen' }] },
    { label: 'Window', submenu: [{ role: 'minimize' }, { role: 'close' }] },
  ];
}

export interface AppOptions {
  services?: SpillwayServices;
  /** The built renderer; default dist/renderer beside the app, else the placeholder page. */
  rendererDir?: string | null;
  preload?: string;
  log?: (message: string) => void;
}

function defaultPaths(): { rendererDir: string | null; preload: string } {
  const here = dirname(fileURLToPath(import.meta.url));
  const rendererDir = join(here, '..', 'renderer');
  return { rendererDir: existsSync(join(rendererDir, 'index.html')) ? rendererDir : null, preload: join(here, 'preload.cjs') };
}

/** Starts the app. Resolves once the window is created, or false if another instance owns the lock. */
export async function runApp(opts: AppOptions = {}): Promise<boolean> {
  const log = opts.log ?? ((m: string) => console.error(`spillway: ${m}`));
  if (!app.requestSingleInstanceLock()) {
    app.quit();
    return false;
  }
  const paths = defaultPaths();
  let window: BrowserWindow | null = null;
  const windows = () => (window && !window.isDestroyed() ? [window] : []);
  const services = opts.services ?? createServices({ picker: nativePicker(dialog, () => windows()[0] ?? null) });
  const dispatcher = new Dispatcher(services, { exposeStacks: true, log });

  registerAppScheme(protocol);
  app.on('second-instance', () => {
    if (!window || window.isDestroyed()) return;
    if (window.isMinimized()) window.restore();
    window.focus();
  });
  app.on('web-contents-created', (_e, wc) => hardenWebContents(wc));
  app.on('window-all-closed', () => app.quit());

  let shutdown: 'no' | 'running' | 'done' = 'no';
  app.on('before-quit', (event) => {
    if (shutdown === 'done') return;
    event.preventDefault();
    if (shutdown === 'running') return;
    shutdown = 'running';
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, SHUTDOWN_TIMEOUT_MS).unref());
    void Promise.race([services.shutdown(), timeout])
      .catch((e: unknown) => log(`shutdown failed: ${(e as Error)?.message ?? String(e)}`))
      .finally(() => {
        shutdown = 'done';
        app.quit();
      });
  });

  await app.whenReady();
  hardenSession(session.defaultSession);
  serveRenderer(protocol, opts.rendererDir === undefined ? paths.rendererDir : opts.rendererDir);
  registerIpc(ipcMain, dispatcher, trustedSenderCheck(windows), log);
  forwardEvents(dispatcher, () => windows().map((w) => w.webContents));
  Menu.setApplicationMenu(Menu.buildFromTemplate(menuTemplate()));

  window = new BrowserWindow(windowOptions(opts.preload ?? paths.preload));
  window.once('ready-to-show', () => window?.show());
  await window.loadURL(APP_URL);
  return true;
}

if (process.versions.electron) {
  void runApp().catch((e: unknown) => {
    console.error(e);
    app.exit(1);
  });
}
