// The GUI end to end: a real `spillway serve` (temp data folder, free port)
// serving the freshly built renderer, driven by headless Chromium.

import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import WebSocket from 'ws';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { allBlocksOnSsdBudget, type BudgetPlan } from '../electron/common/plan-budget.js';
import { makeTinyLlama } from '../helpers/tiny-model.js';

const ROOT = resolve(import.meta.dirname, '../..');
const SCREENS = join(ROOT, 'tests/e2e/screens');
const CHROMIUM = process.env.SPILLWAY_CHROMIUM ?? '/usr/bin/chromium';

const servers: ChildProcess[] = [];
let url = '';
let dataDir = '';
let browser: Browser;
let page: Page;

async function startServe(env: NodeJS.ProcessEnv = {}, data = dataDir): Promise<string> {
  const server = spawn(process.execPath, [join(ROOT, 'bin/spillway.js'), 'serve', '--port', '0', '--static', join(ROOT, 'dist/renderer')], {
    env: { ...process.env, SPILLWAY_DATA_DIR: data, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  servers.push(server);
  let out = '';
  return new Promise((res, rej) => {
    const onData = (b: Buffer) => {
      out += b.toString();
      const m = /(http:\/\/\S+\?token=\w+)/.exec(out);
      if (m) res(m[1]);
    };
    server.stdout!.on('data', onData);
    server.stderr!.on('data', onData);
    server.on('exit', (code) => rej(new Error(`spillway serve exited (${code}):\n${out}`)));
  });
}

/** One contract call over the server's own WebSocket (test setup only). */
async function callApi(method: string, params: unknown): Promise<unknown> {
  const u = new URL(url);
  const ws = new WebSocket(`ws://${u.host}/ws?token=${u.searchParams.get('token')}`);
  await new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); });
  ws.send(JSON.stringify({ type: 'call', id: 1, method, params }));
  const reply = await new Promise<{ ok: boolean; result?: unknown; error?: unknown }>((res) =>
    ws.on('message', (d) => { const f = JSON.parse(String(d)); if (f.type === 'result') res(f); }));
  ws.close();
  if (!reply.ok) throw new Error(`${method}: ${JSON.stringify(reply.error)}`);
  return reply.result;
}

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(SCREENS, `${name}.png`) });
}

async function chartPoints(testid: string): Promise<number> {
  return Number(await page.getAttribute(`[data-testid="${testid}"]`, 'data-points'));
}

async function startDemoRun(name: string, steps: number, seed = 0): Promise<string> {
  await page.goto(`${url}#/new`);
  await page.waitForFunction(() => (document.querySelector('[data-testid="model-select"]') as HTMLSelectElement | null)?.value.includes('spillway-demo'));
  await page.fill('[data-testid="run-name"]', name);
  await page.fill('[data-testid="steps"]', String(steps));
  await page.fill('[data-testid="batch-size"]', '4');
  await page.fill('[data-testid="eval-every"]', '5');
  await page.fill('[data-testid="seed"]', String(seed));
  await page.click('[data-testid="start-run"]');
  try {
    await page.waitForFunction(() => location.hash.startsWith('#/live/'));
  } catch (e) {
    await shot('failed-start');
    throw e;
  }
  return decodeURIComponent(page.url().split('#/live/')[1]);
}

beforeAll(async () => {
  mkdirSync(SCREENS, { recursive: true });
  await build({ configFile: join(ROOT, 'vite.config.ts'), logLevel: 'warn' });
  dataDir = mkdtempSync(join(tmpdir(), 'spillway-e2e-'));
  url = await startServe();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  // Waits end when the page shows what they wait for; this is only a hang guard, generous because
  // runs train for real on a machine CI shares (the test's own guard is longer still).
  page.setDefaultTimeout(300_000);
  page.on('pageerror', (e) => console.error('page error:', e.message));
});

