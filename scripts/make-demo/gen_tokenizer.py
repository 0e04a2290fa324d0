#!/usr/bin/env python3
"""Build a small GPT-2-style byte-level BPE tokenizer (Hugging Face tokenizer.json).

Vocabulary: 4 special tokens, the 256 byte symbols, then merges learned by
plain BPE over the *set* of distinct pre-tokens found in the corpus and demo
files (each with and without the leading-space marker), continued until
every such word is a single token. Deterministic (ties broken by the pair's
text). Also exports tokenize() used by the training scripts.
"""
import json, os, re, glob, collections

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
MODEL_DIR = os.path.join(ROOT, 'resources', 'models', 'spillway-demo')
SPECIALS = ['<unk>', '<s>', '</s>', '<pad>']
UNK, BOS, EOS, PAD = 0, 1, 2, 3
# GPT-2 pre-tokenizer pattern restricted to ASCII letters/digits (the corpus is ASCII;
# tokenize() asserts it), equivalent to the \p{L} / \p{N} pattern on ASCII text.
PAT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


B2U = bytes_to_unicode()


def pretokens(text):
    assert all(ord(c) < 128 for c in text), 'corpus must be ASCII'
    return [''.join(B2U[b] for b in m.encode('utf-8')) for m in PAT.findall(text)]


def demo_texts():
    out = []
    for f in sorted(glob.glob(os.path.join(ROOT, 'resources', 'datasets', '**', '*.jsonl'), recursive=True)):
        for line in open(f):
            out.extend(str(v) for v in json.loads(line).values())
    for f in sorted(glob.glob(os.path.join(ROOT, 'resources', 'datasets', '*.csv'))):
        out.append(open(f).read())
    # prompt templates (MeZO SST-2 / RTE and friends)
    out += [' It was great', ' It was terrible', '\nDoes this mean that "x" is true? Yes or No?\n',
            'Yes', 'No', ' Yes', ' No', 'positive', 'negative', ' positive', ' negative',
            'Question: Answer: Review: Sentiment: Text: Label: Overall it was']
    return out


def train_bpe(words):
    """words: iterable of pre-token strings. Returns merges list [(a, b)]."""
    seqs = {w: list(w) for w in sorted(set(words))}
    merges = []
    while True:
        counts = collections.Counter()
        for s in seqs.values():
            for a, b in zip(s, s[1:]):
                counts[(a, b)] += 1
        if not counts:
            break
        best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        merges.append(best)
        a, b = best
        for w, s in seqs.items():
            if len(s) < 2:
                continue
            i, out = 0, []
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    return merges


class BPE:
    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.cache = {}

    def word(self, w):
        if w in self.cache:
            return self.cache[w]
        s = list(w)
        while len(s) > 1:
            pairs = [(self.ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(s, s[1:]))]
            r, i = min(pairs)
            if r == 1 << 30:
                break
            a, b = s[i], s[i + 1]
            j, out = 0, []
            while j < len(s):
                if j + 1 < len(s) and s[j] == a and s[j + 1] == b:
                    out.append(a + b)
                    j += 2
                else:
                    out.append(s[j])
                    j += 1
            s = out
        ids = [self.vocab[t] for t in s]
        self.cache[w] = ids
        return ids

    def encode(self, text, bos=False):
        ids = [BOS] if bos else []
        for p in pretokens(text):
            ids.extend(self.word(p))
        return ids


def load():
    tj = json.load(open(os.path.join(MODEL_DIR, 'tokenizer.json')))
    m = tj['model']
    return BPE(m['vocab'], [tuple(x.split(' ')) for x in m['merges']])


def main():
    corpus = open(os.path.join(HERE, 'build', 'corpus.txt')).read()
    words = set()
    for t in [corpus] + demo_texts():
        words.update(pretokens(t))
    G = B2U[ord(' ')]
    for w in list(words):  # both spacings of every alphabetic word
        if w.startswith(G) and w[1:].isalpha():
            words.add(w[1:])
        elif w.isalpha():
            words.add(G + w)
    merges = train_bpe(words)
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for b in range(256):
        vocab[B2U[b]] = len(vocab)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    bpe = BPE(vocab, merges)
    bad = [w for w in words if len(bpe.word(w)) != 1]
    assert not bad, bad[:10]
    for w in (' great', ' terrible'):
        assert len(bpe.encode(w)) == 1, w
    tj = {
        'version': '1.0', 'truncation': None, 'padding': None,
        'added_tokens': [{'id': i, 'content': s, 'single_word': False, 'lstrip': False, 'rstrip': False,
                          'normalized': False, 'special': True} for i, s in enumerate(SPECIALS)],
        'normalizer': None,
        'pre_tokenizer': {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True},
        'post_processor': {
            'type': 'TemplateProcessing',
            'single': [{'SpecialToken': {'id': '<s>', 'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}}],
            'pair': [{'SpecialToken': {'id': '<s>', 'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}},
                     {'SpecialToken': {'id': '<s>', 'type_id': 1}}, {'Sequence': {'id': 'B', 'type_id': 1}}],
            'special_tokens': {'<s>': {'id': '<s>', 'ids': [BOS], 'tokens': ['<s>']}}},
        'decoder': {'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': True, 'use_regex': True},
        'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': None,
                  'end_of_word_suffix': None, 'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': False,
                  'vocab': vocab, 'merges': [f'{a} {b}' for a, b in merges]},
    }
    os.makedirs(MODEL_DIR, exist_ok=True)
    with open(os.path.join(MODEL_DIR, 'tokenizer.json'), 'w') as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)
    cfg = {
        'add_bos_token': True, 'add_eos_token': False, 'bos_token': '<s>', 'eos_token': '</s>',
        'unk_token': '<unk>', 'pad_token': '<pad>', 'clean_up_tokenization_spaces': False,
        'model_max_length': 256, 'tokenizer_class': 'PreTrainedTokenizerFast',
        'added_tokens_decoder': {str(i): {'content': s, 'lstrip': False, 'normalized': False, 'rstrip': False,
                                          'single_word': False, 'special': True} for i, s in enumerate(SPECIALS)},
    }
    with open(os.path.join(MODEL_DIR, 'tokenizer_config.json'), 'w') as f:
        json.dump(cfg, f, indent=1)
    print(f'tokenizer: {len(words)} words, {len(merges)} merges, vocab {len(vocab)}; '
          f'" great"={bpe.encode(" great")} " terrible"={bpe.encode(" terrible")}')


if __name__ == '__main__':
    main()
