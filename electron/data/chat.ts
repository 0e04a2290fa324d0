// Chat and instruction data (task "chat"): a row in the OpenAI `messages`, the
// ShareGPT `conversations` or the Alpaca form (or any field names the template
// maps) becomes a conversation; the model's own chat template renders it
// (@huggingface/jinja, given the variables transformers' apply_chat_template
// gives it); only the assistant replies are trained. docs/ENGINE-SPEC.md
// ("Losses") is the contract:
//
//   reply k = render(messages[:k+1]) minus render(messages[:k], add_generation_prompt)
//
// (the reply and the end-of-turn marker the template adds). Replies whose
// rendering is a prefix of the whole conversation's share one sequence; a reply
// the template renders differently once later turns follow (Qwen3 drops the
// reasoning of earlier replies) is trained in a sequence of its own, the
// conversation as the model sees it when it writes that reply. Each sequence is
// cut at its replies' bounds and every piece is tokenised on its own, without
// special tokens (the template supplies BOS).

import { Environment, Interpreter, Template } from '@huggingface/jinja';

import { describeValue, rowError, type DatasetRow } from './datasets.js';
import type { SpillwayTokenizer } from './tokenizer.js';
import type { TokenSequence, TokenizedExample } from './types.js';

export const CHAT_FORMATS = ['messages', 'sharegpt', 'alpaca'] as const;
export type ChatFormat = (typeof CHAT_FORMATS)[number];
export const CHAT_ROLES = ['system', 'user', 'assistant', 'tool'] as const;
export type ChatRole = (typeof CHAT_ROLES)[number];
export type ChatValue = string | number | boolean | null | ChatValue[] | { [key: string]: ChatValue };

export interface ChatTemplate {
  kind: 'chat';
  /** How rows are laid out; default: found from each row's fields (`messages`, `conversations`, `instruction` + `output`). */
  format?: ChatFormat;
  /** messages / sharegpt: the field holding the list of turns (default "messages", else "conversations"). */
  messagesField?: string;
  /** The role key of a turn (default "role", or "from" when the turns have it). */
  roleField?: string;
  /** The text key of a turn (default "content", or "value" when the turns have "from"). */
  contentField?: string;
  /** The dataset's role names → roles, on top of the usual ones (human, gpt, model, ...). */
  roleMap?: Readonly<Record<string, ChatRole>>;
  /** alpaca: field names (defaults "instruction", "input", "output", "system", "history"). */
  instructionField?: string;
  inputField?: string;
  outputField?: string;
  systemField?: string;
  historyField?: string;
  /** A system turn put before each conversation that has none. */
  systemPrompt?: string;
  /** Which of the model's named chat templates (default "default", the only one of most models). */
  templateName?: string;
  /** More variables for the chat template, as transformers' apply_chat_template(**kwargs): e.g. {"enable_thinking": false}. */
  templateVariables?: Readonly<Record<string, ChatValue>>;
}

/** One turn as the chat template sees it: role and content, plus whatever else the dataset's message carried (tool_calls, ...). */
export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: ChatValue;
}

/** Dataset role names understood without a roleMap (OpenAI, ShareGPT, LLaMA-Factory, Gemma). Matched as written, else lower-cased. */
export const DEFAULT_ROLE_NAMES: Readonly<Record<string, ChatRole>> = {
  system: 'system',
  developer: 'system',
  user: 'user',
  human: 'user',
  assistant: 'assistant',
  gpt: 'assistant',
  model: 'assistant',
  bot: 'assistant',
  chatgpt: 'assistant',
  function_call: 'assistant',
  tool: 'tool',
  function: 'tool',
  observation: 'tool',
};

const CHAT_FIELDS_HELP =
  'task chat reads "messages" (OpenAI: [{role, content}]), "conversations" (ShareGPT: [{from, value}]) or ' +
  '"instruction" + "output" (Alpaca, with optional "input"); other names are given with --messages-field, ' +
  '--role-field, --content-field or --instruction-field, --input-field, --output-field';

