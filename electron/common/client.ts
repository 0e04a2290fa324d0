// The UI side of the contract, whatever carries it, and the renderer's only
// way to the backend: typed calls that reject with SpillwayError, typed
// events, the connection's state, and run subscriptions that catch up on
// missed metrics. Results and events are validated on arrival.
//
// Transports: `bridgeTransport(window.spillway)` in Electron, and a WebSocket
// in a browser tab (serve mode): `webSocketTransport(url)` reconnects with
// backoff (the renderer's), `connectWebSocket(url)` answers once it is open
// or refused (tests, tools). No Node imports.

import {
  BRIDGE_KEY,
  CallOutcome,
  parseEvent,
  parseResult,
  ServerFrame,
  SpillwayError,
  TOKEN_PARAM,
  WS_PATH,
  type EvalMetric,
  type EventName,
  type EventPayload,
  type MethodName,
  type MethodParamsInput,
  type MethodResult,
  type RunStatus,
  type SpillwayBridge,
  type StepMetric,
  type WireError,
} from './contract.js';

export type ConnectionState = 'connecting' | 'open' | 'closed';

/** What a transport must do; outcomes never reject (transport failures come back as DISCONNECTED). */
export interface Transport {
  call(method: string, id: string, params: unknown): Promise<CallOutcome>;
  cancel(id: string): void;
  /** Every pushed event, unvalidated. Returns the unsubscribe function. */
  onEvent(listener: (event: string, payload: unknown) => void): () => void;
  close(): void;
  readonly state: ConnectionState;
  /** Changes of state; returns the unsubscribe function. */
  onState(listener: (s: ConnectionState) => void): () => void;
}

/** What the renderer's state classes use of a client (tests give them fakes of this). */
export type Client = Pick<SpillwayClient, 'call' | 'on' | 'onConnection' | 'state'>;

export interface CallOptions {
  signal?: AbortSignal;
}

export interface RunHandlers {
  onStep?: (m: StepMetric) => void;
  onEval?: (m: EvalMetric) => void;
  onStatus?: (s: { status: RunStatus; stepsDone: number; error: string | null }) => void;
  onLog?: (l: EventPayload<'log'>) => void;
}

let callCounter = 0;
function nextCallId(): string {
  callCounter = (callCounter + 1) % Number.MAX_SAFE_INTEGER;
  return `c${callCounter}-${Math.random().toString(36).slice(2, 8)}`;
}

export class SpillwayClient {
  constructor(readonly transport: Transport) {}

  get state(): ConnectionState {
    return this.transport.state;
  }

  /** Listens to the connection's state (connecting, open, closed); returns the unsubscribe function. */
  onConnection(listener: (s: ConnectionState) => void): () => void {
    return this.transport.onState(listener);
  }

