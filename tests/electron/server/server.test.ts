// What only the headless server does: the token on HTTP and on the
// WebSocket upgrade, static files, frames that are not calls, and the
// `spillway serve` command.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';

import { connectWebSocket, SpillwayClient, webSocketUrlFor } from '../../../electron/common/client.js';
import { MAX_FRAME_BYTES, SpillwayError, type ServerFrame } from '../../../electron/common/contract.js';
import { exposureWarning, serveOptionsFromArgs, startServe } from '../../../electron/server/serve-command.js';
import { hashPassword } from '../../../electron/server/auth.js';
import { isLoopback, startServer, type RunningServer } from '../../../electron/server/server.js';
import { CONTENT_SECURITY_POLICY } from '../../../electron/server/static.js';
import { createServices } from '../../../electron/services/api.js';
import { EventLog } from '../../helpers/events.js';
import { FakeRuns } from '../common/fake-runs.js';
import { wsFactory } from './ws-helpers.js';

/** A raw `ws` socket that collects server frames. */
async function rawSocket(url: string, headers: Record<string, string> = {}) {
  const ws = new WebSocket(url, { headers });
  const frames = new EventLog<ServerFrame>();
  ws.on('message', (d) => frames.push(JSON.parse(d.toString())));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
  const next = async (n: number) => {
    await frames.until((f) => f.length >= n);
    return frames[n - 1];
  };
  return { ws, frames, next };
}

