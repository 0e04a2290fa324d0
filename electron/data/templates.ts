// Task templates: dataset rows -> TokenizedExample (see types.ts and the
// "Losses" section of docs/ENGINE-SPEC.md).
//
// Classification (sst2 / rte / classify): one sequence per candidate label word,
//   tokens = [BOS if the tokenizer adds one] + encode(prompt) + encode(candidate),
//   scored span = the candidate's tokens. Prompt and candidate are tokenised
//   separately (as MeZO does), so the span is exact.
// completion: the same with a single candidate, the completion (optionally + EOS).
// text: tokens = [BOS?] + encode(text); scored span = every token after the first.
//
// chat: conversations rendered with the model's chat template, the assistant
//   replies scored (chat.ts).
//
// Truncation to `maxLength`: classification / completion drop tokens from the
// LEFT of the prompt (BOS is kept; all candidates keep the same prompt tokens);
// text truncates on the right. The scored span is never truncated: if it does
// not fit (together with at least one token before it) that row is an error.

import { describeValue, readDataset, rowError, rowLocation, type DatasetRow, type ReadOptions } from './datasets.js';
import { CHAT_ROLES, CHAT_FORMATS, chatRenderer, fieldList, taskHint, tokenizeChatRow, type ChatRenderer, type ChatTemplate } from './chat.js';
import type { SpillwayTokenizer } from './tokenizer.js';
import type { TaskKind, TokenizedExample, TokenSequence } from './types.js';

/** MeZO's SST-2 label words (label 0 = negative, 1 = positive). */
export const SST2_LABEL_WORDS: readonly string[] = [' terrible', ' great'];
/** MeZO's RTE label words (label 0 = entailment = "Yes"). */
export const RTE_LABEL_WORDS: readonly string[] = ['Yes', 'No'];
export const DEFAULT_CLASSIFY_PROMPT = '{text} It was';

/** A classification task's label words, its own or its kind's default (MeZO's); null for a task without them. */
export function labelWordsOf(template: TaskTemplate): readonly string[] | null {
  switch (template.kind) {
    case 'sst2':
      return template.labelWords ?? SST2_LABEL_WORDS;
    case 'rte':
      return template.labelWords ?? RTE_LABEL_WORDS;
    case 'classify':
      return template.labelWords;
    default:
      return null;
  }
}

export interface Sst2Template {
  kind: 'sst2';
  sentenceField?: string; // default "sentence"
  labelField?: string; // default "label"; values 0 | 1
  labelWords?: readonly string[]; // default SST2_LABEL_WORDS
}

export interface RteTemplate {
  kind: 'rte';
  premiseField?: string; // default "premise"
  hypothesisField?: string; // default "hypothesis"
  labelField?: string; // default "label"; 0 | 1, or "entailment" | "not_entailment"
  labelWords?: readonly string[]; // default RTE_LABEL_WORDS
}

export interface ClassifyTemplate {
  kind: 'classify';
  textField?: string; // default "text"
  labelField?: string; // default "label"
  /** One candidate per class, e.g. [" bad", " good"]. */
  labelWords: readonly string[];
  /**
   * Dataset label value (int or string, compared via String(value)) -> index into
   * labelWords. Without it, a label is an integer index into labelWords, or a
   * label word itself (ignoring case and surrounding spaces: "positive" for " positive").
   */
  labelMap?: Readonly<Record<string, number>>;
  /** Prompt with a `{text}` placeholder; default "{text} It was". */
  prompt?: string;
}

export interface TextTemplate {
  kind: 'text';
  textField?: string; // default "text"
}

export interface CompletionTemplate {
  kind: 'completion';
  promptField?: string; // default "prompt"
  completionField?: string; // default "completion"
  /** Append EOS to the completion (and score it). Default false. */
  appendEos?: boolean;
}

export type { ChatTemplate } from './chat.js';
export type TaskTemplate = Sst2Template | RteTemplate | ClassifyTemplate | TextTemplate | CompletionTemplate | ChatTemplate;
export type TemplateKind = TaskTemplate['kind'];

