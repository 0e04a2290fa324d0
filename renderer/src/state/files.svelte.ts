// Choosing a file or folder wherever the GUI asks for a path. In the desktop
// app the system's own dialog opens (pickPath; what is picked becomes
// allowed). In a browser tab the backend's file browser opens instead: it
// lists only the folders the backend may use (listFolder), and says so when
// asked to go elsewhere.

import type { FolderEntry, FolderListing, PickRequest, RootKind } from '../../../electron/common/contract.ts';
import type { Client } from '../../../electron/common/client.ts';
import { describeError } from '../../../electron/common/client.ts';
import { app } from './app.svelte.ts';

export type PickMode = PickRequest['mode'];

export interface PickOptions {
  kind: RootKind;
  mode: PickMode;
  title: string;
  /** The path the field holds now: the browser opens beside it. */
  start?: string;
  filters?: PickRequest['filters'];
}

function dirname(p: string): string {
  const i = p.replace(/\/+$/, '').lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
}

function basename(p: string): string {
  return p.replace(/\/+$/, '').split('/').pop() ?? '';
}

export function joinPath(dir: string, name: string): string {
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`;
}

export class FilePickerState {
  /** The pick in progress in the browser (null: the file browser is closed). */
  request = $state<PickOptions | null>(null);
  listing = $state<FolderListing | null>(null);
  error = $state<string | null>(null);
  loading = $state(false);
  /** The path typed into the file browser's "go to" box. */
  goTo = $state('');
  /** Save mode: the file name to save as. */
  saveName = $state('');
  /** Show every file, not only those the filters name. */
  allFiles = $state(false);

  /** The entries to show: folders, and files the filters accept (all of them in save mode or with allFiles). */
  entries = $derived.by((): FolderEntry[] => {
    const l = this.listing;
    if (!l) return [];
    const exts = this.request?.filters?.flatMap((f) => f.extensions.map((e) => `.${e.toLowerCase()}`)) ?? [];
    if (this.allFiles || exts.length === 0 || this.request?.mode !== 'file') return l.entries;
    return l.entries.filter((e) => e.type === 'folder' || exts.some((x) => e.name.toLowerCase().endsWith(x)));
  });

  #client: () => Client;
  #native: () => boolean;
  #resolve: ((path: string | null) => void) | null = null;

  constructor(client: () => Client, native: () => boolean) {
    this.#client = client;
    this.#native = native;
  }

  /** Resolves with the chosen path, or null when the person cancelled. */
  async pick(o: PickOptions): Promise<string | null> {
    if (this.#native()) {
      const r = await this.#client().call('pickPath', {
        kind: o.kind,
        mode: o.mode,
        title: o.title,
        ...(o.start ? { defaultPath: o.start } : {}),
        ...(o.filters ? { filters: o.filters } : {}),
      });
      return r.path;
    }
    this.#finish(null);
    this.request = o;
    this.error = null;
    this.allFiles = false;
    this.saveName = o.mode === 'save' && o.start ? basename(o.start) : '';
    const result = new Promise<string | null>((resolve) => (this.#resolve = resolve));
    const near = o.start ? (o.mode === 'folder' ? o.start : dirname(o.start)) : undefined;
    // Beside the current value when it lies in an allowed folder; else the allowed folders themselves.
    if (!near || !(await this.open(near, { quiet: true }))) await this.open();
    return result;
  }

  /** Lists a folder (none: the allowed folders). False when the backend refused or failed; `error` says why. */
  async open(path?: string, o: { quiet?: boolean } = {}): Promise<boolean> {
    const kind = this.request?.kind;
    this.loading = true;
    try {
      this.listing = await this.#client().call('listFolder', { ...(path ? { path } : {}), ...(kind ? { kind } : {}) });
      this.goTo = this.listing.path ?? '';
      this.error = null;
      return true;
    } catch (e) {
      if (!o.quiet) this.error = describeError(e);
      return false;
    } finally {
      this.loading = false;
    }
  }

  up(): Promise<boolean> {
    return this.open(this.listing?.parent ?? undefined);
  }

  /** A click on an entry: folders open, files are chosen (or named, when saving). */
  choose(e: FolderEntry): void {
    if (e.outside) {
      this.error = `${e.path} leads outside the folders Spillway may use.`;
      return;
    }
    if (e.type === 'folder') {
      void this.open(e.path);
      return;
    }
    if (this.request?.mode === 'file') this.#finish(e.path);
    else if (this.request?.mode === 'save') this.saveName = e.name;
  }

  /** Folder mode: the folder shown. */
  chooseFolder(): void {
    if (this.listing?.path) this.#finish(this.listing.path);
  }

  /** Save mode: the name typed, in the folder shown. */
  save(): void {
    const name = this.saveName.trim();
    if (!this.listing?.path || !name || name.includes('/')) {
      this.error = 'Open a folder and type a file name (without /).';
      return;
    }
    this.#finish(joinPath(this.listing.path, name));
  }

  cancel(): void {
    this.#finish(null);
  }

  #finish(path: string | null): void {
    const resolve = this.#resolve;
    this.#resolve = null;
    this.request = null;
    this.listing = null;
    resolve?.(path);
  }
}

export const filePicker = new FilePickerState(() => app.client, () => app.native);
