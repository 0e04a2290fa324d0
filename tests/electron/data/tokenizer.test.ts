import { describe, it, expect, beforeAll } from 'vitest';
import { existsSync } from 'node:fs';
import { writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { loadTokenizer, tokenizeExample, TokenizerError } from '../../../electron/data/index.js';
import { buildBpe, CORPUS, tempDir, writeTokenizerJson, writeVocabMerges, type BpeFixture } from './fixtures.js';

const TEXTS = [
  'The movie was great and the acting was terrible.',
  ' It was great',
  'Does this mean that "the cat sat" is true? Yes or No?\n',
  'unseen wörds, émojis 🎉 and\ttabs  double  spaces',
  'Yes',
  '',
];

describe('loadTokenizer', () => {
  let fx: BpeFixture;
  let root: string;
  beforeAll(async () => {
    fx = buildBpe(CORPUS, ['<|endoftext|>']);
    root = await tempDir();
  });

  it('loads a byte-level BPE tokenizer.json (GPT-2 style: no BOS)', async () => {
    const dir = await writeTokenizerJson(path.join(root, 'gpt2'), fx);
    const tok = await loadTokenizer(dir);
    expect(tok.format).toBe('tokenizer.json');
    expect(tok.addsBos).toBe(false);
    expect(tok.bosId).toBe(fx.specials['<|endoftext|>']);
    expect(tok.eosId).toBe(fx.specials['<|endoftext|>']);
    expect(tok.vocabSize).toBe(Object.keys(fx.vocab).length);
    for (const t of TEXTS) {
      const ids = tok.encode(t, { addSpecialTokens: true });
      expect(tok.decode(ids)).toBe(t);
      expect(ids.every((i) => i >= 0 && i < tok.vocabSize)).toBe(true);
    }
    // merges are used: a corpus word is one token
    expect(tok.encode(' great', { addSpecialTokens: false })).toEqual([fx.vocab['Ġgreat']]);
    expect(tok.tokenToId('Ġgreat')).toBe(fx.vocab['Ġgreat']);
    expect(tok.idToToken(fx.vocab['Ġgreat'])).toBe('Ġgreat');
  });

  it('OPT/Llama style: BOS from the post_processor template is prepended', async () => {
    const f = buildBpe(CORPUS, ['<s>', '</s>', '<pad>']);
    const dir = await writeTokenizerJson(path.join(root, 'opt'), f, { bosTemplate: '</s>' });
    const tok = await loadTokenizer(dir);
    expect(tok.addsBos).toBe(true);
    expect(tok.bosId).toBe(f.specials['</s>']);
    const plain = tok.encode('Hello world', { addSpecialTokens: false });
    expect(tok.encode('Hello world')).toEqual([f.specials['</s>'], ...plain]);
    expect(tok.encode('Hello world', { addSpecialTokens: true })).toEqual([f.specials['</s>'], ...plain]);
    expect(tok.decode(tok.encode('Hello world'), { skipSpecialTokens: true })).toBe('Hello world');
    expect(tok.decode(tok.encode('Hello world'))).toBe('</s>Hello world');
  });

  it('tokenizer_config.json add_bos_token / bos_token / eos_token take precedence', async () => {
    const f = buildBpe(CORPUS, ['<s>', '</s>']);
    const dir = await writeTokenizerJson(path.join(root, 'cfg'), f, {
      config: { add_bos_token: true, bos_token: { content: '<s>', __type: 'AddedToken' }, eos_token: '</s>' },
    });
    const tok = await loadTokenizer(dir);
    expect(tok.addsBos).toBe(true);
    expect(tok.bosId).toBe(f.specials['<s>']);
    expect(tok.eosId).toBe(f.specials['</s>']);
    expect(tok.encode('Yes')[0]).toBe(f.specials['<s>']);
  });

  it('vocab.json + merges.txt gives the same ids as the equivalent tokenizer.json', async () => {
    const a = await loadTokenizer(await writeTokenizerJson(path.join(root, 'eq-json'), fx));
    const b = await loadTokenizer(await writeVocabMerges(path.join(root, 'eq-vm'), fx));
    expect(b.format).toBe('vocab.json+merges.txt');
    expect(b.addsBos).toBe(false);
    expect(b.bosId).toBe(a.bosId);
    expect(b.eosId).toBe(a.eosId);
    expect(b.vocabSize).toBe(a.vocabSize);
    for (const t of [...TEXTS, 'a <|endoftext|> b']) {
      const ids = b.encode(t);
      expect(ids).toEqual(a.encode(t));
      expect(b.decode(ids)).toBe(t);
    }
    // the special token is matched whole
    expect(b.encode('<|endoftext|>')).toEqual([fx.specials['<|endoftext|>']]);
  });

  it('vocab.json + merges.txt honours tokenizer_config (OPT: add_bos_token, bos </s>)', async () => {
    const f = buildBpe(CORPUS, ['<s>', '<pad>', '</s>', '<unk>']);
    const dir = await writeVocabMerges(path.join(root, 'opt-vm'), f, {
      add_bos_token: true,
      bos_token: '</s>',
      eos_token: '</s>',
      pad_token: '<pad>',
      unk_token: '<unk>',
    });
    const tok = await loadTokenizer(dir);
    expect(tok.addsBos).toBe(true);
    expect(tok.bosId).toBe(f.specials['</s>']);
    expect(tok.encode('Yes')).toEqual([f.specials['</s>'], ...tok.encode('Yes', { addSpecialTokens: false })]);
    expect(tok.encode('<pad>', { addSpecialTokens: false })).toEqual([f.specials['<pad>']]);
  });

  it('errors name the missing or corrupt file', async () => {
    const empty = path.join(root, 'empty');
    await mkdir(empty, { recursive: true });
    await expect(loadTokenizer(empty)).rejects.toThrow(/tokenizer\.json.*missing/);
    await expect(loadTokenizer(empty)).rejects.toBeInstanceOf(TokenizerError);

    const corrupt = path.join(root, 'corrupt');
    await mkdir(corrupt, { recursive: true });
    await writeFile(path.join(corrupt, 'tokenizer.json'), '{"model": {');
    const err = await loadTokenizer(corrupt).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokenizerError);
    expect((err as TokenizerError).file).toBe(path.join(corrupt, 'tokenizer.json'));
    expect((err as Error).message).toMatch(/invalid JSON/);

    const badModel = path.join(root, 'bad-model');
    await mkdir(badModel, { recursive: true });
    await writeFile(path.join(badModel, 'tokenizer.json'), JSON.stringify({ model: { type: 'Mystery' }, added_tokens: [] }));
    await expect(loadTokenizer(badModel)).rejects.toThrow(/tokenizer\.json: unsupported or corrupt tokenizer/);

    const badConfig = await writeTokenizerJson(path.join(root, 'bad-config'), fx);
    await writeFile(path.join(badConfig, 'tokenizer_config.json'), 'not json');
    await expect(loadTokenizer(badConfig)).rejects.toThrow(/tokenizer_config\.json: invalid JSON/);

    const noMerges = path.join(root, 'no-merges');
    await mkdir(noMerges, { recursive: true });
    await writeFile(path.join(noMerges, 'vocab.json'), JSON.stringify(fx.vocab));
    await expect(loadTokenizer(noMerges)).rejects.toThrow(/merges\.txt: missing/);

    const badMerges = await writeVocabMerges(path.join(root, 'bad-merges'), fx);
    await writeFile(path.join(badMerges, 'merges.txt'), '#version: 0.2\nĠ g\nonlyone\n');
    await expect(loadTokenizer(badMerges)).rejects.toThrow(/merges\.txt: line 3/);

    const badVocab = path.join(root, 'bad-vocab');
    await mkdir(badVocab, { recursive: true });
    await writeFile(path.join(badVocab, 'vocab.json'), JSON.stringify({ a: 'x' }));
    await writeFile(path.join(badVocab, 'merges.txt'), 'a b\n');
    await expect(loadTokenizer(badVocab)).rejects.toThrow(/vocab\.json: token "a"/);
  });

  const demoDir = path.resolve('resources/models/spillway-demo');
  it.skipIf(!existsSync(path.join(demoDir, 'tokenizer.json')))('loads the demo model tokenizer', async () => {
    const tok = await loadTokenizer(demoDir);
    expect(tok.vocabSize).toBeGreaterThan(0);
    for (const t of ['The movie was great. It was', ' terrible', ' great', 'Yes', 'No']) {
      const ids = tok.encode(t, { addSpecialTokens: false });
      expect(ids.length).toBeGreaterThan(0);
      expect(ids.every((i) => Number.isInteger(i) && i >= 0 && i < tok.vocabSize)).toBe(true);
      expect(tok.decode(ids)).toBe(t);
    }
    if (tok.addsBos) expect(tok.encode('hi')[0]).toBe(tok.bosId);
    // the classification templates produce exact spans with the demo tokenizer
    const ex = tokenizeExample({ line: 1, values: { sentence: 'A fine film', label: 1 } }, { kind: 'sst2' }, tok);
    for (const [i, word] of [' terrible', ' great'].entries()) {
      const sq = ex.sequences[i];
      expect(tok.decode(sq.tokens.slice(sq.scoreStart, sq.scoreEnd))).toBe(word);
      if (tok.addsBos) expect(sq.tokens[0]).toBe(tok.bosId);
    }
  });
});
