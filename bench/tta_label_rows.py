"""A prototype measured before building it: MeZO on the label words' rows alone.

bench/tta_gradients.py finds most of each task's gradient (93 % on the demo, 84 % on rte) in the
two label words' rows of the tied embedding: 256 of 972k weights. A trainable set of just those
rows (what peft calls trainable tokens, `trainable_token_indices`) would cut the noise a MeZO step
injects by the ratio of the sizes while keeping most of the signal. The engine has no such set yet;
this runs MeZO (two-point, Gaussian z, the classify loss of docs/ENGINE-SPEC.md: cross-entropy over
the label words' log-probs) in PyTorch float32 on the Hugging Face model, on the label rows alone
and on every weight, the same batches for both, and prints the held-out accuracy after each step:
how many steps each needs to a target.

  ~/.cache/spillway/venv/bin/python bench/tta_label_rows.py [--task demo|rte] [--steps 60] [--seeds 0,1,2]
      [--rows-lrs 1e-2,3e-2,1e-1] [--full-lrs 3e-4,1e-3] [--eps 1e-3] [--eval-max 200]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tta_gradients as G  # noqa: E402


def batched(exs):
    """Prompt ids right-padded, the index of each prompt's last token, the label words' ids, labels."""
    L = max(len(p) for p, _, _ in exs)
    ids = torch.zeros(len(exs), L, dtype=torch.long)
    mask = torch.zeros(len(exs), L, dtype=torch.long)
    for i, (p, _, _) in enumerate(exs):
        ids[i, : len(p)] = torch.tensor(p)
        mask[i, : len(p)] = 1
    words = [c[0] for c in exs[0][1]]
    assert all(len(c) == 1 for c in exs[0][1]), "label words of one token"
    return ids, mask, torch.tensor([len(p) - 1 for p, _, _ in exs]), words, torch.tensor([y for _, _, y in exs])


@torch.no_grad()
def loss_acc(model, b):
    ids, mask, last, words, y = b
    logits = model(input_ids=ids, attention_mask=mask).logits[torch.arange(ids.shape[0]), last]
    s = torch.log_softmax(logits.float(), -1)[:, words]
    return torch.nn.functional.cross_entropy(s, y).item(), (s.argmax(1) == y).float().mean().item()


def mezo(task_train, held, rows, lr, eps, steps, seed):
    """Accuracy on `held` after each step; rows: the label rows' ids, or None for every weight."""
    model = G.base()
    emb = model.model.embed_tokens.weight  # tied: also the head
    params = [emb] if rows is not None else list(model.parameters())
    gen = torch.Generator().manual_seed(seed)
    acc = [loss_acc(model, held)[1]]

    def z_like(p, g):
        z = torch.randn(p.shape, generator=g)
        if rows is not None:
            keep = torch.zeros(p.shape[0], 1)
            keep[rows] = 1.0
            z = z * keep
        return z

    for step in range(steps):
        idx = torch.randint(len(task_train), (16,), generator=gen).tolist()
        b = batched([task_train[i] for i in idx])
        zseed = int(torch.randint(2**31, (1,), generator=gen))
        zs = [z_like(p, torch.Generator().manual_seed(zseed + k)) for k, p in enumerate(params)]
        with torch.no_grad():
            for p, z in zip(params, zs):
                p.add_(eps * z)
            lp = loss_acc(model, b)[0]
            for p, z in zip(params, zs):
                p.sub_(2 * eps * z)
            lm = loss_acc(model, b)[0]
            g = (lp - lm) / (2 * eps)
            for p, z in zip(params, zs):
                p.add_(eps * z)
                p.sub_(lr * g * z)
        acc.append(loss_acc(model, held)[1])
    return acc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=sorted(G.TASKS), default="demo")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rows-lrs", default="1e-2,3e-2,1e-1")
    ap.add_argument("--full-lrs", default="3e-4,1e-3")
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--eval-max", type=int, default=200)
    a = ap.parse_args()
    G.TASK = G.TASKS[a.task]
    G.MODEL = os.path.join(G.ROOT, G.TASK["model"])
    tok = G.AutoTokenizer.from_pretrained(G.MODEL)
    train = G.examples(tok, G.TASK["train"], 10**9)
    held = batched(G.examples(tok, G.TASK["eval"], a.eval_max))
    rows = [c[0] for c in train[0][1]]
    print(f"Task {a.task}: label rows {rows}, {a.steps} steps, batch 16, eps {a.eps}, held-out {a.eval_max}; "
          "accuracy after each step (step 0 = zero-shot)\n")
    print("| set | lr | seed | steps to 95 % | to 97 % | to 98 % | final | accuracy every 5 steps |\n|---|---|---|---|---|---|---|---|")
    runs = [("label rows (256 weights)", rows, float(lr)) for lr in a.rows_lrs.split(",")]
    runs += [("every weight", None, float(lr)) for lr in a.full_lrs.split(",")]
    for name, r, lr in runs:
        for seed in map(int, a.seeds.split(",")):
            acc = mezo(train, held, r, lr, a.eps, a.steps, seed)
            first = lambda t: next((str(i) for i, x in enumerate(acc) if i > 0 and x >= t - 1e-9), "-")  # noqa: E731
            every = " ".join(f"{i}:{100 * x:.1f}" for i, x in enumerate(acc) if i % 5 == 0)
            print(f"| {name} | {lr:g} | {seed} | {first(0.95)} | {first(0.97)} | {first(0.98)} | {100 * acc[-1]:.1f}% | {every} |", flush=True)


if __name__ == "__main__":
    main()
