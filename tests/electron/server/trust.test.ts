// The headless server grants only what it must, tried for real: a rebinding
// Host header, the token traded for a cookie, a bind beyond loopback without
// a password, wrong passwords and their rate limit; and files outside the
// allowed folders (system secrets, symlink escapes, `..`), an export over an
// existing file, system folders in the settings — through a real server over
// the real run store.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, existsSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';

import { connectWebSocket, SpillwayClient, webSocketUrlFor } from '../../../electron/common/client.js';
import { hashPassword, isLocalHostHeader, LoginLimiter, passwordMatches } from '../../../electron/server/auth.js';
import { readPassword } from '../../../electron/server/serve-command.js';
import { startServer, type RunningServer } from '../../../electron/server/server.js';
import { createServices } from '../../../electron/services/api.js';
import { resolvePath } from '../../../electron/services/access.js';
import { supervisorOperations } from '../../../electron/services/runs/operations.js';
import { RunSupervisor } from '../../../electron/services/runs/supervisor.js';
import { runFolder } from '../../../electron/services/paths.js';
import { rejection } from '../common/contract-suite.js';
import { FakeRuns } from '../common/fake-runs.js';
import { wsFactory } from './ws-helpers.js';

const ROOT = resolve(import.meta.dirname, '../../..');

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** An HTTP request with any headers (fetch will not send a Host of our choosing). */
function raw(port: number, opts: { method?: string; path?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  return new Promise((res, rej) => {
    const req = request({ host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path ?? '/', headers: opts.headers ?? {} }, (r) => {
      let body = '';
      r.on('data', (c) => (body += c));
      r.on('end', () => res({ status: r.statusCode ?? 0, headers: r.headers, body }));
    });
    req.on('error', rej);
    req.end(opts.body);
  });
}

/** The HTTP status of a WebSocket upgrade (101 when it opens). */
function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((res) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => {
      ws.close();
      res(101);
    });
    ws.once('unexpected-response', (_req, r) => res(r.statusCode ?? 0));
    ws.once('error', () => res(-1));
  });
}

describe('who may talk to the server', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer({ services: createServices({ runs: new FakeRuns() }) });
  });
  afterAll(() => server.close());

  it('refuses a Host header that does not name this machine (DNS rebinding), on HTTP and on the WebSocket', async () => {
    const p = server.port;
    const page = `/?token=${server.token}`;
    expect((await raw(p, { path: page, headers: { host: `evil.example:${p}` } })).status).toBe(403);
    expect((await raw(p, { path: page, headers: { host: `127.0.0.1.evil.example:${p}` } })).status).toBe(403);
    for (const host of [`127.0.0.1:${p}`, `localhost:${p}`, `[::1]:${p}`, '127.0.0.1']) {
      expect((await raw(p, { path: page, headers: { host } })).status).toBe(302);
    }
    const ws = `ws://127.0.0.1:${p}/ws?token=${server.token}`;
    expect(await upgradeStatus(ws, { host: `evil.example:${p}` })).toBe(403);
    expect(await upgradeStatus(ws, { host: `evil.example:${p}`, origin: `http://evil.example:${p}` })).toBe(403);
    expect(await upgradeStatus(ws)).toBe(101);
  });

  it('keeps the token out of the address bar: the page it redirects to carries none', async () => {
    const r = await raw(server.port, { path: `/live?x=1&token=${server.token}`, headers: { host: `127.0.0.1:${server.port}` } });
    expect(r.status).toBe(302);
    expect(r.headers.location).toBe('/live?x=1');
    expect(String(r.headers['set-cookie'])).not.toContain(server.token);
  });

  it('shows the login page to a browser without a session, and the token signs in there too', async () => {
    const host = { host: `127.0.0.1:${server.port}` };
    const page = await raw(server.port, { headers: host });
    expect(page.status).toBe(401);
    expect(page.body).toContain('<form method="post" action="/login">');
    expect(String(page.headers['content-security-policy'])).toContain("form-action 'self'");
    const wrong = await raw(server.port, { method: 'POST', path: '/login', headers: { ...host, 'content-type': 'application/x-www-form-urlencoded' }, body: 'password=nope' });
    expect(wrong.status).toBe(401);
    expect(wrong.body).toContain('Wrong token.');
    const right = await raw(server.port, {
      method: 'POST',
      path: '/login',
      headers: { ...host, 'content-type': 'application/x-www-form-urlencoded' },
      body: `password=${server.token}&next=${encodeURIComponent('//evil.example/')}`,
    });
    expect(right.status).toBe(303);
    expect(right.headers.location).toBe('/');
  });
});

