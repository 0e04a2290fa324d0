// Bad inputs, generated: every numeric, size and choice flag of `train` given
// values it must refuse, paths that are missing or the wrong kind of thing,
// model folders and dataset files broken in the ways people break them. Each
// is run as a person would (`spillway train|score ...`, a real process) and
// must end with exit status 1 and one line that names the flag or the file,
// before any run is recorded. A crash is anything else: a signal, another
// status, a stack trace, or a message that names neither.
import { copyFileSync, cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { MAX_ROW_BYTES } from '../../electron/data/index.js';
import { packageRoot } from '../../electron/engine/native.js';
import { spillway } from './processes.js';

export interface BadInput {
  name: string;
  args: string[];
  /** What the message must contain: the flag or the file. */
  names: string;
}

export interface BadInputResult extends BadInput {
  code: number | null;
  signal: string | null;
  message: string;
  /** Exit 1 with one line naming the flag or file. */
  clear: boolean;
  crashed: boolean;
}

const DEMO = join(packageRoot(), 'resources');
const MODEL = join(DEMO, 'models', 'spillway-demo');
const DATA = join(DEMO, 'datasets', 'sentiment-demo', 'train.jsonl');

/** The bad inputs, with the files they need written under `work`. */
export function badInputs(work: string): BadInput[] {
  mkdirSync(work, { recursive: true });
  const file = (name: string, content: string | Buffer) => {
    const p = join(work, name);
    writeFileSync(p, content);
    return p;
  };
  const base = ['--model', MODEL, '--data', DATA, '--steps', '2', '--batch-size', '4'];
  const train = (...args: string[]) => ['train', ...base, ...args];
  const cases: BadInput[] = [];
  const add = (name: string, args: string[], names: string) => cases.push({ name, args, names });

  // Numbers: empty, not a number, negative, fractional where an integer is due, beyond the bound, not finite.
  const ints = ['steps', 'batch-size', 'q', 'warmup', 'seed', 'eval-every', 'eval-max', 'threads', 'max-length', 'checkpoint-every', 'write-back-every'];
  for (const f of ints) for (const v of ['', 'abc', '-1', '2.5', '1e20', 'Infinity']) add(`--${f} ${JSON.stringify(v)}`, train(`--${f}`, v), `--${f}`);
  for (const f of ['lr', 'eps', 'weight-decay', 'eval-fraction']) for (const v of ['', 'x', '-0.5', 'NaN', '1e999']) add(`--${f} ${JSON.stringify(v)}`, train(`--${f}`, v), `--${f}`);
  add('--eval-fraction 1', train('--eval-fraction', '1'), '--eval-fraction');
  add('--eps 0', train('--eps', '0'), '--eps');
  for (const f of ['gpu-mem', 'cpu-mem', 'ssd-mem']) for (const v of ['', '12XB', '-5GB', '1e30GB']) add(`--${f} ${JSON.stringify(v)}`, train(`--${f}`, v), `--${f}`);
  for (const f of ['schedule', 'noise', 'offload', 'update-on', 'masters', 'task']) for (const v of ['', 'bogus']) add(`--${f} ${JSON.stringify(v)}`, train(`--${f}`, v), f === 'task' ? 'task' : `--${f}`);
  add('--label-words not JSON', train('--label-words', '[" bad",'), '--label-words');
  add('--label-words one word', train('--label-words', 'one'), '--label-words');
  add('--label-map not JSON', train('--task', 'classify', '--label-words', 'a,b', '--label-map', '{x'), '--label-map');
  add('--label-map index out of range', ['train', '--model', MODEL, '--data', join(DEMO, 'datasets', 'classify-demo.csv'), '--task', 'classify', '--label-words', ' bad, good', '--label-map', '{"negative": 5, "positive": 1}', '--steps', '1'], 'labelMap');
  add('--role-map with a bad role', train('--task', 'chat', '--role-map', 'a=king'), '--role-map');
  add('--template-vars not an object', train('--task', 'chat', '--template-vars', '[1]'), '--template-vars');
  add('--prompt without {text}', train('--task', 'classify', '--label-words', 'a,b', '--prompt', 'no placeholder'), '--prompt');
  add('a flag of another task', train('--chat-format', 'sharegpt'), '--chat-format');
  add('an unknown flag', train('--stepz', '3'), '--stepz');
  add('--model without --data', ['train', '--model', MODEL], '--data');
  add('--data without --model', ['train', '--data', DATA], '--model');
  add('--checkpoint-every without --checkpoint-dir', train('--checkpoint-every', '5'), '--checkpoint-dir');

  // Paths.
  const fileInTheWay = file('a-file', 'not a folder');
  add('model folder missing', ['train', '--model', join(work, 'no-model'), '--data', DATA], 'no-model');
  add('model is a file', ['train', '--model', fileInTheWay, '--data', DATA], 'a-file');
  const noConfig = join(work, 'model-no-config');
  mkdirSync(noConfig, { recursive: true });
  copyFileSync(join(MODEL, 'model.safetensors'), join(noConfig, 'model.safetensors'));
  add('model folder without config.json', ['train', '--model', noConfig, '--data', DATA], 'model-no-config');
  const brokenModel = (name: string, edit: (dir: string) => void) => {
    const dir = join(work, name);
    cpSync(MODEL, dir, { recursive: true });
    edit(dir);
    return dir;
  };
  add('config.json cut short', ['train', '--model', brokenModel('model-config-cut', (d) => writeFileSync(join(d, 'config.json'), readFileSync(join(d, 'config.json')).subarray(0, 30))), '--data', DATA], 'config.json');
  add('config.json of an unsupported architecture', ['train', '--model', brokenModel('model-bert', (d) => writeFileSync(join(d, 'config.json'), JSON.stringify({ ...JSON.parse(readFileSync(join(d, 'config.json'), 'utf8')), architectures: ['BertForMaskedLM'], model_type: 'bert' }))), '--data', DATA], 'BertForMaskedLM');
  add('weights cut short', ['train', '--model', brokenModel('model-weights-cut', (d) => writeFileSync(join(d, 'model.safetensors'), readFileSync(join(d, 'model.safetensors')).subarray(0, 5000))), '--data', DATA], 'model.safetensors');
  add('weights header garbage', ['train', '--model', brokenModel('model-weights-garbage', (d) => writeFileSync(join(d, 'model.safetensors'), Buffer.concat([Buffer.from([16, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{not json at all'), Buffer.alloc(64)]))), '--data', DATA], 'model.safetensors');
  add('tokenizer missing', ['train', '--model', brokenModel('model-no-tokenizer', (d) => writeFileSync(join(d, 'tokenizer.json'), '')), '--data', DATA], 'tokenizer');
  add('data missing', ['train', '--model', MODEL, '--data', join(work, 'no-data.jsonl')], 'no-data.jsonl');
  add('data is a folder', ['train', '--model', MODEL, '--data', work + '/'], work);
  add('data of an unknown format', ['train', '--model', MODEL, '--data', file('data.txt', 'hello')], 'data.txt');
  add('eval data missing', train('--eval-data', join(work, 'no-eval.jsonl')), 'no-eval.jsonl');
  add('checkpoint folder is a file', train('--checkpoint-every', '1', '--checkpoint-dir', fileInTheWay), 'a-file');
  add('output folder is a file', train('--out', fileInTheWay), 'a-file');
  const full = join(work, 'full-out');
  mkdirSync(full, { recursive: true });
  writeFileSync(join(full, 'precious.txt'), 'keep me');
  add('output folder not empty', train('--out', full), 'full-out');
  add('--offload ssd without a spill folder', train('--offload', 'ssd'), '--spill');
  add('spill folder missing', train('--offload', 'ssd', '--spill', join(work, 'no-spill')), 'no-spill');
  add('resume from a folder that is no checkpoint', ['train', '--resume', work], work);
  add('resume from a missing folder', ['train', '--resume', join(work, 'no-ckpt')], 'no-ckpt');
  add('resume from a checkpoint with its spillway.json cut short', ['train', '--resume', brokenModel('ckpt-cut', (d) => writeFileSync(join(d, 'spillway.json'), '{"status":"checkp'))], 'spillway.json');

  // Data files.
  const data = (name: string, content: string | Buffer, names = name) => add(`data: ${name}`, ['train', '--model', MODEL, '--data', file(name, content), '--steps', '1'], names);
  const row = (sentence: unknown, label: unknown) => JSON.stringify({ sentence, label });
  data('invalid-json.jsonl', `${row('good', 1)}\n{"sentence": "bad",}\n`, 'invalid-json.jsonl:2');
  data('scalar-line.jsonl', `${row('good', 1)}\n42\n`, 'scalar-line.jsonl:2');
  data('array-line.jsonl', `${row('good', 1)}\n[1, 2]\n`, 'array-line.jsonl:2');
  data('missing-field.jsonl', `${row('good', 1)}\n{"text": "x", "label": 0}\n`, 'missing-field.jsonl:2');
  data('label-out-of-range.jsonl', `${row('good', 1)}\n${row('bad', 7)}\n`, 'label-out-of-range.jsonl:2');
  data('label-unknown-word.jsonl', `${row('good', 1)}\n${row('bad', 'meh')}\n`, 'label-unknown-word.jsonl:2');
  data('label-null.jsonl', `${row('good', 1)}\n${row('bad', null)}\n`, 'label-null.jsonl:2');
  data('sentence-number.jsonl', `${row('good', 1)}\n${row(5, 0)}\n`, 'sentence-number.jsonl:2');
  data('truncated.jsonl', `${row('good', 1)}\n{"sentence": "cut sho`, 'truncated.jsonl:2');
  data('empty.jsonl', '');
  data('blank-lines.jsonl', '\n\n   \n');
  data('bom-only.jsonl', '\uFEFF');
  data('binary.jsonl', Buffer.from([0, 1, 2, 255, 254, 10, 0, 0, 10]), 'binary.jsonl:1');
  data('utf16.jsonl', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(`${row('good', 1)}\n`, 'utf16le')]), 'utf16.jsonl:1');
  data('array-unclosed.json', `[${row('good', 1)},\n${row('bad', 0)}`, 'array-unclosed.json');
  data('array-trailing.json', `[${row('good', 1)}] extra`, 'array-trailing.json');
  data('array-of-numbers.json', '[1, 2]', 'array-of-numbers.json:1');
  data('oversized-row.jsonl', `${row('good', 1)}\n${row('x'.repeat(MAX_ROW_BYTES + 1), 0)}\n`, 'oversized-row.jsonl:2');
  const csv = (name: string, content: string, names = name) => add(`data: ${name}`, ['train', '--model', MODEL, '--data', file(name, content), '--task', 'classify', '--label-words', ' bad, good', '--steps', '1'], names);
  csv('ragged.csv', 'text,label\ngood,1\ntoo,many,fields\n', 'ragged.csv:3');
  csv('unclosed-quote.csv', 'text,label\ngood,1\n"never closed,0\n', 'unclosed-quote.csv');
  csv('duplicate-header.csv', 'text,text\na,b\n', 'duplicate-header.csv:1');
  csv('no-label-column.csv', 'text,score\ngood,1\n', 'no-label-column.csv:2');
  csv('header-only.csv', 'text,label\n');
  add('data: corrupt.parquet', ['train', '--model', MODEL, '--data', file('corrupt.parquet', 'PAR1 definitely not parquet'), '--steps', '1'], 'corrupt.parquet');

  // score.
  add('score --batch-size 0', ['score', '--model', MODEL, '--data', DATA, '--batch-size', '0'], '--batch-size');
  add('score without --data', ['score', '--model', MODEL], '--data');
  add('score of a missing file', ['score', '--model', MODEL, '--data', join(work, 'gone.jsonl')], 'gone.jsonl');
  add('score of a bad row', ['score', '--model', MODEL, '--data', join(work, 'invalid-json.jsonl')], 'invalid-json.jsonl:2');
  return cases;
}

/** Runs each case (`concurrency` at a time) and judges its answer. */
export async function tryBadInputs(cases: readonly BadInput[], dataDir: string, concurrency = 4): Promise<BadInputResult[]> {
  const out: BadInputResult[] = new Array(cases.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < cases.length; i = next++) {
      const c = cases[i];
      const p = spillway(c.args[0] === 'train' ? [...c.args, '--data-dir', dataDir] : c.args);
      const { code, signal } = await p.exited;
      const text = p.output().trim();
      const stackTrace = /\n\s+at /.test(text) || /^(TypeError|RangeError|ReferenceError|SyntaxError)\b/m.test(text);
      const message = text.split('\n').filter((l) => l.startsWith('spillway: ')).pop() ?? text.split('\n').pop() ?? '';
      const clear = code === 1 && !stackTrace && message.startsWith('spillway: ') && message.includes(c.names);
      out[i] = { ...c, code, signal, message, clear, crashed: signal !== null || (code !== 1 && code !== 0) || stackTrace };
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}
