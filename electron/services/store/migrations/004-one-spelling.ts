// One spelling per concept: the JSON a run row keeps takes the names the
// engine's events and the contract now share (camelCase, as the API has
// always spoken), so that nothing reads two shapes.
// - final_metrics (the done event): final_loss, zero_shot, skipped_steps,
//   wall_s, and eval_ms inside the two evaluations;
// - plan (the start event's plan): predicted_step_ms, floor_ms, io_wait_ms,
//   and link_bytes / link_ms with their links h2d, d2h, ssd_read, ssd_write;
// - config.options: a lone spillDir becomes spillDirs (one list of spill
//   folders, whether one or several).
// Rows already in the new shape pass through unchanged; a value that is not
// JSON is left as it was. Salvaging a damaged file (../recover.ts) runs the same
// rewrite over what it copied.
import type { Database } from 'better-sqlite3';

import type { Migration } from './types.js';

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `o` with its keys renamed by `names` (others kept), each value passed through `inner` by its new key. */
function renamed(o: Json, names: Record<string, string>, inner: Record<string, (v: unknown) => unknown> = {}): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(o)) {
    const key = names[k] ?? k;
    out[key] = inner[key] ? inner[key](v) : v;
  }
  return out;
}

const evaluation = (v: unknown) => (isObject(v) ? renamed(v, { eval_ms: 'evalMs' }) : v);
const links = (v: unknown) => (isObject(v) ? renamed(v, { h2d: 'hostToDevice', d2h: 'deviceToHost', ssd_read: 'ssdRead', ssd_write: 'ssdWrite' }) : v);

function finalMetrics004(o: Json): Json {
  return renamed(
    o,
    { final_loss: 'finalLoss', zero_shot: 'zeroShot', skipped_steps: 'skippedSteps', wall_s: 'wallS' },
    { eval: evaluation, zeroShot: evaluation },
  );
}

function plan004(o: Json): Json {
  return renamed(
    o,
    { predicted_step_ms: 'predictedStepMs', floor_ms: 'floorMs', io_wait_ms: 'ioWaitMs', link_bytes: 'linkBytes', link_ms: 'linkMs' },
    { linkBytes: links, linkMs: links },
  );
}

function config004(o: Json): Json {
  if (!isObject(o.options) || !('spillDir' in o.options)) return o;
  const { spillDir, ...options } = o.options;
  const spillDirs = Array.isArray(options.spillDirs) && options.spillDirs.length ? options.spillDirs : typeof spillDir === 'string' ? [spillDir] : undefined;
  return { ...o, options: { ...options, ...(spillDirs ? { spillDirs } : {}) } };
}

/** Rewrites every run row's JSON in today's spelling; rows already in it are left as they are. */
export function respellRuns(db: Database): void {
  const rows = db.prepare('SELECT id, config, final_metrics, plan FROM runs').all() as { id: string; config: string; final_metrics: string | null; plan: string | null }[];
  const update = db.prepare('UPDATE runs SET config = ?, final_metrics = ?, plan = ? WHERE id = ?');
  const rewrite = (text: string | null, f: (o: Json) => Json): string | null => {
    if (text === null) return null;
    try {
      const v = JSON.parse(text) as unknown;
      return isObject(v) ? JSON.stringify(f(v)) : text;
    } catch {
      return text;
    }
  };
  for (const r of rows) {
    update.run(rewrite(r.config, config004) ?? r.config, rewrite(r.final_metrics, finalMetrics004), rewrite(r.plan, plan004), r.id);
  }
}

export const migration004: Migration = {
  version: 4,
  name: 'one spelling: camelCase final metrics and plan, spillDirs',
  up: respellRuns,
};
