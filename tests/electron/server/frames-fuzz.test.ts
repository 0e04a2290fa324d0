// Malformed WebSocket traffic, generated from a fixed seed so every run sends
// the same set: messages that are not the contract's frames (over one
// connection, each followed by a probe call that must still be answered) and
// frames that break the WebSocket protocol itself (each on its own raw TCP
// connection, which the server must close without falling over). At the end
// a fresh client is served as if nothing had happened.
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';

import { connectWebSocket, SpillwayClient, webSocketUrlFor } from '../../../electron/common/client.js';
import { MAX_FRAME_BYTES, METHOD_NAMES, type ServerFrame } from '../../../electron/common/contract.js';
import { startServer, type RunningServer } from '../../../electron/server/server.js';
import { createServices } from '../../../electron/services/api.js';
import { EventLog } from '../../helpers/events.js';
import { FakeRuns } from '../common/fake-runs.js';
import { wsFactory } from './ws-helpers.js';

/** mulberry32: a small seeded generator, so the set is the same on every machine. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const str = (n: number) => Array.from({ length: n }, () => String.fromCharCode(32 + int(95))).join('');
  const json = (depth: number): unknown => {
    const k = int(depth > 3 ? 5 : 8);
    if (k === 0) return null;
    if (k === 1) return next() < 0.5;
    if (k === 2) return pick([0, -1, 1.5, 1e308, -1e-308, Number.MAX_SAFE_INTEGER + 2, int(1000)]);
    if (k === 3) return str(int(20));
    if (k === 4) return pick(['', '\u0000', '\ud800', '../../etc/shadow', '__proto__', 'x'.repeat(5000)]);
    if (k === 5) return Array.from({ length: int(5) }, () => json(depth + 1));
    const o: Record<string, unknown> = {};
    for (let i = int(5); i > 0; i--) o[pick(['path', 'runId', 'roots', 'options', 'kind', str(4), '__proto__', 'constructor'])] = json(depth + 1);
    return o;
  };
  return { next, int, pick, str, json };
}

interface Message {
  data: string | Buffer;
  binary?: boolean;
  /** A cancel of an unknown id gets no answer; everything else gets exactly one. */
  answered: boolean;
}

