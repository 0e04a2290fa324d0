// Chat rows: the forms read (OpenAI messages, ShareGPT, Alpaca lines or array, mapped field names),
// malformed rows reported with file, line, field and what is wrong, where chat templates are found,
// the fallback, truncation, and the template's own refusals.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import {
  chatRenderer,
  chatSequences,
  DatasetError,
  loadExamples,
  loadTokenizer,
  readAllRows,
  rowConversation,
  strftime,
  tokenizeExample,
  type ChatTemplate,
  type DatasetRow,
  type SpillwayTokenizer,
} from '../../../electron/data/index.js';
import { pyStrip } from '../../../electron/data/chat.js';
import { ROOT } from '../../helpers/engine.js';
import { tempDir } from './fixtures.js';

const DEMO = path.join(ROOT, 'resources/models/spillway-demo');
const CHAT: ChatTemplate = { kind: 'chat' };
const row = (values: Record<string, unknown>, line = 7): DatasetRow => ({ line, values });

function errorOf(f: () => unknown): DatasetError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DatasetError);
    return e as DatasetError;
  }
  throw new Error('expected a DatasetError');
}

describe('reading chat rows', () => {
  it('reads OpenAI messages as they are, keeping what else a message carries', () => {
    const tool = { id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } };
    const m = rowConversation(
      row({
        messages: [
          { role: 'system', content: 'be brief' },
          { role: 'user', content: [{ type: 'text', text: 'hi ' }, { type: 'text', text: 'there' }] },
          { role: 'assistant', content: null, tool_calls: [tool] },
          { role: 'tool', content: '42', tool_call_id: 'c1' },
          { role: 'assistant', content: 'It is 42.' },
        ],
      }),
      CHAT,
    );
    expect(m).toEqual([
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'hi there' },
      { role: 'assistant', content: '', tool_calls: [tool] },
      { role: 'tool', content: '42', tool_call_id: 'c1' },
      { role: 'assistant', content: 'It is 42.' },
    ]);
  });

  it('reads ShareGPT conversations (human/gpt/system names)', () => {
    const m = rowConversation(row({ conversations: [{ from: 'system', value: 's' }, { from: 'human', value: 'q' }, { from: 'gpt', value: 'a' }] }), CHAT);
    expect(m).toEqual([
      { role: 'system', content: 's' },
      { role: 'user', content: 'q' },
      { role: 'assistant', content: 'a' },
    ]);
  });

  it('reads Alpaca rows: instruction and input joined by a newline, system and history when present', () => {
    expect(rowConversation(row({ instruction: 'Translate', input: 'chat', output: 'cat' }), CHAT)).toEqual([
      { role: 'user', content: 'Translate\nchat' },
      { role: 'assistant', content: 'cat' },
    ]);
    expect(rowConversation(row({ instruction: 'Say hi', input: '', output: 'hi', system: 'friendly', history: [['q0', 'a0']] }), CHAT)).toEqual([
      { role: 'system', content: 'friendly' },
      { role: 'user', content: 'q0' },
      { role: 'assistant', content: 'a0' },
      { role: 'user', content: 'Say hi' },
      { role: 'assistant', content: 'hi' },
    ]);
  });

  it('maps any field and role names', () => {
    const t: ChatTemplate = { kind: 'chat', messagesField: 'dialog', roleField: 'speaker', contentField: 'text', roleMap: { Customer: 'user', Agent: 'assistant' } };
    expect(rowConversation(row({ dialog: [{ speaker: 'Customer', text: 'broken' }, { speaker: 'Agent', text: 'sorry' }] }), t)).toEqual([
      { role: 'user', content: 'broken' },
      { role: 'assistant', content: 'sorry' },
    ]);
    const a: ChatTemplate = { kind: 'chat', instructionField: 'question', outputField: 'answer', inputField: 'context' };
    expect(rowConversation(row({ question: 'Why?', context: 'sky', answer: 'Rayleigh' }), a)).toEqual([
      { role: 'user', content: 'Why?\nsky' },
      { role: 'assistant', content: 'Rayleigh' },
    ]);
  });

  it('puts a system prompt before conversations that have none', () => {
    const t: ChatTemplate = { kind: 'chat', systemPrompt: 'You are kind.' };
    expect(rowConversation(row({ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] }), t)[0]).toEqual({ role: 'system', content: 'You are kind.' });
    expect(rowConversation(row({ messages: [{ role: 'system', content: 'own' }, { role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] }), t)[0].content).toBe('own');
  });

  it('reads Alpaca files as one JSON array, each row at the line where it starts', async () => {
    const rows = await readAllRows(path.join(ROOT, 'tests/fixtures/chat/alpaca.json'));
    expect(rows.map((r) => r.line)).toEqual([2, 7, 12]);
    expect(rows[1].values.output).toBe('El gato duerme en el sofá.');
  });

  it('reports a malformed element of a JSON array at its line and, when asked, reads on', async () => {
    const dir = await tempDir();
    const f = path.join(dir, 'bad.json');
    await writeFile(f, '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c", output: "d"},\n  7,\n  {"instruction": "[e]", "output": "\\"f\\""}\n]\n');
    await expect(readAllRows(f)).rejects.toThrow(`${f}:3: invalid JSON`);
    const bad: DatasetError[] = [];
    const rows = await readAllRows(f, { onBadRow: (e) => bad.push(e) });
    expect(rows.map((r) => [r.line, r.values.output])).toEqual([
      [2, 'b'],
      [5, '"f"'],
    ]);
    expect(bad.map((e) => [e.line, e.detail.slice(0, 22)])).toEqual([
      [3, 'invalid JSON: Expected'],
      [4, 'expected a JSON object'],
    ]);
    const open = path.join(dir, 'open.json');
    await writeFile(open, '[{"a": 1},\n{"a": 2}\n');
    await expect(readAllRows(open)).rejects.toThrow(`${open}:2: the JSON array is not closed`);
  });
});

