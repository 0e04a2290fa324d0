// The GUI end to end: a real `spillway serve` (temp data folder, free port)
// serving the freshly built renderer, driven by headless Chromium.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import WebSocket from 'ws';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { allBlocksOnSsdBudget, type BudgetPlan } from '../electron/common/plan-budget.js';

const ROOT = resolve(import.meta.dirname, '../..');
const SCREENS = join(ROOT, 'tests/e2e/screens');
const CHROMIUM = process.env.SPILLWAY_CHROMIUM ?? '/usr/bin/chromium';

let server: ChildProcess;
let url = '';
let dataDir = '';
let browser: Browser;
let page: Page;

async function startServe(): Promise<string> {
  server = spawn(process.execPath, [join(ROOT, 'bin/spillway.js'), 'serve', '--port', '0', '--static', join(ROOT, 'dist/renderer')], {
    env: { ...process.env, SPILLWAY_DATA_DIR: dataDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`spillway serve printed no URL:\n${out}`)), 30_000);
    const onData = (b: Buffer) => {
      out += b.toString();
      const m = /(http:\/\/\S+\?token=\w+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        res(m[1]);
      }
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
    await page.waitForFunction(() => location.hash.startsWith('#/live/'), null, { timeout: 30_000 });
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
  page.on('pageerror', (e) => console.error('page error:', e.message));
}, 120_000);

