"""Where the demo task's gradient lives: why the trainable sets of bench/time-to-accuracy.ts learn
the demo so much more slowly than MeZO on every weight.

A MeZO step moves theta by -lr * g * z with g = z . grad L_S (the projected gradient over the set S
it perturbs): the expected descent per step is lr * |grad_S|^2, and the noise it injects grows with
the number of elements d_S, so |grad_S|^2 / d_S measures how much each unit of noise buys. This
prints, for the demo model and task (resources/demo.json: the SST-2 prompt, the classify loss of
docs/ENGINE-SPEC.md "Losses", the mean over --examples training examples), |grad|^2 per group of
tensors and per trainable set, each set's share of the whole and its |grad_S|^2 / d_S.
A LoRA set is measured at its start (B = 0): grad A = 0 and grad B = alpha/r * grad W A^T, with A
drawn as peft draws it (kaiming-uniform, bound 1/sqrt(in); the seed differs from the engine's, the
expected size does not).

--adam N: also trains each set for N first-order steps (Adam, lr 1e-3 and 1e-2, batch 16) and
prints the held-out accuracy every 10 steps: whether a set can express the task at all, apart from
how a zeroth-order estimate finds it.

  ~/.cache/spillway/venv/bin/python bench/tta_gradients.py [--task demo|rte] [--examples 64] [--adam 0]
Needs the venv's torch, transformers and peft (tests/helpers/python.ts).
"""
import argparse
import json
import os

import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

transformers.logging.set_verbosity_error()
torch.manual_seed(0)
torch.set_num_threads(1)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "resources")
DEMO = json.load(open(os.path.join(ROOT, "demo.json")))
# The tasks of bench/time-to-accuracy.ts: each its model, data, prompt (as electron/data/templates.ts
# writes it) and label words (the first is label 0).
TASKS = {
    "demo": dict(model=DEMO["model"], train=DEMO["data"]["train"], eval=DEMO["data"]["eval"],
                 prompt=lambda r: r["sentence"] + " It was", words=DEMO["task"]["labelWords"]),
    "rte": dict(model="models/spillway-rte", train="datasets/rte-pairs/train.jsonl", eval="datasets/rte-pairs/eval.jsonl",
                prompt=lambda r: f'{r["premise"]}\nDoes this mean that "{r["hypothesis"]}" is true? Yes or No?\n',
                words=["Yes", "No"]),
}
TASK = TASKS["demo"]
MODEL = os.path.join(ROOT, TASK["model"])
ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def examples(tok, path, limit):
    rows = [json.loads(line) for line in open(os.path.join(ROOT, path))][:limit]
    cands = [tok.encode(w, add_special_tokens=False) for w in TASK["words"]]
    # templates.ts: [BOS] + encode(prompt) + encode(candidate), the candidate scored.
    return [([tok.bos_token_id] + tok.encode(TASK["prompt"](r), add_special_tokens=False), cands, r["label"]) for r in rows]


def loss_acc(model, exs):
    scores = []
    for prompt, cands, _ in exs:
        row = []
        for c in cands:
            logp = torch.log_softmax(model(torch.tensor([prompt + c])).logits[0].float(), -1)
            row.append(torch.stack([logp[len(prompt) - 1 + k, t] for k, t in enumerate(c)]).mean())
        scores.append(torch.stack(row))
    s, y = torch.stack(scores), torch.tensor([e[2] for e in exs])
    return torch.nn.functional.cross_entropy(s, y), (s.argmax(1) == y).float().mean().item()


def base():
    return AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32, attn_implementation="eager")


def group(name):
    if "embed_tokens" in name:
        return "embedding (tied head)"
    if "norm" in name:
        return "norms"
    return name.split(".")[-2]


def lora_b_grad2(model, targets, r=8, alpha=16):
    total, numel = 0.0, 0
    for name, p in model.named_parameters():
        if name.split(".")[-2] in targets:
            a = (torch.rand(r, p.shape[1]) * 2 - 1) / p.shape[1] ** 0.5
            total += ((alpha / r) * p.grad @ a.T).pow(2).sum().item()
            numel += r * (p.shape[0] + p.shape[1])
    return total, numel


