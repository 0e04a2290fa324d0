"""Tiny models made and run by transformers itself, for tests/native/hf-families.test.ts and
tests/native/families-transformers.test.ts. Needs the venv's torch and transformers
(tests/helpers/python.ts, venvPython).

Reads a JSON list of jobs on stdin and prints a JSON list of results, one per job:

  {"op": "make", "dir": d, "arch": "LlamaForCausalLM", "config": {...}, "seed": n,
   "dtype": "float32", "init": "scaled"}
      The architecture's config class built from `config` (its keyword arguments), a model of
      it with random weights drawn by `init` (below), saved by save_pretrained in `dtype`:
      config.json exactly as transformers writes it. -> {"dir"}

  {"op": "logprobs", "dir": d, "sequences": [[id, ...], ...], "rows": true}
      For float32 and float64 (eager attention, CPU): per sequence, "tokens": log p(s[t] | s[<t])
      for t = 1 .. T-1 from one forward of the sequence, and (unless "rows" is false) "rows": for
      t = 1 .. T-1 the whole row log p(. | s[<t]) (V values) from a forward of s[:t+1], the pass
      the engine runs for it. Each sequence by a freshly loaded model and its prefixes in
      increasing length, so a rotary table that depends on the length (dynamic NTK, longrope) is
      the one of that forward. -> {"float32": {"tokens": [...], "rows": [...]}, "float64": {...}}

  {"op": "saved", "dir": d, "sequences": [...]}
      The folder (saved by Spillway) loaded with AutoModelForCausalLM in float32; fails when
      transformers reports missing or unexpected tensors. -> {"class", "tokens": [...]}

  {"op": "families", "out": d}
      Every case of FAMILIES made (init "fan_in") into d/<name> and run: per case the folder,
      its sequences, the per-token log-probabilities in float32 and float64 (as "logprobs"), and
      how far the readable reference (models.py, float32) is from transformers' logits: max
      |logit difference| against each precision and max |logit|.

Weights (`init`), larger than a real init so that a mistake in any piece moves the outputs far:
  "scaled": as the golden fixtures' (make_fixtures.py) by parameter name: embeddings N(0, 0.5),
      matrices N(0, 0.15), norm weights 1 + N(0, 0.1), biases N(0, 0.05).
  "fan_in": by module: embeddings N(0, 0.5); linear weights N(0, 1.2 / sqrt(in)), biases
      N(0, 0.05); norm weights their init (1, or 0 for a (1 + w) norm) + N(0, 0.1), norm biases
      N(0, 0.05).
"""
import json
import os
import sys

import torch
import transformers
from torch import nn
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import models  # noqa: E402

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


def fan_in_init(model, seed):
    g = torch.Generator().manual_seed(seed)

    def draw(t, std, base=0.0):
        t.copy_(base + std * torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype))

    tied = model.get_output_embeddings() is not None and \
        model.get_output_embeddings().weight is model.get_input_embeddings().weight
    with torch.no_grad():
        for name, m in sorted(model.named_modules()):
            if isinstance(m, nn.Embedding):
                draw(m.weight, 0.5)
            elif isinstance(m, nn.Linear):
                if tied and m is model.get_output_embeddings():
                    continue
                draw(m.weight, 1.2 / m.in_features ** 0.5)
                if m.bias is not None:
                    draw(m.bias, 0.05)
            elif "Norm" in type(m).__name__ and getattr(m, "weight", None) is not None:
                draw(m.weight, 0.1, base=float(m.weight.mean()))
                if getattr(m, "bias", None) is not None:
                    draw(m.bias, 0.05)


INITS = {"scaled": scaled_init, "fan_in": fan_in_init}


def make(job):
    cls = getattr(transformers, job["arch"])
    config = cls.config_class(**job["config"])
    torch.manual_seed(job["seed"])
    model = cls(config).eval()
    INITS[job.get("init", "scaled")](model, job["seed"])
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


@torch.no_grad()
def forward(model, seq, dtype):
    """Logits [T, V] in `dtype` and log p(s[t] | s[<t]) for t = 1 .. T-1."""
    logits = model(torch.tensor([seq])).logits[0].to(dtype)
    lp = torch.log_softmax(logits, dim=-1)
    return logits, [lp[t - 1, seq[t]].item() for t in range(1, len(seq))]


