// Hugging Face tokenizer loading on top of the maintained `@huggingface/tokenizers`
// library (pure JS). Two on-disk layouts are supported:
//
//   1. `tokenizer.json` (+ `tokenizer_config.json` when present): handed to the
//      library as is.
//   2. GPT-2 style `vocab.json` + `merges.txt` (+ optional `tokenizer_config.json`,
//      `special_tokens_map.json`, `added_tokens.json`): we build the equivalent
//      `tokenizer.json` object in memory (byte-level BPE, no prefix space,
//      ByteLevel decoder) and hand that to the library. This is configuration
//      only; all tokenisation is done by the library.
//
// BOS handling: we always ask the library to encode WITHOUT special tokens and
// prepend the BOS id ourselves when `addSpecialTokens` is set and the model
// expects one (`addsBos`). Whether it does comes from `tokenizer_config.json`'s
// `add_bos_token` when that is a boolean, else from `tokenizer.json`'s
// post_processor (a TemplateProcessing / Roberta / Bert processor that puts a
// special token before `$A`). OPT and Llama prepend BOS; GPT-2 does not.
// Special tokens a post-processor appends at the END (EOS) are never added.

import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';

import { pathExists } from '../node/files.js';

export interface EncodeOptions {
  /** Prepend BOS when the model expects one. Default true (as in Hugging Face). */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS/EOS/pad, ...) from the output. Default false. */
  skipSpecialTokens?: boolean;
}

export interface SpillwayTokenizer {
  /** The model folder this tokenizer was loaded from. */
  readonly dir: string;
  /** Which files it was built from. */
  readonly format: 'tokenizer.json' | 'vocab.json+merges.txt';
  encode(text: string, options?: EncodeOptions): number[];
  /** Exact decoding (no clean-up of tokenization spaces). */
  decode(ids: readonly number[], options?: DecodeOptions): string;
  readonly bosId: number | null;
  readonly eosId: number | null;
  /** max token id + 1, added tokens included. */
  readonly vocabSize: number;
  /** Whether the model expects a BOS token at the start of every sequence. */
  readonly addsBos: boolean;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  /**
   * The model's chat templates by name ("default" for the only or main one), from
   * `chat_template.jinja` (+ `additional_chat_templates/*.jinja`) or else `tokenizer_config.json`'s
   * `chat_template` (a string, or a list of `{name, template}`), as transformers reads them. Empty: none.
   */
  readonly chatTemplates: Readonly<Record<string, string>>;
  /** Where the chat templates were read from; null when there are none. */
  readonly chatTemplateFile: string | null;
  /**
   * The named special tokens as strings (bos_token, eos_token, unk_token, pad_token, ..., and the
   * names of `extra_special_tokens`): the variables transformers hands a chat template.
   */
  readonly specialTokens: Readonly<Record<string, string>>;
}

export class TokenizerError extends Error {
  readonly file: string;
  constructor(file: string, detail: string) {
    super(`${file}: ${detail}`);
    this.name = 'TokenizerError';
    this.file = file;
  }
}

type Json = Record<string, unknown>;

