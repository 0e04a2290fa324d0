// What the backend may read and write on the person's behalf. Every path a
// contract call names is resolved (symlinks included) and must lie inside a
// folder the person allowed for that kind of use: model folders, dataset
// folders, spill folders, export folders. The folders come from the
// installation (the embedded demo), the data folder, the command line
// (`spillway serve --allow DIR`), the settings, and paths the person picked in
// a native dialog. Settings cannot name system folders or the home folder's
// secrets, whoever asks.
//
// The check resolves the path, the operation then uses the path as given:
// only a process that can create symlinks inside an allowed folder could
// swap one in between, and nothing reachable through the contract creates
// symlinks.

import { promises as fsp } from 'node:fs';
import { homedir } from 'node:os';
import * as path from 'node:path';

import { SpillwayError, type RootKind, type Settings } from '../common/contract.js';

export type { RootKind };

/** Where an allowed folder comes from, said beside it in messages and in the file browser. */
export type RootSource = 'demo' | 'data folder' | 'command line' | 'settings' | 'Hugging Face cache' | 'picked';

export interface AllowedRoot {
  /** Resolved (real) path. */
  path: string;
  kind: RootKind;
  source: RootSource;
}

export interface AccessOptions {
  /** Folders allowed for every kind (`--allow DIR`). */
  allow?: string[];
  /** Folders allowed for one kind (`--allow-models DIR`, …). */
  perKind?: Partial<Record<RootKind, string[]>>;
  /** The installation's own folders (the embedded demo's model and datasets). */
  builtIn?: { models: string[]; datasets: string[] };
  /** The Hugging Face hub cache, allowed for models while the settings include it. */
  hfCache?: string;
}

export const ROOT_KINDS: readonly RootKind[] = ['models', 'datasets', 'spill', 'export'];

const VERB: Record<RootKind | 'any', string> = {
  any: 'use',
  models: 'read models from',
  datasets: 'read datasets from',
  spill: 'spill blocks to',
  export: 'write results to',
};

const SETTING_OF: Record<RootKind | 'any', string> = {
  any: 'the folders',
  models: 'Model folders',
  datasets: 'Dataset folders',
  spill: 'the spill folder',
  export: 'the runs folder',
};

const MAX_SYMLINKS = 40;

/**
 * The path the operating system would reach: symlinks resolved component by
 * component (`..` after a symlink goes up from its target, as the kernel
 * does), dangling symlinks followed to where a write would land, and the part
 * that does not exist yet appended as written.
 */
export async function resolvePath(p: string, base = process.cwd()): Promise<string> {
  let links = 0;
  const walk = async (from: string, rest: string[]): Promise<string> => {
    let cur = from;
    for (let i = 0; i < rest.length; i++) {
      const part = rest[i];
      if (part === '' || part === '.') continue;
      if (part === '..') {
        cur = path.dirname(cur);
        continue;
      }
      const next = path.join(cur, part);
      const st = await fsp.lstat(next).catch(() => null);
      if (!st) return path.resolve(next, ...rest.slice(i + 1));
      if (!st.isSymbolicLink()) {
        cur = next;
        continue;
      }
      if (++links > MAX_SYMLINKS) throw new SpillwayError('BAD_REQUEST', `${p}: too many levels of symbolic links`);
      const target = await fsp.readlink(next);
      cur = await walk(path.isAbsolute(target) ? '/' : cur, target.split('/'));
    }
    return cur;
  };
  const abs = path.isAbsolute(p) ? p : `${base}/${p}`;
  return walk('/', abs.split('/'));
}

export function isInside(child: string, root: string): boolean {
  if (child === root) return true;
  return child.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
}

/**
 * Folders no setting may name, contain or lie inside: the system's secrets,
 * devices and kernel views, and the home folder's credentials. The home
 * folder itself contains them, so it cannot be a root either (a folder inside
 * it can).
 */
export function sensitiveFolders(home = homedir()): string[] {
  const system = ['/etc', '/proc', '/sys', '/dev', '/boot', '/run', '/var/lib', '/var/log', '/root', '/usr', '/bin', '/sbin', '/lib', '/lib64'];
  const secrets = ['.ssh', '.gnupg', '.aws', '.azure', '.kube', '.docker', '.config', '.netrc', '.password-store', '.pki', '.mozilla', '.local/share/keyrings'];
  // Running as root, /root is the home folder: its secrets are listed below, the folder itself is not off limits.
  return [...system.filter((s) => s !== home), ...secrets.map((s) => path.join(home, s))];
}

/** Why a folder cannot be allowed, or null when it can (both resolved). */
export function sensitiveReason(resolved: string, sensitive: readonly string[]): string | null {
  for (const s of sensitive) {
    if (isInside(resolved, s)) return `${resolved} is inside ${s}, which Spillway never reads or writes`;
    if (isInside(s, resolved)) return `${resolved} contains ${s}, which Spillway never reads or writes; choose a folder inside it that holds only your models or data`;
  }
  return null;
}

