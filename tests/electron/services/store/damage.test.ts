// Damage injected for real into a real database file (pages 1, 2, the last
// and a middle one overwritten; the write-ahead log of a process killed
// mid-run damaged in a frame or in its header): the store notices when it
// opens, moves the damaged file aside with a message naming both paths,
// recovers what SQLite can still read, and the app opens.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';

import { connectWebSocket, SpillwayClient, webSocketUrlFor } from '../../../../electron/common/client.js';
import { defaultServices, startServe } from '../../../../electron/server/serve-command.js';
import { databaseFile, runFolder } from '../../../../electron/services/paths.js';
import { RunSupervisor } from '../../../../electron/services/runs/supervisor.js';
import { MetricWriter, RunStore } from '../../../../electron/services/store/index.js';
import { readFlushedStep } from '../../../../electron/services/store/run-files.js';
import { runSpillway } from '../../../helpers/cli.js';
import { DEMO_DATA } from '../../../helpers/tiny-model.js';
import { wsFactory } from '../../server/ws-helpers.js';

const ROOT = resolve(import.meta.dirname, '../../../..');
const DEMO_MODEL = join(ROOT, 'resources', 'models', 'spillway-demo');
const RUNS = ['run-a', 'run-b', 'run-c'];
const STEPS = 400;

/** A data folder with three completed runs, each with STEPS step rows, evaluations, a checkpoint record and logs. */
function buildDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'spw-damage-'));
  const store = RunStore.open(dir);
  for (const id of RUNS) {
    const folder = runFolder(dir, id);
    mkdirSync(join(folder, 'checkpoints'), { recursive: true });
    store.createRun({
      id,
      name: `${id} name`,
      model: '/models/tiny',
      dataset: '/data/train.jsonl',
      task: 'sst2',
      config: { options: { model: '/models/tiny', train: '/data/train.jsonl', task: { kind: 'sst2' }, steps: STEPS, checkpointDir: join(folder, 'checkpoints') }, ownModelFolder: true },
      status: 'completed',
      stepsPlanned: STEPS,
      folder,
    });
  }
  const writer = new MetricWriter(store, { maxRows: 150, flushMs: 60_000 });
  for (let step = 1; step <= STEPS; step++) {
    for (const [i, id] of RUNS.entries()) {
      const loss = 0.7 - step / 1000 + i / 10;
      writer.addStep(id, { step, time: 1_700_000_000_000 + step, loss, lossPlus: loss + 0.01, lossMinus: loss - 0.01, projectedGrad: 0.5, lr: 1e-3, stepMs: 12, tokensPerS: 900, skipped: false, seed: String(step * 7919 + i) });
      if (step % 50 === 0) writer.addEval(id, { step, time: step, loss, accuracy: 0.5 + step / 1000, examples: 32, evalMs: 5 });
      if (step % 100 === 0) writer.addLog(id, { time: step, level: 'info', message: `step ${step}` });
    }
  }
  writer.close();
  for (const id of RUNS) {
    store.updateRun(id, { stepsDone: STEPS, endedAt: 1 });
    store.addCheckpoint({ runId: id, step: STEPS, path: join(runFolder(dir, id), 'checkpoints', `step-${STEPS}`), bytes: 1234, createdAt: 2 });
  }
  store.setSetting('settings', { modelRoots: ['/models'], threads: 3 });
  store.close();
  return dir;
}

const pageSize = (file: string) => readFileSync(file).readUInt16BE(16);

/** Overwrites one whole page with bytes from a fixed seed. */
function damagePage(file: string, page: number, seed = 7): Buffer {
  const ps = pageSize(file);
  const bytes = readFileSync(file);
  let x = seed;
  for (let i = 0; i < ps; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[(page - 1) * ps + i] = x >>> 24;
  }
  writeFileSync(file, bytes);
  return bytes;
}

function pageCount(file: string): number {
  return readFileSync(file).length / pageSize(file);
}

