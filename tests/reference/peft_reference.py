"""The adapters of tests/native/adapters.test.ts against the real peft and transformers.

Reads a JSON list of jobs on stdin and prints their results as one JSON list. Each job is one of:

- {"kind": "logprobs", "model": dir, "adapter": dir or null, "sequences": [[token, ...], ...]}:
  the model loaded by AutoModelForCausalLM (float32, eager attention, CPU), with the peft adapter
  folder loaded over it by PeftModel.from_pretrained when given; per sequence the list of
  log p(token t | tokens < t) for t = 1 .. T-1.
- {"kind": "lora_step", "model": dir, "rank", "alpha", "targets": [module names], "lr", "eps",
  "adapter": {engine name: [values]}, "noise": {engine name: [values]}, "batch": [{"tokens",
  "span": [start, end]}]}: one MeZO step of a LoRA on the model as peft builds it (get_peft_model
  with LoraConfig), q = 1: the loss with each adapter tensor at +eps z and at -eps z (mean over the
  batch of each example's mean NLL over its span), the projected gradient (L+ - L-) / (2 eps) and
  the adapter after theta -= lr * g * z. Engine names are peft's saved names
  (base_model.model.<module>.lora_A.weight); the live module holds them under the adapter "default".
- {"kind": "tokens_step", "model": dir, "modules": [module names], "rows": [token ids], "lr", "eps",
  "adapter": {engine name: [values]}, "noise": {engine name: [values]}, "batch": [...]}: the same step
  for trainable tokens on the model peft builds (get_peft_model with TrainableTokensConfig): the
  engine's base_model.model.<module>.token_rows_delta is added to the module's rows, which peft
  holds whole (its trainable_tokens_delta is the rows themselves); "updated" is the engine's delta.
- {"kind": "lu", "matrix": [[...], ...], "rank": r}: torch.linalg.lu (partial pivoting) of the
  matrix in float64: P L's first r columns, D_r = the first r entries of diag(U) and U_r = the first
  r rows of U divided by D_r, for the LoLDU factors.
Needs the venv's torch, transformers and peft (tests/helpers/python.ts, venvPython).
"""
import json
import sys

import torch
import transformers
from peft import LoraConfig, PeftModel, TrainableTokensConfig, get_peft_model
from transformers import AutoModelForCausalLM

transformers.logging.set_verbosity_error()
torch.set_num_threads(1)


def load(model):
    return AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32, attn_implementation="eager").eval()


def token_logprobs(model, seq):
    logp = torch.log_softmax(model(torch.tensor([seq])).logits[0].double(), dim=-1)
    return [logp[t - 1, seq[t]].item() for t in range(1, len(seq))]


def logprobs(job):
    model = load(job["model"])
    if job.get("adapter"):
        model = PeftModel.from_pretrained(model, job["adapter"]).eval()
    with torch.no_grad():
        return [token_logprobs(model, seq) for seq in job["sequences"]]


def live_name(name):
    # base_model.model.X.lora_A.weight -> base_model.model.X.lora_A.default.weight
    head, _, tail = name.rpartition(".")
    return f"{head}.default.{tail}"


def mezo_step(job, model, trained, noise, put):
    """One MeZO step (q = 1) of `trained` ({engine name: values}): put(name, values) sets a tensor in
    the live model; the loss is the batch mean of each example's mean NLL over its span."""
    eps = torch.tensor(job["eps"], dtype=torch.float32).item()

    def loss(sign):
        with torch.no_grad():
            for n, t in trained.items():
                put(n, t + (sign * eps) * noise[n])
            total = 0.0
            for ex in job["batch"]:
                lp = token_logprobs(model, ex["tokens"])
                s, e = ex["span"]
                total += -sum(lp[s - 1 : e - 1]) / (e - s)
            return total / len(job["batch"])

    lp, lm = loss(1.0), loss(-1.0)
    g = (lp - lm) / (2 * eps)
    coef = job["lr"] * g
    return {
        "loss_plus": lp,
        "loss_minus": lm,
        "projected_grad": g,
        "updated": {n: (t.double() - coef * noise[n].double()).flatten().tolist() for n, t in trained.items()},
    }


def lora_step(job):
    config = LoraConfig(r=job["rank"], lora_alpha=job["alpha"], target_modules=job["targets"], lora_dropout=0.0, bias="none")
    model = get_peft_model(load(job["model"]), config).eval()
    params = dict(model.named_parameters())
    adapter = {n: torch.tensor(v, dtype=torch.float32).reshape(params[live_name(n)].shape) for n, v in job["adapter"].items()}
    noise = {n: torch.tensor(v, dtype=torch.float32).reshape(adapter[n].shape) for n, v in job["noise"].items()}
    return mezo_step(job, model, adapter, noise, lambda n, v: params[live_name(n)].copy_(v))


def tokens_step(job):
    base = load(job["model"])
    rows = job["rows"]
    start = {m: base.get_submodule(m).weight.detach()[rows].clone() for m in job["modules"]}
    model = get_peft_model(base, TrainableTokensConfig(target_modules=job["modules"], token_indices=rows)).eval()
    params = dict(model.named_parameters())
    module = {n: n[len("base_model.model."):-len(".token_rows_delta")] for n in job["adapter"]}
    delta = {n: torch.tensor(v, dtype=torch.float32).reshape(start[module[n]].shape) for n, v in job["adapter"].items()}
    noise = {n: torch.tensor(v, dtype=torch.float32).reshape(delta[n].shape) for n, v in job["noise"].items()}
    # peft holds the rows themselves: the base's rows plus the engine's delta.
    return mezo_step(job, model, delta, noise, lambda n, v: params[f"base_model.model.{module[n]}.trainable_tokens_delta.default"].copy_(start[module[n]] + v))


def lu(job):
    w = torch.tensor(job["matrix"], dtype=torch.float64)
    r = job["rank"]
    p, l, u = torch.linalg.lu(w)
    d = torch.diagonal(u)[:r]
    return {"pl": (p @ l)[:, :r].tolist(), "d": d.tolist(), "u": (u[:r] / d[:, None]).tolist()}


KINDS = {"logprobs": logprobs, "lora_step": lora_step, "tokens_step": tokens_step, "lu": lu}
print(json.dumps([KINDS[job["kind"]](job) for job in json.load(sys.stdin)]))
