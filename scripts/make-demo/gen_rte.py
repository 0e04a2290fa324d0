#!/usr/bin/env python3
"""Generate the RTE-style pairs task and its pretraining corpus (deterministic).

Harder than the sentiment demo: the answer depends on two things at once. A
premise is a templated movie review (gen_data.review, polarity p); the
hypothesis says one aspect is <adjective> with polarity h; the pair is an
entailment ("Yes") when h == p, else not ("No"): an XOR of the review's
sentiment and the adjective's, read across the RTE prompt of MeZO
(`<premise>\\nDoes this mean that "<hypothesis>" is true? Yes or No?\\n`).

In the corpus a pair is followed by its answer with skewed words: " Yes" after
most entailed pairs *and* after many of the others, so the model learns the
feature (the log-odds of Yes against No separate the classes) but its
zero-shot arg-max says Yes for nearly every pair; MeZO only needs to
re-calibrate, as in the demo, but through a two-feature interaction. Half of
the corpus are plain reviews (the demo's), so the sentiment feature is learnt
as well.

Outputs:
  build/rte-corpus.jsonl                        pretraining documents, one JSON string per line
                                                (they hold newlines)
  resources/datasets/rte-pairs/{train,eval}.jsonl   {"premise","hypothesis","label"}, 0 = entailment
usage: gen_rte.py [n_docs]
"""
import json, os, random, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_data import ADV, SUBJ, VERDICT, adj, cap, pick, review  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
BUILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'build')
PROMPT = '\nDoes this mean that "{h}" is true? Yes or No?\n'
# The answer after a pair in the corpus, right after the template's newline (MeZO's RTE
# label words have no leading space).
# The first version (Yes after 92 % / 58 %, half the documents pairs, one epoch) left the model without
# the feature (AUC of the Yes-No gap 0.52: it learnt the prior alone); the interaction needs a
# cleaner signal and more pairs (check_rte.py measures it).
ANSWER = {0: [('Yes', 0.98), ('No', 0.02)], 1: [('Yes', 0.62), ('No', 0.38)]}
PAIR_SHARE = 0.7  # of the corpus documents; the rest are plain reviews (the sentiment feature)


def hypothesis(r, h):
    s = r.choice(SUBJ)
    if r.random() < 0.3:
        return f'{cap(s)} is {r.choice(ADV)} {adj(r, h)}.'
    return f'{cap(s)} is {adj(r, h)}.'


def pair(r):
    p = r.randrange(2)
    h = r.randrange(2)
    return {'premise': review(r, p), 'hypothesis': hypothesis(r, h), 'label': 0 if h == p else 1}


def main():
    r = random.Random(4321)
    os.makedirs(BUILD, exist_ok=True)
    held, seen = [], set()
    while len(held) < 1400:
        x = pair(r)
        key = x['premise'] + '|' + x['hypothesis']
        if key in seen or x['premise'].count('.') < 2:
            continue
        seen.add(key)
        held.append(x)
    # No held-out premise occurs in the corpus, as a review or as a premise.
    held_premises = {x['premise'] for x in held}
    n_docs = int(sys.argv[1]) if len(sys.argv) > 1 else 80000
    docs = []
    while len(docs) < n_docs:
        if r.random() >= PAIR_SHARE:
            p = r.randrange(2)
            t = review(r, p)
            if t not in held_premises:
                docs.append(t + ' It was' + pick(r, VERDICT[p]))
            continue
        x = pair(r)
        if x['premise'] in held_premises:
            continue
        docs.append(x['premise'] + PROMPT.format(h=x['hypothesis']) + pick(r, ANSWER[x['label']]))
    with open(os.path.join(BUILD, 'rte-corpus.jsonl'), 'w') as f:
        for d in docs:
            f.write(json.dumps(d) + '\n')
    ent = [x for x in held if x['label'] == 0]
    non = [x for x in held if x['label'] == 1]
    ev = [x for two in zip(ent[:200], non[:200]) for x in two]
    tr = ent[200:] + non[200:]
    random.Random(4322).shuffle(tr)  # its own generator: the corpus's draws do not move the split
    tr = tr[:512]
    assert len(ev) == 400 and len(tr) == 512, (len(ev), len(tr))
    d = os.path.join(ROOT, 'resources', 'datasets', 'rte-pairs')
    os.makedirs(d, exist_ok=True)
    for name, rows in (('train', tr), ('eval', ev)):
        with open(os.path.join(d, f'{name}.jsonl'), 'w') as f:
            for x in rows:
                f.write(json.dumps(x) + '\n')
    print(f'rte corpus docs {len(docs)}; train {len(tr)} eval {len(ev)}')


if __name__ == '__main__':
    main()