/** dbstat: which table or index each page belongs to, and how many cells it holds. */
function pages(file: string): { name: string; pageno: number; pagetype: string; ncell: number }[] {
  const db = new Database(file, { readonly: true });
  const rows = db.prepare('SELECT name, pageno, pagetype, ncell FROM dbstat ORDER BY pageno').all() as { name: string; pageno: number; pagetype: string; ncell: number }[];
  db.close();
  return rows;
}

function asideFiles(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.startsWith('spillway.db.corrupt-') && !n.endsWith('-wal') && !n.endsWith('-shm'));
}

function stepsOf(store: RunStore, id: string): number[] {
  return store.getMetrics(id, 0).steps.map((s) => s.step);
}

describe('a damaged database page', () => {
  it('page 2 (the runs table): detected, moved aside, every metric row recovered and the runs rebuilt from their folders', async () => {
    const dir = buildDataDir();
    const file = databaseFile(dir);
    expect(pages(file).find((p) => p.pageno === 2)?.name).toBe('runs');
    const damaged = damagePage(file, 2);

    const store = RunStore.open(dir);
    expect(store.notices).toHaveLength(1);
    const aside = asideFiles(dir);
    expect(aside).toHaveLength(1);
    expect(store.notices[0]).toContain(`the database ${file} is damaged (`);
    expect(store.notices[0]).toContain(`moved aside to ${join(dir, aside[0])}`);
    expect(store.notices[0]).toContain(`3 runs rebuilt from their run folder (${RUNS.join(', ')}; marked interrupted)`);
    expect(store.notices[0]).toContain(`${RUNS.length * STEPS} step rows`);
    expect(readFileSync(join(dir, aside[0])).equals(damaged)).toBe(true);

    expect(store.listRuns().map((r) => [r.id, r.status, r.stepsDone, r.name])).toEqual(
      [...RUNS].reverse().map((id) => [id, 'interrupted', STEPS, `${id} name`]),
    );
    for (const id of RUNS) expect(stepsOf(store, id)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
    expect(store.getSetting('settings')).toEqual({ modelRoots: ['/models'], threads: 3 });
    expect(store.db.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(store.db.pragma('foreign_key_check')).toEqual([]);
    store.close();
    // Opened again: nothing more to say.
    const again = RunStore.open(dir);
    expect(again.notices).toEqual([]);
    again.close();
  });

  it('the last page: detected, the rows on it lost and named, everything else recovered; `spillway runs list` and `serve` open', async () => {
    const dir = buildDataDir();
    const file = databaseFile(dir);
    const last = pageCount(file);
    const owner = pages(file).find((p) => p.pageno === last)!;
    damagePage(file, last, 11);

    const cli = await runSpillway(['runs', 'list', '--data-dir', dir], dir);
    expect(cli.code).toBe(0);
    expect(cli.stderr).toMatch(/the database .*spillway\.db is damaged \(.*\); it was moved aside to .*spillway\.db\.corrupt-/);
    expect(cli.stdout).toContain('run-a');
    expect(asideFiles(dir)).toHaveLength(1);

    const store = RunStore.open(dir);
    const total = RUNS.reduce((n, id) => n + stepsOf(store, id).length, 0);
    if (owner.name === 'step_metrics') expect(RUNS.length * STEPS - total).toBe(owner.ncell);
    else expect(total).toBe(RUNS.length * STEPS);
    expect(store.listRuns()).toHaveLength(3);
    store.close();

    // The backend the GUI talks to opens a damaged file too, and its notice reaches the GUI.
    const other = buildDataDir();
    damagePage(databaseFile(other), pageCount(databaseFile(other)), 11);
    const served = await startServe({ host: '127.0.0.1', port: 0, staticDir: null }, defaultServices(other), () => {});
    const client = new SpillwayClient(await connectWebSocket(webSocketUrlFor(served.server.url), wsFactory));
    expect((await client.call('listRuns', {})).total).toBe(3);
    const { notices } = await client.call('getNotices', {});
    expect(notices).toEqual([expect.objectContaining({ level: 'warn', message: expect.stringMatching(/is damaged .* moved aside to .*spillway\.db\.corrupt-/) })]);
    client.close();
    await served.stop();
  });

  it('a middle page that nothing read before: detected at open, the rows on it named by step, the rest recovered', () => {
    const dir = buildDataDir();
    const file = databaseFile(dir);
    const leaves = pages(file).filter((p) => p.name === 'step_metrics' && p.pagetype === 'leaf');
    const middle = leaves[Math.floor(leaves.length / 2)];
    const before = new Database(file, { readonly: true });
    const all = before.prepare('SELECT run_id, step FROM step_metrics ORDER BY run_id, step').all() as { run_id: string; step: number }[];
    before.close();
    damagePage(file, middle.pageno, 23);

    const store = RunStore.open(dir);
    expect(store.notices).toHaveLength(1);
    const kept = new Set(RUNS.flatMap((id) => stepsOf(store, id).map((s) => `${id}:${s}`)));
    const lost = all.filter((r) => !kept.has(`${r.run_id}:${r.step}`));
    expect(lost).toHaveLength(middle.ncell);
    // The lost rows are one stretch of one run (a leaf holds neighbouring keys), and the notice names it.
    const run = lost[0].run_id;
    expect(lost.every((r) => r.run_id === run)).toBe(true);
    expect(lost.map((r) => r.step)).toEqual(Array.from({ length: lost.length }, (_, i) => lost[0].step + i));
    expect(store.notices[0]).toContain(`run ${run} has no rows for steps ${lost[0].step}–${lost.at(-1)!.step}`);
    expect(store.notices[0]).toContain('unreadable pages skipped in step rows');
    expect(store.getRun(run)?.stepsDone).toBe(STEPS);
    store.close();
  });

  it('`spillway train` on a damaged file: it says so, trains, and records its run beside the recovered ones', async () => {
    const dir = buildDataDir();
    damagePage(databaseFile(dir), 5, 31);
    const r = await runSpillway(
      ['train', '--model', DEMO_MODEL, '--data', join(DEMO_DATA, 'sentiment-demo', 'train.jsonl'), '--eval-fraction', '0', '--no-zero-shot', '--steps', '2', '--batch-size', '4', '--data-dir', dir, '--json'],
      dir,
    );
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/the database .*spillway\.db is damaged \(Tree \d+ page 5: .*\); it was moved aside to .*spillway\.db\.corrupt-.* recovered 3 runs, 1 settings, 1200 step rows/);
    const store = RunStore.open(dir);
    expect(store.notices).toEqual([]);
    expect(store.listRuns()).toHaveLength(RUNS.length + 1);
    expect(store.listRuns()[0]).toMatchObject({ status: 'completed', stepsDone: 2 });
    store.close();
  }, 120_000);

  it('page 1 (the header): nothing is readable; the runs are rebuilt from their folders and the app opens', () => {
    const dir = buildDataDir();
    const file = databaseFile(dir);
    damagePage(file, 1, 5);
    const sup = RunSupervisor.open(dir);
    const notice = sup.store.notices[0];
    expect(notice).toMatch(/is damaged \(file is not a database\); it was moved aside to .* \(not readable at all\)/);
    expect(notice).toContain('3 runs rebuilt from their run folder');
    expect(sup.listRuns().map((r) => r.status)).toEqual(['interrupted', 'interrupted', 'interrupted']);
    expect(stepsOf(sup.store, 'run-a')).toEqual([]);
    expect(notice).toMatch(/run run-a has no rows for steps 1–400/);
    void sup.close();
  });
});

/**
 * A child process that writes runs through the real store and metric writer, flushing as a run does,
 * then is killed (SIGKILL) before it can checkpoint its write-ahead log into the database file.
 */
async function crashMidRun(dir: string): Promise<void> {
  const dist = (p: string) => JSON.stringify(join(ROOT, 'dist', p));
  const script = `
    const { RunStore, MetricWriter } = await import(${dist('electron/services/store/index.js')});
    const { runFolder } = await import(${dist('electron/services/paths.js')});
    const { mkdirSync } = await import('node:fs');
    const dir = ${JSON.stringify(dir)};
    const store = RunStore.open(dir);
    store.db.pragma('wal_autocheckpoint = 0');
    for (const id of ${JSON.stringify(RUNS)}) {
      mkdirSync(runFolder(dir, id), { recursive: true });
      store.createRun({ id, name: id, model: '/m', dataset: '/d.jsonl', task: 'sst2', config: { options: {} }, status: 'running', stepsPlanned: ${STEPS}, folder: runFolder(dir, id) });
    }
    const writer = new MetricWriter(store, { maxRows: 60, flushMs: 60000 });
    for (let step = 1; step <= ${STEPS}; step++)
      for (const id of ${JSON.stringify(RUNS)})
        writer.addStep(id, { step, time: step, loss: 1, lossPlus: 1, lossMinus: 1, projectedGrad: 0, lr: 0, stepMs: 1, tokensPerS: 1, skipped: false, seed: String(step) });
    writer.flush();
    process.stdout.write('flushed\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res, rej) => {
    child.stdout.on('data', (b: Buffer) => b.toString().includes('flushed') && res());
    child.on('exit', (code) => rej(new Error(`the writer exited (${code}) before flushing`)));
  });
  const exited = new Promise((res) => child.once('exit', res));
  child.kill('SIGKILL');
  await exited;
}

describe('a damaged write-ahead log', () => {
  const walFrames = (wal: string, ps: number) => (readFileSync(wal).length - 32) / (24 + ps);

  it('a damaged frame: SQLite drops the transactions after it; the run folders show which steps, and the log is kept', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spw-wal-'));
    await crashMidRun(dir);
    const file = databaseFile(dir);
    const wal = `${file}-wal`;
    expect(existsSync(wal)).toBe(true);
    const ps = pageSize(file);
    const frames = walFrames(wal, ps);
    expect(frames).toBeGreaterThan(10);
    for (const id of RUNS) expect(readFlushedStep(runFolder(dir, id))).toBe(STEPS);
    // Damage the page image of a frame in the middle: its checksum no longer matches.
    const bytes = readFileSync(wal);
    const k = Math.floor(frames / 2);
    const at = 32 + k * (24 + ps) + 24 + 100;
    for (let i = 0; i < 64; i++) bytes[at + i] ^= 0x5a;
    writeFileSync(wal, bytes);

    const store = RunStore.open(dir);
    const last = Object.fromEntries(RUNS.map((id) => [id, store.lastStep(id)]));
    expect(Math.min(...Object.values(last))).toBeLessThan(STEPS);
    const notice = store.notices.find((n) => n.includes('write-ahead log'))!;
    expect(notice).toContain(`the database ${file} lacks rows its run folders recorded as committed`);
    for (const id of RUNS) {
      if (last[id] < STEPS) expect(notice).toContain(`run ${id}: steps ${last[id] + 1}–${STEPS}`);
      expect(readFlushedStep(runFolder(dir, id))).toBe(last[id]);
    }
    const kept = /kept as (\S+)\.$/.exec(notice)![1];
    expect(readFileSync(kept).equals(bytes)).toBe(true);
    const lossy = RUNS.find((id) => last[id] < STEPS)!;
    expect(store.logs(lossy).at(-1)?.message).toMatch(/were written but are missing from the database/);
    store.close();
    const again = RunStore.open(dir);
    expect(again.notices).toEqual([]);
    again.close();
  });

  it('a damaged log header: SQLite ignores the whole log; every uncheckpointed step is named, the runs are registered again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spw-walhdr-'));
    await crashMidRun(dir);
    const file = databaseFile(dir);
    const bytes = readFileSync(`${file}-wal`);
    for (let i = 16; i < 32; i++) bytes[i] ^= 0xff;
    writeFileSync(`${file}-wal`, bytes);
    copyFileSync(`${file}-wal`, join(dir, 'wal-as-damaged'));

    const store = RunStore.open(dir);
    // The runs' own rows were in the log too: they come back from run.json.
    expect(store.listRuns().map((r) => r.id).sort()).toEqual(RUNS);
    const notice = store.notices.join('\n');
    for (const id of RUNS) expect(notice).toContain(`run ${id}: its record (registered again from ${join(runFolder(dir, id), 'run.json')})`);
    expect(store.getRun('run-a')).toMatchObject({ status: 'interrupted', stepsDone: 0 });
    store.close();
  });
});
