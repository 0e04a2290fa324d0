// What the integrity check costs when the run store opens: a store of N
// step rows (100 runs of N/100 steps, as the metric writer batches them) is
// opened as the app opens it (RunStore.open: quick_check on a read-only
// connection, then WAL, migrations and the run folders compared), beside a
// bare open (the pragmas and migrations only, the anchor) and beside
// PRAGMA integrity_check (the full check it was chosen over). Cold-cache
// figures would be higher for all three alike. Writes bench/results/db-open.md.
//   npm run build:ts && node dist/bench/db-open.js [rows...]
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';

import Database from 'better-sqlite3';

import { packageRoot } from '../electron/engine/native.js';
import { databaseFile, runFolder } from '../electron/services/paths.js';
import { MetricWriter, migrate, MIGRATIONS, RunStore } from '../electron/services/store/index.js';

const RUNS = 100;

function build(rows: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'spw-bench-db-'));
  const store = RunStore.open(dir);
  const steps = Math.ceil(rows / RUNS);
  for (let r = 0; r < RUNS; r++) {
    const id = `run-${r}`;
    mkdirSync(runFolder(dir, id), { recursive: true });
    store.createRun({ id, name: id, model: '/m', dataset: '/d', task: 'sst2', config: { options: {} }, stepsPlanned: steps, folder: runFolder(dir, id), status: 'completed' });
  }
  const writer = new MetricWriter(store, { maxRows: 5000, flushMs: 60_000 });
  for (let s = 1; s <= steps; s++) {
    for (let r = 0; r < RUNS; r++) {
      const loss = 0.7 - s * 1e-6 + r * 1e-3;
      writer.addStep(`run-${r}`, { step: s, time: 1.7e12 + s, loss, lossPlus: loss + 0.01, lossMinus: loss - 0.01, projectedGrad: 0.3, lr: 1e-6, stepMs: 40, tokensPerS: 2000, skipped: false, seed: String(s * 31 + r), io: null });
    }
  }
  writer.close();
  store.close();
  return dir;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function time(f: () => void, reps = 5): number {
  const ms: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    f();
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const rowsList = sizes.length ? sizes : [100_000, 1_000_000];
const lines = [
  '# Opening the run store: the integrity check\'s cost',
  '',
  `Machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, shared with other builds (timings noisy; compare within a row). Warm page cache; median of 5 opens.`,
  '',
  '| step rows | file | bare open (anchor) | quick_check alone | RunStore.open (quick_check + run folders) | integrity_check (not chosen) |',
  '| ---: | ---: | ---: | ---: | ---: | ---: |',
];
for (const rows of rowsList) {
  const dir = build(rows);
  const file = databaseFile(dir);
  const bare = time(() => {
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('foreign_keys = ON');
    db.prepare('SELECT count(*) FROM sqlite_master').get();
    migrate(db, file, MIGRATIONS);
    db.close();
  });
  const store = time(() => RunStore.open(dir).close());
  const quick = time(() => {
    const db = new Database(file, { readonly: true });
    db.pragma('quick_check');
    db.close();
  });
  const full = time(() => {
    const db = new Database(file, { readonly: true });
    db.pragma('integrity_check');
    db.close();
  }, 3);
  const mb = statSync(file).size / 1e6;
  const per = (ms: number) => `${ms.toFixed(1)} ms (${(ms / mb).toFixed(1)} ms/MB)`;
  lines.push(`| ${rows.toLocaleString('en')} | ${mb.toFixed(0)} MB | ${bare.toFixed(1)} ms | ${per(quick)} | ${per(store)} | ${per(full)} |`);
  console.log(lines.at(-1));
  rmSync(dir, { recursive: true, force: true });
}
lines.push('', 'Reproduce: `npm run build:ts && node dist/bench/db-open.js`', '');
const out = join(packageRoot(), 'bench', 'results');
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'db-open.md'), lines.join('\n'));
