// The desktop app's native open and save dialogs behind the contract's
// pickPath: the services never import Electron, main hands them this. The
// path the person picks is then allowed for its kind (services/access.ts):
// a pick in the system's own dialog is the person's choice, so the app may
// reach further than the folders allowed in the settings, one path at a time.

import type { BrowserWindow, Dialog, OpenDialogOptions, SaveDialogOptions } from 'electron';

import type { PickRequest } from './common/contract.js';

export function nativePicker(dialog: Pick<Dialog, 'showOpenDialog' | 'showSaveDialog'>, parent: () => BrowserWindow | null): (request: PickRequest) => Promise<string | null> {
  return async (r) => {
    const window = parent();
    const common = { ...(r.title ? { title: r.title } : {}), ...(r.defaultPath ? { defaultPath: r.defaultPath } : {}), ...(r.filters ? { filters: r.filters } : {}) };
    if (r.mode === 'save') {
      // Where the dialog itself does not ask before replacing a file (Linux), it is told to.
      const o: SaveDialogOptions = { ...common, properties: ['showOverwriteConfirmation', 'createDirectory'] };
      const res = window ? await dialog.showSaveDialog(window, o) : await dialog.showSaveDialog(o);
      return res.canceled || !res.filePath ? null : res.filePath;
    }
    const o: OpenDialogOptions = { ...common, properties: r.mode === 'folder' ? ['openDirectory', 'createDirectory'] : ['openFile'] };
    const res = window ? await dialog.showOpenDialog(window, o) : await dialog.showOpenDialog(o);
    return res.canceled || res.filePaths.length === 0 ? null : res.filePaths[0];
  };
}
