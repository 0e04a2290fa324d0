import { describe, it, expect, beforeAll } from 'vitest';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parquetWriteFile } from 'hyparquet-writer';
import {
  DatasetError,
  loadExamples,
  loadTokenizer,
  readDataset,
  renderExample,
  tokenizeExample,
  tokenizeRows,
  validateTemplate,
  type DatasetRow,
  type SpillwayTokenizer,
  type TaskTemplate,
  type TokenizedExample,
} from '../../../electron/data/index.js';
import { buildBpe, CORPUS, tempDir, writeTokenizerJson } from './fixtures.js';

let dir: string;
let gpt2: SpillwayTokenizer; // no BOS
let opt: SpillwayTokenizer; // BOS </s>

beforeAll(async () => {
  dir = await tempDir();
  gpt2 = await loadTokenizer(await writeTokenizerJson(path.join(dir, 'gpt2'), buildBpe(CORPUS)));
  const f = buildBpe(CORPUS, ['<s>', '</s>', '<pad>']);
  opt = await loadTokenizer(await writeTokenizerJson(path.join(dir, 'opt'), f, { bosTemplate: '</s>', config: { eos_token: '</s>' } }));
});

const row = (values: Record<string, unknown>, line = 1): DatasetRow => ({ line, values });

function spanText(tok: SpillwayTokenizer, ex: TokenizedExample, i: number): string {
  const s = ex.sequences[i];
  return tok.decode(s.tokens.slice(s.scoreStart, s.scoreEnd));
}

function checkSpans(ex: TokenizedExample): void {
  for (const s of ex.sequences) {
    expect(s.scoreStart).toBeGreaterThanOrEqual(1);
    expect(s.scoreEnd).toBeGreaterThan(s.scoreStart);
    expect(s.scoreEnd).toBeLessThanOrEqual(s.tokens.length);
  }
}

