// `spillway generate` and `spillway chat` as a person runs them: real child processes (the command
// and its generator process), a tiny Llama with the demo tokenizer, and a run's final model. The
// decoded tokens themselves are checked against transformers in tests/native; these check what the
// commands add: streaming, batching, seeds, stop strings, conversations, the saved model, errors.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { answerScores } from '../../electron/data/answers.js';
import { BIN, jsonLines, runSpillway } from '../helpers/cli.js';
import { DEMO_DATA, makeTinyLlama } from '../helpers/tiny-model.js';

let work: string;
let model: string;
const spillway = (args: string[]) => runSpillway(args, join(work, 'data'));

/** The command with `input` on its standard input (closed after it). */
function withInput(args: string[], input: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, SPILLWAY_THREADS: '2', SPILLWAY_DATA_DIR: join(work, 'data') } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input);
  });
}

interface Done {
  type: 'done';
  sequences: { text: string; finishReason: string; newTokens: number; promptTokens: number }[];
  sampling: Record<string, unknown>;
}

/** `generate --json`: its events, the streamed text of each prompt, and the done event. */
async function generate(args: string[]): Promise<{ events: Record<string, unknown>[]; streamed: string[]; done: Done }> {
  const r = await spillway(['generate', '--model', model, '--json', ...args]);
  expect(r.code, r.stderr + r.stdout).toBe(0);
  const events = jsonLines(r.stdout);
  const done = events.at(-1) as unknown as Done;
  expect(done.type).toBe('done');
  const streamed = done.sequences.map((_, i) =>
    events
      .filter((e) => e.type === 'text' && e.seq === i)
      .map((e) => e.text)
      .join(''),
  );
  return { events, streamed, done };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-generate-'));
  model = await makeTinyLlama(join(work, 'tiny'));
});

describe('spillway generate', () => {
  it('streams each prompt\'s text; prompts decoded together each give what they give alone', async () => {
    const sampling = ['--max-new-tokens', '12', '--ignore-eos'];
    const both = await generate(['--prompt', 'The film was', '--prompt', 'A long and tiring story about', ...sampling]);
    expect(both.events[0]).toMatchObject({ type: 'start', template: expect.any(String) });
    expect(both.done.sequences).toHaveLength(2);
    for (const [i, s] of both.done.sequences.entries()) {
      expect(s.newTokens).toBe(12);
      expect(s.finishReason).toBe('length');
      expect(both.streamed[i]).toBe(s.text);
    }
    const first = await generate(['--prompt', 'The film was', ...sampling]);
    const second = await generate(['--prompt', 'A long and tiring story about', ...sampling]);
    expect(first.done.sequences[0].text).toBe(both.done.sequences[0].text);
    expect(second.done.sequences[0].text).toBe(both.done.sequences[1].text);
    expect(first.done.sampling).toMatchObject({ temperature: 0 });
  });

  it('sampling: the same seed gives the same text, another seed another', async () => {
    const sampled = (seed: string) => generate(['--prompt', 'The film was', '--max-new-tokens', '16', '--ignore-eos', '--temperature', '1', '--seed', seed]);
    const a = (await sampled('7')).done.sequences[0].text;
    const b = (await sampled('7')).done.sequences[0].text;
    const c = (await sampled('8')).done.sequences[0].text;
    expect(a).toBe(b);
    expect(c).not.toBe(a);
  });

  it('ends the text before a stop string', async () => {
    const args = ['--prompt', 'The film was', '--max-new-tokens', '24', '--ignore-eos'];
    const full = (await generate(args)).done.sequences[0].text;
    // A piece from the middle of the greedy text: the same greedy text, cut where it first appears.
    const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 3);
    expect(stop.trim().length).toBeGreaterThan(0);
    const cut = await generate([...args, '--stop', stop]);
    expect(cut.done.sequences[0].finishReason).toBe('stop');
    expect(cut.done.sequences[0].text).toBe(full.slice(0, full.indexOf(stop)));
    expect(cut.streamed[0]).toBe(cut.done.sequences[0].text);
  });

  it('names what is wrong with its flags', async () => {
    const none = await spillway(['generate', '--model', model]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/generate needs --prompt/);
    const wide = await spillway(['generate', '--model', model, '--prompt', 'x', '--top-p', '1.5']);
    expect(wide.code).toBe(1);
    expect(wide.stderr).toMatch(/--top-p/);
    const nowhere = await spillway(['generate', '--model', join(work, 'absent'), '--prompt', 'x', '--json']);
    expect(nowhere.code).toBe(1);
    expect(jsonLines(nowhere.stdout).at(-1)).toMatchObject({ type: 'error', message: expect.stringContaining('absent') });
  });
});

