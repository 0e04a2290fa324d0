// The one client (electron/common/client.ts) as the renderer runs it in a browser tab: a
// WebSocket to the real server that reconnects when the backend goes away and comes back,
// saying so through its connection state, and a sentence for each kind of failure.
import { afterEach, describe, expect, it } from 'vitest';

import { describeError, SpillwayClient, webSocketTransport, webSocketUrlFor } from '../../../electron/common/client.js';
import type { ConnectionState } from '../../../electron/common/client.js';
import { SpillwayError } from '../../../electron/common/contract.js';
import { startServer, type RunningServer } from '../../../electron/server/server.js';
import { createServices } from '../../../electron/services/api.js';
import { wsFactory } from '../server/ws-helpers.js';
import { FakeRuns } from './fake-runs.js';

let server: RunningServer | null = null;
let client: SpillwayClient | null = null;
afterEach(async () => {
  client?.close();
  await server?.close();
  server = client = null;
});

/** Resolves when the client's connection reaches `state` (at once if it is there). */
const reaches = (c: SpillwayClient, state: ConnectionState) =>
  new Promise<void>((resolve) => {
    if (c.state === state) return resolve();
    const off = c.onConnection((s) => {
      if (s !== state) return;
      off();
      resolve();
    });
  });

describe('the client over a reconnecting WebSocket', () => {
  it('comes back on its own when the backend restarts, and calls work again', async () => {
    const runs = new FakeRuns();
    server = await startServer({ services: createServices({ runs }) });
    const { port, token, url } = server;
    client = new SpillwayClient(webSocketTransport(webSocketUrlFor(url), wsFactory, { reconnect: true }));
    const seen: ConnectionState[] = [];
    client.onConnection((s) => seen.push(s));
    // A call made before the socket is open waits for it.
    const early = client.call('getSettings', {});
    await reaches(client, 'open');
    expect((await early).threads).toBe(0);

    await server.close();
    await reaches(client, 'closed');
    server = await startServer({ services: createServices({ runs }), port, token });
    await reaches(client, 'open');
    expect((await client.call('updateSettings', { threads: 3 })).threads).toBe(3);
    expect(seen.slice(0, 3)).toEqual(['open', 'closed', 'connecting']);
    expect(seen.at(-1)).toBe('open');
  });

  it('a closed client answers DISCONNECTED, and each failure reads as a sentence with what to do', async () => {
    server = await startServer({ services: createServices({ runs: new FakeRuns() }) });
    client = new SpillwayClient(webSocketTransport(webSocketUrlFor(server.url), wsFactory, { reconnect: true }));
    await reaches(client, 'open');
    client.close();
    await reaches(client, 'closed');
    const e = await client.call('getSettings', {}).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SpillwayError);
    expect((e as SpillwayError).code).toBe('DISCONNECTED');
    expect(describeError(e)).toMatch(/connection to the backend is closed\. Check that `spillway serve` \(or the app\) is still running\./);
    expect(describeError(new Error('plain'))).toBe('plain');
  });
});