afterAll(async () => {
  await browser?.close();
  for (const server of servers) server.kill('SIGTERM');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('Spillway GUI', { timeout: 600_000 }, () => {
  it('first launch: the demo model and dataset are preselected and the plan shows', async () => {
    await page.goto(url);
    await page.waitForSelector('[data-testid="connection"]:has-text("Connected")');
    await page.waitForSelector('[data-testid="plan"]');
    expect(await page.inputValue('[data-testid="train-path"]')).toMatch(/sentiment-demo\/train\.jsonl$/);
    await shot('new-run');
  });

  it('New run: a CPU budget too small makes the plan say what is short', async () => {
    await page.fill('[data-testid="cpu-budget"]', '1 MiB');
    await page.waitForSelector('[data-testid="plan"][data-feasible="false"]');
    const text = await page.textContent('[data-testid="plan"]');
    expect(text).toContain('Does not fit.');
    expect(text).toMatch(/CPU memory: what must stay on the compute device needs [\d.]+ \w+ \(.*\) but the budget is 1\.0 MiB \(short by [\d.]+ \w+\)/);
    await shot('plan-short');
    await page.fill('[data-testid="cpu-budget"]', '');
    await page.waitForSelector('[data-testid="plan"][data-feasible="true"]');
  });

  it('Models and Datasets screens show the demo and render examples', async () => {
    await page.click('[data-testid="nav-models"]');
    await page.waitForSelector('[data-testid="models-table"] >> text=spillway-demo');
    await shot('models');
    await page.click('[data-testid="nav-datasets"]');
    await page.click('[data-testid="dataset-open"]');
    await page.waitForSelector('[data-testid="preview-table"] mark');
    await shot('datasets');
  });

  let bad = '';
  it('Datasets: "Check all rows" lists every bad row with its line', async () => {
    bad = join(dataDir, 'two-bad.jsonl');
    writeFileSync(
      bad,
      ['{"sentence":"a fine film","label":1}', '{"sentence":"no label"}', '{"sentence":"dull","label":0}', '{"sentence": broken', '{"sentence":"fine","label":1}'].join('\n') + '\n',
    );
    await page.fill('[data-testid="dataset-path"]', bad);
    await page.waitForFunction(() => (document.querySelector('[data-testid="check-model"]') as HTMLSelectElement | null)?.value.includes('spillway-demo'));
    await page.click('[data-testid="check-rows"]');
    await page.waitForSelector('[data-testid="check-result"]');
    expect(await page.getAttribute('[data-testid="check-result"]', 'data-ok')).toBe('3');
    expect(await page.getAttribute('[data-testid="check-result"]', 'data-errors')).toBe('2');
    expect(await page.$$eval('[data-testid="check-error"]', (rows) => rows.map((r) => r.getAttribute('data-line')))).toEqual(['2', '4']);
    expect(await page.textContent('[data-testid="check-result"]')).toContain('3 of 5 rows tokenise');
    await shot('datasets-check');
  });

  it('file browser: walks the allowed folders, picks a dataset, and is refused outside them', async () => {
    mkdirSync(join(dataDir, 'picked', 'sub'), { recursive: true });
    writeFileSync(join(dataDir, 'picked', 'sub', 'mine.jsonl'), '{"sentence":"a fine film","label":1}\n{"sentence":"dull","label":0}\n');
    await page.click('[data-testid="nav-datasets"]');
    const current = await page.inputValue('[data-testid="dataset-path"]');
    await page.click('[data-testid="dataset-path-browse"]');
    await page.waitForSelector('[data-testid="file-browser"][open]');
    // It opens beside the current value, inside the allowed folders.
    await page.waitForSelector(`[data-testid="browser-path"][data-path="${dirname(current)}"]`);
    await page.click('[data-testid="browser-roots"]');
    await page.waitForSelector(`[data-testid="browser-entry"][data-name="${dataDir}"]`);
    await shot('file-browser-roots');
    await page.click(`[data-testid="browser-entry"][data-name="${dataDir}"]`);
    await page.click('[data-testid="browser-entry"][data-name="picked"]');
    await page.click('[data-testid="browser-entry"][data-name="sub"]');
    await page.waitForSelector(`[data-testid="browser-path"][data-path="${join(dataDir, 'picked', 'sub')}"]`);
    await page.click('[data-testid="browser-up"]');
    await page.waitForSelector(`[data-testid="browser-path"][data-path="${join(dataDir, 'picked')}"]`);
    await page.click('[data-testid="browser-entry"][data-name="sub"]');
    await page.waitForSelector(`[data-testid="browser-path"][data-path="${join(dataDir, 'picked', 'sub')}"]`);
    // Refused outside the allowed folders: it says so and stays where it was.
    await page.fill('[data-testid="browser-goto"]', '/etc');
    await page.click('[data-testid="browser-go"]');
    await page.waitForSelector('[data-testid="file-browser"] [role="alert"]');
    expect(await page.textContent('[data-testid="file-browser"] [role="alert"]')).toMatch(/\/etc is outside the folders Spillway may read datasets from: .*\(data folder\)/);
    expect(await page.getAttribute('[data-testid="browser-path"]', 'data-path')).toBe(join(dataDir, 'picked', 'sub'));
    await shot('file-browser-refused');
    await page.click('[data-testid="browser-entry"][data-name="mine.jsonl"]');
    await page.waitForSelector('[data-testid="file-browser"][open]', { state: 'detached' });
    expect(await page.inputValue('[data-testid="dataset-path"]')).toBe(join(dataDir, 'picked', 'sub', 'mine.jsonl'));
    await page.waitForSelector('[data-testid="preview-table"] >> text=a fine film');
    // A path typed outside the allowed folders is refused by the backend, not read.
    await page.fill('[data-testid="dataset-path"]', '/etc/passwd');
    await page.click('[data-testid="dataset-open"]');
    await page.waitForSelector('[role="alert"]:has-text("Could not open that file")');
    expect(await page.textContent('[role="alert"]:has-text("Could not open that file")')).toMatch(/\/etc\/passwd is outside the folders Spillway may read datasets from/);

    // New run: the training data picked the same way.
    await page.goto(`${url}#/new`);
    await page.waitForFunction(() => (document.querySelector('[data-testid="model-select"]') as HTMLSelectElement | null)?.value.includes('spillway-demo'));
    await page.click('[data-testid="train-path-browse"]');
    await page.waitForSelector('[data-testid="file-browser"][open]');
    await page.waitForSelector('[data-testid="browser-path"][data-path]:not([data-path=""])');
    await page.fill('[data-testid="browser-goto"]', join(dataDir, 'picked', 'sub'));
    await page.click('[data-testid="browser-go"]');
    await page.waitForSelector(`[data-testid="browser-path"][data-path="${join(dataDir, 'picked', 'sub')}"]`);
    await page.click('[data-testid="browser-entry"][data-name="mine.jsonl"]');
    expect(await page.inputValue('[data-testid="train-path"]')).toBe(join(dataDir, 'picked', 'sub', 'mine.jsonl'));
    await page.waitForSelector('[data-testid="plan"]', { timeout: 30_000 });
    await page.reload();
  });

  it('Datasets: chat rows show the rendered conversation, the trained replies highlighted, token counts and bad rows', async () => {
    const chat = join(dataDir, 'chat.jsonl');
    writeFileSync(
      chat,
      [
        { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }, { role: 'user', content: 'bye' }, { role: 'assistant', content: 'ciao' }] },
        { messages: [{ role: 'user', content: 'hi' }, { role: 'user', content: 'anyone?' }, { role: 'assistant', content: 'yes' }] },
      ]
        .map((r) => JSON.stringify(r))
        .join('\n') + '\n',
    );
    await page.click('[data-testid="nav-datasets"]');
    await page.selectOption('[data-testid="dataset-task"]', 'chat');
    await page.waitForSelector('[data-testid="chat-fields"]');
    await page.fill('[data-testid="dataset-path"]', chat);
    await page.click('[data-testid="dataset-open"]');
    await page.waitForSelector('[data-testid="chat-sequence"] mark', { timeout: 30_000 });
    expect(await page.$$eval('[data-testid="chat-sequence"] mark', (m) => m.map((x) => x.textContent))).toEqual(['hello</s>\n\n', 'ciao</s>\n\n']);
    expect(await page.textContent('[data-testid="chat-counts"]')).toMatch(/^\d+ tokens, \d+ trained \(replies of messages 2, 4\)$/);
    expect(await page.textContent('[data-testid="chat-note"]')).toContain('no chat template');
    expect(await page.textContent('[data-testid="row-error"]')).toMatch(/^line 2: .*:2: field "messages": message 2 \(user\): two user turns in a row/);
    await shot('datasets-chat');
    await page.click('[data-testid="check-rows"]');
    await page.waitForSelector('[data-testid="check-result"][data-errors="1"]', { timeout: 30_000 });
    expect(await page.$$eval('[data-testid="check-error"]', (rows) => rows.map((r) => r.getAttribute('data-line')))).toEqual(['2']);
    // "Use for a new run" carries the file, the task and its mapping to New run; the plan follows.
    await page.fill('[data-testid="chat-role-map"]', 'Customer=user');
    await page.click('text=Use for a new run');
    await page.waitForSelector('[data-testid="task-select"]');
    const demoTrain = await page.evaluate(() => document.querySelector('#dataset-paths option[value*="sentiment-demo/train"]')?.getAttribute('value') ?? '');
    expect(await page.inputValue('[data-testid="train-path"]')).toBe(chat);
    expect(await page.inputValue('[data-testid="task-select"]')).toBe('chat');
    expect(await page.inputValue('[data-testid="chat-role-map"]')).toBe('Customer=user');
    await page.waitForSelector('[data-testid="plan"][data-feasible="true"]', { timeout: 30_000 });
    await shot('new-run-chat');
    await page.selectOption('[data-testid="task-select"]', 'sst2');
    await page.fill('[data-testid="train-path"]', demoTrain);
    await page.click('[data-testid="nav-datasets"]');
    await page.selectOption('[data-testid="dataset-task"]', 'sst2');
  });

  let first = '';
  it('starts a run, chart points arrive, a reload resumes the live view, stop', async () => {
    first = await startDemoRun('e2e first', 400);
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="chart-loss"]')?.getAttribute('data-points')) >= 4);
    const before = await chartPoints('chart-loss');
    await page.reload();
    await page.waitForFunction((n) => Number(document.querySelector('[data-testid="chart-loss"]')?.getAttribute('data-points')) > n, before);
    expect(page.url()).toContain(`#/live/${encodeURIComponent(first)}`);
    // The header's clock moves on while the run trains, with the time left at the recent pace.
    const elapsed = await page.textContent('[data-testid="live-elapsed"]');
    expect(elapsed).toMatch(/^\d+:\d\d$/);
    await page.waitForFunction((t) => document.querySelector('[data-testid="live-elapsed"]')?.textContent !== t, elapsed);
    await page.waitForFunction(() => /^\d+:\d\d(:\d\d)?$/.test(document.querySelector('[data-testid="live-eta"]')?.textContent ?? ''));
    // Where it computes (auto took the CPU: this machine has no GPU), and the machine's telemetry over the run's time.
    expect(await page.textContent('[data-testid="live-device"]')).toBe('· on CPU');
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="chart-telemetry-util"]')?.getAttribute('data-points')) >= 2);
    await shot('live');
    await page.locator('[data-testid="telemetry-charts"]').screenshot({ path: join(SCREENS, 'live-telemetry.png') });
    await page.click('[data-testid="stop"]');
    await page.waitForSelector('[data-testid="live-title"] ~ .sub [data-status="stopped"], .sub [data-status="stopped"]');
  });

  it('a second run completes; Runs lists both, compares them, deletes one', async () => {
    // The same name as the first run: the comparison must still tell them apart.
    const second = await startDemoRun('e2e first', 10, 1);
    await page.waitForSelector('.sub [data-status="completed"]');
    await page.setViewportSize({ width: 1400, height: 900 });
    await page.click('[data-testid="nav-runs"]');
    await page.waitForSelector(`[data-run-id="${first}"]`);
    await page.waitForSelector(`[data-run-id="${second}"]`);
    // Every row's actions are on screen at 1400 px: the table fits its box, nothing to scroll to.
    expect(await page.$eval('[data-testid="runs-table"]', (t) => t.parentElement!.scrollWidth <= t.parentElement!.clientWidth)).toBe(true);
    for (const id of [first, second]) {
      const box = (await page.locator(`[data-run-id="${id}"] [data-testid="delete"]`).boundingBox())!;
      expect(box.x + box.width).toBeLessThanOrEqual(1400);
    }
    await page.check(`[data-run-id="${first}"] input[type=checkbox]`);
    await page.check(`[data-run-id="${second}"] input[type=checkbox]`);
    await page.click('[data-testid="compare"]');
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="chart-overlay-loss"]')?.getAttribute('data-points')) > 10);
    const heads = await page.$$eval('[data-testid="hyperparameters"] thead th', (ths) => ths.slice(1).map((th) => th.textContent?.trim()));
    expect(heads).toEqual([`e2e first · ${first}`, `e2e first · ${second}`]);
    const differs = async (key: string) => page.getAttribute(`[data-testid="hyper-row"][data-key="${key}"]`, 'data-differs');
    expect(await differs('seed')).toBe('true');
    expect(await differs('steps')).toBe('true');
    expect(await differs('lr')).toBe('false');
    await shot('runs-compare');
    await page.check('[data-testid="only-differences"]');
    expect(await page.$(`[data-testid="hyper-row"][data-key="lr"]`)).toBeNull();
    expect(await page.$(`[data-testid="hyper-row"][data-key="seed"]`)).not.toBeNull();
    // By time since each run started, on a log scale; the smoothing moves.
    await page.selectOption('[data-testid="compare-axis"]', 'time');
    await page.waitForSelector('[data-testid="overlay"][data-axis="time"]');
    expect(await chartPoints('chart-overlay-loss')).toBeGreaterThan(10);
    await page.check('[data-testid="chart-overlay-loss-log"]');
    await page.waitForSelector('[data-testid="chart-overlay-loss"][data-log="true"]');
    await page.$eval('[data-testid="compare-smoothing"]', (el) => {
      (el as HTMLInputElement).value = '0.9';
      el.dispatchEvent(new Event('input', { bubbles: true }));
    });
    await page.waitForFunction(() => document.querySelector('[data-testid="compare-smoothing"]')?.parentElement?.textContent?.includes('0.90'));
    await shot('runs-compare-time-log');
    // The compared data as CSV: a row per run and step, as many as the runs have steps.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid="compare-csv"]')]);
    const csv = readFileSync((await download.path())!, 'utf8').trim().split('\n');
    expect(csv[0]).toBe('run_id,run_name,step,elapsed_s,loss,smoothed_loss,eval_loss,eval_accuracy');
    const done = await Promise.all([first, second].map(async (id) => ((await callApi('getRun', { runId: id })) as { stepsDone: number }).stepsDone));
    for (const [i, id] of [first, second].entries()) {
      expect(csv.filter((l) => l.startsWith(`${id},`) && Number(l.split(',')[2]) > 0)).toHaveLength(done[i]);
    }

    // A run that ends while Runs is open shows its final figures without Refresh.
    const { options } = (await callApi('getRun', { runId: second })) as { options: Record<string, unknown> };
    const live = ((await callApi('startRun', { name: 'e2e live row', options: { ...options, steps: 40, evalEvery: 10 } })) as { id: string }).id;
    await page.waitForSelector(`[data-run-id="${live}"][data-status="completed"]`);
    const ended = (await callApi('getRun', { runId: live })) as { lastLoss: number; lastAccuracy: number };
    await page.waitForFunction(
      ([id, loss]) => Number(document.querySelector(`[data-run-id="${id}"] [data-testid="final-loss"]`)?.getAttribute('data-value')) === loss,
      [live, ended.lastLoss] as const,
    );
    expect(await page.textContent(`[data-run-id="${live}"] [data-testid="run-steps"]`)).toBe('40/40');
    expect(Number(await page.getAttribute(`[data-run-id="${live}"] [data-testid="final-accuracy"]`, 'data-value'))).toBe(ended.lastAccuracy);
    await shot('runs-1400');
    await page.setViewportSize({ width: 1280, height: 720 });

    for (const id of [second, live]) {
      await page.click(`[data-run-id="${id}"] [data-testid="delete"]`);
      await page.click('[data-testid="confirm-delete-yes"]');
      await page.waitForSelector(`[data-run-id="${id}"]`, { state: 'detached' });
    }
    expect(await page.$(`[data-run-id="${first}"]`)).not.toBeNull();
  });

  /** The spill folder of the tiered run: the calibration its engine cached is that folder's. */
  let tierSpill = '';
  it('a run with blocks on the SSD shows the Tiers panel: bytes per link measured beside the plan', async () => {
    await page.goto(`${url}#/new`);
    await page.waitForFunction(() => (document.querySelector('[data-testid="model-select"]') as HTMLSelectElement | null)?.value.includes('spillway-demo'));
    const model = await page.inputValue('[data-testid="model-select"]');
    const spill = (tierSpill = mkdtempSync(join(dataDir, 'spill-')));
    // A CPU budget half a block short of everything resident: streaming adds a staging slot and an
    // I/O buffer, so all but one of the demo's four blocks go to the SSD.
    const maxLength = Number(await page.inputValue('[data-testid="max-length"]'));
    const plan = (await callApi('plan', { model, spillDirs: [spill], batchSize: 4, maxLength })) as { memory: { cpu: number }; units: { kind: string; bytes: number }[] };
    const block = plan.units.find((u) => u.kind === 'block')!.bytes;
    await page.fill('[data-testid="run-name"]', 'e2e tiers');
    await page.fill('[data-testid="steps"]', '40');
    await page.fill('[data-testid="batch-size"]', '4');
    await page.fill('[data-testid="eval-every"]', '0');
    await page.fill('[data-testid="spill-dir"]', spill);
    const cpuMem = Math.floor(plan.memory.cpu - block / 2);
    await page.fill('[data-testid="cpu-budget"]', String(cpuMem));
    const tiered = (await callApi('plan', { model, spillDirs: [spill], batchSize: 4, maxLength, budgets: { cpu: cpuMem } })) as { units: { home: string }[] };
    await page.waitForSelector('[data-testid="plan"][data-feasible="true"]');
    await page.click('[data-testid="start-run"]');
    await page.waitForFunction(() => location.hash.startsWith('#/live/'));
    try {
      await page.waitForFunction(
        () => Number(document.querySelector('[data-testid="tier-ssdRead"]')?.getAttribute('data-latest')) > 0 &&
          document.querySelector('[data-testid="tiers"]')?.getAttribute('data-plan') === 'yes',
      );
    } catch (e) {
      await shot('failed-tiers');
      throw e;
    }
    const ssdRead = Number(await page.getAttribute('[data-testid="tier-ssdRead"]', 'data-latest'));
    // The blocks the plan put on the SSD (the demo's four, now that the plan also counts the read-ahead
    // buffers and the engine process), each read once a step (rounded up to 4 KiB slots).
    const onSsd = tiered.units.filter((u) => u.home === 'ssd').length;
    expect(onSsd).toBeGreaterThanOrEqual(3);
    expect(ssdRead).toBeGreaterThanOrEqual(onSsd * block);
    expect(ssdRead).toBeLessThanOrEqual(onSsd * (block + 4096));
    const row = await page.textContent('[data-testid="tier-ssdRead"]');
    expect(row).toMatch(/SSD read\s*[\d.]+ MB\s*[\d.]+ MB\s*[\d.]+ MB\s*[\d.]+×/);
    expect(await page.textContent('[data-testid="tier-step-ratio"]')).toMatch(/^[\d.]+×$/);
    expect(await page.textContent('[data-testid="tier-floor-ratio"]')).toMatch(/^[\d.]+×$/);
    await page.waitForSelector('.sub [data-status="completed"]');
    await shot('live-tiers');
    // The resident demo run shows no Tiers panel.
    await page.goto(`${url}#/live/${encodeURIComponent(first)}`);
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="chart-loss"]')?.getAttribute('data-points')) > 0);
    expect(await page.$('[data-testid="tiers"]')).toBeNull();
    await page.goto(`${url}#/new`);
    await page.fill('[data-testid="spill-dir"]', '');
    await page.fill('[data-testid="cpu-budget"]', '');
  });

  it('New run over 2 ranks: mpirun starts them, Live shows one run and each rank\'s share of every step', async () => {
    await page.goto(`${url}#/new`);
    await page.waitForFunction(() => (document.querySelector('[data-testid="model-select"]') as HTMLSelectElement | null)?.value.includes('spillway-demo'));
    await page.fill('[data-testid="run-name"]', 'e2e ranks');
    await page.fill('[data-testid="steps"]', '12');
    await page.fill('[data-testid="batch-size"]', '4');
    await page.fill('[data-testid="eval-every"]', '0');
    await page.fill('[data-testid="ranks"]', '2');
    await page.selectOption('[data-testid="parallel"]', 'data');
    await page.click('[data-testid="start-run"]');
    await page.waitForFunction(() => location.hash.startsWith('#/live/'));
    const runId = decodeURIComponent(page.url().split('#/live/')[1]);
    try {
      await page.waitForSelector('[data-testid="rank-1"]');
    } catch (e) {
      await shot('failed-ranks');
      throw e;
    }
    // Each rank took 2 of the batch's 4 examples, on this machine.
    for (const r of [0, 1]) expect(await page.textContent(`[data-testid="rank-${r}"]`)).toMatch(new RegExp(`^\\s*${r}\\s*\\S+\\s*2\\s*\\d+`));
    await page.waitForSelector('.sub [data-status="completed"]');
    await shot('live-ranks');
    const run = (await callApi('getRun', { runId })) as { stepsDone: number; options: { ranks: number; parallel: string } };
    expect(run.stepsDone).toBe(12);
    expect(run.options).toMatchObject({ ranks: 2, parallel: 'data' });
    await page.goto(`${url}#/new`);
    await page.fill('[data-testid="ranks"]', '1');
  });

  it('New run with bf16 masters: the comparison shows half the streamed bytes of fp32, and the run follows that plan', async () => {
    await page.goto(`${url}#/new`);
    await page.waitForFunction(() => (document.querySelector('[data-testid="model-select"]') as HTMLSelectElement | null)?.value.includes('spillway-demo'));
    const model = await page.inputValue('[data-testid="model-select"]');
    const spill = tierSpill || mkdtempSync(join(dataDir, 'spill-bf16-'));
    const maxLength = Number(await page.inputValue('[data-testid="max-length"]'));
    // A CPU budget under which every block streams from the SSD with fp32 and with bf16 masters.
    type Plan = BudgetPlan & { prefetch: number; prefetchRequested: number; update: { homeUnits: number; deviceUnits: number; mode: string } };
    const planAt = (cpu: number | undefined, masters: string) =>
      callApi('plan', { model, spillDirs: [spill], batchSize: 4, maxLength, masters, ...(cpu === undefined ? {} : { budgets: { cpu } }) }) as Promise<Plan>;
    const { cpu, blocks } = await allBlocksOnSsdBudget(planAt);
    const f32 = await planAt(cpu, 'fp32');
    const bf16 = await planAt(cpu, 'bf16');
    await page.fill('[data-testid="run-name"]', 'e2e bf16');
    await page.fill('[data-testid="steps"]', '6');
    await page.fill('[data-testid="batch-size"]', '4');
    await page.fill('[data-testid="eval-every"]', '0');
    await page.fill('[data-testid="spill-dir"]', spill);
    await page.fill('[data-testid="cpu-budget"]', String(cpu));
    await page.selectOption('[data-testid="masters"]', 'bf16');
    const cell = async (row: string, m: string) => Number(await page.getAttribute(`[data-testid="cmp-${row}"] td[data-masters="${m}"]`, 'data-value'));
    try {
      await page.waitForSelector('[data-testid="plan"][data-feasible="true"][data-bytes-per-parameter="2"]');
      await page.waitForSelector('[data-testid="precision-compare"][data-chosen="bf16"]');
      // The budgeted plans have arrived when fp32's blocks stream.
      await page.waitForFunction(() => Number(document.querySelector('[data-testid="cmp-h2d"] td[data-masters="fp32"]')?.getAttribute('data-value')) > 0);
      // The three precisions' plans are asked for together but answer one by one: wait until every
      // column holds the answer for this budget (bf16 and fp16 at half of fp32's streamed bytes).
      await page.waitForFunction(
        () => {
          const v = (m: string) => Number(document.querySelector(`[data-testid="cmp-h2d"] td[data-masters="${m}"]`)?.getAttribute('data-value'));
          return v('fp32') > 0 && v('bf16') * 2 === v('fp32') && v('fp16') === v('bf16');
        },
      );
    } catch (e) {
      await shot('failed-bf16-plan');
      throw e;
    }
    const h2d = await cell('h2d', 'bf16');
    expect(h2d).toBeGreaterThan(0);
    expect(h2d).toBe((await cell('h2d', 'fp32')) / 2);
    expect(await cell('h2d', 'fp16')).toBe(h2d);
    expect(await cell('ssd', 'bf16')).toBe((await cell('ssd', 'fp32')) / 2);
    expect(await page.textContent('[data-testid="cmp-h2d"] td[data-masters="fp32"]')).toContain('+100%');
    // The calibration the tiered run's engine cached (same folder, same batch) predicts every precision's step.
    if (tierSpill) expect(await cell('step', 'bf16')).toBeGreaterThan(0);
    const u = bf16.update;
    expect(u.homeUnits + u.deviceUnits).toBe(blocks);
    expect(await page.textContent('[data-testid="plan-update"]')).toMatch(
      new RegExp(`^Updates \\(auto\\):\\s+${u.homeUnits} streamed blocks? at home, ${u.deviceUnits} on the device\\.`),
    );
    // The read-ahead each plan leaves room for, lowered (and said so) where the budget is short.
    for (const [m, p] of [['fp32', f32], ['bf16', bf16]] as const) {
      await page.selectOption('[data-testid="masters"]', m);
      await page.waitForSelector(`[data-testid="plan"][data-bytes-per-parameter="${m === 'fp32' ? 4 : 2}"]`);
      expect(await page.getAttribute('[data-testid="plan-prefetch"]', 'data-depth')).toBe(String(p.prefetch));
      const lowered = p.prefetch < p.prefetchRequested;
      expect(await page.getAttribute('[data-testid="plan-prefetch"]', 'data-lowered')).toBe(String(lowered));
      if (lowered) expect(await page.textContent('[data-testid="plan-prefetch"]')).toMatch(/lowered from 2/);
    }
    await shot('new-run-bf16');

    await page.click('[data-testid="start-run"]');
    await page.waitForFunction(() => location.hash.startsWith('#/live/'));
    const runId = decodeURIComponent(page.url().split('#/live/')[1]);
    try {
      await page.waitForSelector('.sub [data-status="completed"]');
    } catch (e) {
      await shot('failed-bf16-run');
      throw e;
    }
    expect(await page.textContent('[data-testid="live-steps"]')).toBe('step 6 / 6');
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="tier-h2d"]')?.getAttribute('data-latest')) > 0);
    // Every step moved the blocks in 2 bytes per parameter, as the plan said (slots padded a little at most).
    const measured = Number(await page.getAttribute('[data-testid="tier-h2d"]', 'data-latest'));
    expect(measured).toBeGreaterThanOrEqual(h2d);
    expect(measured).toBeLessThan(h2d * 1.01);
    const detail = (await callApi('getRun', { runId })) as { options: Record<string, unknown>; plan: { linkBytes: { hostToDevice: number } } };
    expect(detail.options).toMatchObject({ masters: 'bf16', offload: 'auto', spillDirs: [spill] });
    expect(detail.plan.linkBytes.hostToDevice).toBe(h2d);
    await page.goto(`${url}#/new`);
    await page.selectOption('[data-testid="masters"]', 'fp32');
    await page.fill('[data-testid="spill-dir"]', '');
    await page.fill('[data-testid="cpu-budget"]', '');
  });

  it('Playground: "Try" opens a run beside its base model; chat in both; Stop ends a reply that would not end', async () => {
    await page.goto(`${url}#/runs`);
    await page.click(`[data-run-id="${first}"] [data-testid="try-model"]`);
    await page.waitForFunction((id) => location.hash === `#/playground/${encodeURIComponent(id)}`, first);
    // The run's weights on the left, its base model (the demo) on the right.
    await page.waitForSelector('[data-testid="pg-pane-1"]');
    expect(await page.isChecked('[data-testid="pg-compare"]')).toBe(true);
    expect(await page.inputValue('[data-testid="pg-model"]')).toBe(`run:${first}`);
    expect(await page.inputValue('[data-testid="pg-compare-model"]')).toMatch(/spillway-demo$/);
    await page.fill('[data-testid="pg-max-new"]', '24');
    await page.fill('[data-testid="pg-input"]', 'How was the film?');
    await page.click('[data-testid="pg-send"]');
    for (const i of [0, 1]) {
      await page.waitForSelector(`[data-testid="pg-pane-${i}"] [data-testid="pg-turn"][data-role="assistant"][data-pending="false"]`);
      expect(await page.textContent(`[data-testid="pg-pane-${i}"] [data-role="user"]`)).toContain('How was the film?');
      expect(await page.textContent(`[data-testid="pg-pane-${i}"] [data-testid="pg-stats"]`)).toMatch(/^\d+ tokens · [\d.]+ tok\/s/);
    }
    // The run stopped early and saved its model: that is what the left pane ran on.
    expect(await page.textContent('[data-testid="pg-pane-0"] header')).toContain(`run ${first}: final model`);
    // Greedy on both sides: the same turn on the base model alone gives the right pane's reply.
    const baseReply = (await page.textContent('[data-testid="pg-pane-1"] [data-role="assistant"] .text'))!.trim();
    const demo = await page.inputValue('[data-testid="pg-compare-model"]');
    const direct = (await callApi('generate', {
      generationId: 'e2e-direct',
      source: { model: demo.slice('model:'.length) },
      messages: [{ role: 'user', content: 'How was the film?' }],
      sampling: { maxNewTokens: 24 },
    })) as { text: string };
    expect(direct.text.trim()).toBe(baseReply);
    await shot('playground-compare');

    // A model whose replies run for 60000 tokens unless stopped (no end token, 65536 positions).
    const models = join(dataDir, 'models');
    const long = await makeTinyLlama(join(models, 'long-llama'), { maxPositions: 65536 });
    await callApi('updateSettings', { modelRoots: [models] });
    await page.goto(`${url}#/playground`);
    await page.reload();
    await page.waitForSelector(`[data-testid="pg-model"] option[value="model:${long}"]`, { state: 'attached' });
    await page.selectOption('[data-testid="pg-model"]', `model:${long}`);
    await page.uncheck('[data-testid="pg-compare"]');
    await page.fill('[data-testid="pg-max-new"]', '60000');
    await page.fill('[data-testid="pg-temperature"]', '1');
    await page.check('[data-testid="pg-ignore-eos"]');
    await page.click('[data-testid="pg-clear"]');
    await page.fill('[data-testid="pg-input"]', 'Tell me everything.');
    await page.click('[data-testid="pg-send"]');
    const writing = '[data-testid="pg-pane-0"] [data-role="assistant"][data-pending="true"]';
    await page.waitForFunction((sel) => (document.querySelector(`${sel} .text`)?.textContent ?? '').length > 20, writing);
    // The reply outgrows its box: the box follows its end as text streams in.
    await page.waitForFunction(() => {
      const box = document.querySelector('[data-testid="pg-pane-0"] [data-testid="pg-turns"]') as HTMLElement;
      return box.scrollHeight > box.clientHeight * 1.5 && box.scrollHeight - box.scrollTop - box.clientHeight < 24;
    });
    await shot('playground-writing');
    await page.click('[data-testid="pg-stop"]');
    await page.waitForSelector('[data-testid="pg-pane-0"] [data-role="assistant"][data-pending="false"][data-finish="stopped"]');
    expect(await page.textContent('[data-testid="pg-pane-0"] [data-testid="pg-stats"]')).toMatch(/ · stopped$/);
    expect(await page.isDisabled('[data-testid="pg-stop"]')).toBe(true);
  });

  it('Settings, and the dark theme', async () => {
    await page.click('[data-testid="nav-settings"]');
    await page.waitForFunction(() => (document.querySelector('[data-testid="data-dir"]') as HTMLInputElement | null)?.value.startsWith('/'));
    expect(await page.inputValue('[data-testid="data-dir"]')).toBe(dataDir);
    expect(await page.getAttribute('[data-testid="data-dir"]', 'readonly')).not.toBeNull();
    expect(await page.inputValue('[data-testid="sampling-interval"]')).toBe('1000');
    await page.fill('[data-testid="sampling-interval"]', '500');
    await page.click('button[type="submit"]:has-text("Save")');
    await page.waitForSelector('.notice:has-text("Settings saved")');
    expect(((await callApi('getSettings', {})) as { samplingIntervalMs: number }).samplingIntervalMs).toBe(500);
    await shot('settings');
    await page.check('[data-testid="theme-dark"]');
    await shot('settings-dark');
    await page.goto(`${url}#/live/${encodeURIComponent(first)}`);
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="chart-loss"]')?.getAttribute('data-points')) > 0);
    await shot('live-dark');
    await page.click('[data-testid="nav-datasets"]');
    await page.fill('[data-testid="dataset-path"]', bad);
    await page.click('[data-testid="check-rows"]');
    await page.waitForSelector('[data-testid="check-result"]');
    await shot('datasets-check-dark');
    await page.click('[data-testid="nav-new"]');
    await page.fill('[data-testid="cpu-budget"]', '1 MiB');
    await page.waitForSelector('[data-testid="plan"][data-feasible="false"]');
    await shot('plan-short-dark');
    await page.fill('[data-testid="cpu-budget"]', '');
    await page.click('[data-testid="nav-settings"]');
    await page.check('[data-testid="theme-light"]');
  });
  it('Settings sets the dataset folders; Datasets lists their files; "Use for a new run" keeps the file and the task', async () => {
    const folder = mkdtempSync(join(dataDir, 'datasets-'));
    copyFileSync(join(ROOT, 'resources/datasets/classify-demo.csv'), join(folder, 'reviews.csv'));
    await page.click('[data-testid="nav-settings"]');
    await page.fill('[data-testid="dataset-roots"]', folder);
    await page.click('button[type="submit"]:has-text("Save")');
    await page.waitForSelector('.notice:has-text("Settings saved")');
    expect(((await callApi('getSettings', {})) as { datasetRoots: string[] }).datasetRoots).toEqual([folder]);

    await page.click('[data-testid="nav-datasets"]');
    await page.fill('[data-testid="dataset-path"]', '');
    await page.waitForSelector(`[data-testid="datasets-found"] >> text=reviews.csv`);
    expect(await page.textContent('[data-testid="dataset-roots-note"]')).toContain(folder);
    await page.click('[data-testid="datasets-found"] button:has-text("reviews.csv")');
    await page.selectOption('[data-testid="dataset-task"]', 'classify');
    await page.fill('[data-testid="dataset-label-words"]', '" negative"," positive"');
    await page.click('[data-testid="dataset-open"]');
    // The labels are the words themselves: every previewed row renders, none fails.
    await page.waitForSelector('[data-testid="preview-table"] mark');
    expect(await page.$$('[data-testid="row-error"]')).toHaveLength(0);
    await shot('datasets-found');
    await page.click('[data-testid="use-for-run"]');
    await page.waitForFunction(() => location.hash === '#/new');
    expect(await page.inputValue('[data-testid="train-path"]')).toBe(join(folder, 'reviews.csv'));
    expect(await page.inputValue('[data-testid="task-select"]')).toBe('classify');
    expect(await page.inputValue('[data-testid="label-words"]')).toBe('" negative"," positive"');
    expect(await page.inputValue('[data-testid="eval-path"]')).toBe('');
    expect(await page.inputValue('[data-testid="model-select"]')).toContain('spillway-demo');
    await page.waitForSelector('[data-testid="plan"][data-feasible="true"]');
    await shot('new-run-from-datasets');

    // What the CLI has, set on the form, reaches the run: label map, trainable set, estimator, q, noise, warm-up, checkpoints, output folder.
    const out = join(folder, 'tuned');
    await page.fill('[data-testid="run-name"]', 'e2e options');
    await page.fill('[data-testid="label-words"]', '" bad"," good"');
    await page.fill('[data-testid="label-map"]', 'negative: 0, positive: 1');
    await page.fill('[data-testid="steps"]', '4');
    await page.fill('[data-testid="batch-size"]', '4');
    await page.fill('[data-testid="eval-every"]', '0');
    // What trains: LoRA (rank 2 on q and v) with the FZOO estimator, chosen before q and the noise it sets defaults for.
    await page.selectOption('[data-testid="trainable"]', 'lora');
    expect(await page.inputValue('[data-testid="lr"]')).toBe('0.0001');
    await page.fill('[data-testid="rank"]', '2');
    await page.fill('[data-testid="targets"]', 'q, v');
    // The plan follows the set: the adapters' elements as the backend plans them, the base apart and frozen (never written back).
    const model = await page.inputValue('[data-testid="model-select"]');
    const planned = (await callApi('plan', { model, trainable: 'lora', rank: 2, targets: ['q', 'v'], batchSize: 4 })) as { trainable: { elements: number; bytes: { device: number } } };
    expect(planned.trainable.elements).toBeGreaterThan(0);
    await page.waitForSelector(`[data-testid="plan-trainable-set"][data-set="lora"][data-elements="${planned.trainable.elements}"]`);
    await page.waitForSelector('[data-testid="plan-frozen-base"]');
    expect(Number(await page.getAttribute('[data-testid="plan-trainable"] tr[data-what="trainable"]', 'data-bytes'))).toBe(planned.trainable.bytes.device);
    await page.selectOption('[data-testid="estimator"]', 'fzoo');
    expect(await page.inputValue('[data-testid="q"]')).toBe('4');
    await page.fill('[data-testid="q"]', '2');
    await page.selectOption('[data-testid="noise"]', 'rademacher');
    await page.fill('[data-testid="warmup"]', '3');
    await page.fill('[data-testid="checkpoint-every"]', '2');
    await page.fill('[data-testid="out-dir"]', out);
    await shot('new-run-options');
    await page.click('[data-testid="start-run"]');
    await page.waitForFunction(() => location.hash.startsWith('#/live/'));
    const runId = decodeURIComponent(page.url().split('#/live/')[1]);
    await page.waitForSelector('.sub [data-status="completed"]');
    const detail = (await callApi('getRun', { runId })) as { options: Record<string, unknown>; checkpoints: { step: number }[] };
    expect(detail.options).toMatchObject({
      task: { kind: 'classify', labelWords: [' bad', ' good'], labelMap: { negative: 0, positive: 1 } },
      q: 2, noise: 'rademacher', warmupSteps: 3, checkpointEvery: 2, out,
      trainable: 'lora', rank: 2, targets: ['q', 'v'], estimator: 'fzoo', lr: 1e-4,
    });
    expect(detail.checkpoints.map((c) => c.step)).toContain(2);
    expect(readdirSync(out)).toEqual(expect.arrayContaining(['adapter_config.json', 'adapter_model.safetensors']));
  });
});

