// What a person sees in a terminal (issue 13, "CLI"; issue 14, "Bounded inputs"): a summary
// rather than 400 lines, a quiet end when the reader of a pipe leaves, the held-out loss
// of runs that do not classify, an ETA with units, runs found by any part of their id, and
// numeric options refused at their bounds before anything starts.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

import { MAX_THREADS } from '../../electron/common/options.js';
import { BIN, jsonLines, runSpillway } from '../helpers/cli.js';
import { DEMO_DATA, makeTinyLlama } from '../helpers/tiny-model.js';

const run = promisify(execFile);

let work: string;
let model: string;
let dataDir: string;
const evalData = join(DEMO_DATA, 'sentiment-demo', 'eval.jsonl');
const train = join(DEMO_DATA, 'sentiment-demo', 'train.jsonl');
const spillway = (args: string[]) => runSpillway(args, dataDir);

/** A plain-text dataset (no labels): each line a sentence of the demo data. */
function textData(rows: number): string {
  const sentences = readFileSync(train, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { sentence: string }).sentence);
  const file = join(work, `text-${rows}.jsonl`);
  writeFileSync(file, Array.from({ length: rows }, (_, i) => JSON.stringify({ text: sentences[i % sentences.length] })).join('\n') + '\n');
  return file;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-term-'));
  dataDir = join(work, 'data');
  model = await makeTinyLlama(join(work, 'tiny'));
});

describe('spillway score in a terminal', () => {
  it('prints the summary alone; the per-example lines with --per-example; the loss alone when nothing is classified', async () => {
    const rows = readFileSync(evalData, 'utf8').trim().split('\n').length;
    const summary = await spillway(['score', '--model', model, '--data', evalData]);
    expect(summary.code, summary.stderr).toBe(0);
    const lines = summary.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^${rows} examples: mean loss [\\d.]+, accuracy [\\d.]+% \\(\\d+ m?s\\)$`));

    const each = await spillway(['score', '--model', model, '--data', evalData, '--per-example']);
    const eachLines = each.stdout.trim().split('\n');
    expect(eachLines).toHaveLength(rows + 1);
    expect(eachLines[0]).toMatch(/eval\.jsonl:1 {2}loss [\d.]+ {2}(correct|wrong)$/);
    expect(eachLines.at(-1)).toBe(lines[0].replace(/\(\d+ m?s\)$/, eachLines.at(-1)!.match(/\(\d+ m?s\)$/)![0]));

    const text = await spillway(['score', '--model', model, '--data', textData(20), '--task', 'text']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout.trim()).toMatch(/^20 examples: mean loss [\d.]+ \(\d+ m?s\)$/);
  });

  it('ends quietly with status 0 when the reader of its output goes away (score --json | head)', async () => {
    // Enough lines that most are written after `head` has left (a pipe holds 64 KiB).
    const data = textData(3000);
    const script = `set -o pipefail; node ${JSON.stringify(BIN)} score --model ${JSON.stringify(model)} --data ${JSON.stringify(data)} --task text --json 2>${JSON.stringify(join(work, 'score.err'))} | head -c 300 >/dev/null`;
    const r = await run('bash', ['-c', script], { env: { ...process.env, SPILLWAY_THREADS: '2', SPILLWAY_DATA_DIR: dataDir } }).then(
      () => 0,
      (e: { code: number }) => e.code,
    );
    const err = readFileSync(join(work, 'score.err'), 'utf8');
    expect(err).not.toMatch(/EPIPE|Error|at .*\.js:\d+/);
    expect(r).toBe(0);
  });
});

describe('spillway train in a terminal', () => {
  it('ends a run that does not classify with its held-out loss, shows elapsed time and an ETA with units, and names the run', async () => {
    const r = await spillway(['train', '--model', model, '--data', textData(64), '--task', 'text', '--steps', '10', '--batch-size', '4', '--lr', '1e-3']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/n\/a → n\/a/);
    expect(r.stderr).toMatch(/^done: 10 steps in \d+(\.\d+)? m?s; held-out loss [\d.]+ → [\d.]+$/m);
    expect(r.stderr).toMatch(/^zero-shot \(before training\): held-out loss [\d.]+$/m);
    // Without a terminal a line every tenth of the run, each with the time spent and the time left.
    expect(r.stderr).toMatch(/^step 5\/10 {2}loss .* {2}elapsed \d+ (ms|s|m \d+ s), eta \d+ (ms|s|m \d+ s)$/m);
    expect(r.stderr).toMatch(/^step 10\/10 .* eta 0 ms$/m);
    // The run it recorded, by any part of its id: the random tail is enough.
    const id = /run (\d{8}-\d{6}-[0-9a-f]{4}):/.exec(r.stderr)![1];
    const show = await spillway(['runs', 'show', id.slice(-4)]);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain(`run         ${id}`);
    expect(show.stdout).toMatch(/final loss\s+[\d.]+/);
  });

  it('reads the task\'s flags from the schema too: each is checked, and one the task has not is named', async () => {
    const dir = join(work, 'task-data');
    for (const [args, message] of [
      [['--task', 'chat', '--role-map', 'Customer'], /--role-map: write name=value pairs separated by commas \(got "Customer"\)/],
      [['--task', 'chat', '--role-map', 'Customer=robot'], /--role-map: unknown role robot \(system, user, assistant, tool\)/],
      [['--task', 'chat', '--template-vars', '[1]'], /--template-vars: expected a JSON object/],
      [['--task', 'chat', '--template-vars', '{not json'], /--template-vars is not valid JSON/],
      [['--task', 'chat', '--prompt', '{text} was'], /--prompt does not apply to --task chat/],
      [['--task', 'classify'], /--task classify needs --label-words/],
      [['--task', 'poem'], /unknown task "poem" \(sst2, rte, classify, text, completion, chat\)/],
    ] as const) {
      const r = await runSpillway(['score', '--model', model, '--data', train, ...args], dir);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
  });

  it('refuses threads beyond the bound before a run exists, naming the flag, the range and the value', async () => {
    const dir = join(work, 'threads-data');
    const r = await runSpillway(['train', '--model', model, '--data', train, '--steps', '1', '--threads', '100000'], dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`--threads: expected an integer from 0 to ${MAX_THREADS}, got 100000`));
    const json = await runSpillway(['train', '--model', model, '--data', train, '--steps', '1', '--threads', '100000', '--json'], dir);
    expect(jsonLines(json.stdout)).toEqual([{ type: 'error', message: expect.stringMatching(/--threads: expected an integer/) }]);
    // Nothing was recorded (the store may not even exist).
    const list = await runSpillway(['runs', 'list', '--json'], dir);
    expect(JSON.parse(list.stdout)).toEqual([]);
    // The other numeric flags have their bounds too, and an empty value is not zero.
    for (const [flag, value, message] of [
      ['--q', '65', /--q: expected an integer from 1 to 64, got 65/],
      ['--batch-size', '0', /--batch-size: expected an integer from 1 to 65536, got 0/],
      ['--eval-fraction', '1', /--eval-fraction: expected a finite number >= 0 and < 1, got 1/],
      ['--steps', '', /--steps expects a number, got ""/],
      ['--lr', 'Infinity', /--lr expects a number, got "Infinity"/],
    ] as const) {
      const bad = await runSpillway(['train', '--model', model, '--data', train, flag, value], dir);
      expect(bad.code, flag).toBe(1);
      expect(bad.stderr, flag).toMatch(message);
    }
  });
});
