// The engine's loss of chat examples against the reference: transformers renders and tokenises each
// conversation and the readable PyTorch model (tests/reference/models.py) gives the mean NLL over
// the trained tokens (tests/reference/chat_loss.py). The tiny demo Llama, with the fallback
// template (replies sharing one sequence: several scored spans) and with a template that renders
// the latest reply differently from earlier ones (replies in sequences of their own).
// Tolerance: 1e-5 on losses (tests/reference/README.md).
import { execFileSync } from 'node:child_process';
import { symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

import { chatRenderer, loadExamples, loadTokenizer } from '../../electron/data/index.js';
import { packBatch } from '../../electron/engine/batch.js';
import { loadEngine, ROOT } from '../helpers/engine.js';
import { venvPython } from '../helpers/python.js';
import { tempDir } from '../electron/data/fixtures.js';

const DEMO = path.join(ROOT, 'resources/models/spillway-demo');

// Marks the latest reply, as Qwen3 marks it with a think block: earlier replies render differently.
const LATEST_MARKED = `{{ bos_token }}{% for m in messages %}{% if m.role == 'assistant' %}{{ 'Bot:' }}{% if loop.last %}{{ ' (latest)' }}{% endif %}{{ '\\n' + m.content + eos_token + '\\n' }}{% else %}{{ m.role + ':\\n' + m.content + '\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Bot:' }}{% endif %}`;

const ROWS = [
  { messages: [{ role: 'user', content: 'the movie was great' }, { role: 'assistant', content: 'glad you liked it' }] },
  {
    messages: [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'a dull film' },
      { role: 'assistant', content: 'sorry to hear' },
      { role: 'user', content: 'and the music?' },
      { role: 'assistant', content: 'it was fine' },
    ],
  },
  { conversations: [{ from: 'human', value: 'one word for joy' }, { from: 'gpt', value: 'delight' }, { from: 'human', value: 'for fear' }, { from: 'gpt', value: 'dread' }] },
  { instruction: 'Rate this review', input: 'a moving story', output: 'positive' },
];

interface Reference {
  examples: Array<{ sequences: Array<{ tokens: number[]; spans: Array<[number, number]> }>; loss: number }>;
  batch_loss: number;
}

async function compare(model: string, template: string | null, sequencesPerRow: number[]): Promise<void> {
  const dir = await tempDir('spillway-chat-loss-');
  const data = path.join(dir, 'chat.jsonl');
  await writeFile(data, ROWS.map((r) => JSON.stringify(r)).join('\n') + '\n');
  const ref = JSON.parse(
    execFileSync(venvPython(), [path.join(ROOT, 'tests/reference/chat_loss.py')], {
      input: JSON.stringify({ model, data, chat_template: template }),
      env: { ...process.env, OMP_NUM_THREADS: '1' },
      timeout: 300_000,
    }).toString(),
  ) as Reference;

  const tokenizer = await loadTokenizer(model);
  expect(chatRenderer(tokenizer).source).toBe(template === null ? 'model' : 'fallback');
  const examples = await loadExamples(data, { kind: 'chat' }, tokenizer, { maxLength: 256 });
  expect(examples.map((e) => e.sequences.length)).toEqual(sequencesPerRow);
  examples.forEach((ex, i) => {
    expect(ex.sequences.map((s) => s.tokens)).toEqual(ref.examples[i].sequences.map((s) => s.tokens));
    expect(ex.sequences.map((s) => s.spans ?? [[s.scoreStart, s.scoreEnd]])).toEqual(ref.examples[i].sequences.map((s) => s.spans));
  });

  const engine = await loadEngine(model);
  try {
    const r = await engine.score(packBatch(examples));
    r.exampleLoss.forEach((loss, i) => expect(Math.abs(loss - ref.examples[i].loss), `example ${i}`).toBeLessThan(1e-5));
    expect(Math.abs(r.loss - ref.batch_loss)).toBeLessThan(1e-5);
    const trained = ref.examples.map((e) => e.sequences.reduce((n, s) => n + s.spans.reduce((m, [a, b]) => m + b - a, 0), 0));
    expect(r.scoredTokens).toEqual(trained);
  } finally {
    engine.close();
  }
}

describe('chat loss: the engine against the PyTorch reference', () => {
  it('fallback template: every reply of a conversation in one sequence, several scored spans', async () => {
    const demo = await loadTokenizer(DEMO);
    await compare(DEMO, chatRenderer(demo).text, [1, 1, 1, 1]);
  }, 300_000);

  it('a template that renders the latest reply differently: earlier replies in sequences of their own', async () => {
    const dir = await tempDir('spillway-chat-model-');
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) await symlink(path.join(DEMO, f), path.join(dir, f));
    await writeFile(
      path.join(dir, 'tokenizer_config.json'),
      JSON.stringify({ add_bos_token: true, bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', pad_token: '<pad>', chat_template: LATEST_MARKED }),
    );
    await compare(dir, null, [1, 2, 2, 1]);
  }, 300_000);
});