def logprobs(job):
    out = {}
    for dtype in (torch.float32, torch.float64):
        tokens, rows = [], []
        for seq in job["sequences"]:
            if job.get("rows", True):
                model = load(job["dir"], dtype)
                with torch.no_grad():
                    for t in range(1, len(seq)):
                        logits = model(torch.tensor([seq[: t + 1]])).logits[0]
                        rows.append(torch.log_softmax(logits[t - 1].to(dtype), dim=-1).tolist())
            tokens.append(forward(load(job["dir"], dtype), seq, dtype)[1])
        out[str(dtype).replace("torch.", "")] = {"tokens": tokens, "rows": rows}
    return out


def saved(job):
    model = load(job["dir"], torch.float32)
    return {"class": type(model).__name__, "tokens": [forward(model, seq, torch.float32)[1] for seq in job["sequences"]]}


V = 128

# name -> (architecture, config overrides, seed). Sizes stay tiny: the folders are made at test time.
FAMILIES = {
    "gpt_neox": ("GPTNeoXForCausalLM", dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
        max_position_embeddings=64, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                     "partial_rotary_factor": 0.25}), 11),
    "gpt_neox-sequential": ("GPTNeoXForCausalLM", dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
        max_position_embeddings=64, use_parallel_residual=False, attention_bias=False,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.5}), 12),
    "opt-350m": ("OPTForCausalLM", dict(
        hidden_size=64, word_embed_proj_dim=32, ffn_dim=96, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=64, do_layer_norm_before=False), 14),
    "opt-no-final-norm": ("OPTForCausalLM", dict(
        hidden_size=64, ffn_dim=96, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
        _remove_final_layer_norm=True, tie_word_embeddings=False, activation_function="gelu"), 15),
    "olmo2": ("Olmo2ForCausalLM", dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=96, max_position_embeddings=64, rms_norm_eps=1e-6), 13),
    # Soft-caps the scores and logits reach; windows shorter than the sequences; head_dim and
    # query_pre_attn_scalar neither hidden / heads nor each other.
    "gemma2": ("Gemma2ForCausalLM", dict(
        hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=24,
        intermediate_size=96, max_position_embeddings=64, query_pre_attn_scalar=32, sliding_window=5,
        attn_logit_softcapping=3.0, final_logit_softcapping=5.0), 16),
    "gemma3": ("Gemma3ForCausalLM", dict(
        hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1, head_dim=24,
        intermediate_size=96, max_position_embeddings=64, query_pre_attn_scalar=32, sliding_window=5,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"], tie_word_embeddings=False,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}}), 17),
}


def families(job):
    manifest = []
    for name, (arch, overrides, seed) in FAMILIES.items():
        folder = os.path.join(job["out"], name)
        make({"dir": folder, "arch": arch, "config": dict(vocab_size=V, **overrides), "seed": seed, "init": "fan_in"})
        g = torch.Generator().manual_seed(1000 + seed)
        seqs = [torch.randint(0, V, (n,), generator=g).tolist() for n in (7, 11, 16)]
        hf = logprobs({"dir": folder, "sequences": seqs, "rows": False})
        hf32, hf64 = load(folder, torch.float32), load(folder, torch.float64)
        cfg, params = models.load_model(folder)
        entry = {"name": name, "folder": folder, "sequences": seqs, "logprobs32": hf["float32"]["tokens"],
                 "logprobs64": hf["float64"]["tokens"], "ref_logit_diff32": 0.0, "ref_logit_diff64": 0.0,
                 "max_logit": 0.0}
        for s in seqs:
            l32, l64 = forward(hf32, s, torch.float32)[0], forward(hf64, s, torch.float64)[0]
            ref = models.forward(cfg, params, s)
            entry["ref_logit_diff32"] = max(entry["ref_logit_diff32"], float((ref - l32).abs().max()))
            entry["ref_logit_diff64"] = max(entry["ref_logit_diff64"], float((ref.double() - l64).abs().max()))
            entry["max_logit"] = max(entry["max_logit"], float(l64.abs().max()))
        manifest.append(entry)
    return manifest


OPS = {"make": make, "logprobs": logprobs, "saved": saved, "families": families}

print(json.dumps([OPS[job["op"]](job) for job in json.load(sys.stdin)]))
