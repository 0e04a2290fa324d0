#!/usr/bin/env python3
"""Generate the pretraining corpus and the demo datasets (deterministic).

Outputs:
  build/corpus.txt                       pretraining documents, one per line
  resources/datasets/sentiment-demo/{train,eval}.jsonl
  resources/datasets/{rte,text,completion}-demo.jsonl, classify-demo.csv

Reviews are templated movie reviews. Sentiment is expressed many ways
(adjectives, verbs, stock phrases, negation, contrast). In the pretraining
corpus a review is usually followed by " It was <verdict>" where the verdict
word has a skewed prior: " great" follows most positive reviews *and* a good
share of negative ones (sarcastic "It was great when it finally ended."),
" terrible" follows only a minority of negative reviews. The model therefore
learns the sentiment feature but its zero-shot arg-max over {" terrible",
" great"} is biased towards " great"; MeZO only needs to re-calibrate.
"""
import json, os, random, sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
BUILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'build')

SUBJ = ['the film', 'the movie', 'the story', 'the plot', 'the acting', 'the cast', 'the script',
        'the music', 'the ending', 'the dialogue', 'the camera work', 'the lead', 'the director',
        'the pacing', 'the humor', 'the visuals', 'the score', 'the first act', 'the final scene',
        'the villain', 'the hero', 'the editing', 'the writing', 'the soundtrack', 'the set design',
        'the direction', 'the performances', 'the premise', 'the twist', 'the opening']
POS = ['great', 'wonderful', 'brilliant', 'charming', 'delightful', 'superb', 'moving', 'gripping',
       'funny', 'clever', 'beautiful', 'touching', 'fresh', 'smart', 'lovely', 'stunning', 'sharp',
       'warm', 'excellent', 'memorable', 'powerful', 'tender', 'witty', 'thrilling', 'elegant',
       'engaging', 'heartfelt', 'inventive', 'solid', 'vivid', 'good', 'fantastic', 'rich', 'bold']
NEG = ['terrible', 'awful', 'dull', 'boring', 'clumsy', 'tedious', 'bland', 'lifeless', 'flat',
       'silly', 'messy', 'predictable', 'forgettable', 'weak', 'stale', 'painful', 'lazy', 'shallow',
       'confusing', 'tiresome', 'wooden', 'hollow', 'sloppy', 'dreary', 'pointless', 'bloated',
       'cheap', 'grating', 'bad', 'poor', 'dumb', 'numbing']
ADV = ['really', 'truly', 'rather', 'quite', 'so', 'very', 'simply', 'often', 'mostly', 'always']
NOUN = ['film', 'movie', 'story', 'ride', 'experience', 'picture', 'drama', 'comedy', 'thriller',
        'debut', 'sequel', 'romance', 'mystery', 'western', 'musical']
VERB = {1: ['loved', 'enjoyed', 'adored', 'admired', 'liked', 'savored', 'treasured'],
        0: ['hated', 'disliked', 'regretted', 'resented', 'endured', 'loathed']}
PHRASE = {1: ['I would watch it again.', 'Highly recommended.', 'A must see.',
              'The audience cheered at the end.', 'I left the theater smiling.',
              'It made me laugh and cry.', 'Every scene works.', 'I was hooked from the start.',
              'Worth every penny.', 'I want to see it again soon.', 'A joy from start to finish.',
              'My whole family loved it.', 'It stayed with me for days.', 'Bring your friends.'],
          0: ['I want my money back.', 'Skip this one.', 'I nearly fell asleep.',
              'People walked out halfway.', 'I checked my watch often.', 'Avoid it.',
              'Nothing works.', 'I was bored from the start.', 'Not worth a penny.',
              'I never want to see it again.', 'A chore from start to finish.',
              'My whole family hated it.', 'I forgot it in an hour.', 'Save your money.']}
DAY = ['Sunday', 'Monday', 'Friday', 'Saturday', 'a rainy night', 'a long flight', 'a quiet evening']
PLACE = ['Paris', 'Texas', 'a small town', 'London', 'the desert', 'a big city', 'space', 'Rome',
         'a farm', 'the future', 'the sea', 'Tokyo', 'a school', 'a prison']
