import { mount } from 'svelte';
import App from './App.svelte';
import { EVENT_NAMES } from '../../electron/common/channels.ts';
import { bridgeTransport, findBridge, SpillwayClient, webSocketTransport, webSocketUrlFor } from '../../electron/common/client.ts';
import { app } from './state/app.svelte.ts';
import './app.css';

// Inside Electron the preload's bridge; in a browser tab (spillway serve) a WebSocket that reconnects.
const bridge = findBridge();
const transport = bridge
  ? bridgeTransport(bridge, EVENT_NAMES)
  : webSocketTransport(webSocketUrlFor(window.location.href), (url) => new WebSocket(url), { reconnect: true });
app.connect(new SpillwayClient(transport), bridge !== null);
app.loadPreferences(window.localStorage);

mount(App, { target: document.getElementById('app')! });
