#!/usr/bin/env python3
"""Checks on the RTE-pairs model (PyTorch reference, float32): does it have the feature?

Scores the held-out pairs (resources/datasets/rte-pairs/eval.jsonl) with MeZO's RTE prompt as
electron/data/templates.ts writes it, `<s><premise>\\nDoes this mean that "<hypothesis>" is
true? Yes or No?\\n`, and the label words "Yes" (entailment, label 0) and "No" (label 1), and
prints the zero-shot accuracy (arg-max of the two) and the AUC of the gap
log p(Yes) - log p(No) for entailment: how well the model already ranks the pairs, which a
re-calibration (what MeZO does on MeZO's own RTE) can turn into accuracy.
usage: check_rte.py [--model resources/models/spillway-rte] [--split eval] [--json OUT]
"""
import argparse, json, os, sys
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_tokenizer as T
from model import load_model

PROMPT = '{p}\nDoes this mean that "{h}" is true? Yes or No?\n'


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', default=os.path.join(T.ROOT, 'resources', 'models', 'spillway-rte'))
    ap.add_argument('--split', default='eval')
    ap.add_argument('--json', default='')
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get('SPILLWAY_THREADS', '2')))
    bpe = T.load()
    yes, no = bpe.encode('Yes'), bpe.encode('No')
    assert len(yes) == 1 and len(no) == 1, (yes, no)
    rows = [json.loads(l) for l in open(os.path.join(T.ROOT, 'resources', 'datasets', 'rte-pairs', a.split + '.jsonl'))]
    m = load_model(a.model)
    gaps = []
    for x in rows:
        ids = torch.tensor([bpe.encode(PROMPT.format(p=x['premise'], h=x['hypothesis']), bos=True)])
        lp = torch.log_softmax(m(ids)[0, -1].double(), -1)
        gaps.append((lp[yes[0]] - lp[no[0]]).item())
    g = torch.tensor(gaps, dtype=torch.float64)
    y = torch.tensor([x['label'] for x in rows])
    pos, neg = g[y == 0], g[y == 1]  # entailment should have the larger gap
    auc = ((pos[:, None] > neg[None, :]).double().mean() + 0.5 * (pos[:, None] == neg[None, :]).double().mean()).item()
    pred = torch.where(g >= 0, 0, 1)  # ties to the first label word, as the engine's arg-max
    out = {
        'model': os.path.relpath(a.model, T.ROOT), 'split': a.split, 'examples': len(rows),
        'zero_shot_accuracy': (pred == y).double().mean().item(),
        'says_yes': (pred == 0).double().mean().item(),
        'auc_yes_no_gap': auc,
        'gap_mean_entailment': pos.mean().item(), 'gap_mean_not': neg.mean().item(),
    }
    print(json.dumps(out, indent=1))
    if a.json:
        with open(a.json, 'w') as f:
            json.dump(out, f, indent=1)


if __name__ == '__main__':
    main()