/** The task whose default fields a row has, with the flag that selects it: for errors about a file in another shape. */
export function taskHint(values: Record<string, unknown>): string | null {
  const has = (k: string) => Object.hasOwn(values, k);
  if (has('messages')) return 'these rows look like OpenAI chat messages: use task chat (--task chat)';
  if (has('conversations')) return 'these rows look like ShareGPT conversations: use task chat (--task chat)';
  if (has('instruction') && has('output')) return 'these rows look like Alpaca instructions: use task chat (--task chat)';
  if (has('prompt') && has('completion')) return 'these rows look like prompt/completion pairs: use task completion (--task completion)';
  if (has('premise') && has('hypothesis')) return 'these rows look like RTE pairs: use task rte (--task rte)';
  if (has('sentence') && has('label')) return 'these rows look like SST-2 sentences: use task sst2 (--task sst2)';
  if (has('text') && has('label')) return 'these rows look like labelled texts: use task classify (--task classify --label-words ...)';
  if (has('text')) return 'these rows look like plain text: use task text (--task text)';
  return null;
}

/** "fields "a", "b"" (at most 12 named). */
export function fieldList(values: Record<string, unknown>): string {
  const keys = Object.keys(values);
  if (keys.length === 0) return 'no fields';
  const named = keys.slice(0, 12).map((k) => JSON.stringify(k));
  return `field${keys.length === 1 ? '' : 's'} ${named.join(', ')}${keys.length > 12 ? ` and ${keys.length - 12} more` : ''}`;
}

// ---------------------------------------------------------------------------
// Rows -> conversations

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Dataset values as the template sees them (JSON: bigints from Parquet become numbers or strings). */
function chatValue(v: unknown): ChatValue {
  if (v === undefined || v === null) return null;
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : String(v);
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(chatValue);
  if (typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, chatValue(x)]));
  return String(v);
}

/** Content as a string: a string, or OpenAI's list of text parts (joined). */
function contentText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.length > 0 && v.every((p) => isRecord(p) && p.type === 'text' && typeof p.text === 'string')) {
    return v.map((p) => (p as { text: string }).text).join('');
  }
  return null;
}

function rowFormat(row: DatasetRow, t: ChatTemplate, file: string): ChatFormat {
  if (t.format) return t.format;
  const v = row.values;
  if (t.messagesField !== undefined) return 'messages';
  if (t.instructionField !== undefined || t.outputField !== undefined) return 'alpaca';
  if (Object.hasOwn(v, 'messages')) return 'messages';
  if (Object.hasOwn(v, 'conversations')) return 'sharegpt';
  if (Object.hasOwn(v, 'instruction') || Object.hasOwn(v, 'output')) return 'alpaca';
  const hint = taskHint(v);
  throw rowError(file, row, `no conversation found: this row has ${fieldList(v)}; ${CHAT_FIELDS_HELP}${hint && !hint.includes('task chat') ? `. ${hint[0].toUpperCase()}${hint.slice(1)}` : ''}`);
}

function turnsOf(row: DatasetRow, t: ChatTemplate, format: ChatFormat, file: string): { turns: ChatMessage[]; field: string } {
  const field = t.messagesField ?? (format === 'sharegpt' || !Object.hasOwn(row.values, 'messages') ? 'conversations' : 'messages');
  const list = row.values[field];
  if (!Array.isArray(list)) {
    const extra = list === undefined ? `; this row has ${fieldList(row.values)}; ${CHAT_FIELDS_HELP}` : '';
    throw rowError(file, row, `expected a list of messages, got ${describeValue(list)}${extra}`, field);
  }
  if (list.length === 0) throw rowError(file, row, 'the conversation is empty', field);
  const first = list.find(isRecord);
  const roleKey = t.roleField ?? (first && Object.hasOwn(first, 'from') && !Object.hasOwn(first, 'role') ? 'from' : 'role');
  const contentKey = t.contentField ?? (roleKey === 'from' ? 'value' : 'content');
  const names = { ...DEFAULT_ROLE_NAMES, ...t.roleMap };
  const turns = list.map((m, i): ChatMessage => {
    const where = `message ${i + 1}`;
    if (!isRecord(m)) throw rowError(file, row, `${where}: expected an object with "${roleKey}" and "${contentKey}", got ${describeValue(m)}`, field);
    const name = m[roleKey];
    if (typeof name !== 'string') {
      throw rowError(file, row, `${where}: "${roleKey}" must be a string, got ${describeValue(name)} (the message has ${fieldList(m)}; --role-field names another key)`, field);
    }
    const role = Object.hasOwn(names, name) ? names[name] : Object.hasOwn(names, name.toLowerCase()) ? names[name.toLowerCase()] : undefined;
    if (role === undefined) {
      throw rowError(
        file,
        row,
        `${where}: unknown role ${JSON.stringify(name)} (known: ${Object.keys(names).join(', ')}; map other names with --role-map or Role names, e.g. ${name}=assistant)`,
        field,
      );
    }
    const raw = m[contentKey];
    let content = contentText(raw);
    // An assistant turn that only calls tools has no content (OpenAI sends null).
    if (content === null && (raw === null || raw === undefined) && role === 'assistant' && Array.isArray(m.tool_calls)) content = '';
    if (content === null) {
      const why = raw === undefined ? `has no "${contentKey}" (the message has ${fieldList(m)}; --content-field names another key)` : `"${contentKey}" must be a string (or a list of text parts), got ${describeValue(raw)}`;
      throw rowError(file, row, `${where} (${role}): ${why}`, field);
    }
    const extra: Record<string, ChatValue> = {};
    for (const [k, x] of Object.entries(m)) if (k !== roleKey && k !== contentKey && k !== 'role' && k !== 'content') extra[k] = chatValue(x);
    return { ...extra, role, content };
  });
  return { turns, field };
}

