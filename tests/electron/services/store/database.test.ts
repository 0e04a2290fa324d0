// Opening the store: migrations from every earlier version, a newer file
// refused, a file that is not a database moved aside, WAL and foreign keys on
// (damage to real database files: damage.test.ts).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';

import { RunPlan, TrainOptions } from '../../../../electron/common/contract.js';
import { databaseFile } from '../../../../electron/services/paths.js';
import { supervisorOperations } from '../../../../electron/services/runs/operations.js';
import { salvage } from '../../../../electron/services/store/recover.js';
import { RunSupervisor } from '../../../../electron/services/runs/supervisor.js';
import { DatabaseTooNewError, MIGRATIONS, RunStore, SCHEMA_VERSION, openDatabase, schemaVersion } from '../../../../electron/services/store/index.js';

const tempDir = () => mkdtempSync(join(tmpdir(), 'spw-store-'));

const tables = (db: Database.Database) =>
  (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((r) => r.name);

describe('openDatabase', () => {
  it('creates a fresh database at the latest version, in WAL mode with foreign keys', () => {
    const dir = tempDir();
    const store = RunStore.open(dir);
    expect(store.file).toBe(databaseFile(dir));
    expect(schemaVersion(store.db)).toBe(SCHEMA_VERSION);
    expect(SCHEMA_VERSION).toBe(MIGRATIONS.length);
    expect(store.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(store.db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(tables(store.db)).toEqual(
      ['artifacts', 'checkpoints', 'eval_metrics', 'logs', 'runs', 'settings', 'step_metrics', 'system_samples', 'tier_stats'].sort(),
    );
    const strict = store.db.prepare("SELECT name FROM pragma_table_list WHERE schema = 'main' AND name NOT LIKE 'sqlite_%' AND strict = 0").all();
    expect(strict).toEqual([]);
    store.close();
  });

  it('upgrades a file from every earlier version, keeping its data', () => {
    for (let v = 1; v < SCHEMA_VERSION; v++) {
      const dir = tempDir();
      const old = openDatabase(databaseFile(dir), { migrations: MIGRATIONS.slice(0, v) }).db;
      expect(schemaVersion(old)).toBe(v);
      old.prepare(
        `INSERT INTO runs (id, name, model, dataset, task, config, status, created_at, steps_planned, folder)
         VALUES ('r1', 'old run', '/m', '/d.jsonl', 'sst2', '{"options":{}}', 'completed', 1, 10, '/runs/r1')`,
      ).run();
      old.prepare("INSERT INTO step_metrics (run_id, step, time, loss, skipped, seed) VALUES ('r1', 1, 2, 0.5, 0, '42')").run();
      old.prepare("INSERT INTO settings (key, value) VALUES ('theme', '\"dark\"')").run();
      old.close();

      const store = RunStore.open(dir);
      expect(schemaVersion(store.db)).toBe(SCHEMA_VERSION);
      const run = store.getRun('r1');
      expect(run).toMatchObject({ name: 'old run', status: 'completed', stepsPlanned: 10, ownerPid: null });
      expect(store.getMetrics('r1').steps).toEqual([expect.objectContaining({ step: 1, loss: 0.5, seed: '42', skipped: false })]);
      expect(store.getSetting('theme')).toBe('dark');
      store.insertSystemSamples([{ runId: 'r1', time: 5, cpuPercent: 12.5, payload: { cpu: 12.5 } }]);
      expect(store.systemSamples('r1')).toEqual([expect.objectContaining({ cpuPercent: 12.5, payload: { cpu: 12.5 } })]);
      store.close();
    }
  });

  it('version 3 adds the steps\' I/O per link and the run\'s plan; rows from version 2 read back without them', () => {
    const dir = tempDir();
    const old = openDatabase(databaseFile(dir), { migrations: MIGRATIONS.slice(0, 2) }).db;
    expect(schemaVersion(old)).toBe(2);
    old.prepare(
      `INSERT INTO runs (id, name, model, dataset, task, config, status, created_at, steps_planned, folder, owner_pid)
       VALUES ('r2', 'v2 run', '/m', '/d.jsonl', 'sst2', '{"options":{}}', 'completed', 1, 10, '/runs/r2', NULL)`,
    ).run();
    old.prepare(
      `INSERT INTO step_metrics (run_id, step, time, loss, loss_plus, loss_minus, projected_grad, lr, step_ms, tokens_per_s, skipped, seed)
       VALUES ('r2', 1, 2, 0.5, 0.6, 0.4, 1, 0.001, 12, 100, 0, '7')`,
    ).run();
    old.close();

    const store = RunStore.open(dir);
    expect(schemaVersion(store.db)).toBeGreaterThanOrEqual(3);
    const columns = (t: string) => (store.db.prepare(`SELECT name FROM pragma_table_info('${t}')`).all() as { name: string }[]).map((c) => c.name);
    expect(columns('step_metrics')).toEqual(expect.arrayContaining(['h2d_bytes', 'd2h_bytes', 'ssd_read_bytes', 'ssd_write_bytes', 'io_wait_ms']));
    expect(columns('runs')).toContain('plan');
    // The old row: no I/O, no plan.
    expect(store.getMetrics('r2').steps).toEqual([expect.objectContaining({ step: 1, stepMs: 12, seed: '7', io: null })]);
    expect(store.getRun('r2')).toMatchObject({ name: 'v2 run', plan: null });
    // New rows carry them.
    const io = { h2dBytes: 3166208, d2hBytes: 0, ssdReadBytes: 3178496, ssdWriteBytes: 3178496, waitMs: 8.5 };
    store.insertStepMetrics('r2', [{ step: 2, time: 3, loss: 0.4, lossPlus: 0.5, lossMinus: 0.3, projectedGrad: 1, lr: 0.001, stepMs: 11, tokensPerS: 110, skipped: false, seed: '8', io }]);
    expect(store.getMetrics('r2', 1).steps[0].io).toEqual(io);
    const plan = { homes: { device: 2, cpu: 0, ssd: 4 }, predictedStepMs: 20, floorMs: 12, bound: 'ssd-read' };
    expect(store.updateRun('r2', { plan }).plan).toEqual(plan);
    expect(store.db.pragma('integrity_check', { simple: true })).toBe('ok');
    store.close();
  });

  it('version 4 gives runs written before it the one spelling: camelCase final metrics and plan, spillDirs', async () => {
    // The three JSON columns exactly as Spillway at schema version 3 wrote them for a run placed by the
    // planner (`spillway train --cpu-mem 150MB --spill DIR --json`, commit 8f159cd).
    const config = {
      options: {
        evalFraction: 0.1, steps: 2, batchSize: 4, lr: 0.0003, eps: 0.001, weightDecay: 0, q: 1, schedule: 'constant', warmupSteps: 0, noise: 'gaussian',
        seed: 0, evalEvery: 25, evalMax: 4, threads: 0, zeroShot: true, model: '/m/spillway-demo', train: '/d/train.jsonl', eval: '/d/eval.jsonl',
        task: { kind: 'sst2', labelWords: [' terrible', ' great'] }, maxLength: 64, checkpointDir: '/data/runs/r3/checkpoints', offload: 'auto',
        cpuMem: 150000000, spillDir: '/nvme/spill', checkpointEvery: 100,
      },
      ownModelFolder: false,
    };
    const finalMetrics = {
      steps: 2, final_loss: 0.8486711093225512,
      eval: { type: 'eval', step: 2, loss: 0.6038100470446662, accuracy: 0.5, examples: 4, eval_ms: 8 },
      zero_shot: { type: 'eval', step: 0, loss: 0.6066907513425626, accuracy: 0.5, examples: 4, eval_ms: 10 },
      skipped_steps: 0, out: null, wall_s: 3.254,
    };
    const plan = {
      homes: { device: 2, cpu: 0, ssd: 4 }, predicted_step_ms: 56.5, floor_ms: 50.25, bound: 'ssd-read',
      link_bytes: { h2d: 3166208, d2h: 0, ssd_read: 3178496, ssd_write: 1589248 }, link_ms: { h2d: 1, d2h: 0, ssd_read: 50.25, ssd_write: 25 }, io_wait_ms: 3.5,
    };
    const dir = tempDir();
    const old = openDatabase(databaseFile(dir), { migrations: MIGRATIONS.slice(0, 3) }).db;
    expect(schemaVersion(old)).toBe(3);
    const insert = old.prepare(
      `INSERT INTO runs (id, name, model, dataset, task, config, status, created_at, steps_planned, folder, owner_pid, final_metrics, plan)
       VALUES (?, 'v3 run', '/m', '/d.jsonl', 'sst2', ?, 'completed', 1, 2, '/runs/r3', NULL, ?, ?)`,
    );
    insert.run('r3', JSON.stringify(config), JSON.stringify(finalMetrics), JSON.stringify(plan));
    // A run that had not finished (no final metrics, no plan), with both spill fields: spillDirs wins.
    insert.run('r3-open', JSON.stringify({ options: { spillDir: '/a', spillDirs: ['/a', '/b'] } }), null, null);
    // The old contract took any thread count; today's bound is 1024.
    insert.run('r3-threads', JSON.stringify({ ...config, options: { ...config.options, threads: 100_000 } }), null, null);
    old.close();

    const store = RunStore.open(dir);
    expect(schemaVersion(store.db)).toBe(SCHEMA_VERSION);
    const r = store.getRun('r3')!;
    expect(r.finalMetrics).toEqual({
      steps: 2, finalLoss: 0.8486711093225512,
      eval: { type: 'eval', step: 2, loss: 0.6038100470446662, accuracy: 0.5, examples: 4, evalMs: 8 },
      zeroShot: { type: 'eval', step: 0, loss: 0.6066907513425626, accuracy: 0.5, examples: 4, evalMs: 10 },
      skippedSteps: 0, out: null, wallS: 3.254,
    });
    // The plan reads as the contract's RunPlan, the shape new runs store.
    expect(RunPlan.parse(r.plan)).toEqual({
      homes: { device: 2, cpu: 0, ssd: 4 }, predictedStepMs: 56.5, floorMs: 50.25, bound: 'ssd-read',
      linkBytes: { hostToDevice: 3166208, deviceToHost: 0, ssdRead: 3178496, ssdWrite: 1589248 },
      linkMs: { hostToDevice: 1, deviceToHost: 0, ssdRead: 50.25, ssdWrite: 25 }, ioWaitMs: 3.5,
    });
    const { spillDir: _gone, ...rest } = config.options;
    expect(r.config).toEqual({ ...config, options: { ...rest, spillDirs: ['/nvme/spill'] } });
    // The stored options are run options again: they parse, as a resume reads them.
    expect(TrainOptions.parse((r.config as { options: unknown }).options).spillDirs).toEqual(['/nvme/spill']);
    expect(store.getRun('r3-open')).toMatchObject({ config: { options: { spillDirs: ['/a', '/b'] } }, finalMetrics: null, plan: null });
    expect((store.getRun('r3-open')!.config as { options: object }).options).not.toHaveProperty('spillDir');
    expect(store.db.pragma('integrity_check', { simple: true })).toBe('ok');

    // The API shows them as it shows new runs: the options (an out-of-bound value as its default), the plan.
    const sup = new RunSupervisor({ store, dataDir: dir });
    const ops = supervisorOperations(sup);
    const ctx = { signal: new AbortController().signal };
    const detail = await ops.getRun({ runId: 'r3' }, ctx);
    expect(detail.options).toMatchObject({ spillDirs: ['/nvme/spill'], offload: 'auto', cpuMem: 150000000, threads: 0 });
    expect(detail.plan).toMatchObject({ predictedStepMs: 56.5, linkBytes: { ssdRead: 3178496 } });
    expect((await ops.getRun({ runId: 'r3-threads' }, ctx)).options).toMatchObject({ threads: 0, steps: 2, batchSize: 4 });
    await sup.close();

    // Salvaging a damaged file copies its rows into a fresh one at the latest version: rows of a
    // version-3 file take today's spelling there too.
    const v3 = openDatabase(databaseFile(tempDir()), { migrations: MIGRATIONS.slice(0, 3) }).db;
    v3.prepare(
      `INSERT INTO runs (id, name, model, dataset, task, config, status, created_at, steps_planned, folder, owner_pid, final_metrics, plan)
       VALUES ('r3', 'v3 run', '/m', '/d.jsonl', 'sst2', ?, 'completed', 1, 2, '/runs/r3', NULL, ?, ?)`,
    ).run(JSON.stringify(config), JSON.stringify(finalMetrics), JSON.stringify(plan));
    const fresh = openDatabase(databaseFile(tempDir())).db;
    fresh.pragma('foreign_keys = OFF');
    salvage(v3, fresh, tempDir());
    const row = fresh.prepare('SELECT config, final_metrics, plan FROM runs WHERE id = ?').get('r3') as { config: string; final_metrics: string; plan: string };
    expect(JSON.parse(row.final_metrics)).toMatchObject({ finalLoss: 0.8486711093225512, skippedSteps: 0, wallS: 3.254 });
    expect(RunPlan.parse(JSON.parse(row.plan)).linkBytes).toEqual({ hostToDevice: 3166208, deviceToHost: 0, ssdRead: 3178496, ssdWrite: 1589248 });
    expect(JSON.parse(row.config).options.spillDirs).toEqual(['/nvme/spill']);
    v3.close();
    fresh.close();
  });

  it('lets several processes create the same new file at once (a CLI run started beside the app)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spw-db-race-'));
    const module = join(import.meta.dirname, '../../../../dist/electron/services/store/index.js');
    const script = `import { RunStore } from ${JSON.stringify(module)}; RunStore.open(process.argv[1]).close(); console.log('opened');`;
    const opens = Array.from({ length: 6 }, () =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const c = spawn(process.execPath, ['--input-type=module', '-e', script, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        c.stdout.on('data', (b: Buffer) => (out += b));
        c.stderr.on('data', (b: Buffer) => (out += b));
        c.on('exit', (code) => resolve({ code, out }));
      }),
    );
    for (const r of await Promise.all(opens)) expect(r, r.out).toEqual({ code: 0, out: 'opened\n' });
    const db = new Database(databaseFile(dir), { readonly: true });
    expect(schemaVersion(db)).toBe(SCHEMA_VERSION);
    db.close();
  });

  it('refuses a database written by a newer Spillway and leaves it untouched', () => {
    const dir = tempDir();
    RunStore.open(dir).close();
    const raw = new Database(databaseFile(dir));
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    const before = readFileSync(databaseFile(dir));
    expect(() => RunStore.open(dir)).toThrow(DatabaseTooNewError);
    expect(() => RunStore.open(dir)).toThrow(
      new RegExp(`newer version of Spillway \\(schema version ${SCHEMA_VERSION + 1}; this version knows up to ${SCHEMA_VERSION}\\)`),
    );
    expect(readFileSync(databaseFile(dir)).equals(before)).toBe(true);
    expect(readdirSync(dir).filter((n) => n.includes('corrupt'))).toEqual([]);
  });

  it('moves a corrupt file aside with a timestamp and says so', () => {
    const dir = tempDir();
    const file = databaseFile(dir);
    const garbage = Buffer.from('this is not an SQLite database, just some bytes '.repeat(200));
    writeFileSync(file, garbage);
    const store = RunStore.open(dir);
    expect(store.notices).toHaveLength(1);
    expect(store.notices[0]).toMatch(/is damaged \(file is not a database\); it was moved aside to .*spillway\.db\.corrupt-\d{4}-\d\d-\d\dT.* \(not readable at all\) and a new database was made from what could still be read: no rows could be read$/);
    const aside = readdirSync(dir).filter((n) => n.startsWith('spillway.db.corrupt-'));
    expect(aside).toHaveLength(1);
    expect(readFileSync(join(dir, aside[0])).equals(garbage)).toBe(true);
    expect(schemaVersion(store.db)).toBe(SCHEMA_VERSION);
    expect(store.listRuns()).toEqual([]);
    store.close();
    expect(existsSync(file)).toBe(true);
  });
});