/** The exact text the model sees for one row (before tokenisation, BOS not shown). */
export interface RenderedExample {
  kind: Exclude<TaskKind, 'chat'>;
  /** The unscored context; '' for `text`. */
  prompt: string;
  /** classify: the label words; completion: [completion]; text: [text]. */
  candidates: string[];
  /** classify: index of the correct candidate; -1 otherwise. */
  label: number;
  /** prompt + candidates[i]: the full text of each sequence. */
  texts: string[];
}

export interface TokenizeOptions {
  /** The dataset file, for error messages and TokenizedExample.source. */
  file?: string;
  /** Maximum tokens per sequence (BOS included). Default: no limit. */
  maxLength?: number;
  /** chat: the renderer every row of a dataset shares (default: one made for the row). */
  chat?: ChatRenderer;
}

// ---------------------------------------------------------------------------

function getString(row: DatasetRow, field: string, file: string): string {
  const v = row.values[field];
  if (typeof v !== 'string') {
    // A missing field usually means a file in another shape: say what the row has and what would read it.
    const hint = v === undefined ? taskHint(row.values) : null;
    const found = v === undefined ? `; this row has ${fieldList(row.values)}${hint ? ` (${hint})` : ''}` : '';
    throw rowError(file, row, `expected a string, got ${describeValue(v)}${found}`, field);
  }
  return v;
}

function asInteger(v: unknown): number | null {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string' && /^\s*-?\d+\s*$/.test(v)) return Number(v);
  return null;
}

/** How a label that is a word reads: case and surrounding spaces do not matter. */
const labelKey = (word: string): string => word.trim().toLowerCase();

/** The label words as label values ("negative" for " negative"); words that read alike name no label. */
function wordLabels(words: readonly string[]): Record<string, number> {
  const keys = words.map(labelKey);
  const names: Record<string, number> = {};
  keys.forEach((k, i) => {
    if (k && keys.indexOf(k) === keys.lastIndexOf(k)) names[k] = i;
  });
  return names;
}

function getIndexLabel(
  row: DatasetRow,
  field: string,
  file: string,
  count: number,
  names: Record<string, number> = {},
  hint = '',
): number {
  const v = row.values[field];
  let idx = asInteger(v);
  if (idx === null && typeof v === 'string' && Object.hasOwn(names, labelKey(v))) idx = names[labelKey(v)];
  if (idx === null || idx < 0 || idx >= count) {
    const allowed = [...Array.from({ length: count }, (_, i) => String(i)), ...Object.keys(names).map((k) => JSON.stringify(k))];
    const mapHint = typeof v === 'string' && asInteger(v) === null ? hint : '';
    throw rowError(file, row, `expected a label in {${allowed.join(', ')}}, got ${describeValue(v)}${mapHint}`, field);
  }
  return idx;
}

function getMappedLabel(row: DatasetRow, field: string, file: string, map: Readonly<Record<string, number>>): number {
  const v = row.values[field];
  const key = typeof v === 'string' ? v.trim() : typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean' ? String(v) : null;
  if (key === null || !Object.hasOwn(map, key)) {
    const allowed = Object.keys(map).map((k) => JSON.stringify(k));
    throw rowError(file, row, `expected a label in {${allowed.join(', ')}}, got ${describeValue(v)}`, field);
  }
  return map[key];
}

/** Throws a plain Error for a template that cannot work whatever the data. */
export function validateTemplate(t: TaskTemplate): void {
  switch (t.kind) {
    case 'sst2':
    case 'rte': {
      const words = t.labelWords;
      if (words !== undefined && words.length !== 2) throw new Error(`${t.kind} template: labelWords must have 2 entries`);
      break;
    }
    case 'classify': {
      if (!Array.isArray(t.labelWords) || t.labelWords.length < 2) {
        throw new Error('classify template: labelWords must have at least 2 entries');
      }
      if (t.labelWords.some((w) => typeof w !== 'string' || w.length === 0)) {
        throw new Error('classify template: every label word must be a non-empty string');
      }
      const prompt = t.prompt ?? DEFAULT_CLASSIFY_PROMPT;
      if (!prompt.includes('{text}')) throw new Error('classify template: prompt must contain the {text} placeholder');
      if (t.labelMap) {
        for (const [k, i] of Object.entries(t.labelMap)) {
          if (!Number.isInteger(i) || i < 0 || i >= t.labelWords.length) {
            throw new Error(`classify template: labelMap[${JSON.stringify(k)}] = ${i} is not an index into labelWords`);
          }
        }
      }
      break;
    }
    case 'chat': {
      if (t.format !== undefined && !CHAT_FORMATS.includes(t.format)) {
        throw new Error(`chat template: format must be one of ${CHAT_FORMATS.join(', ')}, got ${JSON.stringify(t.format)}`);
      }
      for (const [name, role] of Object.entries(t.roleMap ?? {})) {
        if (!CHAT_ROLES.includes(role)) throw new Error(`chat template: roleMap[${JSON.stringify(name)}] = ${JSON.stringify(role)} is not one of ${CHAT_ROLES.join(', ')}`);
      }
      break;
    }
    default:
      break;
  }
}

