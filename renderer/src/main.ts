import { mount } from 'svelte';
import App from './App.svelte';
import { EVENT_NAMES } from '../../electron/common/channels.ts';
import { bridgeClient, socketClient, socketUrl, type SpillwayBridge } from './lib/client.ts';
import { app } from './state/app.svelte.ts';
import './app.css';

const bridge = (window as unknown as { spillway?: SpillwayBridge }).spillway;
app.connect(bridge ? bridgeClient(bridge, EVENT_NAMES) : socketClient(socketUrl(window.location)), !!bridge);
app.loadPreferences(window.localStorage);

mount(App, { target: document.getElementById('app')! });
