// Spill files left behind by engines that did not end cleanly (a SIGKILL, a
// power cut): `spillway-<pid>-<n>.spill` in a spill folder whose process is
// gone. Found by doctor and at the start of a run, deleted on request.
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';

export interface StaleSpillFile {
  path: string;
  pid: number;
  bytes: number;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function findStaleSpillFiles(dir: string): Promise<StaleSpillFile[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: StaleSpillFile[] = [];
  for (const name of names) {
    const m = /^spillway-(\d+)-\d+\.spill$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (processAlive(pid)) continue;
    const path = join(dir, name);
    const st = await stat(path).catch(() => null);
    if (st?.isFile()) out.push({ path, pid, bytes: st.size });
  }
  return out;
}

export async function deleteSpillFiles(files: StaleSpillFile[]): Promise<void> {
  for (const f of files) await rm(f.path, { force: true });
}