describe('malformed chat rows: file, line, field and what is wrong', () => {
  const F = 'train.jsonl';
  const msgs = (...m: unknown[]) => row({ messages: m });
  const u = (content: unknown = 'q') => ({ role: 'user', content });
  const a = (content: unknown = 'a') => ({ role: 'assistant', content });
  const cases: Array<[string, DatasetRow, RegExp]> = [
    ['assistant first', msgs(a(), u()), /^train\.jsonl:7: field "messages": message 1 \(assistant\): the conversation must start with a user turn/],
    ['two user turns', msgs(u(), u(), a()), /message 2 \(user\): two user turns in a row/],
    ['two replies', msgs(u(), a(), a()), /message 3 \(assistant\): two assistant turns in a row/],
    ['system later', msgs(u(), a(), { role: 'system', content: 's' }, u(), a()), /message 3 \(system\): a system turn may only come first/],
    ['tool after user', msgs(u(), { role: 'tool', content: 'r' }, a()), /message 2 \(tool\): a tool result must follow an assistant turn, not a user turn/],
    ['no reply', msgs({ role: 'system', content: 's' }, u()), /^train\.jsonl:7: field "messages": no assistant turn: nothing to train/],
    ['empty', msgs(), /field "messages": the conversation is empty/],
    ['missing content', msgs(u(), { role: 'assistant' }), /message 2 \(assistant\): has no "content" \(the message has field "role"; --content-field/],
    ['content a number', msgs(u(3), a()), /message 1 \(user\): "content" must be a string \(or a list of text parts\), got number 3/],
    ['role a number', msgs({ role: 1, content: 'q' }, a()), /message 1: "role" must be a string, got number 1/],
    ['unknown role', msgs({ role: 'narrator', content: 'q' }, a()), /message 1: unknown role "narrator" \(known: .*; map other names with --role-map or Role names, e.g. narrator=assistant\)/],
    ['message not an object', msgs('hello', a()), /message 1: expected an object with "role" and "content", got string "hello"/],
    ['messages not a list', row({ messages: 'hi' }), /field "messages": expected a list of messages, got string "hi"/],
    ['alpaca without output', row({ instruction: 'do' }), /field "output": missing: an Alpaca row needs "instruction" and "output"/],
    ['alpaca output a number', row({ instruction: 'do', output: 5 }), /field "output": expected a string, got number 5/],
    ['alpaca bad history', row({ instruction: 'do', output: 'x', history: [['q']] }), /field "history": entry 1: expected \[instruction, reply\]/],
    ['sharegpt bad role', row({ conversations: [{ from: 'robot', value: 'x' }] }), /field "conversations": message 1: unknown role "robot"/],
  ];
  for (const [what, r, expected] of cases) {
    it(what, () => {
      const e = errorOf(() => rowConversation(r, CHAT, F));
      expect(e.message).toMatch(expected);
      expect(e.line).toBe(7);
      expect(e.file).toBe(F);
    });
  }

  it('a row in another shape names the fields it has and what reads them', () => {
    const e = errorOf(() => rowConversation(row({ sentence: 'ok', label: 1 }), CHAT, F));
    expect(e.message).toBe(
      'train.jsonl:7: no conversation found: this row has fields "sentence", "label"; task chat reads "messages" (OpenAI: [{role, content}]), ' +
        '"conversations" (ShareGPT: [{from, value}]) or "instruction" + "output" (Alpaca, with optional "input"); other names are given with ' +
        '--messages-field, --role-field, --content-field or --instruction-field, --input-field, --output-field. ' +
        'These rows look like SST-2 sentences: use task sst2 (--task sst2)',
    );
  });
});

describe('chat templates of a model folder', () => {
  let demoDir: string;
  const conv = [
    { role: 'user', content: 'hi' },
    { role: 'assistant', content: 'hello' },
  ];

  beforeAll(async () => {
    demoDir = await tempDir('spillway-chat-tpl-');
  });

  async function folder(name: string, config: Record<string, unknown>, files: Record<string, string> = {}): Promise<SpillwayTokenizer> {
    const dir = path.join(demoDir, name);
    await mkdir(path.join(dir, 'additional_chat_templates'), { recursive: true });
    const { readFile } = await import('node:fs/promises');
    await writeFile(path.join(dir, 'tokenizer.json'), await readFile(path.join(DEMO, 'tokenizer.json')));
    await writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ add_bos_token: true, bos_token: '<s>', eos_token: '</s>', ...config }));
    for (const [f, text] of Object.entries(files)) await writeFile(path.join(dir, f), text);
    return loadTokenizer(dir);
  }

  it('chat_template.jinja wins over the config; additional templates are named by their file', async () => {
    const tok = await folder('jinja', { chat_template: 'CONFIG' }, { 'chat_template.jinja': 'FILE{{ messages | length }}', 'additional_chat_templates/rag.jinja': 'RAG' });
    expect(tok.chatTemplates).toEqual({ default: 'FILE{{ messages | length }}', rag: 'RAG' });
    expect(chatRenderer(tok).render(conv, false)).toBe('FILE2');
    expect(chatRenderer(tok, { templateName: 'rag' }).render(conv, false)).toBe('RAG');
  });

  it('reads the named-templates list form and says which names exist', async () => {
    const tok = await folder('named', { chat_template: [{ name: 'default', template: 'D' }, { name: 'tool_use', template: 'T' }] });
    expect(chatRenderer(tok).render(conv, false)).toBe('D');
    expect(() => chatRenderer(tok, { templateName: 'nope' })).toThrow(/no chat template named "nope" \(the model has "default", "tool_use"/);
    await expect(folder('broken', { chat_template: [{ name: 'x' }] })).rejects.toThrow(/chat_template\[0\]: expected \{"name": string, "template": string\}/);
  });

  it('hands the template the special tokens (strings or AddedToken objects) and the caller\'s variables over them', async () => {
    const tok = await folder('added', {
      bos_token: { __type: 'AddedToken', content: '<s>', special: true },
      eos_token: { content: '</s>' },
      extra_special_tokens: { image_token: '<pad>' },
      chat_template: '{{ bos_token }}|{{ eos_token }}|{{ image_token }}|{{ flavour }}|{{ add_generation_prompt }}|{{ tools is none }}',
    });
    expect(tok.specialTokens).toEqual({ bos_token: '<s>', eos_token: '</s>', image_token: '<pad>' });
    expect(chatRenderer(tok, { templateVariables: { flavour: 'mint', eos_token: 'E' } }).render(conv, true)).toBe('<s>|E|<pad>|mint|true|true');
  });

  it('a model without a template gets the fallback, BOS first where the model adds one', async () => {
    const tok = await loadTokenizer(DEMO);
    const r = chatRenderer(tok);
    expect(r.source).toBe('fallback');
    expect(r.render([{ role: 'system', content: 's' }, ...conv], false)).toBe('<s>### System:\ns\n\n### User:\nhi\n\n### Assistant:\nhello</s>\n\n');
    expect(r.render(conv.slice(0, 1), true)).toBe('<s>### User:\nhi\n\n### Assistant:\n');
    expect(chatSequences(conv, r)).toEqual([
      {
        pieces: [
          { text: '<s>### User:\nhi\n\n### Assistant:\n', trained: false },
          { text: 'hello</s>\n\n', trained: true },
        ],
        replies: [1],
      },
    ]);
  });

  it('a template that refuses the conversation, or does not parse, is a clear error', async () => {
    const tok = await folder('raising', { chat_template: "{{ raise_exception('only one turn, please') if messages | length > 1 }}" });
    const e = errorOf(() => tokenizeExample(row({ messages: conv }), CHAT, tok, { file: 'd.jsonl' }));
    expect(e.message).toBe('d.jsonl:7: the chat template refused the conversation: only one turn, please');
    const bad = await folder('unparsable', { chat_template: '{% for m in messages %}' });
    expect(() => chatRenderer(bad)).toThrow(/tokenizer_config\.json: the chat template does not parse/);
  });

  it('a reply the template does not render after its prompt cannot be trained, and says so', async () => {
    const tok = await folder('reordering', { chat_template: "{% if add_generation_prompt %}PROMPT{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}" });
    const e = errorOf(() => tokenizeExample(row({ messages: conv }), CHAT, tok, { file: 'd.jsonl' }));
    expect(e.message).toMatch(/^d\.jsonl:7: message 2 \(assistant\): the template's rendering of the conversation up to this reply does not begin with/);
  });
});