/** Frames that are valid WebSocket messages but not valid contract frames. */
function malformedMessages(seed: number): Message[] {
  const r = rng(seed);
  const out: Message[] = [];
  const text = (data: string, answered = true) => out.push({ data, answered });
  // Not JSON at all, or cut short.
  for (let i = 0; i < 30; i++) text(r.str(1 + r.int(200)));
  const good = JSON.stringify({ type: 'call', id: 1, method: 'listRuns', params: {} });
  for (let i = 1; i < good.length; i += 3) text(good.slice(0, i));
  // JSON that is not an object frame.
  for (const v of ['null', 'true', '0', '-1', '"call"', '[]', '[1,2,3]', '{}', '""', '1e999']) text(v);
  // Object frames with every field wrong in turn.
  const ids = [-1, 1.5, 1e300, '', 'x'.repeat(101), {}, [], null, true];
  for (const id of ids) text(JSON.stringify({ type: 'call', id, method: 'getSettings', params: {} }));
  const methods = [123, '', 'm'.repeat(101), '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'shutdown', 'onEvent', '../getSettings', 'GETSETTINGS'];
  for (const [i, method] of methods.entries()) text(JSON.stringify({ type: 'call', id: 1000 + i, method, params: {} }));
  for (const type of ['', 'result', 'event', 'error', 'CALL', 7, null]) text(JSON.stringify({ type, id: 2000, method: 'getSettings' }));
  // Every method with random parameters (most fail validation; those that pass are answered too).
  for (const m of METHOD_NAMES) {
    for (let i = 0; i < 6; i++) text(JSON.stringify({ type: 'call', id: `${m}-${i}`, method: m, params: r.json(0) }));
  }
  // Prototype pollution, deep nesting, a frame over the size limit, binary frames, unknown cancels.
  text('{"type":"call","id":3000,"method":"getSettings","params":{"__proto__":{"polluted":true}}}');
  text('{"__proto__":{"polluted":true},"type":"call","id":3001,"method":"listRuns","params":{"constructor":{"prototype":{"polluted":true}}}}');
  text(`{"type":"call","id":3002,"method":"listRuns","params":${'['.repeat(5000)}${']'.repeat(5000)}}`);
  text(`${'['.repeat(200_000)}`);
  text(JSON.stringify({ type: 'call', id: 3003, method: 'getSettings', params: { pad: 'x'.repeat(MAX_FRAME_BYTES) } }));
  for (let i = 0; i < 4; i++) out.push({ data: randomBytesFrom(r, 1 + r.int(64)), binary: true, answered: true });
  for (const id of ['nope', 12345, 'x']) text(JSON.stringify({ type: 'cancel', id }), false);
  text(JSON.stringify({ type: 'cancel', id: -5 }));
  return out;
}

function randomBytesFrom(r: ReturnType<typeof rng>, n: number): Buffer {
  return Buffer.from(Array.from({ length: n }, () => r.int(256)));
}

/** A client frame as RFC 6455 lays it out: FIN/RSV/opcode, mask bit, length, masking key, payload. */
function frame(opcode: number, payload: Buffer, o: { fin?: boolean; rsv?: number; masked?: boolean; declaredLength?: bigint } = {}): Buffer {
  const first = ((o.fin ?? true) ? 0x80 : 0) | ((o.rsv ?? 0) << 4) | opcode;
  const len = o.declaredLength ?? BigInt(payload.length);
  const masked = o.masked ?? true;
  let header: Buffer;
  if (len < 126n) header = Buffer.from([first, (masked ? 0x80 : 0) | Number(len)]);
  else if (len < 65536n) {
    header = Buffer.alloc(4);
    header[0] = first;
    header[1] = (masked ? 0x80 : 0) | 126;
    header.writeUInt16BE(Number(len), 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = first;
    header[1] = (masked ? 0x80 : 0) | 127;
    header.writeBigUInt64BE(len, 2);
  }
  if (!masked) return Buffer.concat([header, payload]);
  const key = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const body = Buffer.from(payload.map((b, i) => b ^ key[i % 4]));
  return Buffer.concat([header, key, body]);
}

/** Byte sequences that break the WebSocket protocol. */
function malformedFrames(seed: number): Buffer[] {
  const r = rng(seed);
  const hello = Buffer.from('{"type":"call","id":1,"method":"listRuns","params":{}}');
  const out: Buffer[] = [
    frame(1, hello, { masked: false }),
    ...[1, 2, 3, 4, 5, 6, 7].map((rsv) => frame(1, hello, { rsv })),
    ...[3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf].map((op) => frame(op, hello)),
    frame(9, Buffer.alloc(126)),
    frame(9, Buffer.from('ping'), { fin: false }),
    frame(0, hello),
    Buffer.concat([frame(1, hello.subarray(0, 10), { fin: false }), frame(1, hello.subarray(10))]),
    frame(1, Buffer.from([0xff, 0xfe, 0xc3, 0x28])),
    frame(1, Buffer.from([0xed, 0xa0, 0x80])),
    frame(1, Buffer.alloc(0), { declaredLength: 1n << 62n }),
    frame(1, Buffer.alloc(0), { declaredLength: BigInt(64 * MAX_FRAME_BYTES) }),
    frame(1, hello).subarray(0, 5),
    frame(8, Buffer.from([0x03])),
    frame(8, Buffer.from([0x03, 0xe7])),
    frame(8, Buffer.from([0x03, 0xed])),
    frame(8, Buffer.from([0x03, 0xe8, 0xff, 0xfe])),
    frame(2, randomBytes(0)),
  ];
  for (let i = 0; i < 20; i++) out.push(randomBytesFrom(r, 2 + r.int(40)));
  return out;
}

/** Opens a raw socket through the WebSocket handshake; resolves once the server answered 101. */
function rawUpgrade(port: number, token: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    s.once('error', reject);
    s.write(
      `GET /ws?token=${token} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    let head = '';
    const onData = (b: Buffer) => {
      head += b.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      s.off('data', onData);
      if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(head.split('\r\n')[0]));
      resolve(s);
    };
    s.on('data', onData);
  });
}

describe('malformed WebSocket traffic', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer({ services: createServices({ runs: new FakeRuns() }) });
  });
  afterAll(() => server.close());

  const messages = malformedMessages(0x5eed);
  const frames = malformedFrames(0xf4a3e);

  it('the generated set is large and the same on every run', () => {
    expect(messages.length + frames.length).toBeGreaterThanOrEqual(242);
    expect(malformedMessages(0x5eed).map((m) => m.data.toString()).join('\n')).toBe(messages.map((m) => m.data.toString()).join('\n'));
  });

  it('answers every malformed message (or ignores an unknown cancel) and keeps the connection serving', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws?token=${server.token}`);
    const replies = new EventLog<ServerFrame>();
    ws.on('message', (d) => replies.push(JSON.parse(d.toString())));
    await new Promise<void>((res, rej) => {
      ws.once('open', () => res());
      ws.once('error', rej);
    });
    ws.on('close', () => replies.end('the server closed the socket'));
    // Each wait is woken by the frames as they arrive (no deadline of its own).
    const until = (cond: () => boolean, what: string) => replies.until(cond).catch((e: Error) => Promise.reject(new Error(`${e.message} while waiting for ${what}`)));
    let expected = 0;
    for (const [i, m] of messages.entries()) {
      ws.send(m.data, { binary: m.binary ?? false });
      if (m.answered) expected++;
      const probe = `probe-${i}`;
      ws.send(JSON.stringify({ type: 'call', id: probe, method: 'getSettings', params: {} }));
      await until(() => replies.some((f) => f.type === 'result' && f.id === probe), `the probe after message ${i}`);
      await until(() => replies.filter((f) => !(f.type === 'result' && String(f.id).startsWith('probe-'))).length >= expected, `the answer to message ${i}`);
      expect(ws.readyState).toBe(ws.OPEN);
    }
    const answers = replies.filter((f) => !(f.type === 'result' && String(f.id).startsWith('probe-')));
    expect(answers).toHaveLength(expected);
    expect(replies.filter((f) => f.type === 'result' && String(f.id).startsWith('probe-') && f.ok)).toHaveLength(messages.length);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    ws.close();
  }, 300_000);

  it('closes each connection that breaks the protocol, and stays up for the next client', async () => {
    for (const [i, bytes] of frames.entries()) {
      const s = await rawUpgrade(server.port, server.token);
      const closed = new Promise<void>((res) => s.once('close', () => res()));
      s.on('error', () => {});
      s.write(bytes);
      s.end();
      await closed;
      expect(s.destroyed, `frame ${i}`).toBe(true);
    }
    const client = new SpillwayClient(await connectWebSocket(webSocketUrlFor(server.url), wsFactory));
    expect((await client.call('listRuns', {})).total).toBe(0);
    expect(server.connections()).toBe(1);
    client.close();
  }, 120_000);
});
