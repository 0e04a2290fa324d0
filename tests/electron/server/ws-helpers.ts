import { WebSocket } from 'ws';

import type { WebSocketLike } from '../../../electron/common/client.js';

/** The `ws` package's client as the client's WebSocketFactory (a browser passes its own WebSocket). */
export const wsFactory = (url: string) => new WebSocket(url) as unknown as WebSocketLike;
