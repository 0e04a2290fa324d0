// The path picker's state (runes): run with `npm run test:renderer`. In a
// browser it walks the backend's listings; in the desktop app it asks for the
// native dialog instead.
import { describe, expect, it } from 'vitest';

import { SpillwayError, type FolderListing } from '../../electron/common/contract.ts';
import type { Client } from '../../electron/common/client.ts';
import { FilePickerState } from '../../renderer/src/state/files.svelte.ts';

const entry = (dir: string, name: string, type: 'folder' | 'file', outside = false) => ({ name, path: `${dir}/${name}`, type, bytes: type === 'file' ? 10 : null, modified: 1, outside });
const roots = [{ path: '/data', kind: 'datasets' as const, source: 'command line' }];

/** A backend whose listFolder serves a small tree under /data and refuses everything else. */
function fakeBackend() {
  const calls: { method: string; params: Record<string, unknown> }[] = [];
  const tree: Record<string, FolderListing> = {
    '/data': { path: '/data', parent: null, roots, truncated: false, entries: [entry('/data', 'sst2', 'folder'), entry('/data', 'link', 'folder', true), entry('/data', 'notes.txt', 'file'), entry('/data', 'train.jsonl', 'file')] },
    '/data/sst2': { path: '/data/sst2', parent: '/data', roots, truncated: false, entries: [entry('/data/sst2', 'dev.csv', 'file')] },
  };
  const client = {
    async call(method: string, params: Record<string, unknown>) {
      calls.push({ method, params });
      if (method === 'pickPath') return { path: '/picked/natively.jsonl' };
      if (method !== 'listFolder') throw new Error(`unexpected ${method}`);
      if (!params.path) return { path: null, parent: null, roots, entries: [], truncated: false };
      const l = tree[params.path as string];
      if (!l) throw new SpillwayError('FORBIDDEN', `${params.path} is outside the folders Spillway may read datasets from: /data (command line)`);
      return l;
    },
  } as unknown as Client;
  return { client, calls };
}

describe('FilePickerState in a browser', () => {
  it('opens beside the current value, walks folders, filters by type and resolves with the file clicked', async () => {
    const { client, calls } = fakeBackend();
    const s = new FilePickerState(() => client, () => false);
    const picked = s.pick({ kind: 'datasets', mode: 'file', title: 'Training data', start: '/data/old.jsonl', filters: [{ name: 'Datasets', extensions: ['jsonl', 'csv'] }] });
    await Promise.resolve();
    await new Promise((r) => setTimeout(r, 0));
    expect(s.listing?.path).toBe('/data');
    expect(calls[0]).toEqual({ method: 'listFolder', params: { path: '/data', kind: 'datasets' } });
    expect(s.entries.map((e) => e.name)).toEqual(['sst2', 'link', 'train.jsonl']);
    s.allFiles = true;
    expect(s.entries.map((e) => e.name)).toContain('notes.txt');
    s.choose(s.entries.find((e) => e.name === 'link')!);
    expect(s.error).toMatch(/leads outside the folders/);
    s.choose(s.entries[0]);
    await new Promise((r) => setTimeout(r, 0));
    expect(s.listing?.path).toBe('/data/sst2');
    await s.up();
    expect(s.listing?.path).toBe('/data');
    s.choose(s.entries.find((e) => e.name === 'train.jsonl')!);
    expect(await picked).toBe('/data/train.jsonl');
    expect(s.request).toBeNull();
  });

  it('says why a folder outside the allowed ones cannot be opened, and stays where it was', async () => {
    const { client } = fakeBackend();
    const s = new FilePickerState(() => client, () => false);
    const picked = s.pick({ kind: 'datasets', mode: 'folder', title: 'Dataset folder' });
    await new Promise((r) => setTimeout(r, 0));
    expect(s.listing?.path).toBeNull();
    expect(await s.open('/data')).toBe(true);
    expect(await s.open('/etc')).toBe(false);
    expect(s.error).toMatch(/^\/etc is outside the folders Spillway may read datasets from/);
    expect(s.listing?.path).toBe('/data');
    s.chooseFolder();
    expect(await picked).toBe('/data');
  });

  it('a start outside the allowed folders opens the allowed folders instead, without an error', async () => {
    const { client } = fakeBackend();
    const s = new FilePickerState(() => client, () => false);
    const picked = s.pick({ kind: 'datasets', mode: 'file', title: 'x', start: '/etc/shadow' });
    await new Promise((r) => setTimeout(r, 0));
    expect(s.listing?.path).toBeNull();
    expect(s.error).toBeNull();
    s.cancel();
    expect(await picked).toBeNull();
  });

  it('saves under a typed name in the folder shown', async () => {
    const { client } = fakeBackend();
    const s = new FilePickerState(() => client, () => false);
    const picked = s.pick({ kind: 'export', mode: 'save', title: 'Export to', start: '/data/sst2/metrics.csv' });
    await new Promise((r) => setTimeout(r, 0));
    expect(s.listing?.path).toBe('/data/sst2');
    expect(s.saveName).toBe('metrics.csv');
    s.saveName = 'a/b.csv';
    s.save();
    expect(s.error).toMatch(/without \//);
    s.saveName = 'run.csv';
    s.save();
    expect(await picked).toBe('/data/sst2/run.csv');
  });
});

describe('FilePickerState in the desktop app', () => {
  it('asks the backend for the native dialog, passing the current value and the filters', async () => {
    const { client, calls } = fakeBackend();
    const s = new FilePickerState(() => client, () => true);
    const filters = [{ name: 'Datasets', extensions: ['jsonl'] }];
    expect(await s.pick({ kind: 'datasets', mode: 'file', title: 'Training data', start: '/x/y.jsonl', filters })).toBe('/picked/natively.jsonl');
    expect(calls).toEqual([{ method: 'pickPath', params: { kind: 'datasets', mode: 'file', title: 'Training data', defaultPath: '/x/y.jsonl', filters } }]);
    expect(s.request).toBeNull();
  });
});
