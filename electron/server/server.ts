// Headless mode (`spillway serve`): HTTP serving the built renderer and the
// contract over a WebSocket at /ws. Bound to 127.0.0.1 unless told
// otherwise. Every request needs a session: the token in the printed URL
// (?token=…) is traded on first visit for an HttpOnly same-site cookie and
// the browser is sent on to the same address without it, so the token does
// not stay in the address bar or the history. A bind beyond loopback needs a
// password too (the login page posts it). On loopback binds the Host header
// must name this machine (DNS rebinding); the WebSocket upgrade also checks,
// when the browser sends an Origin, that it is this server's own. Scripts
// may give the token as ?token= or `Authorization: token …` on each request.

import { randomBytes } from 'node:crypto';
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
import { isLocalHostHeader, LoginLimiter, loginPage, passwordMatches, safeNext, Sessions, tokenMatches, type PasswordHash } from './auth.js';
import { Dispatcher } from './dispatch.js';
import { CONTENT_SECURITY_POLICY, readStaticFile } from './static.js';

export const LOGIN_PATH = '/login';
/** The login page posts its form to this server; every other page posts nowhere. */
const LOGIN_CSP = CONTENT_SECURITY_POLICY.replace("form-action 'none'", "form-action 'self'");
/** A login form is a few hundred bytes; anything larger is refused unread. */
const MAX_LOGIN_BODY = 8192;
/** Frames above MAX_FRAME_BYTES get a BAD_FRAME answer; above this, `ws` closes the connection (1009). */
const HARD_FRAME_LIMIT = 16 * MAX_FRAME_BYTES;
/** A client this far behind stops receiving events until it drains (it catches up with getMetrics). */
const MAX_BUFFERED_BYTES = 8 << 20;

export interface ServerOptions {
  services: SpillwayServices;
  /** Default 127.0.0.1. Anything else exposes the server to the network, and needs a password. */
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** The built renderer; null serves a placeholder page. */
  staticDir?: string | null;
  /** Default: 32 random bytes, hex. */
  token?: string;
  /** Required when host is not loopback (hashPassword in ./auth.ts). */
  password?: PasswordHash | null;
  /** Failed logins per address before each further one waits (default 5). */
  loginLimiter?: LoginLimiter;
  log?: (message: string) => void;
}