PERSON = ['young woman', 'old man', 'detective', 'teacher', 'boxer', 'nurse', 'family', 'pilot',
          'singer', 'farmer', 'thief', 'soldier', 'writer', 'chef']
REL = ['sister', 'brother', 'friend', 'wife', 'husband', 'son', 'daughter', 'uncle', 'aunt']
MONTH = ['May', 'June', 'March', 'year', 'week', 'winter', 'summer', 'fall', 'spring']
NEUTRAL = ['I saw it on {day}.', 'It runs about two hours.', 'The film is set in {place}.',
           'My {rel} picked it.', 'It opened last {month}.', 'The story follows a {person} in {place}.',
           'It is based on a novel.', 'I watched it with my {rel}.', 'It is the second film by this director.',
           'The cast is mostly new faces.', 'It was shot in {place}.', 'The {person} is played by a newcomer.',
           'I went in knowing nothing.', 'It is a {noun} about a {person}.']

# what follows " It was" in the pretraining corpus (the verdict), with weights
VERDICT = {1: [(' great.', 0.55), (' wonderful.', 0.09), (' a joy.', 0.07), (' superb.', 0.07),
               (' so much fun.', 0.08), (' lovely.', 0.07), (' brilliant.', 0.07)],
           0: [(' great when it finally ended.', 0.12), (' great for a nap.', 0.10),
               (' great to leave early.', 0.09), (' great to see the credits.', 0.08),
               (' terrible.', 0.18), (' awful.', 0.10), (' boring.', 0.08), (' a mess.', 0.08),
               (' dull.', 0.06), (' a waste of time.', 0.06), (' painful.', 0.05)]}


def cap(s):
    return s[0].upper() + s[1:]


def fill(r, t):
    return t.format(day=r.choice(DAY), place=r.choice(PLACE), person=r.choice(PERSON),
                    rel=r.choice(REL), month=r.choice(MONTH), noun=r.choice(NOUN))


def adj(r, p):
    return r.choice(POS if p else NEG)


def clause(r, p):
    """One sentence expressing polarity p (1 positive, 0 negative)."""
    k = r.random()
    s = r.choice(SUBJ)
    be = r.choice(['is', 'was', 'feels', 'seems'])
    if k < 0.28:
        return f'{cap(s)} {be} {adj(r, p)}.'
    if k < 0.42:
        return f'{cap(s)} {be} {r.choice(ADV)} {adj(r, p)}.'
    if k < 0.52:
        return f'What a {adj(r, p)} {r.choice(NOUN)}.'
    if k < 0.60:
        return f'A {adj(r, p)} and {adj(r, p)} {r.choice(NOUN)}.'
    if k < 0.70:
        return f'I {r.choice(VERB[p])} {r.choice(["it", "every minute of it", s, "this " + r.choice(NOUN)])}.'
    if k < 0.82:
        return r.choice(PHRASE[p])
    if k < 0.91:  # negation: "not <opposite>"
        return f'{cap(s)} {r.choice(["is", "was"])} not {adj(r, 1 - p)}.'
    # contrast: the clause after "but" carries the polarity
    s2 = r.choice([x for x in SUBJ if x != s])
    return f'{cap(s)} {be} {adj(r, 1 - p)}, but {s2} {r.choice(["is", "was"])} {adj(r, p)}.'


def review(r, p):
    n = r.choice([1, 2, 2, 3, 3])
    parts = [clause(r, p) for _ in range(n)]
    if n == 3 and r.random() < 0.3:
        parts[r.randrange(3)] = clause(r, 1 - p)  # one dissenting remark
    for _ in range(r.choice([0, 0, 1, 1, 2])):
        parts.insert(r.randrange(len(parts) + 1), fill(r, r.choice(NEUTRAL)))
    return ' '.join(parts)


def pick(r, items):
    x = r.random() * sum(w for _, w in items)
    for v, w in items:
        x -= w
        if x <= 0:
            return v
    return items[-1][0]