  /** Calls `method`; rejects with SpillwayError (BAD_REQUEST, NOT_FOUND, CANCELLED, ...). */
  async call<M extends MethodName>(method: M, params: MethodParamsInput<M>, opts: CallOptions = {}): Promise<MethodResult<M>> {
    if (opts.signal?.aborted) throw new SpillwayError('CANCELLED', `${method} was cancelled`);
    const id = nextCallId();
    const onAbort = () => this.transport.cancel(id);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const outcome = await this.transport.call(method, id, params);
      if (!outcome.ok) throw SpillwayError.fromWire(outcome.error);
      return parseResult(method, outcome.result);
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Listens to one event; payloads that break the contract are dropped, and a listener that throws harms no other. */
  on<E extends EventName>(event: E, listener: (payload: EventPayload<E>) => void): () => void {
    return this.transport.onEvent((name, payload) => {
      if (name !== event) return;
      const parsed = parseEvent(name, payload);
      if (!parsed) {
        console.warn(`dropped a ${name} event that breaks the contract`);
        return;
      }
      try {
        listener(parsed.payload as EventPayload<E>);
      } catch (e) {
        console.error(`a listener of ${name} failed`, e);
      }
    });
  }

  /**
   * Watches one run: first every step and eval after `sinceStep` (from
   * getMetrics), then live events, each step delivered once and in order even
   * when live events race the catch-up. Returns the unsubscribe function.
   */
  async subscribe(runId: string, sinceStep: number, handlers: RunHandlers): Promise<() => void> {
    let lastStep = sinceStep;
    let lastEval = sinceStep;
    let live = false;
    const pending: (() => void)[] = [];
    const deliverStep = (m: StepMetric) => {
      if (m.step <= lastStep) return;
      lastStep = m.step;
      handlers.onStep?.(m);
    };
    const deliverEval = (m: EvalMetric) => {
      if (m.step <= lastEval) return;
      lastEval = m.step;
      handlers.onEval?.(m);
    };
    const whenLive = (f: () => void) => (live ? f() : pending.push(f));
    const offs = [
      this.on('stepMetrics', (m) => m.runId === runId && whenLive(() => deliverStep(m))),
      this.on('evalMetrics', (m) => m.runId === runId && whenLive(() => deliverEval(m))),
      this.on('runStatus', (s) => s.runId === runId && whenLive(() => handlers.onStatus?.(s))),
      this.on('log', (l) => l.runId === runId && whenLive(() => handlers.onLog?.(l))),
    ];
    const unsubscribe = () => offs.forEach((off) => off());
    try {
      for (;;) {
        const page = await this.call('getMetrics', { runId, sinceStep: lastStep });
        for (const e of page.evals) deliverEval(e);
        for (const s of page.steps) deliverStep(s);
        if (page.steps.length === 0 || page.latestStep <= lastStep) break;
      }
    } catch (e) {
      unsubscribe();
      throw e;
    }
    live = true;
    for (const f of pending.splice(0)) f();
    return unsubscribe;
  }

  close(): void {
    this.transport.close();
  }
}

// ---------------------------------------------------------------------------
// Electron: over the preload's bridge

/** The bridge the preload exposed, if this page runs inside the Electron shell. */
export function findBridge(): SpillwayBridge | null {
  const b = (globalThis as Record<string, unknown>)[BRIDGE_KEY];
  return b && typeof b === 'object' ? (b as SpillwayBridge) : null;
}

export function bridgeTransport(bridge: SpillwayBridge, eventNames: readonly EventName[]): Transport {
  const listeners = new Set<(event: string, payload: unknown) => void>();
  let offs: (() => void)[] = [];
  let closed = false;
  const attach = () => {
    offs = eventNames.map((name) => bridge.on(name, (payload) => listeners.forEach((l) => l(name, payload))));
  };
  return {
    async call(method, id, params) {
      if (closed) return { ok: false, error: { name: 'SpillwayError', code: 'DISCONNECTED', message: 'this client is closed' } };
      try {
        const outcome = CallOutcome.safeParse(await bridge.call(method, params, id));
        if (outcome.success) return outcome.data as CallOutcome;
        return { ok: false, error: { name: 'SpillwayError', code: 'BAD_FRAME', message: `malformed answer to ${method}` } };
      } catch (e) {
        return { ok: false, error: { name: 'SpillwayError', code: 'DISCONNECTED', message: (e as Error)?.message ?? String(e) } };
      }
    },
    cancel: (id) => bridge.cancel(id),
    onEvent(listener) {
      if (listeners.size === 0) attach();
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
        if (listeners.size === 0) {
          offs.forEach((off) => off());
          offs = [];
        }
      };
    },
    close() {
      closed = true;
      listeners.clear();
      offs.forEach((off) => off());
      offs = [];
    },
    // The bridge lives as long as the window: always open.
    get state() {
      return closed ? 'closed' : 'open';
    },
    onState: () => () => {},
  };
}

// ---------------------------------------------------------------------------
// WebSocket (serve mode)

/** The part of the WebSocket API used here: the browser's and the `ws` package's both fit. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open' | 'close' | 'error' | 'message', listener: (ev: { data?: unknown; code?: number }) => void): void;
}
export type WebSocketFactory = (url: string) => WebSocketLike;

const WS_OPEN = 1;

/**
 * ws(s)://host/ws for a page served by `spillway serve`. The page normally carries no token (the server
 * traded it for a session cookie, which the socket sends too); one still in its address is passed on.
 */
export function webSocketUrlFor(pageUrl: string): string {
  const u = new URL(pageUrl);
  const token = u.searchParams.get(TOKEN_PARAM);
  const ws = new URL(WS_PATH, u);
  ws.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  ws.search = '';
  if (token) ws.searchParams.set(TOKEN_PARAM, token);
  return ws.toString();
}

const DISCONNECTED: WireError = { name: 'SpillwayError', code: 'DISCONNECTED', message: 'the connection to the backend closed' };

/**
 * A WebSocket transport. With `reconnect`, a closed socket is opened again with backoff (250 ms
 * doubling to 5 s), and calls made while it is down wait for it; calls in flight when it closes
 * fail with DISCONNECTED. Without, it stays closed.
 */
