// The file browser behind serve mode's path fields: a folder's entries,
// limited to the allowed folders. Without a path it lists the allowed folders
// themselves; "up" stops where the folder above is no longer allowed.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

import { SpillwayError, type FolderEntry, type FolderListing, type MethodParams } from '../common/contract.js';
import { isInside, resolvePath, type FileAccess } from './access.js';

/** Entries a listing holds at most (folders first, then files, each by name). */
export const MAX_FOLDER_ENTRIES = 2000;

export async function listFolder(access: FileAccess, p: MethodParams<'listFolder'>): Promise<FolderListing> {
  const roots = await access.roots(p.kind);
  const shownRoots = roots.map((r) => ({ path: r.path, kind: r.kind, source: r.source }));
  if (!p.path) {
    const entries = await Promise.all(
      [...new Set(roots.map((r) => r.path))].map(async (r) => {
        const st = await fsp.stat(r).catch(() => null);
        return entryOf(r, r, st);
      }),
    );
    return { path: null, parent: null, roots: shownRoots, entries, truncated: false };
  }
  const dir = await access.check(p.kind, p.path, 'the folder');
  const st = await fsp.stat(dir).catch(() => null);
  if (!st) throw new SpillwayError('NOT_FOUND', `${p.path} does not exist`);
  if (!st.isDirectory()) throw new SpillwayError('BAD_REQUEST', `${p.path} is a file, not a folder`);
  const inRoots = (x: string) => roots.some((r) => isInside(x, r.path));
  const up = path.dirname(dir);
  const parent = up !== dir && inRoots(up) ? up : null;

  const names = (await fsp.readdir(dir, { withFileTypes: true })).filter((d) => p.showHidden || !d.name.startsWith('.'));
  const entries: FolderEntry[] = [];
  for (const d of names) {
    const full = path.join(dir, d.name);
    if (d.isSymbolicLink()) {
      const target = await resolvePath(full);
      if (!inRoots(target)) {
        entries.push({ name: d.name, path: full, type: 'file', bytes: null, modified: null, outside: true });
        continue;
      }
    }
    const s = await fsp.stat(full).catch(() => null);
    if (!s || !(s.isDirectory() || s.isFile())) continue;
    entries.push(entryOf(full, d.name, s));
  }
  entries.sort((a, b) => (a.type !== b.type ? (a.type === 'folder' ? -1 : 1) : a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { path: dir, parent, roots: shownRoots, entries: entries.slice(0, MAX_FOLDER_ENTRIES), truncated: entries.length > MAX_FOLDER_ENTRIES };
}

function entryOf(full: string, name: string, st: Awaited<ReturnType<typeof fsp.stat>> | null): FolderEntry {
  return {
    name,
    path: full,
    type: st?.isDirectory() ? 'folder' : 'file',
    bytes: st?.isFile() ? Number(st.size) : null,
    modified: st ? Number(st.mtimeMs) : null,
    outside: false,
  };
}