export class FileAccess {
  private readonly grants: AllowedRoot[] = [];
  private readonly sensitive: string[];
  private sensitiveResolved: Promise<string[]> | null = null;

  constructor(
    private readonly options: AccessOptions,
    /** The current settings (roots, data folder). */
    private readonly settings: () => Promise<Settings>,
    home = homedir(),
  ) {
    this.sensitive = sensitiveFolders(home);
  }

  /** A path the person picked in a native dialog: allowed for that kind until the backend stops. */
  async grant(kind: RootKind, p: string): Promise<void> {
    this.grants.push({ path: await resolvePath(p), kind, source: 'picked' });
  }

  /** Every allowed folder of one kind (or of all kinds), resolved, in the order messages list them. */
  async roots(kind?: RootKind): Promise<AllowedRoot[]> {
    const s = await this.settings();
    const o = this.options;
    const raw: { path: string; kind: RootKind; source: RootSource }[] = [];
    const add = (paths: readonly (string | null | undefined)[], kinds: readonly RootKind[], source: RootSource) => {
      for (const p of paths) if (p) for (const k of kinds) raw.push({ path: p, kind: k, source });
    };
    add(o.builtIn?.models ?? [], ['models'], 'demo');
    add(o.builtIn?.datasets ?? [], ['datasets'], 'demo');
    add([s.dataDir], ROOT_KINDS, 'data folder');
    add(o.allow ?? [], ROOT_KINDS, 'command line');
    for (const k of ROOT_KINDS) add(o.perKind?.[k] ?? [], [k], 'command line');
    add(s.modelRoots, ['models'], 'settings');
    if (s.includeHfCache) add([o.hfCache], ['models'], 'Hugging Face cache');
    add(s.datasetRoots, ['datasets'], 'settings');
    add([s.spillDir], ['spill'], 'settings');
    add([s.runsDir], ['export'], 'settings');
    const sensitive = await this.sensitiveRoots();
    const resolved: AllowedRoot[] = [];
    for (const r of raw) {
      if (kind && r.kind !== kind) continue;
      const real = await resolvePath(r.path);
      // Settings written before this check existed may still name a system folder: such a folder grants nothing.
      if (r.source === 'settings' && sensitiveReason(real, sensitive)) continue;
      resolved.push({ ...r, path: real });
    }
    const out: AllowedRoot[] = [];
    const seen = new Set<string>();
    for (const r of [...resolved, ...this.grants.filter((g) => !kind || g.kind === kind)]) {
      const key = `${r.kind}\0${r.path}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(r);
    }
    return out;
  }

  /**
   * The resolved path when `p` lies inside an allowed folder of `kind` (of any
   * kind when undefined); else FORBIDDEN, naming the path, what it was for and
   * the folders allowed.
   */
  async check(kind: RootKind | undefined, p: string, what: string): Promise<string> {
    const resolved = await resolvePath(p);
    const roots = await this.roots(kind);
    if (roots.some((r) => isInside(resolved, r.path))) return resolved;
    const shown = resolved === path.resolve(p) ? p : `${p} (${resolved})`;
    const list = roots.length ? [...new Set(roots.map((r) => `${r.path} (${r.source})`))].join(', ') : 'none';
    throw new SpillwayError(
      'FORBIDDEN',
      `${what} ${shown} is outside the folders Spillway may ${VERB[kind ?? 'any']}: ${list}. ` +
        `Add its folder to ${SETTING_OF[kind ?? 'any']} in Settings, pick it with Browse in the desktop app, or start \`spillway serve --allow DIR\`.`,
      { name: 'OutsideAllowedFolders' },
    );
  }

  /** Whether `p` lies inside any allowed folder (of `kind`, or of any kind); the resolved path, or null. */
  async within(p: string, kind?: RootKind): Promise<{ resolved: string; root: AllowedRoot } | null> {
    const resolved = await resolvePath(p);
    const root = (await this.roots(kind)).find((r) => isInside(resolved, r.path));
    return root ? { resolved, root } : null;
  }

  /** Refuses a folder a setting names when it is a system folder, contains one, or holds the home folder's secrets. */
  async checkSettingFolder(setting: string, p: string): Promise<string> {
    const resolved = await resolvePath(p);
    const why = sensitiveReason(resolved, await this.sensitiveRoots());
    if (why) throw new SpillwayError('BAD_REQUEST', `${setting}: ${why}`, { name: 'SystemFolder' });
    return resolved;
  }

  private sensitiveRoots(): Promise<string[]> {
    // Resolved once: /etc may itself be a symlink on some systems, and so may the home folder.
    this.sensitiveResolved ??= Promise.all(this.sensitive.map((s) => resolvePath(s))).then((r) => [...new Set([...this.sensitive, ...r])]);
    return this.sensitiveResolved;
  }
}
