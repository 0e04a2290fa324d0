// An in-memory stand-in for the `electron` module (which cannot run here):
// ipcMain and ipcRenderer wired together, windows with webContents, app
// events, session, protocol, Menu and contextBridge. Payloads cross through
// structuredClone, as they do over real IPC.
import { EventEmitter } from 'node:events';
import { EventLog } from '../../helpers/events.js';

type MainHandler = (event: unknown, ...args: unknown[]) => unknown;

let nextWebContentsId = 1;

export class FakeWebContents extends EventEmitter {
  readonly id = nextWebContentsId++;
  url = '';
  destroyed = false;
  /** Listeners registered by the renderer side (ipcRenderer.on). */
  readonly renderer = new EventEmitter();
  windowOpenHandler: ((details: { url: string }) => { action: string }) | null = null;
  sent: { channel: string; payload: unknown }[] = [];

  send(channel: string, payload: unknown): void {
    this.sent.push({ channel, payload });
    this.renderer.emit(channel, { sender: this }, structuredClone(payload));
  }
  isDestroyed(): boolean {
    return this.destroyed;
  }
  setWindowOpenHandler(h: (details: { url: string }) => { action: string }): void {
    this.windowOpenHandler = h;
  }
}

export class FakeBrowserWindow extends EventEmitter {
  readonly webContents = new FakeWebContents();
  minimized = false;
  focused = 0;
  shown = false;
  constructor(readonly options: Record<string, unknown>) {
    super();
    state.windows.push(this);
    app.emit('web-contents-created', {}, this.webContents);
  }
  async loadURL(url: string): Promise<void> {
    this.webContents.url = url;
    this.emit('ready-to-show');
  }
  isDestroyed(): boolean {
    return this.webContents.destroyed;
  }
  isMinimized(): boolean {
    return this.minimized;
  }
  restore(): void {
    this.minimized = false;
  }
  focus(): void {
    this.focused++;
  }
  show(): void {
    this.shown = true;
  }
}

export const state = {
  handlers: new Map<string, MainHandler>(),
  mainListeners: new EventEmitter(),
  windows: [] as FakeBrowserWindow[],
  exposed: {} as Record<string, unknown>,
  singleInstanceLock: true,
  quitCalls: 0,
  quitted: false,
  /** One entry per time the app quit: tests await it. */
  quits: new EventLog<'quit'>(),
  exitCode: null as number | null,
  headersListener: null as null | ((details: { responseHeaders?: Record<string, string[]> }, cb: (r: { responseHeaders: Record<string, string[]> }) => void) => void),
  permissionHandler: null as null | ((wc: unknown, permission: string, cb: (granted: boolean) => void) => void),
  schemes: [] as unknown[],
  protocolHandlers: new Map<string, (req: { url: string }) => Promise<Response>>(),
  menu: null as unknown,
  /** The webContents the module-level ipcRenderer (used by preload.ts) speaks for. */
  currentRenderer: null as FakeWebContents | null,
  /** What the next native dialogs answer (a path, or null: cancelled), and what they were asked. */
  dialogAnswers: [] as (string | null)[],
  dialogCalls: [] as { kind: 'open' | 'save'; parent: unknown; options: Record<string, unknown> }[],
};

class FakeApp extends EventEmitter {
  requestSingleInstanceLock(): boolean {
    return state.singleInstanceLock;
  }
  quit(): void {
    state.quitCalls++;
    let prevented = false;
    this.emit('before-quit', { preventDefault: () => (prevented = true) });
    if (!prevented) {
      state.quitted = true;
      state.quits.push('quit');
    }
  }
  exit(code: number): void {
    state.exitCode = code;
  }
  whenReady(): Promise<void> {
    return Promise.resolve();
  }
}

export const app = new FakeApp();

export function resetElectron(): void {
  state.handlers.clear();
  state.mainListeners.removeAllListeners();
  state.windows = [];
  state.exposed = {};
  state.singleInstanceLock = true;
  state.quitCalls = 0;
  state.quitted = false;
  state.quits = new EventLog();
  state.exitCode = null;
  state.headersListener = null;
  state.permissionHandler = null;
  state.schemes = [];
  state.protocolHandlers.clear();
  state.menu = null;
  state.currentRenderer = null;
  state.dialogAnswers = [];
  state.dialogCalls = [];
  app.removeAllListeners();
}

