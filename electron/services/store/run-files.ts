// What the store keeps beside each run, in the run's folder, so that the
// database is not the only witness of a run: `run.json` (the row as it was
// created: enough to list and resume the run if the database loses it) and
// `flushed-step` (the last step whose metrics the store committed). A
// database page or write-ahead log that loses rows is found out by comparing
// the two: the database says less than the run folder.
//
// Both are written after the database commit, through a temporary file and
// a rename, so a crash leaves the old file or the new one, never half.

import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

import type { NewRun } from './types.js';

export const RUN_RECORD_FILE = 'run.json';
export const FLUSHED_STEP_FILE = 'flushed-step';

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/** Keeps the run's creation record in its folder (nothing when the folder does not exist). */
export function writeRunRecord(r: NewRun & { createdAt: number }): void {
  if (!existsSync(r.folder)) return;
  writeAtomic(join(r.folder, RUN_RECORD_FILE), JSON.stringify(r, null, 1) + '\n');
}

/** The creation record kept in a run folder, or null when there is none or it cannot be read. */
export function readRunRecord(folder: string): (NewRun & { createdAt: number }) | null {
  try {
    const r = JSON.parse(readFileSync(join(folder, RUN_RECORD_FILE), 'utf8')) as NewRun & { createdAt: number };
    return typeof r.id === 'string' && typeof r.name === 'string' && r.config && typeof r.config === 'object' ? r : null;
  } catch {
    return null;
  }
}

/**
 * What a run folder without a record can still say about its run: the options of its newest checkpoint
 * (runs created before run.json was kept). Null when it has no readable checkpoint either.
 */
export function recordFromCheckpoints(folder: string): (NewRun & { createdAt: number }) | null {
  const dir = join(folder, 'checkpoints');
  const names = existsSync(dir) ? readdirSync(dir).filter((n) => /^step-\d+$/.test(n)).sort().reverse() : [];
  for (const n of names) {
    let state: { steps_planned?: unknown; base_model?: unknown; options?: unknown };
    try {
      state = JSON.parse(readFileSync(join(dir, n, 'spillway.json'), 'utf8'));
    } catch {
      continue;
    }
    if (!state.options || typeof state.options !== 'object' || typeof state.base_model !== 'string') continue;
    const o = state.options as Record<string, unknown> & { task?: { kind?: string } };
    const model = typeof o.model === 'string' ? o.model : state.base_model;
    const train = typeof o.train === 'string' ? o.train : '';
    if (!train || !o.task?.kind) continue;
    const id = basename(folder);
    return {
      id,
      name: `${basename(model)} on ${basename(train)} (recovered)`,
      model,
      dataset: train,
      task: o.task.kind,
      config: { options: { ...o, checkpointDir: dir }, ownModelFolder: false },
      stepsPlanned: typeof state.steps_planned === 'number' ? state.steps_planned : 0,
      folder,
      createdAt: Date.now(),
    };
  }
  return null;
}

/** Notes the last step of a run whose metrics are committed. */
export function writeFlushedStep(folder: string, step: number): void {
  if (!existsSync(folder)) return;
  writeAtomic(join(folder, FLUSHED_STEP_FILE), `${step}\n`);
}

/** The last committed step the run folder remembers, or null. */
export function readFlushedStep(folder: string): number | null {
  try {
    const n = Number(readFileSync(join(folder, FLUSHED_STEP_FILE), 'utf8').trim());
    return Number.isInteger(n) && n >= 0 ? n : null;
  } catch {
    return null;
  }
}