/** The exact text the model sees for `row` (BOS excluded). `file` is used in errors. */
export function renderExample(row: DatasetRow, template: TaskTemplate, file = '<row>'): RenderedExample {
  let kind: RenderedExample['kind'];
  let prompt: string;
  let candidates: string[];
  let label = -1;
  switch (template.kind) {
    case 'sst2': {
      const sentence = getString(row, template.sentenceField ?? 'sentence', file);
      candidates = [...labelWordsOf(template)!];
      label = getIndexLabel(row, template.labelField ?? 'label', file, candidates.length, { negative: 0, positive: 1 });
      prompt = `${sentence} It was`;
      kind = 'classify';
      break;
    }
    case 'rte': {
      const premise = getString(row, template.premiseField ?? 'premise', file);
      const hypothesis = getString(row, template.hypothesisField ?? 'hypothesis', file);
      candidates = [...labelWordsOf(template)!];
      label = getIndexLabel(row, template.labelField ?? 'label', file, candidates.length, {
        entailment: 0,
        not_entailment: 1,
      });
      prompt = `${premise}\nDoes this mean that "${hypothesis}" is true? Yes or No?\n`;
      kind = 'classify';
      break;
    }
    case 'classify': {
      const text = getString(row, template.textField ?? 'text', file);
      candidates = [...labelWordsOf(template)!];
      const field = template.labelField ?? 'label';
      label = template.labelMap
        ? getMappedLabel(row, field, file, template.labelMap)
        : getIndexLabel(
            row,
            field,
            file,
            candidates.length,
            wordLabels(candidates),
            `; labels that are neither an index nor a label word need a label map from each label to its word's index (--label-map '{${JSON.stringify(String(row.values[field]).trim())}: 0, …}', or Label map on New run)`,
          );
      prompt = (template.prompt ?? DEFAULT_CLASSIFY_PROMPT).split('{text}').join(text);
      kind = 'classify';
      break;
    }
    case 'text': {
      prompt = '';
      candidates = [getString(row, template.textField ?? 'text', file)];
      kind = 'lm';
      break;
    }
    case 'completion': {
      prompt = getString(row, template.promptField ?? 'prompt', file);
      candidates = [getString(row, template.completionField ?? 'completion', file)];
      kind = 'completion';
      break;
    }
    case 'chat':
      throw new Error('chat rows are rendered with a model\'s chat template: preview them with a model (renderChatRow)');
    default: {
      const k: never = template;
      throw new Error(`unknown template kind ${JSON.stringify((k as { kind: unknown }).kind)}`);
    }
  }
  return { kind, prompt, candidates, label, texts: candidates.map((c) => prompt + c) };
}