export const ipcMain = {
  handle(channel: string, handler: MainHandler): void {
    if (state.handlers.has(channel)) throw new Error(`Attempted to register a second handler for '${channel}'`);
    state.handlers.set(channel, handler);
  },
  removeHandler(channel: string): void {
    state.handlers.delete(channel);
  },
  on(channel: string, listener: (...args: unknown[]) => void) {
    state.mainListeners.on(channel, listener);
    return ipcMain;
  },
  removeListener(channel: string, listener: (...args: unknown[]) => void) {
    state.mainListeners.removeListener(channel, listener);
    return ipcMain;
  },
};

/** The renderer side of one webContents; `frameUrl` fakes the sending frame's URL. */
export function fakeIpcRenderer(wc: FakeWebContents, frameUrl?: string) {
  const event = () => ({ sender: wc, senderFrame: { url: frameUrl ?? wc.url } });
  const r = {
    async invoke(channel: string, ...args: unknown[]): Promise<unknown> {
      const h = state.handlers.get(channel);
      if (!h) throw new Error(`Error invoking remote method '${channel}': Error: No handler registered for '${channel}'`);
      const out = await h(event(), ...structuredClone(args));
      return structuredClone(out);
    },
    send(channel: string, ...args: unknown[]): void {
      state.mainListeners.emit(channel, event(), ...structuredClone(args));
    },
    on(channel: string, listener: (...args: unknown[]) => void) {
      wc.renderer.on(channel, listener);
      return r;
    },
    removeListener(channel: string, listener: (...args: unknown[]) => void) {
      wc.renderer.removeListener(channel, listener);
      return r;
    },
  };
  return r;
}

const defaultRenderer = new FakeWebContents();
export const ipcRenderer = {
  invoke: (channel: string, ...args: unknown[]) => fakeIpcRenderer(state.currentRenderer ?? defaultRenderer).invoke(channel, ...args),
  send: (channel: string, ...args: unknown[]) => fakeIpcRenderer(state.currentRenderer ?? defaultRenderer).send(channel, ...args),
  on: (channel: string, l: (...args: unknown[]) => void) => fakeIpcRenderer(state.currentRenderer ?? defaultRenderer).on(channel, l),
  removeListener: (channel: string, l: (...args: unknown[]) => void) =>
    fakeIpcRenderer(state.currentRenderer ?? defaultRenderer).removeListener(channel, l),
};

export const contextBridge = {
  exposeInMainWorld(key: string, api: unknown): void {
    state.exposed[key] = api;
  },
};

export const session = {
  defaultSession: {
    webRequest: {
      onHeadersReceived(listener: NonNullable<typeof state.headersListener>) {
        state.headersListener = listener;
      },
    },
    setPermissionRequestHandler(h: NonNullable<typeof state.permissionHandler>) {
      state.permissionHandler = h;
    },
  },
};

export const protocol = {
  registerSchemesAsPrivileged(schemes: unknown[]) {
    state.schemes = schemes;
  },
  handle(scheme: string, handler: (req: { url: string }) => Promise<Response>) {
    state.protocolHandlers.set(scheme, handler);
  },
};

export const Menu = {
  buildFromTemplate: (template: unknown[]) => ({ template }),
  setApplicationMenu: (menu: unknown) => {
    state.menu = menu;
  },
};

/** The native dialogs, answering from state.dialogAnswers (two-argument form: parent window first). */
export const dialog = {
  async showOpenDialog(...args: unknown[]) {
    const [parent, options] = args.length > 1 ? args : [null, args[0]];
    state.dialogCalls.push({ kind: 'open', parent, options: options as Record<string, unknown> });
    const answer = state.dialogAnswers.shift() ?? null;
    return { canceled: answer === null, filePaths: answer === null ? [] : [answer] };
  },
  async showSaveDialog(...args: unknown[]) {
    const [parent, options] = args.length > 1 ? args : [null, args[0]];
    state.dialogCalls.push({ kind: 'save', parent, options: options as Record<string, unknown> });
    const answer = state.dialogAnswers.shift() ?? null;
    return { canceled: answer === null, filePath: answer ?? undefined };
  },
};

export const electronModule = {
  dialog,
  app,
  BrowserWindow: FakeBrowserWindow,
  ipcMain,
  ipcRenderer,
  contextBridge,
  session,
  protocol,
  Menu,
};
