"""Decoding by transformers itself, for tests/native/generate-transformers.test.ts.

Reads one JSON object on stdin and prints one JSON object.

{"greedy": [{"model": dir, "prompts": [[id, ...], ...], "max_new_tokens": n,
             "repetition_penalty": r}, ...]}
    Each prompt alone through AutoModelForCausalLM.generate (float32, eager
    attention, CPU, KV cache, do_sample=False, no end id): the new token ids.

{"sample": [{"logits": [V floats], "context": [id, ...], "temperature": t,
             "top_k": k, "top_p": p, "repetition_penalty": r, "seed": s,
             "step": i, "seq": j}, ...]}
    transformers' own logits processors (RepetitionPenalty, Temperature,
    TopK, TopP, in generate's order) filter the logits; the token is then
    drawn as docs/ENGINE-SPEC.md ("Decoding") says: u from Philox4x32-10
    keyed by the seed with counter (step, seq, "SAMP", 0), the kept tokens'
    softmax weights (float64) summed in id order, the first whose running
    sum exceeds u times their total. The chosen ids.

Needs the venv's torch and transformers (tests/helpers/python.ts, venvPython).
"""
import json
import os
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from noise import philox4x32_10  # noqa: E402

transformers.logging.set_verbosity_error()
torch.set_num_threads(1)


def greedy(job):
    model = AutoModelForCausalLM.from_pretrained(job["model"], dtype=torch.float32, attn_implementation="eager").eval()
    model.generation_config.eos_token_id = None
    out = []
    with torch.no_grad():
        for prompt in job["prompts"]:
            ids = torch.tensor([prompt])
            gen = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=job["max_new_tokens"],
                min_new_tokens=job["max_new_tokens"],
                repetition_penalty=float(job.get("repetition_penalty", 1.0)),
                pad_token_id=0,
                use_cache=True,
            )
            out.append(gen[0, len(prompt):].tolist())
    return out


def uniform(seed, step, seq):
    x = philox4x32_10([[step, seq, 0x53414D50, 0]], (seed & 0xFFFFFFFF, seed >> 32))[0]
    bits = ((int(x[0]) >> 5) << 26) | (int(x[1]) >> 6)
    return bits * 2.0 ** -53


def sample(case):
    scores = torch.tensor([case["logits"]], dtype=torch.float32)
    ids = torch.tensor([case["context"]])
    # JSON numbers come as ints when whole; the processors want floats.
    if case["repetition_penalty"] != 1.0:
        scores = RepetitionPenaltyLogitsProcessor(float(case["repetition_penalty"]))(ids, scores)
    scores = TemperatureLogitsWarper(float(case["temperature"]))(ids, scores)
    if case["top_k"] > 0:
        scores = TopKLogitsWarper(int(case["top_k"]))(ids, scores)
    if case["top_p"] < 1.0:
        scores = TopPLogitsWarper(float(case["top_p"]))(ids, scores)
    l = scores[0].double().numpy()
    kept = np.isfinite(l)
    w = np.where(kept, np.exp(l - l[kept].max()), 0.0)
    target = uniform(case["seed"], case["step"], case["seq"]) * w.sum()
    acc = 0.0
    for i in np.nonzero(kept)[0]:
        acc += w[i]
        if acc > target:
            return int(i)
    return int(np.nonzero(kept)[0][-1])


request = json.load(sys.stdin)
print(json.dumps({
    "greedy": [greedy(job) for job in request.get("greedy", [])],
    "sample": [sample(case) for case in request.get("sample", [])],
}))