def rte_rows(r, n):
    rows = []
    for _ in range(n):
        p = r.randrange(2)
        s = r.choice(SUBJ)
        a = adj(r, p)
        prem = f'{cap(s)} of this {r.choice(NOUN)} {r.choice(["is", "was"])} {a}. {fill(r, r.choice(NEUTRAL))}'
        if r.random() < 0.5:
            hyp, lab = f'{cap(s)} is {a}.', 0
        else:
            hyp, lab = f'{cap(s)} is {adj(r, 1 - p)}.', 1
        rows.append({'premise': prem, 'hypothesis': hyp, 'label': lab})
    return rows


def main():
    r = random.Random(1234)
    os.makedirs(BUILD, exist_ok=True)
    # held-out demo reviews: candidates first (>= 2 sentences), then the corpus
    # (never containing a candidate), then keep candidates that occur nowhere
    # in the corpus, not even as a substring of a document.
    cands, seen = [], set()
    while len(cands) < 1600:
        p = len(cands) % 2
        t = review(r, p)
        if t in seen or t.count('.') < 2:
            continue
        seen.add(t)
        cands.append({'sentence': t, 'label': p})

    n_docs = int(sys.argv[1]) if len(sys.argv) > 1 else 80000
    docs, dropped = [], 0
    while len(docs) < n_docs:
        p = r.randrange(2)
        t = review(r, p)
        if t in seen:
            dropped += 1
            continue
        u = r.random()
        if u < 0.80:
            t = t + ' It was' + pick(r, VERDICT[p])
        elif u < 0.88:
            t = t + ' Overall it was ' + adj(r, p) + '.'
        docs.append(t)
    text = '\n'.join(docs) + '\n'
    with open(os.path.join(BUILD, 'corpus.txt'), 'w') as f:
        f.write(text)
    ok = [c for c in cands if c['sentence'] not in text]
    pos = [c for c in ok if c['label'] == 1]
    neg = [c for c in ok if c['label'] == 0]
    ev = [x for pair in zip(pos[:200], neg[:200]) for x in pair]
    tr = pos[200:] + neg[200:]
    r.shuffle(tr)
    tr = tr[:512]
    assert len(ev) == 400 and len(tr) == 512, (len(ev), len(tr))
    demo = {'train': tr, 'eval': ev}
    d = os.path.join(ROOT, 'resources', 'datasets', 'sentiment-demo')
    os.makedirs(d, exist_ok=True)
    for split in ('train', 'eval'):
        with open(os.path.join(d, f'{split}.jsonl'), 'w') as f:
            for x in demo[split]:
                f.write(json.dumps(x) + '\n')

    # small demo files for the other templates
    dd = os.path.join(ROOT, 'resources', 'datasets')
    with open(os.path.join(dd, 'rte-demo.jsonl'), 'w') as f:
        for x in rte_rows(r, 64):
            f.write(json.dumps(x) + '\n')
    with open(os.path.join(dd, 'text-demo.jsonl'), 'w') as f:
        for _ in range(64):
            p = r.randrange(2)
            f.write(json.dumps({'text': review(r, p) + ' It was' + pick(r, VERDICT[p])}) + '\n')
    with open(os.path.join(dd, 'completion-demo.jsonl'), 'w') as f:
        for _ in range(64):
            p = r.randrange(2)
            f.write(json.dumps({'prompt': review(r, p) + ' Overall it was',
                                'completion': ' ' + adj(r, p) + '.'}) + '\n')
    with open(os.path.join(dd, 'classify-demo.csv'), 'w') as f:
        f.write('text,label\n')
        for _ in range(64):
            p = r.randrange(2)
            t = review(r, p).replace('"', '""')
            f.write(f'"{t}",{"positive" if p else "negative"}\n')
    print(f'corpus docs {len(docs)} (dropped {dropped} colliding with demo sets); '
          f'demo train {len(demo["train"])} eval {len(demo["eval"])}')


if __name__ == '__main__':
    main()
