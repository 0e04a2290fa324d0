// The shared contract suite over the Electron transport: the real preload
// bridge and main-side handlers, with `electron` replaced by in-memory fakes.
import { vi } from 'vitest';

vi.mock('electron', async () => (await import('./fake-electron.js')).electronModule);

import { bridgeTransport, SpillwayClient } from '../../../electron/common/client.js';
import { EVENT_NAMES } from '../../../electron/common/contract.js';
import { APP_URL, forwardEvents, registerIpc, trustedSenderCheck } from '../../../electron/main.js';
import { createBridge } from '../../../electron/preload.js';
import { Dispatcher } from '../../../electron/server/dispatch.js';
import { contractSuite } from '../common/contract-suite.js';
import { FakeBrowserWindow, fakeIpcRenderer, ipcMain, resetElectron } from './fake-electron.js';

type Windows = Parameters<typeof trustedSenderCheck>[0];

contractSuite('Electron IPC', async (services) => {
  resetElectron();
  const dispatcher = new Dispatcher(services);
  const windows: FakeBrowserWindow[] = [];
  const offIpc = registerIpc(ipcMain as never, dispatcher, trustedSenderCheck((() => windows) as unknown as Windows));
  const offEvents = forwardEvents(dispatcher, () => windows.map((w) => w.webContents) as never);
  return {
    async connect() {
      const w = new FakeBrowserWindow({});
      await w.loadURL(APP_URL);
      windows.push(w);
      return new SpillwayClient(bridgeTransport(createBridge(fakeIpcRenderer(w.webContents) as never), EVENT_NAMES));
    },
    async close() {
      offIpc();
      offEvents();
    },
  };
});
