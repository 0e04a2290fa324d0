#!/usr/bin/env python3
"""Checks on the shipped demo model (PyTorch reference, 2 threads):
parameter count, held-out AUC of the label-word gap log p(" great") - log p(" terrible")
after the SST-2 prompt "<sentence> It was", zero-shot accuracy on eval.jsonl, and MeZO
runs (two forward passes per step with the same Gaussian noise over ALL parameters,
loss = cross-entropy over the two candidates' log-probs) with accuracy vs steps.
usage: check.py [--lr 1e-3] [--eps 1e-3] [--bs 16] [--steps 1000] [--seeds 0,1,2]
                [--eval-every 100] [--model DIR] [--no-mezo] [--json OUT]
"""
import argparse, json, os, random, sys, time
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_tokenizer as T
from model import load_model

torch.set_num_threads(int(os.environ.get("SPILLWAY_THREADS", "2")))
DATA = os.path.join(T.ROOT, 'resources', 'datasets', 'sentiment-demo')


def rows(split):
    return [json.loads(l) for l in open(os.path.join(DATA, split + '.jsonl'))]


def prep(bpe, rs, bos=True):
    ids = [bpe.encode(x['sentence'] + ' It was', bos=bos) for x in rs]
    L = max(map(len, ids))
    t = torch.full((len(ids), L), T.PAD, dtype=torch.long)
    for i, s in enumerate(ids):
        t[i, :len(s)] = torch.tensor(s)
    return t, torch.tensor([len(s) - 1 for s in ids]), torch.tensor([x['label'] for x in rs])


@torch.no_grad()
def scores(m, batch, cand):
    ids, last, _ = batch
    lg = m(ids)[torch.arange(ids.shape[0]), last]
    return torch.log_softmax(lg.float(), -1)[:, cand]  # [N, 2]: terrible, great


def auc(gap, y):
    pos, neg = gap[y == 1], gap[y == 0]
    return ((pos[:, None] > neg[None, :]).float().mean() + 0.5 * (pos[:, None] == neg[None, :]).float().mean()).item()


def acc(sc, y):
    return (sc.argmax(-1) == y).float().mean().item()  # argmax: first on ties


def evaluate(m, ev, cand):
    sc = scores(m, ev, cand)
    return acc(sc, ev[2]), auc(sc[:, 1] - sc[:, 0], ev[2]), sc


def mezo(m0_dir, bpe, cand, a, seed, tr, ev):
    m = load_model(m0_dir)
    params = [p for p in m.parameters()]
    for p in params:
        p.requires_grad_(False)
    rng = random.Random(seed)
    n = tr[0].shape[0]

    def perturb(scale, s):
        g = torch.Generator().manual_seed(s)
        for p in params:
            p.add_(torch.randn(p.shape, generator=g), alpha=scale)

    def loss(idx):
        sc = scores(m, (tr[0][idx], tr[1][idx], None), cand)
        return torch.nn.functional.cross_entropy(sc, tr[2][idx]).item()

    curve, t_train = [], 0.0
    a0 = evaluate(m, ev, cand)[0]
    curve.append((0, a0, 0.0))
    for t in range(a.steps):
        t0 = time.time()
        idx = torch.tensor(rng.sample(range(n), a.bs))
        s = seed * 1_000_003 + t
        perturb(a.eps, s)
        lp = loss(idx)
        perturb(-2 * a.eps, s)
        lm = loss(idx)
        perturb(a.eps, s)
        g = (lp - lm) / (2 * a.eps)
        perturb(-a.lr * g, s)
        t_train += time.time() - t0
        if (t + 1) % a.eval_every == 0:
            curve.append((t + 1, evaluate(m, ev, cand)[0], t_train))
    return curve


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', default=T.MODEL_DIR)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--eps', type=float, default=1e-3)
    ap.add_argument('--bs', type=int, default=16)
    ap.add_argument('--steps', type=int, default=1000)
    ap.add_argument('--eval-every', type=int, default=100)
    ap.add_argument('--seeds', default='0,1,2')
    ap.add_argument('--no-mezo', action='store_true')
    ap.add_argument('--json')
    a = ap.parse_args()
    bpe = T.load()
    cand = [bpe.encode(' terrible')[0], bpe.encode(' great')[0]]
    m = load_model(a.model)
    ev, tr = prep(bpe, rows('eval')), prep(bpe, rows('train'))
    res = {'params': sum(p.numel() for p in m.parameters())}
    res['zero_shot_acc'], res['auc'], sc = evaluate(m, ev, cand)
    gap = sc[:, 1] - sc[:, 0]
    ev_nobos = prep(bpe, rows('eval'), bos=False)
    res['zero_shot_acc_nobos'], res['auc_nobos'], _ = evaluate(m, ev_nobos, cand)
    res['train_zero_shot_acc'], res['train_auc'], _ = evaluate(m, tr, cand)
    y = ev[2]
    print(f'parameters: {res["params"]}')
    print(f'eval (n={len(y)}): label-word gap AUC {res["auc"]:.3f}, zero-shot accuracy {100 * res["zero_shot_acc"]:.1f}% '
          f'(without <s>: AUC {res["auc_nobos"]:.3f}, zero-shot {100 * res["zero_shot_acc_nobos"]:.1f}%)')
    print(f'  mean gap positives {gap[y == 1].mean():.2f}, negatives {gap[y == 0].mean():.2f}; '
          f'best-threshold accuracy {max(((gap > th).long() == y).float().mean().item() for th in gap):.3f}')
    print(f'train (n={len(tr[2])}): AUC {res["train_auc"]:.3f}, zero-shot {100 * res["train_zero_shot_acc"]:.1f}%')
    if not a.no_mezo:
        print(f'MeZO: lr {a.lr} eps {a.eps} batch {a.bs} steps {a.steps}, Gaussian noise on all parameters, {torch.get_num_threads()} threads')
        res['mezo'] = {'lr': a.lr, 'eps': a.eps, 'bs': a.bs, 'steps': a.steps, 'runs': {}}
        for seed in map(int, a.seeds.split(',')):
            curve = mezo(a.model, bpe, cand, a, seed, tr, ev)
            res['mezo']['runs'][seed] = curve
            print(f'  seed {seed}: ' + ' '.join(f'{s}:{100 * x:.1f}' for s, x, _ in curve) +
                  f' | {curve[-1][2]:.1f}s train time, {a.steps / curve[-1][2]:.1f} steps/s, '
                  f'lift {100 * (curve[-1][1] - curve[0][1]):+.1f} pts', flush=True)
    if a.json:
        json.dump(res, open(a.json, 'w'), indent=1)


if __name__ == '__main__':
    main()
