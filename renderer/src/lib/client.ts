// The renderer's only way to the backend: the contract's methods and events,
// over Electron's preload bridge (window.spillway) when there is one, else a
// WebSocket to /ws?token=… (the token comes from this page's URL, as printed
// by `spillway serve`). Results and events are validated against the contract.

import {
  SpillwayError,
  ServerFrame,
  WS_PATH,
  TOKEN_PARAM,
  parseEvent,
  parseResult,
  type SpillwayBridge,
  type EventName,
  type EventPayload,
  type MethodName,
  type MethodParamsInput,
  type MethodResult,
} from '../../../electron/common/contract.ts';

export type { SpillwayBridge };

export type ConnectionState = 'connecting' | 'open' | 'closed';

export interface Client {
  call<M extends MethodName>(method: M, params: MethodParamsInput<M>): Promise<MethodResult<M>>;
  on<E extends EventName>(event: E, listener: (payload: EventPayload<E>) => void): () => void;
  onConnection(listener: (state: ConnectionState) => void): () => void;
  readonly state: ConnectionState;
}

type Listener = (payload: unknown) => void;

class Listeners {
  private map = new Map<string, Set<Listener>>();
  add(event: string, l: Listener): () => void {
    let set = this.map.get(event);
    if (!set) this.map.set(event, (set = new Set()));
    set.add(l);
    return () => set.delete(l);
  }
  emit(event: string, payload: unknown): void {
    for (const l of this.map.get(event) ?? []) {
      try {
        l(payload);
      } catch (e) {
        console.error(`listener for ${event} failed`, e);
      }
    }
  }
}

function dispatch(listeners: Listeners, event: unknown, payload: unknown): void {
  const parsed = parseEvent(event, payload);
  if (parsed) listeners.emit(parsed.event, parsed.payload);
  else console.warn('dropped an event that breaks the contract', event);
}

export function bridgeClient(bridge: SpillwayBridge, eventNames: readonly EventName[]): Client {
  const listeners = new Listeners();
  for (const e of eventNames) bridge.on(e, (payload) => dispatch(listeners, e, payload));
  return {
    state: 'open',
    async call(method, params) {
      const outcome = await bridge.call(method, params);
      if (!outcome.ok) throw SpillwayError.fromWire(outcome.error);
      return parseResult(method, outcome.result);
    },
    on: (event, listener) => listeners.add(event, listener as Listener),
    onConnection: () => () => {},
  };
}

interface Pending {
  method: MethodName;
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

/** WebSocket transport; reconnects with backoff and fails in-flight calls with DISCONNECTED. */
export function socketClient(url: string, WebSocketImpl: typeof WebSocket = WebSocket): Client {
  const listeners = new Listeners();
  const connection = new Set<(s: ConnectionState) => void>();
  const pending = new Map<number, Pending>();
  const queue: string[] = [];
  let nextId = 1;
  let socket: WebSocket | null = null;
  let state: ConnectionState = 'connecting';
  let retryMs = 250;

  const setState = (s: ConnectionState) => {
    state = s;
    for (const l of connection) l(s);
  };

  const connect = () => {
    setState('connecting');
    const ws = new WebSocketImpl(url);
    socket = ws;
    ws.onopen = () => {
      retryMs = 250;
      setState('open');
      for (const frame of queue.splice(0)) ws.send(frame);
    };
    ws.onmessage = (ev) => {
      let frame: ServerFrame;
      try {
        frame = ServerFrame.parse(JSON.parse(String(ev.data)));
      } catch {
        console.warn('dropped a frame that breaks the contract');
        return;
      }
      if (frame.type === 'event') return dispatch(listeners, frame.event, frame.payload);
      const id = typeof frame.id === 'number' ? frame.id : Number(frame.id);
      const p = pending.get(id);
      if (!p) return;
      pending.delete(id);
      if (frame.type === 'error' || !frame.ok) return p.reject(SpillwayError.fromWire(frame.error));
      try {
        p.resolve(parseResult(p.method, frame.result));
      } catch (e) {
        p.reject(e);
      }
    };
    ws.onclose = () => {
      if (socket !== ws) return;
      socket = null;
      for (const [id, p] of pending) {
        pending.delete(id);
        p.reject(new SpillwayError('DISCONNECTED', `lost the connection to Spillway during ${p.method}; it reconnects on its own — try again`));
      }
      setState('closed');
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 5000);
    };
  };
  connect();

  return {
    get state() {
      return state;
    },
    call(method, params) {
      const id = nextId++;
      const frame = JSON.stringify({ type: 'call', id, method, params });
      return new Promise((resolve, reject) => {
        pending.set(id, { method, resolve: resolve as (v: unknown) => void, reject });
        if (socket && socket.readyState === WebSocketImpl.OPEN) socket.send(frame);
        else queue.push(frame);
      });
    },
    on: (event, listener) => listeners.add(event, listener as Listener),
    onConnection(l) {
      connection.add(l);
      return () => connection.delete(l);
    },
  };
}

/**
 * The socket address for a page served by `spillway serve`. The page normally carries no token (the
 * server traded it for a session cookie, which the socket sends too); one still in the query is passed on.
 */
export function socketUrl(location: Pick<Location, 'protocol' | 'host' | 'search'>): string {
  const token = new URLSearchParams(location.search).get(TOKEN_PARAM);
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}${WS_PATH}${token ? `?${TOKEN_PARAM}=${encodeURIComponent(token)}` : ''}`;
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
