// The GUI end to end: a real `spillway serve` (temp data folder, free port)
// serving the freshly built renderer, driven by headless Chromium.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import WebSocket from 'ws';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

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

  it('Models and Datasets screens show the demo and render examples', async () => {
    await page.click('[data-testid="nav-models"]');
    await page.waitForSelector('[data-testid="models-table"] >> text=spillway-demo');
    await shot('models');
    await page.click('[data-testid="nav-datasets"]');
    await page.click('[data-testid="dataset-open"]');
    await page.waitForSelector('[data-testid="preview-table"] mark');
    await shot('datasets');
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

  it('Settings, and the dark theme', async () => {
    await page.click('[data-testid="nav-settings"]');
    await page.check('[data-testid="theme-dark"]');
    await shot('settings-dark');
    await page.click(`[data-testid="nav-live"]`);
    await shot('live-dark');
    await page.click('[data-testid="nav-settings"]');
    await page.check('[data-testid="theme-light"]');
  });
});