/** Tokenise one row. Errors are DatasetErrors naming file, line and (where relevant) field. */
export function tokenizeExample(
  row: DatasetRow,
  template: TaskTemplate,
  tokenizer: SpillwayTokenizer,
  options: TokenizeOptions = {},
): TokenizedExample {
  const file = options.file ?? '<row>';
  const maxLength = options.maxLength ?? Infinity;
  if (!(maxLength >= 2)) throw new Error(`maxLength must be at least 2, got ${maxLength}`);
  const source = rowLocation(file, row);
  if (template.kind === 'chat') {
    const renderer = options.chat ?? chatRenderer(tokenizer, template);
    return tokenizeChatRow(row, template, tokenizer, { file, maxLength, renderer, source });
  }
  const r = renderExample(row, template, file);
  const bos = tokenizer.addsBos && tokenizer.bosId !== null ? [tokenizer.bosId] : [];

  if (r.kind === 'lm') {
    const field = (template as TextTemplate).textField ?? 'text';
    let tokens = [...bos, ...tokenizer.encode(r.candidates[0], { addSpecialTokens: false })];
    if (tokens.length > maxLength) tokens = tokens.slice(0, maxLength);
    if (tokens.length < 2) {
      throw rowError(file, row, 'text is too short: it needs at least 2 tokens (one to predict from, one to score)', field);
    }
    return { kind: 'lm', sequences: [{ tokens, scoreStart: 1, scoreEnd: tokens.length }], label: -1, source };
  }

  const spanField =
    template.kind === 'completion' ? (template.completionField ?? 'completion') : (labelFieldOf(template) ?? 'label');
  const promptIds = tokenizer.encode(r.prompt, { addSpecialTokens: false });
  const candIds = r.candidates.map((c, i) => {
    const ids = tokenizer.encode(c, { addSpecialTokens: false });
    if (template.kind === 'completion' && template.appendEos) {
      if (tokenizer.eosId === null) throw new Error('appendEos is set but the tokenizer has no EOS token');
      ids.push(tokenizer.eosId);
    }
    if (ids.length === 0) {
      throw rowError(file, row, `${r.kind === 'classify' ? `label word ${i} (${JSON.stringify(c)})` : 'completion'} encodes to no tokens`, spanField);
    }
    return ids;
  });
  const longest = Math.max(...candIds.map((c) => c.length));
  // At least one token must precede the span (BOS, else one prompt token).
  const minPrefix = Math.max(bos.length, 1);
  if (minPrefix + longest > maxLength) {
    throw rowError(
      file,
      row,
      `the scored span alone (${longest} tokens${bos.length ? ' + BOS' : ' + 1 context token'}) does not fit maxLength ${maxLength}`,
      spanField,
    );
  }
  const room = maxLength - bos.length - longest;
  const kept = promptIds.length > room ? promptIds.slice(promptIds.length - room) : promptIds;
  if (bos.length + kept.length === 0) {
    throw rowError(
      file,
      row,
      'the prompt is empty and the tokenizer adds no BOS: nothing precedes the scored span',
      template.kind === 'completion' ? (template.promptField ?? 'prompt') : undefined,
    );
  }
  const prefix = [...bos, ...kept];
  const sequences: TokenSequence[] = candIds.map((ids) => ({
    tokens: [...prefix, ...ids],
    scoreStart: prefix.length,
    scoreEnd: prefix.length + ids.length,
  }));
  return { kind: r.kind, sequences, label: r.label, source };
}

function labelFieldOf(t: TaskTemplate): string | undefined {
  return t.kind === 'sst2' || t.kind === 'rte' || t.kind === 'classify' ? t.labelField : undefined;
}

export function tokenizeRows(
  rows: Iterable<DatasetRow>,
  template: TaskTemplate,
  tokenizer: SpillwayTokenizer,
  options: TokenizeOptions = {},
): TokenizedExample[] {
  validateTemplate(template);
  const chat = template.kind === 'chat' ? (options.chat ?? chatRenderer(tokenizer, template)) : undefined;
  const out: TokenizedExample[] = [];
  for (const row of rows) out.push(tokenizeExample(row, template, tokenizer, { ...options, chat }));
  return out;
}

/** Read a dataset file and tokenise every row (errors name file + line + field). */
export async function loadExamples(
  file: string,
  template: TaskTemplate,
  tokenizer: SpillwayTokenizer,
  options: Omit<TokenizeOptions, 'file'> & ReadOptions = {},
): Promise<TokenizedExample[]> {
  validateTemplate(template);
  // One renderer for the whole file: strftime_now reads one date for every row.
  const chat = template.kind === 'chat' ? chatRenderer(tokenizer, template) : undefined;
  const out: TokenizedExample[] = [];
  for await (const row of readDataset(file, options)) {
    out.push(tokenizeExample(row, template, tokenizer, { file, maxLength: options.maxLength, chat }));
  }
  return out;
}
