"""Token log-probabilities from transformers itself for a fixture model run with
other RoPE parameters, for tests/native/rope.test.ts.

Reads a JSON list of jobs {"model": dir, "rope_parameters": {...}, "sequences":
[[token, ...], ...]} on stdin; for each, loads the model with
AutoModelForCausalLM (float32, eager attention, CPU) with its config's
rope_parameters replaced, and gives per sequence the list of log p(token t |
tokens < t) for t = 1 .. T-1, each sequence run on its own by a freshly loaded
model (transformers' dynamic NTK table otherwise keeps what an earlier, longer
sequence grew it to). Prints the jobs' results as one JSON list.
Needs the venv's torch and transformers (tests/helpers/python.ts, venvPython).
"""
import json
import sys

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

transformers.logging.set_verbosity_error()
torch.set_num_threads(1)

def logprobs(job):
    config = AutoConfig.from_pretrained(job["model"], rope_parameters=job["rope_parameters"])
    out = []
    with torch.no_grad():
        for seq in job["sequences"]:
            model = AutoModelForCausalLM.from_pretrained(
                job["model"], config=config, dtype=torch.float32, attn_implementation="eager"
            ).eval()
            logp = torch.log_softmax(model(torch.tensor([seq])).logits[0].float(), dim=-1)
            out.append([logp[t - 1, seq[t]].item() for t in range(1, len(seq))])
    return out


print(json.dumps([logprobs(job) for job in json.load(sys.stdin)]))
