"""Loads folders saved by the engine with the real `transformers` and compares
their log-probabilities with the engine's (tests/reference/save_for_transformers.mjs).

    python3 tests/reference/check_saved_with_transformers.py DIR [--atol 1e-4]

Float32 on the CPU, eager attention. Exit 1 above the tolerance; prints SKIP
and exits 0 where transformers is not installed.
"""
import argparse
import json
import os
import sys

try:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM
except ImportError as e:  # pragma: no cover
    print(f"SKIP: {e}")
    sys.exit(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--atol", type=float, default=1e-4)
    a = ap.parse_args()
    torch.set_num_threads(4)
    manifest = json.load(open(os.path.join(a.dir, "manifest.json")))
    worst_all = 0.0
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    for m in manifest:
        model = AutoModelForCausalLM.from_pretrained(os.path.join(a.dir, m["folder"]), torch_dtype=torch.float32, attn_implementation="eager")
        model.eval()
        mine = []
        with torch.no_grad():
            for s in m["sequences"]:
                logits = model(torch.tensor([s])).logits[0].float()
                lp = torch.log_softmax(logits, dim=-1)
                mine += [float(lp[p - 1, s[p]]) for p in range(1, len(s))]
        worst = max(abs(x - y) for x, y in zip(mine, m["logprobs"]))
        worst_all = max(worst_all, worst)
        print(f"{m['name']:16s} loaded by {type(model).__name__:22s} max |dlogprob| vs engine {worst:.2e}")
    print("PASS" if worst_all <= a.atol else "FAIL", f"(atol {a.atol})")
    sys.exit(0 if worst_all <= a.atol else 1)


if __name__ == "__main__":
    main()