describe('chat examples', () => {
  let tok: SpillwayTokenizer;
  beforeAll(async () => {
    tok = await loadTokenizer(DEMO);
  });

  it('trains every reply (reply and end-of-turn marker) and nothing after the last', () => {
    const ex = tokenizeExample(
      row({ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }, { role: 'assistant', content: 'd' }, { role: 'user', content: 'unanswered' }] }),
      CHAT,
      tok,
      { file: 'f.jsonl' },
    );
    expect(ex).toMatchObject({ kind: 'chat', label: -1, source: 'f.jsonl:7' });
    expect(ex.sequences).toHaveLength(1);
    const s = ex.sequences[0];
    expect(s.spans!.map(([x, y]) => tok.decode(s.tokens.slice(x, y)))).toEqual(['b</s>\n\n', 'd</s>\n\n']);
    expect(tok.decode(s.tokens)).not.toContain('unanswered');
    expect(s.tokens[0]).toBe(tok.bosId);
  });

  it('truncates on the right: a reply past maxLength is dropped, one cut short trains its first tokens', () => {
    const r = row({ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }, { role: 'assistant', content: 'the second reply is long' }] });
    const whole = tokenizeExample(r, CHAT, tok).sequences[0];
    const [[, end1], [start2, end2]] = whole.spans!;
    const cut = tokenizeExample(r, CHAT, tok, { maxLength: start2 + 2 }).sequences[0];
    expect(cut.tokens).toEqual(whole.tokens.slice(0, start2 + 2));
    expect(cut.spans).toEqual([whole.spans![0], [start2, start2 + 2]]);
    expect(end2).toBeGreaterThan(start2 + 2);
    const first = tokenizeExample(r, CHAT, tok, { maxLength: end1 + 1 }).sequences[0];
    expect(first.spans).toBeUndefined();
    expect([first.scoreStart, first.scoreEnd]).toEqual(whole.spans![0]);
    const e = errorOf(() => tokenizeExample(r, CHAT, tok, { file: 'f.jsonl', maxLength: whole.spans![0][0] }));
    expect(e.message).toBe(`f.jsonl:7: the first reply starts at token ${whole.spans![0][0] + 1}: maxLength ${whole.spans![0][0]} leaves nothing of it to train`);
  });

  it('a training load stops at the first bad row, naming its file and line', async () => {
    const dir = await tempDir();
    const f = path.join(dir, 'chat.jsonl');
    await writeFile(f, JSON.stringify({ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] }) + '\n\n' + JSON.stringify({ messages: [{ role: 'user', content: 'q' }] }) + '\n');
    await expect(loadExamples(f, CHAT, tok)).rejects.toThrow(`${f}:3: field "messages": no assistant turn`);
  });

  it('other tasks on chat data say what the rows look like and what reads them', () => {
    const e = errorOf(() => tokenizeExample(row({ messages: [] }), { kind: 'sst2' }, tok, { file: 'chat.jsonl' }));
    expect(e.message).toBe(
      'chat.jsonl:7: field "sentence": expected a string, got nothing (field missing); this row has field "messages" ' +
        '(these rows look like OpenAI chat messages: use task chat (--task chat))',
    );
  });
});

describe('Python semantics the templates rely on', () => {
  it('strftime in the C locale', () => {
    const d = new Date(2024, 6, 5, 14, 3, 9);
    expect(strftime(d, '%d %b %Y')).toBe('05 Jul 2024');
    expect(strftime(d, '%A %B %e, %H:%M:%S %p %I %j %y %%')).toBe('Friday July  5, 14:03:09 PM 02 187 24 %');
  });

  it('str.strip with and without characters', () => {
    expect(pyStrip('\n\n x \n', '\n', true, false)).toBe(' x \n');
    expect(pyStrip('\u3000 x\x1c', undefined, true, true)).toBe('x');
    expect(pyStrip('abcxcba', 'ab', true, true)).toBe('cxc');
  });
});
