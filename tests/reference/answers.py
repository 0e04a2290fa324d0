"""SQuAD's answer normalisation, exact match and token F1 (the official
evaluate-v2.0 rules, which MeZO's SQuAD and DROP numbers follow), for
tests/electron/data/answers.test.ts.

Reads a JSON list of [prediction, reference] pairs on stdin; prints a JSON list
of [normalised prediction, exact match, F1] per pair.
"""
import collections
import json
import re
import string
import sys


def normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def f1(prediction, reference):
    p = normalize_answer(prediction).split()
    r = normalize_answer(reference).split()
    if len(p) == 0 or len(r) == 0:
        return float(p == r)
    common = collections.Counter(p) & collections.Counter(r)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(p)
    recall = same / len(r)
    return 2 * precision * recall / (precision + recall)


pairs = json.load(sys.stdin)
print(json.dumps([[normalize_answer(p), float(normalize_answer(p) == normalize_answer(r)), f1(p, r)] for p, r in pairs]))
