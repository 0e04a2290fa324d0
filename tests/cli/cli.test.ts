// The `spillway` command as a person runs it: real child processes, real files.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { openblasCoreFor } from '../../electron/engine/blas-core.js';
import { readSafetensorsHeader } from '../../electron/model/index.js';
import { jsonLines, runSpillway } from '../helpers/cli.js';
import { FIXTURE_MODELS, ROOT } from '../helpers/engine.js';
import { DEMO_DATA, makeTinyLlama } from '../helpers/tiny-model.js';


const spillway = (args: string[]) => runSpillway(args, join(work, 'data'));
const lines = jsonLines;

let work: string;
let model: string;
const train = join(DEMO_DATA, 'sentiment-demo', 'train.jsonl');
const evalData = join(DEMO_DATA, 'sentiment-demo', 'eval.jsonl');

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'spw-cli-'));
  model = await makeTinyLlama(join(work, 'tiny'));
});

describe('spillway inspect', () => {
  it('reports architecture, parameter count and dtype of a checkpoint', async () => {
    const r = await spillway(['inspect', join(FIXTURE_MODELS, 'gpt2-tiny'), '--json']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(JSON.stringify(report)).toContain('GPT2LMHeadModel');
    const header = await readSafetensorsHeader(join(FIXTURE_MODELS, 'gpt2-tiny', 'model.safetensors'));
    const total = header.tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
    expect(report.parameters ?? report.parameterCount).toBe(total);
    const human = await spillway(['inspect', join(FIXTURE_MODELS, 'gpt2-tiny')]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/GPT2LMHeadModel/);
  });

  it('names an unsupported architecture and the supported list', async () => {
    const dir = join(work, 'bert');
    await makeTinyLlama(dir);
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, architectures: ['BertForMaskedLM'], model_type: 'bert' }));
    const r = await spillway(['inspect', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/BertForMaskedLM/);
    expect(r.stderr).toMatch(/LlamaForCausalLM/);
  });

  it('reports what it can of a refused model (parameters, dtypes, size) beside the reason', async () => {
    const dir = join(work, 'falcon');
    await makeTinyLlama(dir);
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, architectures: ['FalconForCausalLM'], model_type: 'falcon' }));
    const header = await readSafetensorsHeader(join(dir, 'model.safetensors'));
    const total = header.tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
    const human = await spillway(['inspect', dir]);
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(/architecture\s+FalconForCausalLM/);
    expect(human.stdout).toContain(total.toLocaleString('en-US'));
    expect(human.stdout).toMatch(/refused\s+.*unsupported architecture FalconForCausalLM/);
    expect(human.stderr).toMatch(/FalconForCausalLM/);
    const r = await spillway(['inspect', dir, '--json']);
    expect(r.code).toBe(1);
    const e = JSON.parse(r.stdout) as { type: string; message: string; model: { architecture: string; checkpoint: { parameterCount: number; sizeOnDisk: number } } };
    expect(e.type).toBe('error');
    expect(e.message).toMatch(/FalconForCausalLM/);
    expect(e.model.architecture).toBe('FalconForCausalLM');
    expect(e.model.checkpoint.parameterCount).toBe(total);
    expect(e.model.checkpoint.sizeOnDisk).toBe(header.fileSize);
  });
});

