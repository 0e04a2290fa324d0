// Where Spillway keeps its database and run folders. Services never import
// Electron: the shell passes app.getPath('userData') in as `userData`.
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

export interface DataDirOptions {
  /** An explicit folder (a --data-dir flag, a test): wins over everything. */
  explicit?: string;
  /** Electron's userData folder, when running inside the app. */
  userData?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * The data folder, first match wins: explicit option, $SPILLWAY_DATA_DIR,
 * Electron's userData, $XDG_DATA_HOME/spillway, ~/.local/share/spillway.
 */
export function resolveDataDir(o: DataDirOptions = {}): string {
  const env = o.env ?? process.env;
  if (o.explicit) return resolve(o.explicit);
  if (env.SPILLWAY_DATA_DIR) return resolve(env.SPILLWAY_DATA_DIR);
  if (o.userData) return resolve(o.userData);
  const xdg = env.XDG_DATA_HOME && env.XDG_DATA_HOME.startsWith('/') ? env.XDG_DATA_HOME : join(homedir(), '.local', 'share');
  return join(xdg, 'spillway');
}

export const databaseFile = (dataDir: string): string => join(dataDir, 'spillway.db');
export const runsRoot = (dataDir: string): string => join(dataDir, 'runs');
export const runFolder = (dataDir: string, runId: string): string => join(runsRoot(dataDir), runId);
export const runCheckpointFolder = (dataDir: string, runId: string): string => join(runFolder(dataDir, runId), 'checkpoints');
export const runModelFolder = (dataDir: string, runId: string): string => join(runFolder(dataDir, runId), 'model');