def adam(name, make, train, held, steps, lr):
    model = make()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(0)
    accs = []
    for step in range(1, steps + 1):
        idx = torch.randint(len(train), (16,), generator=gen).tolist()
        loss, _ = loss_acc(model, [train[i] for i in idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0:
            with torch.no_grad():
                accs.append(f"{step}:{100 * loss_acc(model, held)[1]:.0f}%")
    print(f"| {name} | {lr:g} | {sum(p.numel() for p in params)} | {' '.join(accs)} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--adam", type=int, default=0)
    ap.add_argument("--task", choices=sorted(TASKS), default="demo")
    a = ap.parse_args()
    global TASK, MODEL
    TASK = TASKS[a.task]
    MODEL = os.path.join(ROOT, TASK["model"])
    tok = AutoTokenizer.from_pretrained(MODEL)
    train = examples(tok, TASK["train"], 10**9)
    model = base()
    loss, _ = loss_acc(model, train[: a.examples])
    loss.backward()
    g2, n = {}, {}
    for name, p in model.named_parameters():
        k = group(name)
        g2[k] = g2.get(k, 0.0) + p.grad.pow(2).sum().item()
        n[k] = n.get(k, 0) + p.numel()
    emb = model.model.embed_tokens.weight.grad
    label_rows = [c[0] for c in examples(tok, TASK["train"], 1)[0][1]]
    whole = sum(g2.values())
    print(f"Task {a.task}, loss over the first {a.examples} training examples: {loss.item():.5f}\n")
    print("| group | elements | ‖grad‖² | share |\n|---|---|---|---|")
    for k in g2:
        print(f"| {k} | {n[k]} | {g2[k]:.3e} | {g2[k] / whole:.4f} |")
    print(f"| of which the label words' rows of the embedding | {len(label_rows) * emb.shape[1]} | {emb[label_rows].pow(2).sum().item():.3e} | {emb[label_rows].pow(2).sum().item() / whole:.4f} |")
    blocks = [k for k in g2 if k.endswith("proj")]
    sets = {
        "MeZO, every weight": (whole, sum(n.values())),
        "block matrices (no embedding, no norms)": (sum(g2[k] for k in blocks), sum(n[k] for k in blocks)),
        "LoRA r 8, q and v (at B = 0)": lora_b_grad2(model, ["q_proj", "v_proj"]),
        "LoRA r 8, all 7 (at B = 0)": lora_b_grad2(model, ALL7),
        "the norms": (g2["norms"], n["norms"]),
        "the embedding (tied head)": (g2["embedding (tied head)"], n["embedding (tied head)"]),
        "the label words' rows (--train tokens)": (emb[label_rows].pow(2).sum().item(), len(label_rows) * emb.shape[1]),
    }
    print("\n| set | elements d | ‖grad_S‖² | share | ‖grad_S‖² / d |\n|---|---|---|---|---|")
    for k, (g, d) in sets.items():
        print(f"| {k} | {d} | {g:.3e} | {g / whole:.4f} | {g / d:.2e} |")
    if a.adam:
        held = examples(tok, TASK["eval"], 100)

        def only(pred):
            def make():
                m = base()
                for name, p in m.named_parameters():
                    p.requires_grad_(pred(name))
                return m
            return make

        def lora(targets):
            return lambda: get_peft_model(base(), LoraConfig(r=8, lora_alpha=16, target_modules=targets, lora_dropout=0.0))

        print("\nFirst-order (Adam), held-out accuracy (100 examples) every 10 steps:\n")
        print("| set | lr | elements | accuracy |\n|---|---|---|---|")
        for lr in (1e-3, 1e-2):
            for name, make in [
                ("the norms", only(lambda n: "norm" in n)),
                ("block matrices", only(lambda n: "proj" in n)),
                ("LoRA r 8, q and v", lora(["q_proj", "v_proj"])),
                ("LoRA r 8, all 7", lora(ALL7)),
            ]:
                adam(name, make, train, held, a.adam, lr)


if __name__ == "__main__":
    main()
