"""Tiny models made and run by transformers itself, for tests/native/hf-families.test.ts.

Reads a JSON list of jobs on stdin and prints a JSON list of results, one per job:

  {"op": "make", "dir": d, "arch": "LlamaForCausalLM", "config": {...}, "seed": n, "dtype": "float32"}
      The architecture's config class built from `config` (its keyword arguments), a model of
      it with random weights scaled as the golden fixtures' (embeddings N(0, 0.5), matrices
      N(0, 0.15), norm weights 1 + N(0, 0.1), biases N(0, 0.05)) so that a mistake shows, saved
      by save_pretrained in `dtype`: config.json exactly as transformers writes it. -> {"dir"}

  {"op": "logprobs", "dir": d, "sequences": [[id, ...], ...]}
      For float32 and float64 (eager attention, CPU): per sequence, "tokens": log p(s[t] | s[<t])
      for t = 1 .. T-1 from one forward of the sequence, and "rows": for t = 1 .. T-1 the whole
      row log p(. | s[<t]) (V values) from a forward of s[:t+1], the pass the engine runs for it.
      Each sequence by a freshly loaded model and its prefixes in increasing length, so a rotary
      table that depends on the length (dynamic NTK, longrope) is the one of that forward.
      -> {"float32": {"tokens": [...], "rows": [...]}, "float64": {...}}

  {"op": "saved", "dir": d, "sequences": [...]}
      The folder (saved by Spillway) loaded with AutoModelForCausalLM in float32; fails when
      transformers reports missing or unexpected tensors. -> {"class", "tokens": [...]}

Needs the venv's torch and transformers (tests/helpers/python.ts, venvPython).
"""
import json
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM

transformers.logging.set_verbosity_error()
torch.set_num_threads(1)


def scaled_init(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            elif "embed" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))


def make(job):
    cls = getattr(transformers, job["arch"])
    config = cls.config_class(**job["config"])
    torch.manual_seed(job["seed"])
    model = cls(config).eval()
    scaled_init(model, job["seed"])
    model.to(getattr(torch, job.get("dtype", "float32"))).save_pretrained(job["dir"])
    return {"dir": job["dir"]}


def load(d, dtype):
    model, info = AutoModelForCausalLM.from_pretrained(
        d, dtype=dtype, attn_implementation="eager", output_loading_info=True
    )
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if bad:
        raise SystemExit(f"{d}: transformers reports {bad}")
    return model.eval()


def logprobs(job):
    out = {}
    for dtype in (torch.float32, torch.float64):
        tokens, rows = [], []
        for seq in job["sequences"]:
            model = load(job["dir"], dtype)
            with torch.no_grad():
                for t in range(1, len(seq)):
                    logits = model(torch.tensor([seq[: t + 1]])).logits[0]
                    rows.append(torch.log_softmax(logits[t - 1].to(dtype), dim=-1).tolist())
                model = load(job["dir"], dtype)
                lp = torch.log_softmax(model(torch.tensor([seq])).logits[0].to(dtype), dim=-1)
            tokens.append([lp[t - 1, seq[t]].item() for t in range(1, len(seq))])
        out[str(dtype).replace("torch.", "")] = {"tokens": tokens, "rows": rows}
    return out


def saved(job):
    model = load(job["dir"], torch.float32)
    tokens = []
    with torch.no_grad():
        for seq in job["sequences"]:
            lp = torch.log_softmax(model(torch.tensor([seq])).logits[0].float(), dim=-1)
            tokens.append([lp[t - 1, seq[t]].item() for t in range(1, len(seq))])
    return {"class": type(model).__name__, "tokens": tokens}


OPS = {"make": make, "logprobs": logprobs, "saved": saved}

print(json.dumps([OPS[job["op"]](job) for job in json.load(sys.stdin)]))
