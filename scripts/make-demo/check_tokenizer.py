#!/usr/bin/env python3
"""Check that the Python tokenizer used for training matches @huggingface/tokenizers (JS)
on the whole pretraining corpus, every demo text, and the prompt templates."""
import json, os, subprocess, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_tokenizer as T

HERE = os.path.dirname(os.path.abspath(__file__))
texts = [l for l in open(os.path.join(HERE, 'build', 'corpus.txt')).read().split('\n') if l]
texts += T.demo_texts()
d = os.path.join(T.ROOT, 'resources', 'datasets', 'sentiment-demo')
for s in ('train', 'eval'):
    for l in open(os.path.join(d, s + '.jsonl')):
        x = json.loads(l)['sentence']
        texts += [x + ' It was', x + ' It was great', x + ' It was terrible']
texts += ['Hello world! Numbers 123, unicode caf\u00e9 \u2014 ok\n\nnew  lines']
inp, outp = os.path.join(HERE, 'build', 'tok_in.jsonl'), os.path.join(HERE, 'build', 'tok_js.jsonl')
with open(inp, 'w') as f:
    for t in texts:
        f.write(json.dumps(t) + '\n')
subprocess.run(['node', os.path.join(HERE, 'check_tokenizer.mjs'), inp, outp], check=True, cwd=T.ROOT)
bpe = T.load()
js = [json.loads(l) for l in open(outp)]
assert len(js) == len(texts)
bad = 0
for t, j in zip(texts[:-1], js):
    if bpe.encode(t, bos=True) != j:
        bad += 1
        if bad < 5:
            print('MISMATCH', repr(t), bpe.encode(t, bos=True), j)
print(f'tokenizer check: {len(texts) - 1 - bad}/{len(texts) - 1} texts identical (Python vs JS), '
      f'non-ASCII probe -> {len(js[-1])} ids')
sys.exit(1 if bad else 0)
