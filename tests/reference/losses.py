"""The losses of docs/ENGINE-SPEC.md ("Losses").

Example forms (same as the golden JSON "examples.batch" entries):
  {"kind": "lm" | "completion", "tokens": [ids], "span": [s, e]}
  {"kind": "classify", "candidates": [{"tokens": [ids], "span": [s, e]}, ...], "label": i}
  {"kind": "chat", "sequences": [{"tokens": [ids], "spans": [[s, e], ...]}, ...]}
    (the assistant replies of a conversation: the mean NLL over every span of every sequence)

Token p in [s, e) is predicted from the logits at position p - 1 (s >= 1).
Log-softmax is taken in float32 (torch.log_softmax subtracts the row max);
the span mean / logsumexp are then accumulated in float64.
"""
import math

import torch

try:
    from . import models
except ImportError:  # pragma: no cover
    import models


def span_logprobs(logits, tokens, span):
    s, e = span
    if not (1 <= s < e <= len(tokens)):
        raise ValueError(f"bad span {span} for {len(tokens)} tokens")
    lp = torch.log_softmax(logits[s - 1:e - 1].to(torch.float32), dim=-1)
    tgt = torch.as_tensor(tokens[s:e], dtype=torch.long)
    return lp.gather(1, tgt[:, None])[:, 0].double()


def example_loss(logits_fn, ex):
    """logits_fn(tokens) -> float32 logits [T, V]. Returns (loss, correct or None, scores or None)."""
    kind = ex["kind"]
    if kind in ("lm", "completion"):
        lp = span_logprobs(logits_fn(ex["tokens"]), ex["tokens"], ex["span"])
        return float(-lp.mean()), None, None
    if kind == "chat":
        lp = torch.cat([span_logprobs(logits_fn(q["tokens"]), q["tokens"], span) for q in ex["sequences"] for span in q["spans"]])
        return float(-lp.mean()), None, None
    if kind == "classify":
        scores = []
        for c in ex["candidates"]:
            lp = span_logprobs(logits_fn(c["tokens"]), c["tokens"], c["span"])
            scores.append(float(lp.mean()))
        m = max(scores)
        lse = m + math.log(sum(math.exp(x - m) for x in scores))
        label = ex["label"]
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))  # first index on ties
        return lse - scores[label], best == label, scores
    raise ValueError(f"unknown loss kind {kind!r}")


def batch_loss(cfg, params, batch, detail=False):
    cache = {}

    def logits_fn(tokens):
        key = tuple(tokens)
        if key not in cache:
            cache[key] = models.forward(cfg, params, tokens)
        return cache[key]

    per = [example_loss(logits_fn, ex) for ex in batch]
    total = sum(p[0] for p in per) / len(per)
    return (total, per) if detail else total