describe('spillway chat', () => {
  it('answers each line in one conversation; /reset starts over; a reply is what generate --chat gives that turn', async () => {
    const q = 'How was the film?';
    const r = await withInput(['chat', '--model', model, '--json', '--max-new-tokens', '10'], `${q}\nAnd the music?\n/reset\n${q}\n`);
    expect(r.code, r.stderr).toBe(0);
    const replies = jsonLines(r.stdout).filter((e) => e.type === 'reply');
    expect(replies).toHaveLength(3);
    // The third turn follows /reset: the first question again, with nothing before it.
    expect(replies[2].text).toBe(replies[0].text);
    expect(replies[1].promptTokens as number).toBeGreaterThan(replies[0].promptTokens as number);
    const alone = await generate(['--chat', '--prompt', q, '--max-new-tokens', '10']);
    expect(alone.done.sequences[0].text).toBe(replies[0].text);
  });
});

describe('a finished run keeps its final model', () => {
  it('saves it in the run folder with generation_config.json and the tokenizer; generate loads it', async () => {
    const r = await spillway([
      'train', '--model', model, '--data', join(DEMO_DATA, 'sentiment-demo', 'train.jsonl'),
      '--eval-fraction', '0', '--no-zero-shot', '--steps', '2', '--batch-size', '2', '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const done = jsonLines(r.stdout).at(-1) as { type: string; out: string };
    expect(done.type).toBe('done');
    expect(done.out.startsWith(join(work, 'data'))).toBe(true);
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
      expect(existsSync(join(done.out, f)), f).toBe(true);
    }
    // The source had no generation_config.json: the saved one carries the config's end id.
    const gen = JSON.parse(readFileSync(join(done.out, 'generation_config.json'), 'utf8')) as Record<string, unknown>;
    const cfg = JSON.parse(readFileSync(join(model, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(gen.eos_token_id).toEqual(cfg.eos_token_id);
    const tuned = await spillway(['generate', '--model', done.out, '--prompt', 'The film was', '--max-new-tokens', '4', '--ignore-eos', '--json']);
    expect(tuned.code, tuned.stderr).toBe(0);
    expect(jsonLines(tuned.stdout).at(-1)).toMatchObject({ type: 'done', sequences: [{ newTokens: 4, finishReason: 'length' }] });
  });
});

describe('evaluation of prompt/answer data by generated answers', () => {
  it('scores the answers the model generates greedily: those spillway generate gives each held-out prompt, by exact match and F1', async () => {
    const examples = readFileSync(join(DEMO_DATA, 'completion-demo.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .slice(0, 6)
      .map((l) => JSON.parse(l) as { prompt: string; completion: string });
    // The base model's greedy answers, one prompt each, cut at a line break as the evaluation cuts them.
    const answer = ['--max-new-tokens', '6', '--stop', '\n', '--temperature', '0'];
    const before = await generate([...examples.flatMap((x) => ['--prompt', x.prompt]), ...answer]);
    const answers = before.done.sequences.map((s) => s.text);
    // Half the references are the model's own answers: a score that could only come from generating them.
    const evalRows = examples.map((x, i) => ({ prompt: x.prompt, completion: i % 2 === 0 && answers[i].trim() ? answers[i] : x.completion }));
    const evalFile = join(work, 'answers-eval.jsonl');
    writeFileSync(evalFile, evalRows.map((x) => JSON.stringify(x)).join('\n') + '\n');
    const expected = answerScores(answers.map((prediction, i) => ({ prediction, references: [evalRows[i].completion] })));
    expect(expected.exactMatch).toBeGreaterThan(0);
    const r = await spillway([
      'train', '--model', model, '--data', join(DEMO_DATA, 'completion-demo.jsonl'), '--task', 'completion', '--eval-data', evalFile,
      '--eval-max-new-tokens', '6', '--steps', '1', '--batch-size', '2', '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const zeroShot = jsonLines(r.stdout).find((e) => e.type === 'eval' && e.step === 0) as Record<string, number>;
    expect(zeroShot.exactMatch).toBeCloseTo(expected.exactMatch, 12);
    expect(zeroShot.f1).toBeCloseTo(expected.f1, 12);
  });
});