function alpacaTurns(row: DatasetRow, t: ChatTemplate, file: string): ChatMessage[] {
  const v = row.values;
  const get = (field: string, required: boolean): string | null => {
    const x = v[field];
    if (x === undefined || x === null) {
      if (!required) return null;
      throw rowError(file, row, `missing: an Alpaca row needs "${t.instructionField ?? 'instruction'}" and "${t.outputField ?? 'output'}" (this row has ${fieldList(v)}); ${CHAT_FIELDS_HELP}`, field);
    }
    if (typeof x !== 'string') throw rowError(file, row, `expected a string, got ${describeValue(x)}`, field);
    return x;
  };
  const instruction = get(t.instructionField ?? 'instruction', true)!;
  const input = get(t.inputField ?? 'input', false);
  const output = get(t.outputField ?? 'output', true)!;
  const system = get(t.systemField ?? 'system', false);
  const historyField = t.historyField ?? 'history';
  const history = v[historyField];
  const turns: ChatMessage[] = [];
  if (system) turns.push({ role: 'system', content: system });
  if (history !== undefined && history !== null) {
    if (!Array.isArray(history)) throw rowError(file, row, `expected a list of [instruction, reply] pairs, got ${describeValue(history)}`, historyField);
    history.forEach((pair, i) => {
      if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') {
        throw rowError(file, row, `entry ${i + 1}: expected [instruction, reply] (two strings), got ${describeValue(pair)}`, historyField);
      }
      turns.push({ role: 'user', content: pair[0] }, { role: 'assistant', content: pair[1] });
    });
  }
  // LLaMA-Factory's join: the input follows the instruction on the next line.
  turns.push({ role: 'user', content: input ? `${instruction}\n${input}` : instruction }, { role: 'assistant', content: output });
  return turns;
}

/** Roles in an order every chat template accepts: an optional leading system turn, then user and assistant in turn (tools answer an assistant). */
function checkOrder(turns: ChatMessage[], row: DatasetRow, file: string, field: string | undefined): void {
  const fail = (i: number, what: string) => {
    throw rowError(file, row, `message ${i + 1} (${turns[i].role}): ${what}`, field);
  };
  let prev: string | null = null;
  turns.forEach((m, i) => {
    if (m.role === 'system') {
      if (i !== 0) fail(i, 'a system turn may only come first');
    } else if (m.role === 'tool') {
      if (prev !== 'assistant' && prev !== 'tool') fail(i, `a tool result must follow an assistant turn, not ${prev === null ? 'start the conversation' : `a ${prev} turn`}`);
    } else if (prev === null || prev === 'system') {
      if (m.role !== 'user') fail(i, 'the conversation must start with a user turn (after an optional system turn)');
    } else if (m.role === prev) {
      fail(i, `two ${m.role} turns in a row (roles must alternate user/assistant)`);
    } else if (m.role === 'user' && prev === 'tool') {
      fail(i, 'a tool result must be answered by an assistant turn before the next user turn');
    }
    prev = m.role;
  });
  if (!turns.some((m) => m.role === 'assistant')) {
    throw rowError(file, row, 'no assistant turn: nothing to train (a chat row needs at least one reply)', field);
  }
}

