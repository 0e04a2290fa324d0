// The shared contract suite over the WebSocket transport: a real server on
// 127.0.0.1 and the `ws` client.
import { connectWebSocket, SpillwayClient, webSocketUrlFor } from '../../../electron/common/client.js';
import { startServer } from '../../../electron/server/server.js';
import { contractSuite } from '../common/contract-suite.js';
import { wsFactory } from './ws-helpers.js';

contractSuite('WebSocket', async (services) => {
  const server = await startServer({ services });
  return {
    connect: async () => new SpillwayClient(await connectWebSocket(webSocketUrlFor(server.url), wsFactory)),
    close: () => server.close(),
  };
});