async function readJsonObject(file: string): Promise<Json> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new TokenizerError(file, `cannot read file: ${(e as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(file, `invalid JSON: ${(e as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TokenizerError(file, 'expected a JSON object at the top level');
  }
  return value as Json;
}

async function readOptionalJson(file: string): Promise<Json | null> {
  return (await pathExists(file)) ? readJsonObject(file) : null;
}

/** The named special tokens of a tokenizer config (transformers' SPECIAL_TOKENS_ATTRIBUTES). */
const NAMED_SPECIAL_TOKENS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'];

/** A special token in a config may be a string or an AddedToken object `{content: ...}`. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return null;
}

/**
 * The library reads a few keys of tokenizer_config.json (eos_token, remove_space,
 * additional_special_tokens, ...). Hand it a copy whose special tokens are plain strings.
 */
function sanitizeConfig(config: Json): Json {
  const out: Json = { ...config };
  for (const key of NAMED_SPECIAL_TOKENS) {
    if (key in out) {
      const c = tokenContent(out[key]);
      if (c === null) delete out[key];
      else out[key] = c;
    }
  }
  if (Array.isArray(out.additional_special_tokens)) {
    out.additional_special_tokens = out.additional_special_tokens
      .map(tokenContent)
      .filter((x): x is string => x !== null);
  }
  return out;
}

/** First special token placed before `$A` by a post-processor, or null if none. */
function leadingSpecialToken(pp: unknown): string | null {
  if (!pp || typeof pp !== 'object') return null;
  const p = pp as Json;
  switch (p.type) {
    case 'TemplateProcessing': {
      const single = p.single;
      if (!Array.isArray(single) || single.length === 0) return null;
      const first = single[0] as Json;
      if (first && typeof first === 'object' && 'SpecialToken' in first) {
        const st = first.SpecialToken as Json;
        return typeof st?.id === 'string' ? st.id : null;
      }
      return null;
    }
    case 'RobertaProcessing':
    case 'BertProcessing': {
      const cls = p.cls;
      return Array.isArray(cls) && typeof cls[0] === 'string' ? cls[0] : null;
    }
    case 'Sequence': {
      const list = p.processors;
      if (!Array.isArray(list)) return null;
      for (const sub of list) {
        const t = leadingSpecialToken(sub);
        if (t !== null) return t;
      }
      return null;
    }
    default:
      return null;
  }
}

/** Last special token placed after `$A` by a TemplateProcessing post-processor. */
function trailingSpecialToken(pp: unknown): string | null {
  if (!pp || typeof pp !== 'object') return null;
  const p = pp as Json;
  if (p.type === 'TemplateProcessing' && Array.isArray(p.single) && p.single.length > 1) {
    const last = p.single[p.single.length - 1] as Json;
    if (last && typeof last === 'object' && 'SpecialToken' in last) {
      const st = last.SpecialToken as Json;
      return typeof st?.id === 'string' ? st.id : null;
    }
  }
  if (p.type === 'Sequence' && Array.isArray(p.processors)) {
    for (const sub of p.processors) {
      const t = trailingSpecialToken(sub);
      if (t !== null) return t;
    }
  }
  return null;
}

/** transformers' special_tokens_map: the named tokens (config first, then special_tokens_map.json) and extra_special_tokens. */
function namedSpecialTokens(config: Json | null, specialsMap: Json | null): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of NAMED_SPECIAL_TOKENS) {
    const v = tokenContent(config?.[key]) ?? tokenContent(specialsMap?.[key]);
    if (v !== null) out[key] = v;
  }
  const extra = config?.extra_special_tokens;
  if (extra && typeof extra === 'object' && !Array.isArray(extra)) {
    for (const [key, v] of Object.entries(extra as Json)) {
      const c = tokenContent(v);
      if (c !== null && !(key in out)) out[key] = c;
    }
  }
  return out;
}

/** The chat templates of a model folder, as transformers finds them (the .jinja files win over the config). */
async function readChatTemplates(dir: string, config: Json | null): Promise<{ templates: Record<string, string>; file: string | null }> {
  const templates: Record<string, string> = {};
  const main = path.join(dir, 'chat_template.jinja');
  const readText = async (file: string): Promise<string> => {
    try {
      return await readFile(file, 'utf8');
    } catch (e) {
      throw new TokenizerError(file, `cannot read file: ${(e as Error).message}`);
    }
  };
  if (await pathExists(main)) templates.default = await readText(main);
  const extraDir = path.join(dir, 'additional_chat_templates');
  let extras: string[] = [];
  try {
    extras = (await readdir(extraDir)).filter((f) => f.endsWith('.jinja')).sort();
  } catch {
    // no additional templates
  }
  for (const f of extras) templates[f.slice(0, -'.jinja'.length)] = await readText(path.join(extraDir, f));
  if (Object.keys(templates).length > 0) return { templates, file: (await pathExists(main)) ? main : extraDir };

  const configFile = path.join(dir, 'tokenizer_config.json');
  const t = config?.chat_template;
  if (t === undefined || t === null) return { templates, file: null };
  if (typeof t === 'string') return { templates: { default: t }, file: configFile };
  if (Array.isArray(t)) {
    for (const [i, entry] of t.entries()) {
      const e = entry as Json;
      if (!e || typeof e !== 'object' || typeof e.name !== 'string' || typeof e.template !== 'string') {
        throw new TokenizerError(configFile, `chat_template[${i}]: expected {"name": string, "template": string}`);
      }
      templates[e.name] = e.template;
    }
    return { templates, file: configFile };
  }
  throw new TokenizerError(configFile, 'chat_template: expected a string or a list of {"name", "template"} objects');
}