/** The conversation a row holds, checked (roles known and in order, text where text is due, at least one reply). */
export function rowConversation(row: DatasetRow, t: ChatTemplate, file = '<row>'): ChatMessage[] {
  const format = rowFormat(row, t, file);
  const { turns, field } = format === 'alpaca' ? { turns: alpacaTurns(row, t, file), field: undefined } : turnsOf(row, t, format, file);
  if (t.systemPrompt !== undefined && turns[0]?.role !== 'system') turns.unshift({ role: 'system', content: t.systemPrompt });
  checkOrder(turns, row, file, field);
  return turns;
}

// ---------------------------------------------------------------------------
// The chat template

/**
 * Rendering for models without a chat template (base models): plain role headers, each reply
 * closed by EOS so the model learns to stop; BOS first when the tokenizer adds one
 * (chatRenderer puts `{{ bos_token }}` in front then).
 *   ### System:\n{system}\n\n### User:\n{user}\n\n### Assistant:\n{reply}{eos}\n\n ...
 */
export const FALLBACK_CHAT_TEMPLATE =
  "{%- for message in messages -%}{{ '### ' + (message.role | capitalize) + ':\\n' + message.content }}" +
  "{%- if message.role == 'assistant' and eos_token is defined %}{{ eos_token }}{% endif %}{{- '\\n\\n' -}}{%- endfor -%}" +
  "{%- if add_generation_prompt %}{{ '### Assistant:\\n' }}{% endif -%}";

export class ChatTemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ChatTemplateError';
  }
}

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/** Python's datetime.strftime in the C locale (English names), for the directives chat templates use. */
export function strftime(d: Date, format: string): string {
  const p2 = (n: number) => String(n).padStart(2, '0');
  const start = new Date(d.getFullYear(), 0, 1);
  const yday = Math.floor((Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()) - Date.UTC(start.getFullYear(), 0, 1)) / 86_400_000) + 1;
  return format.replace(/%([a-zA-Z%])/g, (all, c: string) => {
    switch (c) {
      case 'Y': return String(d.getFullYear());
      case 'y': return p2(d.getFullYear() % 100);
      case 'm': return p2(d.getMonth() + 1);
      case 'd': return p2(d.getDate());
      case 'e': return String(d.getDate()).padStart(2, ' ');
      case 'b': return MONTHS[d.getMonth()].slice(0, 3);
      case 'B': return MONTHS[d.getMonth()];
      case 'a': return DAYS[d.getDay()].slice(0, 3);
      case 'A': return DAYS[d.getDay()];
      case 'H': return p2(d.getHours());
      case 'I': return p2(d.getHours() % 12 || 12);
      case 'p': return d.getHours() < 12 ? 'AM' : 'PM';
      case 'M': return p2(d.getMinutes());
      case 'S': return p2(d.getSeconds());
      case 'j': return String(yday).padStart(3, '0');
      case '%': return '%';
      default: return all;
    }
  });
}

