// `spillway train` records its run in the store; `spillway runs ...` reads,
// exports and deletes runs. Real child processes (run `npm run build:ts` first).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

import { CSV_HEADER } from '../../../../electron/services/runs/index.js';
import { ROOT } from '../../../helpers/engine.js';
import { DEMO_DATA, makeTinyLlama } from '../../../helpers/tiny-model.js';

const exec = promisify(execFile);
const BIN = join(ROOT, 'bin', 'spillway.js');

async function spillway(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, [BIN, ...args], { env: { ...process.env, SPILLWAY_THREADS: '1', ...env }, maxBuffer: 64 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

let work: string;
let model: string;
let dataDir: string;
const train = join(DEMO_DATA, 'sentiment-demo', 'train.jsonl');
const evalData = join(DEMO_DATA, 'sentiment-demo', 'eval.jsonl');
const trainArgs = () => ['train', '--model', model, '--data', train, '--eval-data', evalData, '--eval-max', '8', '--steps', '3', '--batch-size', '4', '--lr', '1e-3', '--seed', '2'];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-runs-cli-'));
  dataDir = join(work, 'data');
  model = await makeTinyLlama(join(work, 'tiny'));
});

describe('spillway train records its run', () => {
  it('prints as before, and the run lands in the store; runs list/show/export/delete work on it', async () => {
    const t = await spillway([...trainArgs(), '--json', '--data-dir', dataDir]);
    expect(t.code, t.stderr).toBe(0);
    const events = t.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.map((e) => e.type)).toEqual(['start', 'eval', 'step', 'step', 'step', 'eval', 'done']);
    // The start names the run it recorded (for runs show); the other lines are the engine's own.
    expect(events.filter((e) => 'runId' in e).map((e) => e.type)).toEqual(['start']);

    const list = await spillway(['runs', 'list', '--json', '--data-dir', dataDir]);
    expect(list.code, list.stderr).toBe(0);
    const runs = JSON.parse(list.stdout) as { id: string; status: string; stepsDone: number; folder: string }[];
    expect(runs).toHaveLength(1);
    const [run] = runs;
    expect(run).toMatchObject({ status: 'completed', stepsDone: 3 });
    expect(events[0].runId).toBe(run.id);

    // SPILLWAY_DATA_DIR reaches the same store; the table names the run.
    const table = await spillway(['runs', 'list'], { SPILLWAY_DATA_DIR: dataDir });
    expect(table.stdout).toMatch(/^ID\s+STATUS\s+STEPS/);
    expect(table.stdout).toContain(run.id);
    expect(table.stdout).toMatch(/completed\s+3\/3/);

    const show = await spillway(['runs', 'show', run.id.slice(0, 17), '--data-dir', dataDir]);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toMatch(/status\s+completed/);
    expect(show.stdout).toMatch(/last eval\s+step 3: accuracy/);
    expect(show.stdout).toContain('"steps": 3');
    // A resident run that sets no masters, update mode or spill folder: no storage line.
    expect(show.stdout).not.toMatch(/^storage/m);
    const showJson = JSON.parse((await spillway(['runs', 'show', run.id, '--json', '--data-dir', dataDir])).stdout) as Record<string, unknown>;
    expect(showJson).toMatchObject({ id: run.id, status: 'completed', lastEval: { step: 3, examples: 8 } });
    expect((showJson.config as { options: { model: string } }).options.model).toBe(model);

    const csv = await spillway(['runs', 'export', run.id, '--format', 'csv', '--data-dir', dataDir]);
    expect(csv.code, csv.stderr).toBe(0);
    const rows = csv.stdout.trim().split('\n').map((l) => l.split(','));
    expect(rows[0]).toEqual(CSV_HEADER);
    expect(rows.slice(1).map((r) => `${r[0]}:${r[1]}`)).toEqual(['step:1', 'step:2', 'step:3', 'eval:0', 'eval:3']);
    const steps = events.filter((e) => e.type === 'step');
    expect(rows.slice(1, 4).map((r) => Number(r[3]))).toEqual(steps.map((s) => s.loss));

    const out = join(work, 'export.json');
    const ej = await spillway(['runs', 'export', run.id, '--format', 'json', '--out', out, '--data-dir', dataDir]);
    expect(ej.code, ej.stderr).toBe(0);
    expect(ej.stdout).toBe('');
    const exported = JSON.parse(readFileSync(out, 'utf8')) as { run: { id: string }; steps: { step: number; loss: number }[]; evals: unknown[] };
    expect(exported.run.id).toBe(run.id);
    expect(exported.steps.map((s) => s.loss)).toEqual(steps.map((s) => s.loss));
    expect(exported.evals).toHaveLength(2);

    expect((await spillway(['runs', 'export', run.id, '--format', 'xml', '--data-dir', dataDir])).code).toBe(1);

    const refused = await spillway(['runs', 'delete', run.id, '--data-dir', dataDir]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/pass --yes/);
    expect(existsSync(run.folder)).toBe(true);
    const del = await spillway(['runs', 'delete', run.id, '--yes', '--data-dir', dataDir]);
    expect(del.code, del.stderr).toBe(0);
    expect(existsSync(run.folder)).toBe(false);
    expect(JSON.parse((await spillway(['runs', 'list', '--json', '--data-dir', dataDir])).stdout)).toEqual([]);
    const gone = await spillway(['runs', 'show', run.id, '--data-dir', dataDir]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/no run with id/);
  });

  it('runs show names the masters, update mode and spill folders of a run that streams its blocks', async () => {
    const dir = join(work, 'data-spill');
    const spill = mkdtempSync(join(work, 'spill-'));
    const t = await spillway([...trainArgs(), '--eval-max', '0', '--offload', 'ssd', '--spill', spill, '--masters', 'bf16', '--update-on', 'home', '--json', '--data-dir', dir]);
    expect(t.code, t.stderr).toBe(0);
    const [run] = JSON.parse((await spillway(['runs', 'list', '--json', '--data-dir', dir])).stdout) as { id: string }[];
    const show = await spillway(['runs', 'show', run.id, '--data-dir', dir]);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain(`storage     masters bf16 · updates at home · spill ${spill}\n`);
  });

  it('leaves no run behind when the data cannot be read, and prints why (issue 13)', async () => {
    const dir = join(work, 'data-fail');
    const r = await spillway(['train', '--model', model, '--data', join(work, 'missing.jsonl'), '--steps', '2', '--data-dir', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^spillway: .*missing\.jsonl: cannot read file/m);
    expect(JSON.parse((await spillway(['runs', 'list', '--json', '--data-dir', dir])).stdout)).toEqual([]);
    expect(readdirSync(join(dir, 'runs'))).toEqual([]);
  });
});
