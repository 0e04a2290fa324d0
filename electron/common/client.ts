// The UI side of the contract, whatever carries it: typed calls that reject
// with SpillwayError, typed events, and run subscriptions that catch up on
// missed metrics. Results and events are validated on arrival.
//
// Transports: `bridgeTransport(window.spillway)` in Electron, and
// `connectWebSocket(url)` in a browser tab (serve mode). No Node imports.

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

/** What a transport must do; outcomes never reject (transport failures come back as DISCONNECTED). */
export interface Transport {
  call(method: string, id: string, params: unknown): Promise<CallOutcome>;
  cancel(id: string): void;
  /** Every pushed event, unvalidated. Returns the unsubscribe function. */
  onEvent(listener: (event: string, payload: unknown) => void): () => void;
  close(): void;
}

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

  /** Listens to one event; payloads that break the contract are dropped. */
  on<E extends EventName>(event: E, listener: (payload: EventPayload<E>) => void): () => void {
    return this.transport.onEvent((name, payload) => {
      if (name !== event) return;
      const parsed = parseEvent(name, payload);
      if (parsed) listener(parsed.payload as EventPayload<E>);
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

/** ws(s)://host/ws?token=… for a page served at `pageUrl` (which carries the token). */
export function webSocketUrlFor(pageUrl: string): string {
  const u = new URL(pageUrl);
  const token = u.searchParams.get(TOKEN_PARAM) ?? '';
  const ws = new URL(WS_PATH, u);
  ws.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  ws.search = '';
  ws.searchParams.set(TOKEN_PARAM, token);
  return ws.toString();
}

/** Opens the WebSocket; rejects if it closes before opening (e.g. refused with 401). */
export function connectWebSocket(url: string, factory: WebSocketFactory): Promise<Transport> {
  const socket = factory(url);
  const pending = new Map<string, { method: string; resolve: (o: CallOutcome) => void }>();
  const listeners = new Set<(event: string, payload: unknown) => void>();
  const failAll = (error: WireError) => {
    for (const p of pending.values()) p.resolve({ ok: false, error });
    pending.clear();
  };

  socket.addEventListener('message', (ev) => {
    if (typeof ev.data !== 'string') return;
    let frame: ServerFrame;
    try {
      const parsed = ServerFrame.safeParse(JSON.parse(ev.data));
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
    if (id === null) return;
    const p = pending.get(id);
    if (!p) return;
    pending.delete(id);
    if (frame.type === 'error' || !frame.ok) p.resolve({ ok: false, error: frame.error });
    else p.resolve({ ok: true, result: frame.result });
  });

  const transport: Transport = {
    call(method, id, params) {
      return new Promise((resolve) => {
        if (socket.readyState !== WS_OPEN) {
          resolve({ ok: false, error: { name: 'SpillwayError', code: 'DISCONNECTED', message: 'the connection to the backend is closed' } });
          return;
        }
        pending.set(id, { method, resolve });
        socket.send(JSON.stringify({ type: 'call', id, method, params }));
      });
    },
    cancel(id) {
      if (pending.has(id) && socket.readyState === WS_OPEN) socket.send(JSON.stringify({ type: 'cancel', id }));
    },
    onEvent(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close() {
      socket.close(1000, 'client closed');
    },
  };

  return new Promise((resolve, reject) => {
    let opened = false;
    socket.addEventListener('open', () => {
      opened = true;
      resolve(transport);
    });
    socket.addEventListener('error', () => {
      if (!opened) reject(new SpillwayError('DISCONNECTED', `cannot connect to ${url.replace(/token=[^&]*/, 'token=…')}`));
    });
    socket.addEventListener('close', () => {
      failAll({ name: 'SpillwayError', code: 'DISCONNECTED', message: 'the connection to the backend closed' });
      if (!opened) reject(new SpillwayError('DISCONNECTED', 'the backend refused the connection'));
    });
  });
}