function pyRange(a: number, b?: number, step = 1): number[] {
  const [start, stop] = b === undefined ? [0, a] : [a, b];
  if (step === 0) throw new ChatTemplateError('range() step must not be zero');
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

/** Python's str.isspace() characters: what str.strip() removes without an argument. */
const PY_WHITESPACE = new Set([...'\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000'].concat(
  Array.from({ length: 11 }, (_, i) => String.fromCharCode(0x2000 + i)),
));

/** Python's str.strip / lstrip / rstrip: the characters of `chars`, or whitespace when it is None. */
export function pyStrip(s: string, chars: unknown, left: boolean, right: boolean): string {
  const set = typeof chars === 'string' ? new Set(chars) : PY_WHITESPACE;
  let a = 0;
  let b = s.length;
  if (left) while (a < b && set.has(s[a])) a++;
  if (right) while (b > a && set.has(s[b - 1])) b--;
  return s.slice(a, b);
}

type RuntimeValue = { value: unknown };
type StringValueClass = { new (value: string): RuntimeValue; prototype: object };
type FunctionValueClass = new (fn: (args: RuntimeValue[]) => RuntimeValue) => RuntimeValue;

const patchedMethods = new WeakSet<Map<string, unknown>>();
let stringMethodsPatched = false;

/**
 * @huggingface/jinja 0.5.13 gives strings a strip/lstrip/rstrip that ignore their argument (Python
 * strips the characters given: Qwen3's `content.lstrip('\n')` keeps a leading space) and a
 * capitalize() that keeps the case of the rest (Python lowers it). Its string values' method table
 * is not exported, so it is amended where it is built: the first string a render returns shows the
 * class. Checked against Python's jinja2 by tests/electron/data/chat-reference.test.ts.
 */
function patchStringMethods(): void {
  if (stringMethodsPatched) return;
  stringMethodsPatched = true;
  const probe = new Interpreter(new Environment()).run(new Template('x').parsed) as unknown as RuntimeValue;
  const StringValue = probe.constructor as StringValueClass;
  const proto = StringValue.prototype;
  const original = Object.getOwnPropertyDescriptor(proto, 'builtins')?.get;
  if (!original) throw new Error('@huggingface/jinja: string values have no method table (an unexpected version)');
  Object.defineProperty(proto, 'builtins', {
    configurable: true,
    get(this: RuntimeValue & { value: string }) {
      const methods = original.call(this) as Map<string, unknown>;
      if (!patchedMethods.has(methods)) {
        const FunctionValue = (methods.get('strip') as object).constructor as FunctionValueClass;
        const str = this.value;
        const strip = (left: boolean, right: boolean) => new FunctionValue((args) => new StringValue(pyStrip(str, args[0]?.value, left, right)));
        methods.set('strip', strip(true, true));
        methods.set('lstrip', strip(true, false));
        methods.set('rstrip', strip(false, true));
        methods.set('capitalize', new FunctionValue(() => new StringValue(str.charAt(0).toUpperCase() + str.slice(1).toLowerCase())));
        patchedMethods.add(methods);
      }
      return methods;
    },
  });
}

export interface ChatRenderer {
  /** "model": the model's own template; "fallback": FALLBACK_CHAT_TEMPLATE (the model has none). */
  readonly source: 'model' | 'fallback';
  /** The file the template came from (null for the fallback). */
  readonly file: string | null;
  /** The template's source. */
  readonly text: string;
  /** The template's text for `messages`, as transformers' apply_chat_template(tokenize=False) renders it. */
  render(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string;
}

export interface ChatRendererOptions {
  templateName?: string;
  templateVariables?: Readonly<Record<string, ChatValue>>;
  /** What strftime_now reads: fixed for a renderer, so every rendering of a dataset agrees (default: when it is made). */
  now?: Date;
}

const compiled = new WeakMap<SpillwayTokenizer, Map<string, Template>>();

function compile(tokenizer: SpillwayTokenizer, key: string, text: string, where: string): Template {
  let byName = compiled.get(tokenizer);
  if (!byName) compiled.set(tokenizer, (byName = new Map()));
  let t = byName.get(key);
  if (!t) {
    try {
      t = new Template(text);
    } catch (e) {
      throw new ChatTemplateError(`${where}: the chat template does not parse: ${(e as Error).message}`);
    }
    byName.set(key, t);
  }
  return t;
}

/** The renderer of the model's chat template (or of the fallback when it has none). */
export function chatRenderer(tokenizer: SpillwayTokenizer, options: ChatRendererOptions = {}): ChatRenderer {
  patchStringMethods();
  const names = Object.keys(tokenizer.chatTemplates);
  const where = tokenizer.chatTemplateFile ?? tokenizer.dir;
  let text: string;
  let source: ChatRenderer['source'] = 'model';
  let key: string;
  if (names.length === 0) {
    if (options.templateName !== undefined) throw new ChatTemplateError(`${tokenizer.dir}: the model has no chat template (asked for "${options.templateName}")`);
    source = 'fallback';
    const bos = tokenizer.addsBos && tokenizer.specialTokens.bos_token !== undefined;
    key = bos ? '\0fallback+bos' : '\0fallback';
    text = (bos ? '{{ bos_token }}' : '') + FALLBACK_CHAT_TEMPLATE;
  } else {
    const name = options.templateName ?? 'default';
    if (!Object.hasOwn(tokenizer.chatTemplates, name)) {
      throw new ChatTemplateError(`${where}: no chat template named "${name}" (the model has ${names.map((n) => JSON.stringify(n)).join(', ')}; choose one with --chat-template)`);
    }
    key = name;
    text = tokenizer.chatTemplates[name];
  }
  const template = compile(tokenizer, key, text, where);
  const now = options.now ?? new Date();
  return {
    source,
    file: source === 'model' ? where : null,
    text,
    render(messages, addGenerationPrompt) {
      const env = new Environment();
      // The globals of transformers' template environment (Python spellings included).
      const globals: Record<string, unknown> = {
        true: true,
        false: false,
        none: null,
        True: true,
        False: false,
        None: null,
        range: pyRange,
        raise_exception: (message: unknown) => {
          throw new ChatTemplateError(`the chat template refused the conversation: ${String(message)}`);
        },
        strftime_now: (format: unknown) => strftime(now, String(format)),
        // apply_chat_template's variables: the special tokens, then the caller's kwargs over them.
        ...tokenizer.specialTokens,
        ...options.templateVariables,
        messages,
        tools: null,
        documents: null,
        add_generation_prompt: addGenerationPrompt,
      };
      for (const [k, v] of Object.entries(globals)) env.set(k, v);
      let out: string;
      try {
        out = new Interpreter(env).run(template.parsed).value as string;
      } catch (e) {
        if (e instanceof ChatTemplateError) throw e;
        throw new ChatTemplateError(`the chat template failed: ${(e as Error).message}`);
      }
      return out;
    },
  };
}

// ---------------------------------------------------------------------------
// Conversations -> trained sequences

/** A run of text in a rendered sequence; `trained` marks an assistant reply (with its end-of-turn marker). */
export interface ChatPiece {
  text: string;
  trained: boolean;
}

/** One sequence a conversation becomes: pieces in order, and which messages' replies it trains (0-based). */
export interface ChatSequenceText {
  pieces: ChatPiece[];
  replies: number[];
}

/**
 * The sequences a conversation is trained as (ENGINE-SPEC "Losses"). Trailing turns after the last
 * reply are not rendered: nothing after the last trained token changes the loss.
 */
export function chatSequences(messages: readonly ChatMessage[], renderer: ChatRenderer): ChatSequenceText[] {
  const replies = messages.flatMap((m, i) => (m.role === 'assistant' ? [i] : []));
  const parts = new Map<number, { context: string; full: string }>();
  for (const k of replies) {
    const context = renderer.render(messages.slice(0, k), true);
    const full = renderer.render(messages.slice(0, k + 1), false);
    if (!full.startsWith(context)) {
      throw new ChatTemplateError(
        `message ${k + 1} (assistant): the template's rendering of the conversation up to this reply does not begin with its ` +
          'rendering of the turns before it plus the generation prompt, so the reply cannot be told apart',
      );
    }
    if (full.length === context.length) throw new ChatTemplateError(`message ${k + 1} (assistant): the template renders no text for this reply`);
    parts.set(k, { context, full });
  }
  const out: ChatSequenceText[] = [];
  const left = [...replies];
  while (left.length > 0) {
    const text = parts.get(left[left.length - 1])!.full;
    // Replies rendered the same way here as when they were the last turn share this sequence.
    const here = left.filter((j) => text.startsWith(parts.get(j)!.full));
    const pieces: ChatPiece[] = [];
    let at = 0;
    for (const j of here) {
      const { context, full } = parts.get(j)!;
      if (context.length < at) {
        throw new ChatTemplateError(`message ${j + 1} (assistant): the template's rendering of this reply overlaps the previous one`);
      }
      if (context.length > at) pieces.push({ text: text.slice(at, context.length), trained: false });
      pieces.push({ text: text.slice(context.length, full.length), trained: true });
      at = full.length;
    }
    out.unshift({ pieces, replies: here });
    for (const j of here) left.splice(left.indexOf(j), 1);
  }
  return out;
}

export interface TokenizedChatSequence {
  sequence: TokenSequence;
  /** Tokens of each piece, in order (before truncation). */
  pieceTokens: number[];
}

/** Tokenises each piece on its own (no special tokens added); trained pieces become the scored spans. */
export function tokenizeChatSequence(seq: ChatSequenceText, tokenizer: SpillwayTokenizer): TokenizedChatSequence {
  const tokens: number[] = [];
  const spans: Array<[number, number]> = [];
  const pieceTokens: number[] = [];
  for (const p of seq.pieces) {
    const ids = tokenizer.encode(p.text, { addSpecialTokens: false });
    if (p.trained && ids.length > 0) spans.push([tokens.length, tokens.length + ids.length]);
    for (const id of ids) tokens.push(id);
    pieceTokens.push(ids.length);
  }
  return { sequence: withSpans(tokens, spans), pieceTokens };
}

function withSpans(tokens: number[], spans: Array<[number, number]>): TokenSequence {
  const s: TokenSequence = { tokens, scoreStart: spans[0]?.[0] ?? 0, scoreEnd: spans[spans.length - 1]?.[1] ?? 0 };
  if (spans.length > 1) s.spans = spans;
  return s;
}

/** Right truncation to `maxLength` tokens: replies past it are cut (a reply cut short trains its first tokens). */
function truncate(s: TokenSequence, maxLength: number): TokenSequence | null {
  if (s.tokens.length <= maxLength) return s;
  const spans = (s.spans ?? [[s.scoreStart, s.scoreEnd] as [number, number]])
    .filter(([a]) => a < maxLength)
    .map(([a, b]): [number, number] => [a, Math.min(b, maxLength)]);
  return spans.length === 0 ? null : withSpans(s.tokens.slice(0, maxLength), spans);
}

export interface ChatTokenizeOptions {
  file: string;
  maxLength: number;
  renderer: ChatRenderer;
  /** TokenizedExample.source. */
  source: string;
}

/** One chat row → a TokenizedExample (kind chat: mean NLL over every trained token). Errors name file, line and field. */
export function tokenizeChatRow(row: DatasetRow, t: ChatTemplate, tokenizer: SpillwayTokenizer, o: ChatTokenizeOptions): TokenizedExample {
  const messages = rowConversation(row, t, o.file);
  let texts: ChatSequenceText[];
  try {
    texts = chatSequences(messages, o.renderer);
  } catch (e) {
    if (e instanceof ChatTemplateError) throw rowError(o.file, row, e.message);
    throw e;
  }
  const whole = texts.map((text) => tokenizeChatSequence(text, tokenizer).sequence);
  const first = Math.min(...whole.map((s) => s.scoreStart));
  if (first < 1) throw rowError(o.file, row, 'the chat template renders nothing before the first reply: no token to predict it from');
  const sequences = whole.map((s) => truncate(s, o.maxLength)).filter((s): s is TokenSequence => s !== null);
  if (sequences.length === 0) {
    throw rowError(o.file, row, `the first reply starts at token ${first + 1}: maxLength ${o.maxLength} leaves nothing of it to train`);
  }
  return { kind: 'chat', sequences, label: -1, source: o.source };
}

/** A chat row as the Datasets preview shows it: each sequence's pieces with their token counts. */
export interface ChatRowPreview {
  kind: 'chat';
  /** The model's own template, or the fallback (the model has none). */
  template: ChatRenderer['source'];
  templateFile: string | null;
  messages: number;
  sequences: Array<{
    /** The messages (1-based) whose replies this sequence trains. */
    replies: number[];
    pieces: Array<{ text: string; trained: boolean; tokens: number }>;
    tokens: number;
    trainedTokens: number;
  }>;
}

export function previewChatRow(row: DatasetRow, t: ChatTemplate, tokenizer: SpillwayTokenizer, renderer: ChatRenderer, file: string): ChatRowPreview {
  const messages = rowConversation(row, t, file);
  let texts: ChatSequenceText[];
  try {
    texts = chatSequences(messages, renderer);
  } catch (e) {
    if (e instanceof ChatTemplateError) throw rowError(file, row, e.message);
    throw e;
  }
  return {
    kind: 'chat',
    template: renderer.source,
    templateFile: renderer.file,
    messages: messages.length,
    sequences: texts.map((text) => {
      const { pieceTokens } = tokenizeChatSequence(text, tokenizer);
      const pieces = text.pieces.map((p, i) => ({ ...p, tokens: pieceTokens[i] }));
      return {
        replies: text.replies.map((k) => k + 1),
        pieces,
        tokens: pieces.reduce((n, p) => n + p.tokens, 0),
        trainedTokens: pieces.reduce((n, p) => n + (p.trained ? p.tokens : 0), 0),
      };
    }),
  };
}