describe('a bind beyond loopback', () => {
  const password = 'correct horse battery';
  let server: RunningServer;
  let now = 1_000_000;
  const limiter = new LoginLimiter(5, 300_000, () => now);
  const form = (body: string) => ({ method: 'POST', path: '/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });

  beforeAll(async () => {
    server = await startServer({ services: createServices({ runs: new FakeRuns() }), host: '0.0.0.0', password: await hashPassword(password), loginLimiter: limiter });
  });
  afterAll(() => server.close());

  it('cannot start without a password', async () => {
    await expect(startServer({ services: createServices({ runs: new FakeRuns() }), host: '0.0.0.0' })).rejects.toThrow(/set a password first/);
  });

  it('answers any Host (it is meant for the network), but nothing without a session', async () => {
    expect((await raw(server.port, { headers: { host: 'gpu-box.lan:8888' } })).status).toBe(401);
    expect(await upgradeStatus(`ws://127.0.0.1:${server.port}/ws`)).toBe(401);
  });

  it('signs in with the password (the session then opens the page and the WebSocket); wrong ones are refused, then slowed down', async () => {
    const wrong = await raw(server.port, form('password=guess'));
    expect(wrong.status).toBe(401);
    expect(wrong.body).toContain('Wrong password.');
    for (let i = 0; i < 4; i++) expect((await raw(server.port, form(`password=guess${i}`))).status).toBe(401);
    // The fifth failure above was the last free one: the next try must wait, even with the right password.
    expect((await raw(server.port, form('password=guess-again'))).status).toBe(401);
    const limited = await raw(server.port, form(`password=${encodeURIComponent(password)}`));
    expect(limited.status).toBe(429);
    expect(limited.headers['retry-after']).toBe('1');
    now += 1000;
    const ok = await raw(server.port, form(`password=${encodeURIComponent(password)}&next=%2F%23%2Fruns`));
    expect(ok.status).toBe(303);
    expect(ok.headers.location).toBe('/#/runs');
    const session = String(ok.headers['set-cookie']).split(';')[0];
    expect((await raw(server.port, { headers: { cookie: session } })).status).toBe(200);
    const client = new SpillwayClient(await connectWebSocket(`ws://127.0.0.1:${server.port}/ws`, (u) => new WebSocket(u, { headers: { cookie: session } }) as never));
    expect((await client.call('listRuns', {})).total).toBe(0);
    client.close();
  });

  it('refuses a login posted from a foreign page', async () => {
    const r = await raw(server.port, { ...form(`password=${encodeURIComponent(password)}`), headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example' } });
    expect(r.status).toBe(403);
  });

  it('the backoff doubles per failure after the free ones, up to its ceiling', () => {
    const l = new LoginLimiter(2, 8000, () => 0);
    l.fail('a');
    l.fail('a');
    expect(l.waitMs('a')).toBe(0);
    const waits = [3, 4, 5, 6, 7].map(() => (l.fail('a'), l.waitMs('a')));
    expect(waits).toEqual([1000, 2000, 4000, 8000, 8000]);
    expect(l.waitMs('b')).toBe(0);
    l.succeed('a');
    expect(l.waitMs('a')).toBe(0);
  });
});

describe('the password', () => {
  it('is read from the first line of standard input, or from SPILLWAY_PASSWORD, and kept only as a scrypt hash', async () => {
    const fromStdin = await readPassword({ passwordStdin: true }, {}, Readable.from(['hunter22hunter\n', 'ignored\n']));
    expect(fromStdin).not.toBeNull();
    expect(await passwordMatches('hunter22hunter', fromStdin!)).toBe(true);
    expect(await passwordMatches('hunter22hunteR', fromStdin!)).toBe(false);
    expect(fromStdin!.hash.toString('utf8')).not.toContain('hunter');
    const fromEnv = await readPassword({}, { SPILLWAY_PASSWORD: 'open sesame!' });
    expect(await passwordMatches('open sesame!', fromEnv!)).toBe(true);
    expect(await readPassword({}, {})).toBeNull();
    await expect(readPassword({}, { SPILLWAY_PASSWORD: 'short' })).rejects.toThrow(/at least 8 characters/);
    await expect(readPassword({ passwordStdin: true }, {}, Readable.from([]))).rejects.toThrow(/ended before a password/);
  });

  it('`spillway serve --host 0.0.0.0` without one exits 1 and says how to give one; with --password-stdin it serves', async () => {
    const serve = (args: string[], stdin: string | null) =>
      new Promise<{ code: number | null; out: string }>((res) => {
        const child = spawn(process.execPath, [join(ROOT, 'bin/spillway.js'), 'serve', '--port', '0', '--data-dir', mkdtempSync(join(tmpdir(), 'spw-serve-')), ...args], {
          stdio: ['pipe', 'pipe', 'pipe'],
          env: { ...process.env, SPILLWAY_PASSWORD: undefined },
        });
        let out = '';
        const onData = (b: Buffer) => {
          out += b.toString();
          if (out.includes('sign in at')) child.kill('SIGTERM');
        };
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
        child.on('exit', (code) => res({ code, out }));
        if (stdin !== null) child.stdin.write(stdin);
        child.stdin.end();
      });
    const bare = await serve(['--host', '0.0.0.0'], null);
    expect(bare.code).toBe(1);
    expect(bare.out).toMatch(/--host 0\.0\.0\.0 exposes Spillway to the network: give a password with --password-stdin or SPILLWAY_PASSWORD/);
    const withPassword = await serve(['--host', '0.0.0.0', '--password-stdin'], 'correct horse battery\n');
    expect(withPassword.out).toMatch(/other machines sign in at http:\/\/0\.0\.0\.0:\d+\/login/);
  }, 60_000);

  it('Host headers: names of this machine pass, every other name is refused', () => {
    for (const h of ['localhost', 'localhost:80', '127.0.0.1:5', '127.9.8.7', '[::1]:8888', 'app.localhost:3']) expect(isLocalHostHeader(h)).toBe(true);
    for (const h of [undefined, '', 'evil.example', '127.0.0.1.nip.io', '[::2]:1', '10.0.0.1', 'localhost.evil.example']) expect(isLocalHostHeader(h)).toBe(false);
  });
});

describe('files: only the allowed folders', () => {
  let work: string;
  let inside: string;
  let outside: string;
  let exportsDir: string;
  let sup: RunSupervisor;
  let server: RunningServer;
  let client: SpillwayClient;
  const runId = 'r-export';

  beforeAll(async () => {
    work = await resolvePath(mkdtempSync(join(tmpdir(), 'spw-trust-')));
    inside = join(work, 'allowed');
    outside = join(work, 'elsewhere');
    exportsDir = join(work, 'exports');
    for (const d of [inside, join(inside, 'sub'), outside, join(outside, 'secrets'), exportsDir]) mkdirSync(d, { recursive: true });
    writeFileSync(join(inside, 'train.jsonl'), '{"sentence":"fine","label":1}\n');
    writeFileSync(join(outside, 'shadow.jsonl'), '{"root":"$6$saltsalt$hash"}\n');
    writeFileSync(join(outside, 'secrets', 'x.jsonl'), '{"k":"v"}\n');
    symlinkSync(join(outside, 'shadow.jsonl'), join(inside, 'link.jsonl'));
    symlinkSync(join(outside, 'secrets'), join(inside, 'door'));
    symlinkSync(join(outside, 'planted.csv'), join(exportsDir, 'dangling.csv'));

    const dataDir = join(work, 'data');
    sup = RunSupervisor.open(dataDir);
    mkdirSync(runFolder(dataDir, runId), { recursive: true });
    sup.store.createRun({ id: runId, name: 'exported', model: '/m', dataset: '/d', task: 'sst2', config: { options: {} }, stepsPlanned: 3, folder: runFolder(dataDir, runId), status: 'completed' });
    sup.store.insertStepMetrics(runId, [1, 2, 3].map((step) => ({ step, time: step, loss: 1 / step, lossPlus: 1, lossMinus: 1, projectedGrad: 0, lr: 1e-3, stepMs: 1, tokensPerS: 1, skipped: false, seed: String(step) })));
    // A settings row from before the check existed, naming a system folder: it must grant nothing.
    sup.store.setSetting('settings', { datasetRoots: ['/etc'] });
    const services = createServices({ runs: supervisorOperations(sup), access: { perKind: { datasets: [inside], export: [exportsDir] } }, hfCacheDir: join(work, 'no-hf') });
    server = await startServer({ services });
    client = new SpillwayClient(await connectWebSocket(webSocketUrlFor(server.url), wsFactory));
  });
  afterAll(async () => {
    client?.close();
    await server?.close();
    await sup?.close();
  });

  const preview = (path: string) => client.call('previewDataset', { path });

  it('reads inside the allowed folders', async () => {
    expect((await preview(join(inside, 'train.jsonl'))).rows).toHaveLength(1);
    expect((await preview(join(inside, 'sub', '..', 'train.jsonl'))).rows).toHaveLength(1);
  });

  it('refuses the system\'s password files and anything else outside, even with a system folder left in old settings', async () => {
    for (const p of ['/etc/shadow', '/etc/passwd', join(outside, 'shadow.jsonl')]) {
      const e = await rejection(preview(p));
      expect(e.code).toBe('FORBIDDEN');
      expect(e.message).toContain(p);
      expect(e.message).toContain(`${inside} (command line)`);
      expect(e.message).not.toContain('root:');
    }
  });

  it('resolves symlinks before the check: a link to a file outside, a linked folder, `..` after a link', async () => {
    const link = await rejection(preview(join(inside, 'link.jsonl')));
    expect(link.code).toBe('FORBIDDEN');
    expect(link.message).toContain(`(${join(outside, 'shadow.jsonl')})`);
    expect((await rejection(preview(join(inside, 'door', 'x.jsonl')))).code).toBe('FORBIDDEN');
    // The kernel resolves door/.. to elsewhere/, not to allowed/: so does the check.
    expect((await rejection(preview(`${inside}/door/../shadow.jsonl`))).code).toBe('FORBIDDEN');
    expect((await rejection(preview(`${inside}/../elsewhere/shadow.jsonl`))).code).toBe('FORBIDDEN');
    expect((await rejection(preview(`${inside}/sub/../../elsewhere/shadow.jsonl`))).code).toBe('FORBIDDEN');
  });

  it('lists a link that leads out as outside, and will not follow it', async () => {
    const listing = await client.call('listFolder', { path: inside });
    expect(listing.entries.find((e) => e.name === 'door')).toMatchObject({ outside: true, bytes: null });
    expect(listing.entries.find((e) => e.name === 'link.jsonl')).toMatchObject({ outside: true });
    expect((await rejection(client.call('listFolder', { path: join(inside, 'door') }))).code).toBe('FORBIDDEN');
    expect((await rejection(client.call('listFolder', { path: '/etc' }))).code).toBe('FORBIDDEN');
  });

  it('never exports over an existing file without saying so, and never through a link that leads out', async () => {
    const dest = join(exportsDir, 'metrics.csv');
    writeFileSync(dest, 'my precious notes\n');
    const e = await rejection(client.call('exportRun', { runId, kind: 'metrics-csv', dest }));
    expect(e.code).toBe('CONFLICT');
    expect(e.message).toBe(`${dest} already exists; export again with overwrite to replace it`);
    expect(readFileSync(dest, 'utf8')).toBe('my precious notes\n');
    const replaced = await client.call('exportRun', { runId, kind: 'metrics-csv', dest, overwrite: true });
    expect(replaced.path).toBe(dest);
    expect(readFileSync(dest, 'utf8').split('\n')[0]).toMatch(/^kind,step,/);
    expect(readFileSync(dest, 'utf8').trim().split('\n')).toHaveLength(4);

    expect((await rejection(client.call('exportRun', { runId, kind: 'metrics-csv', dest: join(exportsDir, 'dangling.csv') }))).code).toBe('FORBIDDEN');
    expect(existsSync(join(outside, 'planted.csv'))).toBe(false);
    expect((await rejection(client.call('exportRun', { runId, kind: 'metrics-csv', dest: join(outside, 'm.csv') }))).code).toBe('FORBIDDEN');
    expect(existsSync(join(outside, 'm.csv'))).toBe(false);
  });

  it('refuses system folders, the home folder and its secrets in the settings', async () => {
    for (const [patch, pattern] of [
      [{ datasetRoots: ['/etc'] }, /is inside \/etc/],
      [{ datasetRoots: ['/'] }, /contains \/etc/],
      [{ datasetRoots: [homedir()] }, /contains .*\.ssh/],
      [{ spillDir: join(homedir(), '.ssh', 'spill') }, /is inside .*\.ssh/],
      [{ runsDir: '/proc/self' }, /is inside \/proc/],
    ] as const) {
      const e = await rejection(client.call('updateSettings', patch));
      expect(e.code).toBe('BAD_REQUEST');
      expect(e.message).toMatch(pattern);
    }
    expect((await client.call('getSettings', {})).spillDir).toBeNull();
  });

  it('records no run whose files lie outside', async () => {
    const before = (await client.call('listRuns', {})).total;
    const e = await rejection(client.call('startRun', { options: { model: join(outside), train: join(inside, 'train.jsonl'), task: { kind: 'sst2' } } }));
    expect(e.code).toBe('FORBIDDEN');
    expect(e.message).toMatch(/^the model folder /);
    expect((await client.call('listRuns', {})).total).toBe(before);
  });
});