describe('headless server', () => {
  let runs: FakeRuns;
  let server: RunningServer;
  let staticDir: string;
  const base = () => `http://127.0.0.1:${server.port}`;
  const wsUrl = (token = server.token) => `ws://127.0.0.1:${server.port}/ws?token=${token}`;

  beforeEach(async () => {
    staticDir = await mkdtemp(path.join(os.tmpdir(), 'spillway-static-'));
    await writeFile(path.join(staticDir, 'index.html'), '<!doctype html><title>gui</title><script src="/assets/app.js"></script>');
    await mkdir(path.join(staticDir, 'assets'));
    await writeFile(path.join(staticDir, 'assets', 'app.js'), 'console.log(1)');
    runs = new FakeRuns();
    server = await startServer({ services: createServices({ runs }), staticDir });
  });
  afterEach(async () => {
    await server.close();
    await rm(staticDir, { recursive: true, force: true });
  });

  it('binds 127.0.0.1 on a random port and prints a URL carrying a fresh random token', async () => {
    expect(server.host).toBe('127.0.0.1');
    expect(server.port).toBeGreaterThan(0);
    expect(server.token).toMatch(/^[0-9a-f]{64}$/);
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/?token=${server.token}`);
    const other = await startServer({ services: createServices({ runs }) });
    expect(other.token).not.toBe(server.token);
    await other.close();
  });

  describe('HTTP', () => {
    it('refuses requests without the token, or with a wrong one, with 401', async () => {
      expect((await fetch(`${base()}/`)).status).toBe(401);
      expect((await fetch(`${base()}/?token=${'0'.repeat(64)}`)).status).toBe(401);
      expect((await fetch(`${base()}/?token=short`)).status).toBe(401);
      expect((await fetch(`${base()}/assets/app.js`)).status).toBe(401);
    });

    it('trades the token in the URL for an HttpOnly session cookie and sends the browser on without it', async () => {
      const first = await fetch(`${server.url}&tab=2`, { redirect: 'manual' });
      expect(first.status).toBe(302);
      expect(first.headers.get('location')).toBe('/?tab=2');
      const cookie = first.headers.get('set-cookie')!;
      expect(cookie).toMatch(new RegExp(`^${server.sessionCookie}=[0-9a-f]{64}; HttpOnly; SameSite=Strict; Path=/$`));
      expect(cookie).not.toContain(server.token);
      const session = cookie.split(';')[0];
      const page = await fetch(`${base()}/`, { headers: { cookie: session } });
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<title>gui</title>');
      expect(page.headers.get('content-security-policy')).toBe(CONTENT_SECURITY_POLICY);
      expect(page.headers.get('content-type')).toMatch(/^text\/html/);
      const asset = await fetch(`${base()}/assets/app.js`, { headers: { cookie: session } });
      expect(asset.status).toBe(200);
      expect(asset.headers.get('content-type')).toMatch(/^text\/javascript/);
      // A made-up session, or another port's cookie name, opens nothing.
      expect((await fetch(`${base()}/`, { headers: { cookie: `${server.sessionCookie}=${'a'.repeat(64)}` } })).status).toBe(401);
      expect((await fetch(`${base()}/`, { headers: { cookie: `spillway-session-1=${session.split('=')[1]}` } })).status).toBe(401);
    });

    it('accepts the token in an Authorization header, for scripts', async () => {
      expect((await fetch(`${base()}/`, { headers: { authorization: `token ${server.token}` } })).status).toBe(200);
      expect((await fetch(`${base()}/`, { headers: { authorization: `token ${'0'.repeat(64)}` } })).status).toBe(401);
    });

    it('answers 404 outside the static folder and 405 for other methods', async () => {
      const h = { authorization: `token ${server.token}` };
      expect((await fetch(`${base()}/missing.js`, { headers: h })).status).toBe(404);
      expect((await fetch(`${base()}/..%2f..%2f..%2fetc%2fpasswd`, { headers: h })).status).toBe(404);
      expect((await fetch(`${base()}/%2e%2e/%2e%2e/etc/passwd`, { headers: h })).status).toBe(404);
      expect((await fetch(`${base()}/`, { method: 'POST', headers: h })).status).toBe(405);
    });

    it('serves a placeholder page when the GUI is not built', async () => {
      const bare = await startServer({ services: createServices({ runs }) });
      const page = await fetch(`http://127.0.0.1:${bare.port}/`, { headers: { authorization: `token ${bare.token}` } });
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('has not been built yet');
      await bare.close();
    });
  });

  describe('WebSocket upgrade', () => {
    it('refuses the upgrade without the token or with a wrong one (401)', async () => {
      await expect(rawSocket(`ws://127.0.0.1:${server.port}/ws`)).rejects.toThrow('HTTP 401');
      await expect(rawSocket(wsUrl('f'.repeat(64)))).rejects.toThrow('HTTP 401');
      await expect(connectWebSocket(wsUrl('nope'), wsFactory)).rejects.toBeInstanceOf(SpillwayError);
    });

    it('refuses other paths (404) and foreign origins (403)', async () => {
      await expect(rawSocket(`ws://127.0.0.1:${server.port}/other?token=${server.token}`)).rejects.toThrow('HTTP 404');
      await expect(rawSocket(wsUrl(), { origin: 'https://evil.example' })).rejects.toThrow('HTTP 403');
      const same = await rawSocket(wsUrl(), { origin: `http://127.0.0.1:${server.port}` });
      same.ws.close();
    });

    it('accepts the session cookie the page was given', async () => {
      const cookie = (await fetch(server.url, { redirect: 'manual' })).headers.get('set-cookie')!.split(';')[0];
      const s = await rawSocket(`ws://127.0.0.1:${server.port}/ws`, { cookie });
      s.ws.close();
    });
  });

  describe('frames', () => {
    it('answers non-JSON, binary, malformed and oversized frames with BAD_FRAME and keeps the connection', async () => {
      const s = await rawSocket(wsUrl());
      s.ws.send('{not json');
      expect(await s.next(1)).toMatchObject({ type: 'error', id: null, error: { code: 'BAD_FRAME', message: 'frame is not valid JSON' } });
      s.ws.send(Buffer.from([1, 2, 3]), { binary: true });
      expect(await s.next(2)).toMatchObject({ type: 'error', error: { code: 'BAD_FRAME' } });
      s.ws.send(JSON.stringify({ type: 'call', id: 7 }));
      expect(await s.next(3)).toMatchObject({ type: 'error', id: 7, error: { code: 'BAD_FRAME' } });
      s.ws.send(JSON.stringify([1, 2]));
      expect(await s.next(4)).toMatchObject({ type: 'error', id: null, error: { code: 'BAD_FRAME' } });
      s.ws.send(JSON.stringify({ type: 'call', id: 8, method: 'getSettings', params: { pad: 'x'.repeat(MAX_FRAME_BYTES) } }));
      expect(await s.next(5)).toMatchObject({ type: 'error', id: null, error: { code: 'BAD_FRAME', message: expect.stringContaining('limit') } });
      s.ws.send(JSON.stringify({ type: 'call', id: 9, method: 'getSettings', params: {} }));
      expect(await s.next(6)).toMatchObject({ type: 'result', id: 9, ok: true, result: { threads: 0 } });
      s.ws.close();
    });

    it('answers an unknown method and bad params by id, without stacks crossing from a typed error', async () => {
      const s = await rawSocket(wsUrl());
      s.ws.send(JSON.stringify({ type: 'call', id: 'a', method: 'rm -rf', params: {} }));
      expect(await s.next(1)).toMatchObject({ type: 'result', id: 'a', ok: false, error: { code: 'UNKNOWN_METHOD' } });
      s.ws.send(JSON.stringify({ type: 'call', id: 'b', method: 'plan', params: { model: 42 } }));
      expect(await s.next(2)).toMatchObject({ type: 'result', id: 'b', ok: false, error: { code: 'BAD_REQUEST', issues: [{ path: 'model' }] } });
      s.ws.close();
    });

    it('refuses a second call with an id already in flight', async () => {
      const s = await rawSocket(wsUrl());
      s.ws.send(JSON.stringify({ type: 'call', id: 1, method: 'getRun', params: { runId: 'slow' } }));
      s.ws.send(JSON.stringify({ type: 'call', id: 1, method: 'getSettings', params: {} }));
      expect(await s.next(1)).toMatchObject({ type: 'error', id: 1, error: { code: 'BAD_FRAME' } });
      s.ws.send(JSON.stringify({ type: 'cancel', id: 1 }));
      expect(await s.next(2)).toMatchObject({ type: 'result', id: 1, ok: false, error: { code: 'CANCELLED' } });
      s.ws.close();
    });

    it('aborts the calls of a client that disconnects, and keeps serving the others', async () => {
      const s = await rawSocket(wsUrl());
      s.ws.send(JSON.stringify({ type: 'call', id: 1, method: 'getRun', params: { runId: 'slow' } }));
      await runs.slowGetRun.first((c) => c === 'arrived');
      s.ws.terminate();
      await runs.slowGetRun.first((c) => c === 'cancelled');
      const client = new SpillwayClient(await connectWebSocket(webSocketUrlFor(server.url), wsFactory));
      expect((await client.call('listRuns', {})).total).toBe(0);
      client.close();
    });
  });
});