describe('Spillway GUI on a GPU machine\'s device list', { timeout: 600_000 }, () => {
  // The backend lists the devices an H100 machine reported (tests/fixtures/gpu); this machine's
  // engine has no GPU, so a run asked onto it fails, saying why.
  let gpuPage: Page;
  let gpuUrl = '';
  beforeAll(async () => {
    const data = mkdtempSync(join(tmpdir(), 'spillway-e2e-gpu-'));
    gpuUrl = await startServe({ SPILLWAY_DEVICE_LIST: join(ROOT, 'tests/fixtures/gpu/h100-cuda-devices.json') }, data);
    gpuPage = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    gpuPage.setDefaultTimeout(300_000);
  });
  afterAll(async () => {
    await gpuPage?.close();
  });

  it('New run lists each GPU with its name and free / total memory; the plan is made for the one picked', async () => {
    await gpuPage.goto(`${gpuUrl}#/new`);
    await gpuPage.waitForSelector('[data-testid="device-select"] option[value="cuda:0"]', { state: 'attached' });
    const options = await gpuPage.$$eval('[data-testid="device-select"] option', (os) => os.map((o) => [(o as HTMLOptionElement).value, o.textContent?.trim()]));
    expect(options[0]).toEqual(['auto', 'Auto: cuda:0, NVIDIA H100 80GB HBM3']);
    expect(options[1][0]).toBe('cpu');
    expect(options[2]).toEqual(['cuda:0', 'cuda:0 · NVIDIA H100 80GB HBM3 · 79.2 GiB free of 79.2 GiB']);
    await gpuPage.waitForFunction(() => (document.querySelector('[data-testid="model-select"]') as HTMLSelectElement | null)?.value.includes('spillway-demo'));
    await gpuPage.selectOption('[data-testid="device-select"]', 'cuda:0');
    await gpuPage.selectOption('[data-testid="gemm"]', 'tf32');
    expect(await gpuPage.textContent('[data-testid="device-note"]')).toContain('cuda:0: NVIDIA H100 80GB HBM3 · 79.2 GiB free of 79.2 GiB, compute capability 9.0');
    await gpuPage.waitForSelector('[data-testid="plan"] >> text=Computes on cuda:0 (NVIDIA H100 80GB HBM3, GEMMs in tf32)');
    const budget = Number(await gpuPage.getAttribute('[data-testid="plan-gpu-budget"]', 'data-bytes'));
    expect(budget).toBeGreaterThan(70 * 2 ** 30);
    expect(budget).toBeLessThan(85014085632);
    await gpuPage.screenshot({ path: join(SCREENS, 'new-run-gpu.png') });
    // The CPU picked: GEMMs are the CPU's own fp32, the plan is the CPU's.
    await gpuPage.selectOption('[data-testid="device-select"]', 'cpu');
    expect(await gpuPage.isDisabled('[data-testid="gemm"]')).toBe(true);
    await gpuPage.waitForSelector('[data-testid="plan"] >> text=Computes on the CPU');
  });

  it('a run started on that GPU here is refused before it is recorded, with the reason on the form', async () => {
    await gpuPage.selectOption('[data-testid="device-select"]', 'cuda:0');
    await gpuPage.fill('[data-testid="run-name"]', 'e2e on cuda:0');
    await gpuPage.fill('[data-testid="steps"]', '3');
    await gpuPage.click('[data-testid="start-run"]');
    const box = await gpuPage.waitForSelector('[role="alert"]:has-text("The run did not start")');
    expect(await box.textContent()).toMatch(/device cuda:0 asked for, but (CUDA reports no device: .+|this build of the engine has no CUDA backend)/);
    expect(gpuPage.url()).toContain('#/new');
    await gpuPage.screenshot({ path: join(SCREENS, 'new-run-gpu-refused.png') });
    const u = new URL(gpuUrl);
    const ws = new WebSocket(`ws://${u.host}/ws?token=${u.searchParams.get('token')}`);
    await new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); });
    ws.send(JSON.stringify({ type: 'call', id: 1, method: 'listRuns', params: {} }));
    const reply = await new Promise<{ result: { runs: { name: string }[] } }>((res) => ws.on('message', (d) => { const f = JSON.parse(String(d)); if (f.type === 'result') res(f); }));
    ws.close();
    expect(reply.result.runs.map((r) => r.name)).not.toContain('e2e on cuda:0');
  });
});