afterAll(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('Spillway GUI', () => {
  it('first launch: the demo model and dataset are preselected and the plan shows', async () => {
    await page.goto(url);
    await page.waitForSelector('[data-testid="connection"]:has-text("Connected")');
    await page.waitForSelector('[data-testid="plan"]', { timeout: 30_000 });
    expect(await page.inputValue('[data-testid="train-path"]')).toMatch(/sentiment-demo\/train\.jsonl$/);
    await shot('new-run');
  });

  it('New run: a CPU budget too small makes the plan say what is short', async () => {
    await page.fill('[data-testid="cpu-budget"]', '1 MiB');
    await page.waitForSelector('[data-testid="plan"][data-feasible="false"]', { timeout: 30_000 });
    const text = await page.textContent('[data-testid="plan"]');
    expect(text).toContain('Does not fit.');
    expect(text).toMatch(/CPU memory: what must stay on the compute device needs [\d.]+ \w+ \(.*\) but the budget is 1\.0 MiB \(short by [\d.]+ \w+\)/);
    await shot('plan-short');
    await page.fill('[data-testid="cpu-budget"]', '');
    await page.waitForSelector('[data-testid="plan"][data-feasible="true"]', { timeout: 30_000 });
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
    await page.waitForSelector('[data-testid="check-result"]', { timeout: 30_000 });
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
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="chart-loss"]')?.getAttribute('data-points')) >= 4, null, { timeout: 60_000 });
    const before = await chartPoints('chart-loss');
    await page.reload();
    await page.waitForFunction((n) => Number(document.querySelector('[data-testid="chart-loss"]')?.getAttribute('data-points')) > n, before, { timeout: 60_000 });
    expect(page.url()).toContain(`#/live/${encodeURIComponent(first)}`);
    await shot('live');
    await page.click('[data-testid="stop"]');
    await page.waitForSelector('[data-testid="live-title"] ~ .sub [data-status="stopped"], .sub [data-status="stopped"]', { timeout: 60_000 });
  });

  it('a second run completes; Runs lists both, compares them, deletes one', async () => {
    const second = await startDemoRun('e2e second', 10, 1);
    await page.waitForSelector('.sub [data-status="completed"]', { timeout: 120_000 });
    await page.click('[data-testid="nav-runs"]');
    await page.waitForSelector(`[data-run-id="${first}"]`);
    await page.waitForSelector(`[data-run-id="${second}"]`);
    await page.check(`[data-run-id="${first}"] input[type=checkbox]`);
    await page.check(`[data-run-id="${second}"] input[type=checkbox]`);
    await page.click('[data-testid="compare"]');
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="chart-overlay-loss"]')?.getAttribute('data-points')) > 10);
    await shot('runs-compare');
    await page.click(`[data-run-id="${second}"] [data-testid="delete"]`);
    await page.click('[data-testid="confirm-delete-yes"]');
    await page.waitForSelector(`[data-run-id="${second}"]`, { state: 'detached' });
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
    const plan = (await callApi('plan', { model, spillDir: spill, batchSize: 4, maxLength })) as { memory: { cpu: number }; units: { kind: string; bytes: number }[] };
    const block = plan.units.find((u) => u.kind === 'block')!.bytes;
    await page.fill('[data-testid="run-name"]', 'e2e tiers');
    await page.fill('[data-testid="steps"]', '40');
    await page.fill('[data-testid="batch-size"]', '4');
    await page.fill('[data-testid="eval-every"]', '0');
    await page.fill('[data-testid="spill-dir"]', spill);
    const cpuMem = Math.floor(plan.memory.cpu - block / 2);
    await page.fill('[data-testid="cpu-budget"]', String(cpuMem));
    const tiered = (await callApi('plan', { model, spillDir: spill, batchSize: 4, maxLength, budgets: { cpu: cpuMem } })) as { units: { home: string }[] };
    await page.waitForSelector('[data-testid="plan"][data-feasible="true"]', { timeout: 30_000 });
    await page.click('[data-testid="start-run"]');
    await page.waitForFunction(() => location.hash.startsWith('#/live/'), null, { timeout: 30_000 });
    try {
      await page.waitForFunction(
        () => Number(document.querySelector('[data-testid="tier-ssdRead"]')?.getAttribute('data-latest')) > 0 &&
          document.querySelector('[data-testid="tiers"]')?.getAttribute('data-plan') === 'yes',
        null,
        { timeout: 90_000 },
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
    await page.waitForSelector('.sub [data-status="completed"]', { timeout: 120_000 });
    await shot('live-tiers');
    // The resident demo run shows no Tiers panel.
    await page.goto(`${url}#/live/${encodeURIComponent(first)}`);
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="chart-loss"]')?.getAttribute('data-points')) > 0);
    expect(await page.$('[data-testid="tiers"]')).toBeNull();
    await page.goto(`${url}#/new`);
    await page.fill('[data-testid="spill-dir"]', '');
    await page.fill('[data-testid="cpu-budget"]', '');
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
      callApi('plan', { model, spillDir: spill, batchSize: 4, maxLength, masters, ...(cpu === undefined ? {} : { budgets: { cpu } }) }) as Promise<Plan>;
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
      await page.waitForSelector('[data-testid="plan"][data-feasible="true"][data-bytes-per-parameter="2"]', { timeout: 30_000 });
      await page.waitForSelector('[data-testid="precision-compare"][data-chosen="bf16"]');
      // The budgeted plans have arrived when fp32's blocks stream.
      await page.waitForFunction(() => Number(document.querySelector('[data-testid="cmp-h2d"] td[data-masters="fp32"]')?.getAttribute('data-value')) > 0, null, { timeout: 30_000 });
      // The three precisions' plans are asked for together but answer one by one: wait until every
      // column holds the answer for this budget (bf16 and fp16 at half of fp32's streamed bytes).
      await page.waitForFunction(
        () => {
          const v = (m: string) => Number(document.querySelector(`[data-testid="cmp-h2d"] td[data-masters="${m}"]`)?.getAttribute('data-value'));
          return v('fp32') > 0 && v('bf16') * 2 === v('fp32') && v('fp16') === v('bf16');
        },
        null,
        { timeout: 30_000 },
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
    await page.waitForFunction(() => location.hash.startsWith('#/live/'), null, { timeout: 30_000 });
    const runId = decodeURIComponent(page.url().split('#/live/')[1]);
    try {
      await page.waitForSelector('.sub [data-status="completed"]', { timeout: 120_000 });
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
    expect(detail.options).toMatchObject({ masters: 'bf16', offload: 'auto', spillDir: spill });
    expect(detail.plan.linkBytes.hostToDevice).toBe(h2d);
    await page.goto(`${url}#/new`);
    await page.selectOption('[data-testid="masters"]', 'fp32');
    await page.fill('[data-testid="spill-dir"]', '');
    await page.fill('[data-testid="cpu-budget"]', '');
  });

  it('Settings, and the dark theme', async () => {
    await page.click('[data-testid="nav-settings"]');
    await page.waitForFunction(() => (document.querySelector('[data-testid="data-dir"]') as HTMLInputElement | null)?.value.startsWith('/'));
    expect(await page.inputValue('[data-testid="data-dir"]')).toBe(dataDir);
    expect(await page.getAttribute('[data-testid="data-dir"]', 'readonly')).not.toBeNull();
    expect(await page.inputValue('[data-testid="sampling-interval"]')).toBe('1000');
    await page.fill('[data-testid="sampling-interval"]', '500');
    await page.click('button[type="submit"]:has-text("Save")');
    await expect.poll(async () => ((await callApi('getSettings', {})) as { samplingIntervalMs: number }).samplingIntervalMs).toBe(500);
    await shot('settings');
    await page.check('[data-testid="theme-dark"]');
    await shot('settings-dark');
    await page.goto(`${url}#/live/${encodeURIComponent(first)}`);
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="chart-loss"]')?.getAttribute('data-points')) > 0);
    await shot('live-dark');
    await page.click('[data-testid="nav-datasets"]');
    await page.fill('[data-testid="dataset-path"]', bad);
    await page.click('[data-testid="check-rows"]');
    await page.waitForSelector('[data-testid="check-result"]', { timeout: 30_000 });
    await shot('datasets-check-dark');
    await page.click('[data-testid="nav-new"]');
    await page.fill('[data-testid="cpu-budget"]', '1 MiB');
    await page.waitForSelector('[data-testid="plan"][data-feasible="false"]', { timeout: 30_000 });
    await shot('plan-short-dark');
    await page.fill('[data-testid="cpu-budget"]', '');
    await page.click('[data-testid="nav-settings"]');
    await page.check('[data-testid="theme-light"]');
  });
});