const FALLBACK_BOS = ['<s>', '<|begin_of_text|>', '<|endoftext|>', '</s>', '<bos>'];
const FALLBACK_EOS = ['</s>', '<|endoftext|>', '<|end_of_text|>', '<eos>'];

// ---------------------------------------------------------------------------
// vocab.json + merges.txt -> tokenizer.json object

async function buildFromVocabMerges(dir: string, config: Json | null): Promise<Json> {
  const vocabFile = path.join(dir, 'vocab.json');
  const mergesFile = path.join(dir, 'merges.txt');
  const vocabRaw = await readJsonObject(vocabFile);
  const vocab: Record<string, number> = {};
  for (const [tok, id] of Object.entries(vocabRaw)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new TokenizerError(vocabFile, `token ${JSON.stringify(tok)} has id ${JSON.stringify(id)}; expected a non-negative integer`);
    }
    vocab[tok] = id;
  }
  if (!(await pathExists(mergesFile))) {
    throw new TokenizerError(mergesFile, 'missing (vocab.json needs merges.txt next to it)');
  }
  let mergesText: string;
  try {
    mergesText = await readFile(mergesFile, 'utf8');
  } catch (e) {
    throw new TokenizerError(mergesFile, `cannot read file: ${(e as Error).message}`);
  }
  const merges: [string, string][] = [];
  const lines = mergesText.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.length === 0 || (i === 0 && line.startsWith('#version'))) continue;
    const parts = line.split(' ');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      throw new TokenizerError(mergesFile, `line ${i + 1}: expected two space-separated symbols, got ${JSON.stringify(line)}`);
    }
    merges.push([parts[0], parts[1]]);
  }
  if (merges.length === 0) throw new TokenizerError(mergesFile, 'no merges found');

  // Special tokens: those named by the configs, plus GPT-2's <|endoftext|>.
  const specialsMap = await readOptionalJson(path.join(dir, 'special_tokens_map.json'));
  const addedJson = await readOptionalJson(path.join(dir, 'added_tokens.json'));
  const added = new Map<string, number>();
  const addToken = (content: string | null, id?: number): void => {
    if (content === null || added.has(content)) return;
    const resolved = id ?? vocab[content] ?? (addedJson && typeof addedJson[content] === 'number' ? (addedJson[content] as number) : undefined);
    if (resolved !== undefined) added.set(content, resolved);
  };
  const decoderEntries = config?.added_tokens_decoder;
  if (decoderEntries && typeof decoderEntries === 'object') {
    for (const [id, tok] of Object.entries(decoderEntries as Json)) {
      const n = Number(id);
      if (Number.isInteger(n)) addToken(tokenContent(tok), n);
    }
  }
  for (const src of [config, specialsMap]) {
    if (!src) continue;
    for (const key of NAMED_SPECIAL_TOKENS) {
      addToken(tokenContent(src[key]));
    }
    if (Array.isArray(src.additional_special_tokens)) {
      for (const t of src.additional_special_tokens) addToken(tokenContent(t));
    }
  }
  if (addedJson) for (const [tok, id] of Object.entries(addedJson)) if (typeof id === 'number') addToken(tok, id);
  if ('<|endoftext|>' in vocab) addToken('<|endoftext|>');

  const addPrefixSpace = typeof config?.add_prefix_space === 'boolean' ? config.add_prefix_space : false;
  const unk = tokenContent(config?.unk_token);
  const byteLevel = { type: 'ByteLevel', add_prefix_space: addPrefixSpace, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [...added].map(([content, id]) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: unk !== null && unk in vocab ? unk : null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

// ---------------------------------------------------------------------------

class HfTokenizer implements SpillwayTokenizer {
  readonly vocabSize: number;
  constructor(
    private readonly inner: Tokenizer,
    readonly dir: string,
    readonly format: SpillwayTokenizer['format'],
    readonly bosId: number | null,
    readonly eosId: number | null,
    readonly addsBos: boolean,
    readonly chatTemplates: Readonly<Record<string, string>>,
    readonly chatTemplateFile: string | null,
    readonly specialTokens: Readonly<Record<string, string>>,
  ) {
    let max = -1;
    for (const id of inner.get_vocab(true).values()) if (id > max) max = id;
    this.vocabSize = max + 1;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids = text.length === 0 ? [] : this.inner.encode(text, { add_special_tokens: false }).ids;
    if ((options.addSpecialTokens ?? true) && this.addsBos && this.bosId !== null) return [this.bosId, ...ids];
    return ids;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    if (ids.length === 0) return '';
    return this.inner.decode([...ids], {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: false,
    });
  }

  tokenToId(token: string): number | undefined {
    return this.inner.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.inner.id_to_token(id);
  }
}

/**
 * Load the tokenizer of a Hugging Face model folder. Prefers `tokenizer.json`;
 * falls back to `vocab.json` + `merges.txt`. Errors are `TokenizerError`s naming the file.
 */
export async function loadTokenizer(dir: string): Promise<SpillwayTokenizer> {
  const tjFile = path.join(dir, 'tokenizer.json');
  const configFile = path.join(dir, 'tokenizer_config.json');
  const config = await readOptionalJson(configFile);

  let json: Json;
  let format: SpillwayTokenizer['format'];
  let sourceFile: string;
  if (await pathExists(tjFile)) {
    json = await readJsonObject(tjFile);
    format = 'tokenizer.json';
    sourceFile = tjFile;
    if (!json.model || typeof json.model !== 'object') throw new TokenizerError(tjFile, 'no "model" object');
    // The library requires these keys to be present (null allowed).
    for (const key of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder']) if (!(key in json)) json[key] = null;
    if (!Array.isArray(json.added_tokens)) json.added_tokens = [];
  } else if (await pathExists(path.join(dir, 'vocab.json'))) {
    json = await buildFromVocabMerges(dir, config);
    format = 'vocab.json+merges.txt';
    sourceFile = path.join(dir, 'vocab.json');
  } else {
    throw new TokenizerError(tjFile, `missing: no tokenizer.json (nor vocab.json + merges.txt) in ${dir}`);
  }

  let inner: Tokenizer;
  try {
    inner = new Tokenizer(json, config ? sanitizeConfig(config) : {});
  } catch (e) {
    throw new TokenizerError(sourceFile, `unsupported or corrupt tokenizer: ${(e as Error).message}`);
  }

  const idOf = (t: string | null): number | null => {
    if (t === null) return null;
    const id = inner.token_to_id(t);
    return id === undefined ? null : id;
  };
  const firstKnown = (names: string[]): number | null => {
    for (const n of names) {
      const id = idOf(n);
      if (id !== null) return id;
    }
    return null;
  };

  const leading = leadingSpecialToken(json.post_processor);
  const configAddBos = typeof config?.add_bos_token === 'boolean' ? config.add_bos_token : null;
  const addsBos = configAddBos ?? leading !== null;

  const bosId = idOf(tokenContent(config?.bos_token)) ?? idOf(leading) ?? firstKnown(FALLBACK_BOS);
  const eosId =
    idOf(tokenContent(config?.eos_token)) ?? idOf(trailingSpecialToken(json.post_processor)) ?? firstKnown(FALLBACK_EOS);
  if (addsBos && bosId === null) {
    throw new TokenizerError(
      configAddBos !== null ? configFile : sourceFile,
      'the model expects a BOS token but none could be resolved to an id',
    );
  }
  const chat = await readChatTemplates(dir, config);
  const specialTokens = namedSpecialTokens(config, await readOptionalJson(path.join(dir, 'special_tokens_map.json')));
  return new HfTokenizer(inner, dir, format, bosId, eosId, addsBos, chat.templates, chat.file, specialTokens);
}