describe('spillway serve', () => {
  it('defaults to 127.0.0.1, a random port, and validates its flags', () => {
    expect(serveOptionsFromArgs([])).toMatchObject({ host: '127.0.0.1', port: 0 });
    expect(serveOptionsFromArgs(['--host', '0.0.0.0', '--port', '8080'])).toMatchObject({ host: '0.0.0.0', port: 8080 });
    expect(() => serveOptionsFromArgs(['--port', 'http'])).toThrow('--port');
    expect(() => serveOptionsFromArgs(['--port', '70000'])).toThrow('--port');
    expect(() => serveOptionsFromArgs(['--static', '/nonexistent-folder'])).toThrow('index.html');
    expect(() => serveOptionsFromArgs(['--bogus'])).toThrow();
  });

  it('warns only when exposed beyond loopback', () => {
    expect(exposureWarning('127.0.0.1')).toBeNull();
    expect(exposureWarning('::1')).toBeNull();
    expect(exposureWarning('0.0.0.0')).toMatch(/^warning: listening on 0\.0\.0\.0/);
    expect(isLoopback('127.0.0.2')).toBe(true);
    expect(isLoopback('192.168.1.2')).toBe(false);
  });

  it('prints the URL with the token, and stopping shuts the services down (runs checkpointed)', async () => {
    const runs = new FakeRuns();
    const lines: string[] = [];
    const { server, stop } = await startServe({ host: '127.0.0.1', port: 0, staticDir: null }, createServices({ runs, access: { allow: ['/spillway-test'] } }), (l) => lines.push(l));
    expect(lines[0]).toBe(`spillway: serving on ${server.url}`);
    expect(lines.join('\n')).toContain('placeholder');
    const client = new SpillwayClient(await connectWebSocket(webSocketUrlFor(server.url), wsFactory));
    await client.call('startRun', { options: { model: '/spillway-test/m', train: '/spillway-test/t.jsonl', task: { kind: 'text' } } });
    await stop();
    await stop();
    expect(runs.shutdownCalls).toBe(1);
    expect((await client.call('getSettings', {}).catch((e: SpillwayError) => e.code))).toBe('DISCONNECTED');
  });

  it('refuses to listen beyond loopback without a password; with one, prints the warning, the URL and where to sign in', async () => {
    const services = createServices({ runs: new FakeRuns() });
    await expect(startServe({ host: '0.0.0.0', port: 0, staticDir: null }, services, () => {})).rejects.toThrow(/exposes Spillway to the network: set a password/);
    const lines: string[] = [];
    const { stop } = await startServe({ host: '0.0.0.0', port: 0, staticDir: null }, services, (l) => lines.push(l), await hashPassword('correct horse'));
    expect(lines[0]).toMatch(/^warning:/);
    expect(lines[1]).toMatch(/^spillway: serving on http:\/\/0\.0\.0\.0:\d+\/\?token=[0-9a-f]{64}$/);
    expect(lines[2]).toMatch(/^spillway: other machines sign in at http:\/\/0\.0\.0\.0:\d+\/login with the password$/);
    await stop();
  });
});
