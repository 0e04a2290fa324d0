// What is at a path, asked without throwing: the questions the model loader, the tokenizer,
// the trainer and the safe writer all ask. Node only (electron/common must not import it).
import { stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';

/** The path's stats, or null when nothing is there (or it cannot be reached). */
export async function statOrNull(p: string): Promise<Stats | null> {
  try {
    return await stat(p);
  } catch {
    return null;
  }
}

export async function pathExists(p: string): Promise<boolean> {
  return (await statOrNull(p)) !== null;
}

export async function isFile(p: string): Promise<boolean> {
  return (await statOrNull(p))?.isFile() ?? false;
}

export async function isDir(p: string): Promise<boolean> {
  return (await statOrNull(p))?.isDirectory() ?? false;
}