async function rowError(f: () => unknown): Promise<DatasetError> {
  let err: unknown = null;
  try {
    await f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(DatasetError);
  return err as DatasetError;
}

describe('renderExample', () => {
  it('renders MeZO SST-2 and RTE prompts exactly', () => {
    const s = renderExample(row({ sentence: 'a gripping film', label: 1 }), { kind: 'sst2' });
    expect(s).toEqual({
      kind: 'classify',
      prompt: 'a gripping film It was',
      candidates: [' terrible', ' great'],
      label: 1,
      texts: ['a gripping film It was terrible', 'a gripping film It was great'],
    });
    const r = renderExample(row({ premise: 'A cat sat.', hypothesis: 'An animal sat', label: 0 }), { kind: 'rte' });
    expect(r.prompt).toBe('A cat sat.\nDoes this mean that "An animal sat" is true? Yes or No?\n');
    expect(r.candidates).toEqual(['Yes', 'No']);
    expect(r.label).toBe(0);
    expect(renderExample(row({ premise: 'p', hypothesis: 'h', label: 'not_entailment' }), { kind: 'rte' }).label).toBe(1);
  });

  it('renders classify with custom columns / prompt / label map, text and completion', () => {
    const t: TaskTemplate = {
      kind: 'classify',
      textField: 'review',
      labelField: 'stars',
      labelWords: [' bad', ' ok', ' good'],
      labelMap: { low: 0, mid: 1, high: 2, '5': 2 },
      prompt: 'Review: {text}\nVerdict:',
    };
    const c = renderExample(row({ review: 'fine', stars: 'mid' }), t);
    expect(c.prompt).toBe('Review: fine\nVerdict:');
    expect(c.label).toBe(1);
    expect(renderExample(row({ review: 'x', stars: 5 }), t).label).toBe(2);
    expect(renderExample(row({ text: 'hello' }), { kind: 'text' })).toEqual({
      kind: 'lm',
      prompt: '',
      candidates: ['hello'],
      label: -1,
      texts: ['hello'],
    });
    const comp = renderExample(row({ prompt: 'Q: 2+2?\nA:', completion: ' 4' }), { kind: 'completion' });
    expect(comp.texts).toEqual(['Q: 2+2?\nA: 4']);
    expect(comp.label).toBe(-1);
  });
});

describe('tokenizeExample', () => {
  it('sst2: prompt and candidates tokenised separately; spans decode to the label words', () => {
    for (const tok of [gpt2, opt]) {
      const ex = tokenizeExample(row({ sentence: 'The movie was great', label: '1' }, 7), { kind: 'sst2' }, tok, {
        file: 'train.csv',
      });
      expect(ex.kind).toBe('classify');
      expect(ex.label).toBe(1);
      expect(ex.source).toBe('train.csv:7');
      expect(ex.sequences).toHaveLength(2);
      checkSpans(ex);
      expect(spanText(tok, ex, 0)).toBe(' terrible');
      expect(spanText(tok, ex, 1)).toBe(' great');
      const prompt = tok.encode('The movie was great It was', { addSpecialTokens: false });
      const bos = tok.addsBos ? [tok.bosId!] : [];
      expect(ex.sequences[1].tokens).toEqual([...bos, ...prompt, ...tok.encode(' great', { addSpecialTokens: false })]);
      expect(ex.sequences[0].scoreStart).toBe(bos.length + prompt.length);
    }
    expect(tokenizeExample(row({ sentence: 'x', label: 0 }), { kind: 'sst2' }, opt).sequences[0].tokens[0]).toBe(opt.bosId);
  });

  it('rte, classify, completion and text spans', () => {
    const rte = tokenizeExample(row({ premise: 'The cat sat.', hypothesis: 'the cat sat', label: 1 }), { kind: 'rte' }, opt);
    checkSpans(rte);
    expect(rte.label).toBe(1);
    expect([spanText(opt, rte, 0), spanText(opt, rte, 1)]).toEqual(['Yes', 'No']);

    const cls = tokenizeExample(
      row({ text: 'Hello world', label: 2 }),
      { kind: 'classify', labelWords: [' cats', ' dogs', ' great'] },
      gpt2,
    );
    checkSpans(cls);
    expect(cls.label).toBe(2);
    expect(cls.sequences.map((_, i) => spanText(gpt2, cls, i))).toEqual([' cats', ' dogs', ' great']);

    for (const tok of [gpt2, opt]) {
      const comp = tokenizeExample(row({ prompt: 'Translate: good morning =>', completion: ' bonjour' }), { kind: 'completion' }, tok);
      checkSpans(comp);
      expect(comp.kind).toBe('completion');
      expect(comp.label).toBe(-1);
      expect(comp.sequences).toHaveLength(1);
      expect(spanText(tok, comp, 0)).toBe(' bonjour');

      const text = tokenizeExample(row({ text: 'Hello world, hello tokenizer.' }), { kind: 'text' }, tok);
      const s = text.sequences[0];
      expect(text.kind).toBe('lm');
      expect(s.scoreStart).toBe(1);
      expect(s.scoreEnd).toBe(s.tokens.length);
      expect(tok.decode(s.tokens, { skipSpecialTokens: true })).toBe('Hello world, hello tokenizer.');
      // all text tokens are scored when BOS is there; all but the first otherwise
      const n = tok.encode('Hello world, hello tokenizer.', { addSpecialTokens: false }).length;
      expect(s.scoreEnd - s.scoreStart).toBe(tok.addsBos ? n : n - 1);
    }

    const eos = tokenizeExample(row({ prompt: 'Q', completion: ' A' }), { kind: 'completion', appendEos: true }, opt);
    const s = eos.sequences[0];
    expect(s.tokens[s.scoreEnd - 1]).toBe(opt.eosId);
    expect(opt.decode(s.tokens.slice(s.scoreStart, s.scoreEnd))).toBe(' A</s>');
  });

  it('bad rows name file, line, field and what was expected', async () => {
    const cases: [Record<string, unknown>, TaskTemplate, string, RegExp][] = [
      [{ label: 1 }, { kind: 'sst2' }, 'sentence', /expected a string, got nothing \(field missing\)/],
      [{ sentence: 3, label: 1 }, { kind: 'sst2' }, 'sentence', /expected a string, got number 3/],
      [{ sentence: 'x', label: 2 }, { kind: 'sst2' }, 'label', /expected a label in \{0, 1/],
      [{ sentence: 'x', label: 'maybe' }, { kind: 'sst2' }, 'label', /got string "maybe"/],
      [{ premise: 'p', label: 0 }, { kind: 'rte' }, 'hypothesis', /expected a string/],
      [{ text: 'x', label: 'pos' }, { kind: 'classify', labelWords: [' a', ' b'], labelMap: { neg: 0 } }, 'label', /expected a label in \{"neg"\}/],
      [{ text: 'x', label: 1.5 }, { kind: 'classify', labelWords: [' a', ' b'] }, 'label', /got number 1\.5/],
      [{ body: 'x' }, { kind: 'text' }, 'text', /field missing/],
      [{ prompt: 'x', completion: null }, { kind: 'completion' }, 'completion', /got null/],
    ];
    for (const [values, t, field, re] of cases) {
      const e = await rowError(() => tokenizeExample(row(values, 12), t, gpt2, { file: 'data/train.jsonl' }));
      expect(e.file).toBe('data/train.jsonl');
      expect(e.line).toBe(12);
      expect(e.field).toBe(field);
      expect(e.message).toMatch(new RegExp(`^data/train\\.jsonl:12: field "${field}": `));
      expect(e.message).toMatch(re);
    }
  });

  it('takes labels that are words as the label words they name, and says how to map the others', async () => {
    // The repository's own classify demo labels rows "negative" / "positive".
    const demo = path.resolve(import.meta.dirname, '../../../resources/datasets/classify-demo.csv');
    const words = [' positive', ' negative'];
    const all = await loadExamples(demo, { kind: 'classify', labelWords: words }, gpt2);
    const labels: unknown[] = [];
    for await (const r of readDataset(demo)) labels.push(r.values.label);
    expect(all.map((e) => words[e.label].trim())).toEqual(labels);
    expect(new Set(labels)).toEqual(new Set(['negative', 'positive']));
    // Case and surrounding spaces do not matter; integer labels still index the words.
    const t: TaskTemplate = { kind: 'classify', labelWords: [' Bad', ' Good'] };
    expect(tokenizeExample(row({ text: 'x', label: ' good ' }), t, gpt2).label).toBe(1);
    expect(tokenizeExample(row({ text: 'x', label: 1 }), t, gpt2).label).toBe(1);
    // A word that is not a label word: the error names the values it takes and the map that would fix it.
    const e = await rowError(() => tokenizeExample(row({ text: 'x', label: 'negative' }, 3), t, gpt2, { file: 'd.csv' }));
    expect(e.field).toBe('label');
    expect(e.message).toContain('expected a label in {0, 1, "bad", "good"}, got string "negative"');
    expect(e.message).toContain(`--label-map '{"negative": 0, …}'`);
  });

  it('configurable column names', () => {
    const ex = tokenizeExample(
      row({ s: 'The movie was great', y: 0 }),
      { kind: 'sst2', sentenceField: 's', labelField: 'y', labelWords: [' terrible', ' great'] },
      gpt2,
    );
    expect(ex.label).toBe(0);
    const c = tokenizeExample(row({ q: 'Q', a: ' A' }), { kind: 'completion', promptField: 'q', completionField: 'a' }, gpt2);
    expect(spanText(gpt2, c, 0)).toBe(' A');
  });

  it('validates templates', () => {
    expect(() => validateTemplate({ kind: 'classify', labelWords: [' a'] })).toThrow(/at least 2/);
    expect(() => validateTemplate({ kind: 'classify', labelWords: [' a', ' b'], prompt: 'no placeholder' })).toThrow(/\{text\}/);
    expect(() => validateTemplate({ kind: 'classify', labelWords: [' a', ' b'], labelMap: { x: 2 } })).toThrow(/labelMap/);
    expect(() => validateTemplate({ kind: 'sst2', labelWords: [' a', ' b', ' c'] })).toThrow(/2 entries/);
    expect(() => tokenizeRows([], { kind: 'classify', labelWords: [] }, gpt2)).toThrow();
  });
});

describe('truncation', () => {
  const long = 'The movie was great and the acting was terrible. '.repeat(8).trim();

  it('classification drops prompt tokens from the left, keeps BOS and the whole span', () => {
    const full = tokenizeExample(row({ sentence: long, label: 1 }), { kind: 'sst2' }, opt);
    const max = 12;
    const ex = tokenizeExample(row({ sentence: long, label: 1 }), { kind: 'sst2' }, opt, { maxLength: max });
    checkSpans(ex);
    for (let i = 0; i < 2; i++) {
      const s = ex.sequences[i];
      const f = full.sequences[i];
      expect(s.tokens.length).toBeLessThanOrEqual(max);
      expect(s.tokens[0]).toBe(opt.bosId);
      expect(spanText(opt, ex, i)).toBe(i === 0 ? ' terrible' : ' great');
      // the kept prompt is the tail of the full prompt
      expect(s.tokens.slice(1, s.scoreStart)).toEqual(f.tokens.slice(f.scoreStart - (s.scoreStart - 1), f.scoreStart));
    }
    // all candidates share the same (truncated) prompt
    expect(ex.sequences[0].tokens.slice(0, ex.sequences[0].scoreStart)).toEqual(
      ex.sequences[1].tokens.slice(0, ex.sequences[1].scoreStart),
    );
    const longest = Math.max(...ex.sequences.map((s) => s.scoreEnd - s.scoreStart));
    expect(Math.max(...ex.sequences.map((s) => s.tokens.length))).toBe(max);
    expect(ex.sequences[0].scoreStart).toBe(max - longest);
  });

  it('completion drops from the left of the prompt; text truncates on the right', () => {
    const ex = tokenizeExample(row({ prompt: long, completion: ' bonjour' }), { kind: 'completion' }, gpt2, { maxLength: 5 });
    const s = ex.sequences[0];
    expect(s.tokens.length).toBe(5);
    expect(spanText(gpt2, ex, 0)).toBe(' bonjour');
    const promptIds = gpt2.encode(long, { addSpecialTokens: false });
    expect(s.tokens.slice(0, s.scoreStart)).toEqual(promptIds.slice(promptIds.length - s.scoreStart));

    const t = tokenizeExample(row({ text: long }), { kind: 'text' }, opt, { maxLength: 6 });
    expect(t.sequences[0].tokens).toEqual(opt.encode(long).slice(0, 6));
    expect(t.sequences[0]).toMatchObject({ scoreStart: 1, scoreEnd: 6 });
  });

  it('errors when the span alone does not fit, or nothing precedes it', async () => {
    const t: TaskTemplate = { kind: 'classify', labelWords: [' xyzzy plugh', ' great'] };
    const words = gpt2.encode(' xyzzy plugh', { addSpecialTokens: false }).length;
    expect(words).toBeGreaterThan(2);
    const e = await rowError(() => tokenizeExample(row({ text: 'x', label: 0 }, 3), t, gpt2, { file: 'a.jsonl', maxLength: words }));
    expect(e.message).toMatch(/a\.jsonl:3: field "label": the scored span alone .* does not fit maxLength/);
    // one more token is enough: a single context token is kept
    const fits = tokenizeExample(row({ text: 'Hello world', label: 0 }), t, gpt2, { maxLength: words + 1 });
    expect(fits.sequences[0].scoreStart).toBe(1);
    expect(fits.sequences[0].tokens.length).toBe(words + 1);
    const c = await rowError(() => tokenizeExample(row({ prompt: '', completion: ' hi' }), { kind: 'completion' }, gpt2));
    expect(c.field).toBe('prompt');
    expect(c.message).toMatch(/nothing precedes the scored span/);
    // with BOS an empty prompt is fine
    const ok = tokenizeExample(row({ prompt: '', completion: ' hi' }), { kind: 'completion' }, opt);
    expect(ok.sequences[0].scoreStart).toBe(1);
    const short = await rowError(() => tokenizeExample(row({ text: 'a' }), { kind: 'text' }, gpt2));
    expect(short.message).toMatch(/at least 2 tokens/);
  });
});

describe('loadExamples', () => {
  it('reads + tokenises JSONL, CSV and Parquet; errors carry the file and line / row', async () => {
    const j = path.join(dir, 'sst2.jsonl');
    await writeFile(j, '{"sentence":"great movie","label":1}\n\n{"sentence":"terrible acting","label":0}\n');
    const fromJsonl = await loadExamples(j, { kind: 'sst2' }, gpt2);
    expect(fromJsonl.map((e) => [e.label, e.source])).toEqual([
      [1, `${j}:1`],
      [0, `${j}:3`],
    ]);

    const c = path.join(dir, 'sst2.csv');
    await writeFile(c, 'sentence,label\n"great movie, really",1\nbad,7\n');
    const ce = await rowError(() => loadExamples(c, { kind: 'sst2' }, gpt2));
    expect(ce.line).toBe(3);
    expect(ce.field).toBe('label');
    expect(ce.message).toContain(`${c}:3: field "label"`);

    const p = path.join(dir, 'comp.parquet');
    parquetWriteFile({
      filename: p,
      columnData: [
        { name: 'prompt', data: ['Q: hello', 'Q: world'], type: 'STRING' },
        { name: 'completion', data: [' A: cats', ' A: dogs'], type: 'STRING' },
      ],
    });
    const fromParquet = await loadExamples(p, { kind: 'completion' }, opt, { maxLength: 64 });
    expect(fromParquet.map((e) => e.source)).toEqual([`${p}:row 1`, `${p}:row 2`]);
    expect(spanText(opt, fromParquet[1], 0)).toBe(' A: dogs');

    const pb = path.join(dir, 'bad.parquet');
    parquetWriteFile({ filename: pb, columnData: [{ name: 'prompt', data: ['a', 'b'], type: 'STRING' }] });
    const pe = await rowError(() => loadExamples(pb, { kind: 'completion' }, opt));
    expect(pe.unit).toBe('row');
    expect(pe.line).toBe(1);
    expect(pe.message).toContain(`${pb}: row 1: field "completion"`);
  });
});
