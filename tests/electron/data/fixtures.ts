// Test fixtures: a tiny GPT-2-style byte-level BPE tokenizer built from a
// corpus (merges are added left to right for each pre-tokenised word), written
// as tokenizer.json and/or vocab.json + merges.txt.
import { mkdtemp, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export async function tempDir(prefix = 'spillway-data-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

/** GPT-2's bytes_to_unicode table, in GPT-2's order. */
export function bytesToUnicode(): { bytes: number[]; chars: string[] } {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  return { bytes: bs, chars: cs.map((c) => String.fromCodePoint(c)) };
}

const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export interface BpeFixture {
  vocab: Record<string, number>;
  merges: [string, string][];
  specials: Record<string, number>;
}

export function buildBpe(corpus: string[], specials: string[] = ['<|endoftext|>']): BpeFixture {
  const { bytes, chars } = bytesToUnicode();
  const byteChar = new Map<number, string>();
  bytes.forEach((b, i) => byteChar.set(b, chars[i]));
  const vocab: Record<string, number> = {};
  chars.forEach((c, i) => (vocab[c] = i));
  let next = chars.length;
  const merges: [string, string][] = [];
  const enc = new TextEncoder();
  for (const text of corpus) {
    for (const word of text.match(GPT2_PATTERN) ?? []) {
      const symbols = Array.from(enc.encode(word), (b) => byteChar.get(b)!);
      let cur = symbols[0];
      for (let i = 1; i < symbols.length; i++) {
        const merged = cur + symbols[i];
        if (!(merged in vocab)) {
          vocab[merged] = next++;
          merges.push([cur, symbols[i]]);
        }
        cur = merged;
      }
    }
  }
  const sp: Record<string, number> = {};
  for (const s of specials) {
    vocab[s] = next;
    sp[s] = next++;
  }
  return { vocab, merges, specials: sp };
}

export const CORPUS = [
  'The movie was great and the acting was terrible. It was great!',
  'Does this mean that "the cat sat" is true? Yes or No?',
  'Hello world, hello tokenizer. A plain text about cats and dogs.',
  'Translate: good morning => bonjour',
];

/** tokenizer.json object equivalent to vocab.json + merges.txt (GPT-2 layout). */
export function tokenizerJson(f: BpeFixture, bosTemplate?: string): Record<string, unknown> {
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: Object.entries(f.specials).map(([content, id]) => ({
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
    post_processor: bosTemplate
      ? {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: bosTemplate, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [
            { SpecialToken: { id: bosTemplate, type_id: 0 } },
            { Sequence: { id: 'A', type_id: 0 } },
            { Sequence: { id: 'B', type_id: 1 } },
          ],
          special_tokens: { [bosTemplate]: { id: bosTemplate, ids: [f.specials[bosTemplate]], tokens: [bosTemplate] } },
        }
      : { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab: f.vocab,
      merges: f.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

export async function writeTokenizerJson(
  dir: string,
  f: BpeFixture,
  opts: { bosTemplate?: string; config?: Record<string, unknown> } = {},
): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson(f, opts.bosTemplate)));
  if (opts.config) await writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(opts.config));
  return dir;
}

export async function writeVocabMerges(
  dir: string,
  f: BpeFixture,
  config?: Record<string, unknown>,
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const vocab = { ...f.vocab };
  await writeFile(path.join(dir, 'vocab.json'), JSON.stringify(vocab));
  await writeFile(path.join(dir, 'merges.txt'), ['#version: 0.2', ...f.merges.map(([a, b]) => `${a} ${b}`), ''].join('\n'));
  if (config) await writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return dir;
}