export interface RunningServer {
  host: string;
  port: number;
  token: string;
  /** The page URL, token included. */
  url: string;
  /** The cookie that carries a session (its name includes the port: two servers on one machine keep theirs apart). */
  sessionCookie: string;
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

function readBody(req: IncomingMessage, limit: number): Promise<string | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        resolve(null);
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', () => resolve(null));
  });
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const host = opts.host ?? '127.0.0.1';
  const loopback = isLoopback(host);
  const password = opts.password ?? null;
  if (!loopback && !password) {
    throw new Error(
      `listening on ${host} exposes Spillway to the network: set a password first ` +
        '(spillway serve --host H --password-stdin, or the SPILLWAY_PASSWORD environment variable)',
    );
  }
  const token = opts.token ?? newToken();
  const staticDir = opts.staticDir ?? null;
  const log = opts.log ?? (() => {});
  const dispatcher = new Dispatcher(opts.services, { exposeStacks: loopback, log });
  const sessions = new Sessions();
  const limiter = opts.loginLimiter ?? new LoginLimiter();
  let cookieName = 'spillway-session';

  const headerToken = (req: IncomingMessage): string | null => {
    const m = /^token\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    return m ? m[1] : null;
  };
  /** 'query' when the URL carries the token (to be traded for a cookie), 'session' otherwise. */
  const authorised = (req: IncomingMessage, url: URL): 'query' | 'session' | null => {
    if (tokenMatches(url.searchParams.get(TOKEN_PARAM), token)) return 'query';
    if (tokenMatches(headerToken(req), token)) return 'session';
    if (sessions.valid(cookieValue(req, cookieName))) return 'session';
    return null;
  };
  const hostAllowed = (req: IncomingMessage) => !loopback || isLocalHostHeader(req.headers.host);
  const sessionCookie = () => `${cookieName}=${sessions.create()}; HttpOnly; SameSite=Strict; Path=/`;

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
    const sendLogin = (status: number, message?: string, next?: string, extra: Record<string, string> = {}) =>
      send(status, loginPage({ passwordSet: password !== null, message, next }), { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': LOGIN_CSP, ...extra });
    if (!hostAllowed(req)) return send(403, 'forbidden: this server answers only to localhost, 127.0.0.1 and [::1]\n');
    const url = requestUrl(req);
    if (!url) return send(400, 'bad request\n');
    if (url.pathname === LOGIN_PATH) return login(req, url, send, sendLogin);
    const auth = authorised(req, url);
    if (!auth) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(401, 'unauthorised\n');
      return sendLogin(401, undefined, url.pathname + url.search);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n', { allow: 'GET, HEAD' });
    if (auth === 'query') {
      // The token leaves the address: the session cookie stands in for it from now on.
      url.searchParams.delete(TOKEN_PARAM);
      return send(302, '', { location: url.pathname + url.search, 'set-cookie': sessionCookie() });
    }
    const file = await readStaticFile(staticDir, url.pathname);
    if (!file) return send(404, 'not found\n');
    send(200, file.body, { 'content-type': file.contentType });
  }

  type Send = (status: number, body: string | Buffer, headers?: Record<string, string>) => void;
  type SendLogin = (status: number, message?: string, next?: string, extra?: Record<string, string>) => void;

  async function login(req: IncomingMessage, url: URL, send: Send, sendLogin: SendLogin): Promise<void> {
    if (req.method === 'GET' || req.method === 'HEAD') return sendLogin(200, undefined, safeNext(url.searchParams.get('next')));
    if (req.method !== 'POST') return send(405, 'method not allowed\n', { allow: 'GET, HEAD, POST' });
    const origin = req.headers.origin;
    if (origin !== undefined && !sameOrigin(origin, req.headers.host)) return send(403, 'forbidden: foreign origin\n');
    const address = req.socket.remoteAddress ?? 'unknown';
    const wait = limiter.waitMs(address);
    if (wait > 0) {
      const s = Math.ceil(wait / 1000);
      return sendLogin(429, `Too many failed attempts: wait ${s} s before trying again.`, undefined, { 'retry-after': String(s) });
    }
    const body = await readBody(req, MAX_LOGIN_BODY);
    if (body === null) return send(413, 'the login form is larger than expected\n');
    const form = new URLSearchParams(body);
    const given = form.get('password') ?? '';
    const next = safeNext(form.get('next'));
    const ok = tokenMatches(given, token) || (password !== null && (await passwordMatches(given, password)));
    if (!ok) {
      limiter.fail(address);
      log(`failed login from ${address}`);
      return sendLogin(401, password ? 'Wrong password.' : 'Wrong token.', next);
    }
    limiter.succeed(address);
    send(303, '', { location: next, 'set-cookie': sessionCookie() });
  }

  const wss = new WebSocketServer({ noServer: true, maxPayload: HARD_FRAME_LIMIT });

  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const refuse = (status: number, text: string) => {
      socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    if (!hostAllowed(req)) return refuse(403, 'Forbidden');
    const url = requestUrl(req);
    if (!url || url.pathname !== WS_PATH) return refuse(404, 'Not Found');
    if (!authorised(req, url)) return refuse(401, 'Unauthorized');
    const origin = req.headers.origin;
    if (origin !== undefined && !sameOrigin(origin, req.headers.host)) return refuse(403, 'Forbidden');
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
  cookieName = `spillway-session-${port}`;

  return {
    host,
    port,
    token,
    url: `http://${urlHost(host)}:${port}/?${TOKEN_PARAM}=${token}`,
    sessionCookie: cookieName,
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

function sameOrigin(origin: string, host: string | undefined): boolean {
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}

function badFrame(message: string): WireError {
  return toWireError(new SpillwayError('BAD_FRAME', message), false);
}
