// Headless mode (`spillway serve`): HTTP serving the built renderer and the
// contract over a WebSocket at /ws. Bound to 127.0.0.1 unless told
// otherwise; every request needs the token, given in the page URL
// (?token=…) and then remembered in an HttpOnly same-site cookie so the
// page's assets load too. The WebSocket upgrade checks the same token and,
// when the browser sends an Origin, that it is this server's own.

import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';

import {
  ClientFrame,
  MAX_FRAME_BYTES,
  SpillwayError,
  TOKEN_PARAM,
  toWireError,
  WS_PATH,
  type ServerFrame,
  type WireError,
} from '../common/contract.js';
import type { SpillwayServices } from '../services/api.js';
import { Dispatcher } from './dispatch.js';
import { CONTENT_SECURITY_POLICY, readStaticFile } from './static.js';

export const TOKEN_COOKIE = 'spillway_token';
/** Frames above MAX_FRAME_BYTES get a BAD_FRAME answer; above this, `ws` closes the connection (1009). */
const HARD_FRAME_LIMIT = 16 * MAX_FRAME_BYTES;
/** A client this far behind stops receiving events until it drains (it catches up with getMetrics). */
const MAX_BUFFERED_BYTES = 8 << 20;

export interface ServerOptions {
  services: SpillwayServices;
  /** Default 127.0.0.1. Anything else exposes the server to the network. */
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** The built renderer; null serves a placeholder page. */
  staticDir?: string | null;
  /** Default: 32 random bytes, hex. */
  token?: string;
  log?: (message: string) => void;
}

export interface RunningServer {
  host: string;
  port: number;
  token: string;
  /** The page URL, token included. */
  url: string;
  /** Number of open WebSocket connections. */
  connections(): number;
  /** Closes every connection and the listener. Does not shut the services down. */
  close(): Promise<void>;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export function newToken(): string {
  return randomBytes(32).toString('hex');
}

function tokenMatches(given: string | null | undefined, token: string): boolean {
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookieValue(req: IncomingMessage, name: string): string | null {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

function requestUrl(req: IncomingMessage): URL | null {
  try {
    return new URL(req.url ?? '/', 'http://localhost');
  } catch {
    return null;
  }
}

function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const host = opts.host ?? '127.0.0.1';
  const token = opts.token ?? newToken();
  const staticDir = opts.staticDir ?? null;
  const log = opts.log ?? (() => {});
  const dispatcher = new Dispatcher(opts.services, { exposeStacks: isLoopback(host), log });

  const authorised = (req: IncomingMessage, url: URL): 'query' | 'cookie' | null => {
    if (tokenMatches(url.searchParams.get(TOKEN_PARAM), token)) return 'query';
    if (tokenMatches(cookieValue(req, TOKEN_COOKIE), token)) return 'cookie';
    return null;
  };

  const http = createServer((req, res) => void serveHttp(req, res));

  async function serveHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const send = (status: number, body: string | Buffer, headers: Record<string, string> = {}) => {
      res.writeHead(status, {
        'content-type': 'text/plain; charset=utf-8',
        'content-security-policy': CONTENT_SECURITY_POLICY,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
        'cache-control': 'no-store',
        ...headers,
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    const url = requestUrl(req);
    if (!url) return send(400, 'bad request\n');
    const auth = authorised(req, url);
    if (!auth) return send(401, 'unauthorised: open the URL printed by `spillway serve` (it carries the token)\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n', { allow: 'GET, HEAD' });
    const file = await readStaticFile(staticDir, url.pathname);
    if (!file) return send(404, 'not found\n');
    const headers: Record<string, string> = { 'content-type': file.contentType };
    if (auth === 'query') headers['set-cookie'] = `${TOKEN_COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/`;
    send(200, file.body, headers);
  }

  const wss = new WebSocketServer({ noServer: true, maxPayload: HARD_FRAME_LIMIT });

  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const refuse = (status: number, text: string) => {
      socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    const url = requestUrl(req);
    if (!url || url.pathname !== WS_PATH) return refuse(404, 'Not Found');
    if (!authorised(req, url)) return refuse(401, 'Unauthorized');
    const origin = req.headers.origin;
    if (origin !== undefined) {
      let sameOrigin = false;
      try {
        sameOrigin = new URL(origin).host === req.headers.host;
      } catch {
        sameOrigin = false;
      }
      if (!sameOrigin) return refuse(403, 'Forbidden');
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  wss.on('connection', (ws: WebSocket) => {
    const inflight = new Map<string, AbortController>();
    const sendFrame = (frame: ServerFrame) => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame));
    };
    const frameError = (id: string | number | null, error: WireError) => sendFrame({ type: 'error', id, error });

    ws.on('message', (data: RawData, isBinary: boolean) => {
      const size = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : (data as Buffer | ArrayBuffer).byteLength;
      if (isBinary) return frameError(null, badFrame('binary frames are not part of the contract; send JSON text'));
      if (size > MAX_FRAME_BYTES) return frameError(null, badFrame(`frame of ${size} bytes is larger than the ${MAX_FRAME_BYTES}-byte limit`));
      let json: unknown;
      try {
        json = JSON.parse(Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(data as Buffer[]).toString('utf8'));
      } catch {
        return frameError(null, badFrame('frame is not valid JSON'));
      }
      const parsed = ClientFrame.safeParse(json);
      if (!parsed.success) {
        const maybeId = (json as { id?: unknown } | null)?.id;
        const id = typeof maybeId === 'string' || (typeof maybeId === 'number' && Number.isInteger(maybeId) && maybeId >= 0) ? maybeId : null;
        return frameError(id, badFrame('frame must be {type:"call", id, method, params} or {type:"cancel", id}'));
      }
      const frame = parsed.data;
      const key = String(frame.id);
      if (frame.type === 'cancel') {
        inflight.get(key)?.abort();
        return;
      }
      if (inflight.has(key)) return frameError(frame.id, badFrame(`call id ${key} is already in flight`));
      const ac = new AbortController();
      inflight.set(key, ac);
      void dispatcher.handle(frame.method, frame.params, ac.signal).then((outcome) => {
        inflight.delete(key);
        sendFrame(outcome.ok ? { type: 'result', id: frame.id, ok: true, result: outcome.result } : { type: 'result', id: frame.id, ok: false, error: outcome.error });
      });
    });
    ws.on('close', () => {
      for (const ac of inflight.values()) ac.abort();
      inflight.clear();
    });
    ws.on('error', (e) => log(`websocket error: ${e.message}`));
  });

  const offEvents = dispatcher.onEvent((e) => {
    const text = JSON.stringify({ type: 'event', event: e.event, payload: e.payload } satisfies ServerFrame);
    for (const client of wss.clients) {
      if (client.readyState === client.OPEN && client.bufferedAmount < MAX_BUFFERED_BYTES) client.send(text);
    }
  });

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(opts.port ?? 0, host, () => {
      http.off('error', reject);
      resolve();
    });
  });
  const port = (http.address() as AddressInfo).port;

  return {
    host,
    port,
    token,
    url: `http://${urlHost(host)}:${port}/?${TOKEN_PARAM}=${token}`,
    connections: () => wss.clients.size,
    async close() {
      offEvents();
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

function badFrame(message: string): WireError {
  return toWireError(new SpillwayError('BAD_FRAME', message), false);
}