export function webSocketTransport(url: string, factory: WebSocketFactory, o: { reconnect?: boolean } = {}): Transport {
  const pending = new Map<string, { method: string; resolve: (o: CallOutcome) => void }>();
  const listeners = new Set<(event: string, payload: unknown) => void>();
  const stateListeners = new Set<(s: ConnectionState) => void>();
  const queue: string[] = [];
  let socket: WebSocketLike | null = null;
  let state: ConnectionState = 'connecting';
  let retryMs = 250;
  let closedByUs = false;
  const setState = (s: ConnectionState) => {
    state = s;
    for (const l of stateListeners) l(s);
  };

  const onMessage = (data: unknown) => {
    if (typeof data !== 'string') return;
    let frame: ServerFrame;
    try {
      const parsed = ServerFrame.safeParse(JSON.parse(data));
      if (!parsed.success) return;
      frame = parsed.data;
    } catch {
      return;
    }
    if (frame.type === 'event') {
      listeners.forEach((l) => l(frame.event, frame.payload));
      return;
    }
    const id = frame.id === null ? null : String(frame.id);
    const p = id === null ? undefined : pending.get(id);
    if (!p || id === null) return;
    pending.delete(id);
    if (frame.type === 'error' || !frame.ok) p.resolve({ ok: false, error: frame.error });
    else p.resolve({ ok: true, result: frame.result });
  };

  const connect = () => {
    setState('connecting');
    const ws = factory(url);
    socket = ws;
    ws.addEventListener('open', () => {
      retryMs = 250;
      setState('open');
      for (const frame of queue.splice(0)) ws.send(frame);
    });
    ws.addEventListener('message', (ev) => onMessage(ev.data));
    // A refused or broken connection ends with 'close', which says what matters; its 'error' adds nothing.
    ws.addEventListener('error', () => {});
    ws.addEventListener('close', () => {
      if (socket !== ws) return;
      socket = null;
      for (const p of pending.values()) p.resolve({ ok: false, error: { ...DISCONNECTED, message: `lost the connection to Spillway during ${p.method}; ${o.reconnect ? 'it reconnects on its own — try again' : 'the connection is closed'}` } });
      pending.clear();
      queue.length = 0;
      setState('closed');
      if (!o.reconnect || closedByUs) return;
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 5000);
    });
  };
  connect();

  return {
    call(method, id, params) {
      return new Promise((resolve) => {
        const frame = JSON.stringify({ type: 'call', id, method, params });
        if (socket?.readyState === WS_OPEN) {
          pending.set(id, { method, resolve });
          socket.send(frame);
        } else if (o.reconnect && !closedByUs) {
          pending.set(id, { method, resolve });
          queue.push(frame);
        } else {
          resolve({ ok: false, error: { ...DISCONNECTED, message: 'the connection to the backend is closed' } });
        }
      });
    },
    cancel(id) {
      if (pending.has(id) && socket?.readyState === WS_OPEN) socket.send(JSON.stringify({ type: 'cancel', id }));
    },
    onEvent(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close() {
      closedByUs = true;
      socket?.close(1000, 'client closed');
    },
    get state() {
      return state;
    },
    onState(listener) {
      stateListeners.add(listener);
      return () => stateListeners.delete(listener);
    },
  };
}

/** Opens a WebSocket transport (no reconnection); rejects if it closes before opening (e.g. refused with 401). */
export function connectWebSocket(url: string, factory: WebSocketFactory): Promise<Transport> {
  return new Promise((resolve, reject) => {
    const transport = webSocketTransport(url, factory);
    const off = transport.onState((s) => {
      if (s === 'connecting') return;
      off();
      if (s === 'open') resolve(transport);
      else reject(new SpillwayError('DISCONNECTED', `cannot connect to ${url.replace(/token=[^&]*/, 'token=…')}: the backend refused the connection`));
    });
  });
}

/** A human sentence for any error a call may throw, with what to do when we know. */
export function describeError(e: unknown): string {
  if (e instanceof SpillwayError) {
    const hint: Partial<Record<SpillwayError['code'], string>> = {
      UNAVAILABLE: 'This part of the backend is not running; restart Spillway or check its log.',
      DISCONNECTED: 'Check that `spillway serve` (or the app) is still running.',
      FORBIDDEN: 'Open the exact address `spillway serve` printed (it carries the access token).',
      BAD_RESULT: 'The backend answered something unexpected: a bug — please report it.',
    };
    // A path outside the allowed folders is FORBIDDEN too, and its message already says what to do.
    const extra = e.name === 'OutsideAllowedFolders' ? undefined : hint[e.code];
    return extra ? `${e.message}. ${extra}` : e.message;
  }
  return e instanceof Error ? e.message : String(e);
}