describe('spillway train', () => {
  it('streams start, eval, step and done events as JSON lines and saves the model', async () => {
    const out = join(work, 'tuned');
    const r = await spillway([
      'train', '--model', model, '--data', train, '--eval-data', evalData, '--eval-max', '16',
      '--steps', '4', '--batch-size', '4', '--lr', '1e-3', '--seed', '5', '--json', '--out', out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const ev = lines(r.stdout);
    expect(ev.map((e) => e.type)).toEqual(['start', 'eval', 'step', 'step', 'step', 'step', 'eval', 'done']);
    const steps = ev.filter((e) => e.type === 'step');
    for (const [i, s] of steps.entries()) {
      expect(s.step).toBe(i + 1);
      for (const k of ['loss', 'lossPlus', 'lossMinus', 'projectedGrad', 'lr', 'stepMs', 'tokensPerS']) {
        expect(typeof s[k], k).toBe('number');
      }
      expect(s.loss as number).toBeCloseTo(((s.lossPlus as number) + (s.lossMinus as number)) / 2, 9);
    }
    const evals = ev.filter((e) => e.type === 'eval');
    expect(evals[0].step).toBe(0);
    expect(evals[1].step).toBe(4);
    expect(evals[0].accuracy as number).toBeGreaterThanOrEqual(0);
    expect(evals[0].accuracy as number).toBeLessThanOrEqual(1);
    const done = ev.at(-1) as Record<string, unknown>;
    expect(done.status).toBe('completed');
    expect(done.out).toBe(out);
    expect(readFileSync(join(out, 'seedlog.jsonl'), 'utf8').trim().split('\n')).toHaveLength(4);
    expect(existsSync(join(out, 'tokenizer.json'))).toBe(true);
  });

  it('trains the label words\' rows, saves them as a peft adapter with the merged model, and says to chat with the merged one', async () => {
    const out = join(work, 'tokens');
    const r = await spillway([
      'train', '--model', model, '--data', train, '--eval-data', evalData, '--eval-max', '16',
      '--steps', '3', '--batch-size', '4', '--train', 'tokens', '--merge', '--out', out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/training \d+ of [\d,]+ parameters \(tokens\)/);
    expect(JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'))).toMatchObject({ peft_type: 'TRAINABLE_TOKENS' });
    expect(r.stderr).toContain(`try it: spillway chat --model ${join(out, 'merged')}`);
    const g = await spillway(['generate', '--model', join(out, 'merged'), '--prompt', 'It was', '--max-new-tokens', '3', '--json']);
    expect(g.code, g.stderr).toBe(0);
    // Without --merge there is no folder to chat with, and the hint says so.
    const bare = await spillway(['train', '--model', model, '--data', train, '--eval-data', evalData, '--eval-max', '16', '--steps', '1', '--batch-size', '4', '--train', 'tokens', '--out', join(work, 'tokens-bare')]);
    expect(bare.code, bare.stderr).toBe(0);
    expect(bare.stderr).toMatch(/a peft adapter over the base model: .* --merge/);
  });

  it('gives the same losses for the same seed and different ones for another', async () => {
    const args = (seed: string) => ['train', '--model', model, '--data', train, '--eval-fraction', '0', '--no-zero-shot', '--steps', '3', '--batch-size', '4', '--lr', '1e-3', '--seed', seed, '--json'];
    const losses = async (seed: string) => lines((await spillway(args(seed))).stdout).filter((e) => e.type === 'step').map((e) => e.loss);
    const a = await losses('11');
    const b = await losses('11');
    const c = await losses('12');
    expect(a).toHaveLength(3);
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
  });

  it('names the file, line and field of a bad row and saves nothing', async () => {
    const bad = join(work, 'bad.jsonl');
    writeFileSync(bad, '{"sentence": "fine film", "label": 1}\n{"sentence": "no label here"}\n');
    const out = join(work, 'never');
    const r = await spillway(['train', '--model', model, '--data', bad, '--steps', '2', '--out', out, '--json']);
    expect(r.code).toBe(1);
    const err = lines(r.stdout).find((e) => e.type === 'error');
    expect(err?.message).toMatch(/bad\.jsonl:2/);
    expect(err?.message).toMatch(/label/);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses bad flags with a clear message', async () => {
    const r = await spillway(['train', '--model', model, '--data', train, '--steps', 'many']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--steps expects a number/);
    const unknown = await spillway(['train', '--frobnicate']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/frobnicate/);
  });

  it('prints the usage for --help or -h after any command, without running it', async () => {
    for (const args of [['train', '--help'], ['generate', '--model', model, '-h'], ['plan', '--help'], ['runs', 'list', '--help']]) {
      const r = await spillway(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout, args.join(' ')).toMatch(/^Usage:$/m);
      expect(r.stdout, args.join(' ')).toMatch(/^Train options:$/m);
      expect(r.stderr, args.join(' ')).toBe('');
    }
  });
});

describe('spillway score', () => {
  it('prints per-example loss and accuracy without training', async () => {
    const r = await spillway(['score', '--model', model, '--data', evalData, '--task', 'sst2', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const ev = lines(r.stdout);
    const rows = readFileSync(evalData, 'utf8').trim().split('\n').length;
    const examples = ev.filter((e) => e.type === 'example');
    expect(examples).toHaveLength(rows);
    const summary = ev.find((e) => e.type === 'summary') as Record<string, number>;
    const meanLoss = examples.reduce((s, e) => s + (e.loss as number), 0) / rows;
    expect(summary.loss).toBeCloseTo(meanLoss, 9);
    const acc = examples.filter((e) => e.correct === true).length / rows;
    expect(summary.accuracy).toBeCloseTo(acc, 12);
    expect(examples[0].source).toMatch(/eval\.jsonl:1$/);
  });

  it('streams: the batches before a bad row are printed, then the error names its line', async () => {
    // Read whole first, a file failed before printing anything; streamed, every batch scored is out.
    const good = readFileSync(evalData, 'utf8').trim().split('\n').slice(0, 40);
    const data = join(work, 'score-then-bad.jsonl');
    writeFileSync(data, [...good, '{"sentence": "cut sho'].join('\n') + '\n');
    const r = await spillway(['score', '--model', model, '--data', data, '--batch-size', '8', '--json']);
    expect(r.code).toBe(1);
    const ev = lines(r.stdout);
    expect(ev.filter((e) => e.type === 'example').map((e) => e.index)).toEqual([...Array(40).keys()]);
    expect(ev.at(-1)).toEqual({ type: 'error', message: expect.stringContaining(`${data}:41: invalid JSON`) });
  });
});

describe('chat data from the command line', () => {
  const CHAT = join(ROOT, 'tests/fixtures/chat');

  it('trains on Alpaca and ShareGPT files with --task chat, and scores each conversation', async () => {
    for (const file of ['alpaca.json', 'sharegpt.jsonl']) {
      const r = await spillway(['train', '--model', model, '--data', join(CHAT, file), '--task', 'chat', '--eval-fraction', '0', '--steps', '2', '--batch-size', '2', '--json']);
      expect(r.code, r.stderr + r.stdout).toBe(0);
      const steps = lines(r.stdout).filter((e) => e.type === 'step');
      expect(steps).toHaveLength(2);
      expect(steps.every((e) => Number.isFinite(e.loss as number))).toBe(true);
    }
    const s = await spillway(['score', '--model', model, '--data', join(CHAT, 'messages.jsonl'), '--task', 'chat', '--json']);
    expect(s.code, s.stderr).toBe(0);
    const examples = lines(s.stdout).filter((e) => e.type === 'example');
    expect(examples).toHaveLength(5);
    expect(examples.every((e) => (e.scoredTokens as number) > 0 && e.correct === null)).toBe(true);
  });

  it('maps other field and role names with flags', async () => {
    const data = join(work, 'support.jsonl');
    writeFileSync(data, JSON.stringify({ dialog: [{ speaker: 'Customer', text: 'It broke.' }, { speaker: 'Agent', text: 'Sorry! Try a restart.' }] }) + '\n');
    const mapped = ['--task', 'chat', '--messages-field', 'dialog', '--role-field', 'speaker', '--content-field', 'text', '--role-map', 'Customer=user,Agent=assistant'];
    const r = await spillway(['score', '--model', model, '--data', data, ...mapped, '--json']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(lines(r.stdout).filter((e) => e.type === 'example')).toHaveLength(1);
    const unmapped = await spillway(['score', '--model', model, '--data', data, '--task', 'chat', '--json']);
    expect(unmapped.code).toBe(1);
    expect(lines(unmapped.stdout).find((e) => e.type === 'error')?.message).toMatch(/support\.jsonl:1: no conversation found: this row has field "dialog"; .*--messages-field/);
  });

  it('a file in another shape names its fields and the task that reads it', async () => {
    const r = await spillway(['train', '--model', model, '--data', join(CHAT, 'messages.jsonl'), '--steps', '1', '--json']);
    expect(r.code).toBe(1);
    expect(lines(r.stdout).find((e) => e.type === 'error')?.message).toMatch(
      /messages\.jsonl:1: field "sentence": expected a string, got nothing \(field missing\); this row has field "messages" \(these rows look like OpenAI chat messages: use task chat \(--task chat\)\)/,
    );
  });
});

describe('spillway doctor', () => {
  it('reports CUDA, libraries, io_uring and O_DIRECT on the spill folder', async () => {
    const r = await spillway(['doctor', '--spill', work, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const d = JSON.parse(r.stdout) as Record<string, { ok?: boolean; detail?: string; state?: string; folder?: string } & Record<string, unknown>>;
    expect(typeof d.cudaCompiled).toBe('boolean');
    expect(['ok', 'no device', 'CUDA not compiled in']).toContain(d.cuda.state);
    for (const k of ['cublas', 'nvml', 'ioUring', 'directIo']) expect(typeof d[k].ok, k).toBe('boolean');
    expect(d.directIo.folder).toBe(work);
    expect(String(d.blas)).toMatch(/OpenBLAS/);
    // Who picked OpenBLAS's kernels (electron/engine/blas-core.ts), and its configuration naming them.
    const set = process.env.OPENBLAS_CORETYPE;
    const picked = openblasCoreFor(readFileSync('/proc/cpuinfo', 'utf8'));
    const oneTarget = !String(d.blas).split(' ').includes('DYNAMIC_ARCH');
    const expected = oneTarget
      ? { core: null, by: 'build' }
      : set !== undefined
        ? { core: set, by: 'environment' }
        : picked
          ? { core: picked, by: 'spillway' }
          : { core: null, by: 'openblas' };
    expect(d.blasKernels).toEqual(expected);
    if (expected.by === 'spillway') expect(String(d.blas).split(' ')).toContain(expected.core);
    const missing = await spillway(['doctor', '--spill', join(work, 'no-such-dir'), '--json']);
    const m = JSON.parse(missing.stdout) as Record<string, { ok: boolean; detail: string }>;
    expect(m.directIo.ok).toBe(false);
    expect(m.directIo.detail).toMatch(/no-such-dir/);
  });
});

describe('the embedded demo', () => {
  it('starts at the zero-shot figure and lifts held-out accuracy by at least 15 points', async () => {
    // The demo's own settings (resources/demo.json), shortened to 50 steps; on this
    // model MeZO reaches ~97% by step 25 from 50% zero-shot (resources/README.md).
    const r = await spillway(['train', '--steps', '50', '--eval-every', '25', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const ev = lines(r.stdout);
    const evals = ev.filter((e) => e.type === 'eval');
    expect(evals[0].step).toBe(0);
    const zeroShot = evals[0].accuracy as number;
    expect(zeroShot).toBeLessThanOrEqual(0.7);
    const final = evals.at(-1) as Record<string, number>;
    expect(final.step).toBe(50);
    expect(final.accuracy - zeroShot).toBeGreaterThanOrEqual(0.15);
  });
});

describe('spillway train --offload', () => {
  it('trains with the blocks on the CPU or the SSD with the same losses as resident', async () => {
    const base = ['train', '--model', model, '--data', train, '--eval-fraction', '0', '--no-zero-shot', '--steps', '4', '--batch-size', '4', '--lr', '1e-3', '--seed', '3', '--json'];
    const losses = async (extra: string[]) => {
      const r = await spillway([...base, ...extra]);
      expect(r.code, r.stderr).toBe(0);
      return lines(r.stdout).filter((e) => e.type === 'step').map((e) => [e.lossPlus, e.lossMinus]);
    };
    const resident = await losses([]);
    expect(resident).toHaveLength(4);
    expect(await losses(['--offload', 'cpu'])).toEqual(resident);
    expect(await losses(['--offload', 'ssd', '--spill', work, '--write-back-every', '2'])).toEqual(resident);
    const noSpill = await spillway([...base, '--offload', 'ssd']);
    expect(noSpill.code).toBe(1);
    expect(noSpill.stdout).toMatch(/needs a spill folder/);
  });
});
