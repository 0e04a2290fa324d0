"""Tiny models of each family made and run by transformers itself, for
tests/native/families-transformers.test.ts. Needs the venv (torch 2.13, transformers 5).

    python hf_families.py make OUT_DIR [NAME ...]   -> JSON manifest on stdout
    python hf_families.py score < jobs.json         -> JSON list of log-prob lists

make: for each case of CASES (or the named ones), builds the model from its config with
AutoConfig.for_model, draws every weight from a seeded generator (larger than a real init,
as the fixtures of make_fixtures.py, so that a mistake in any piece moves the outputs far),
saves it with save_pretrained into OUT_DIR/<name> (config.json exactly as transformers writes
it), loads it back in float32 and in float64 (eager attention, CPU) and runs each sequence on
its own. Per case: the folder, the sequences, the per-token log-probabilities log p(t_i | t_<i)
for i >= 1 in float32 and float64, and how far the readable reference (models.py, float32) is
from transformers: max |logit difference| against each precision and max |logit|.

score: jobs [{"folder": DIR, "sequences": [[token, ...], ...]}] on stdin; for each, the
float32 per-token log-probabilities transformers computes with the folder as saved (a model
fine-tuned and saved by Spillway).
"""
import json
import os
import sys

import torch
import transformers
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import models  # noqa: E402

transformers.logging.set_verbosity_error()
torch.set_num_threads(1)

V = 128

# name -> (model_type, config overrides, seed). Sizes stay tiny: the folders are made at test time.
CASES = {
    "gpt_neox": ("gpt_neox", dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
        max_position_embeddings=64, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                     "partial_rotary_factor": 0.25}), 11),
    "gpt_neox-sequential": ("gpt_neox", dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
        max_position_embeddings=64, use_parallel_residual=False, attention_bias=False,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.5}), 12),
    "opt-350m": ("opt", dict(
        hidden_size=64, word_embed_proj_dim=32, ffn_dim=96, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=64, do_layer_norm_before=False), 14),
    "opt-no-final-norm": ("opt", dict(
        hidden_size=64, ffn_dim=96, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
        _remove_final_layer_norm=True, tie_word_embeddings=False, activation_function="gelu"), 15),
    "olmo2": ("olmo2", dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=96, max_position_embeddings=64, rms_norm_eps=1e-6), 13),
    # Soft-caps the scores and logits reach; windows shorter than the sequences; head_dim and
    # query_pre_attn_scalar neither hidden / heads nor each other.
    "gemma2": ("gemma2", dict(
        hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=24,
        intermediate_size=96, max_position_embeddings=64, query_pre_attn_scalar=32, sliding_window=5,
        attn_logit_softcapping=3.0, final_logit_softcapping=5.0), 16),
    "gemma3": ("gemma3_text", dict(
        hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1, head_dim=24,
        intermediate_size=96, max_position_embeddings=64, query_pre_attn_scalar=32, sliding_window=5,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"], tie_word_embeddings=False,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}}), 17),
}


def randomize(model, seed):
    """Embeddings N(0, 0.5); linear weights N(0, 1.2 / sqrt(in)), biases N(0, 0.05); norm
    weights their init (1, or 0 for a (1 + w) norm) + N(0, 0.1), norm biases N(0, 0.05)."""
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


def sequences(seed):
    g = torch.Generator().manual_seed(1000 + seed)
    return [torch.randint(0, V, (n,), generator=g).tolist() for n in (7, 11, 16)]


def load(folder, dtype):
    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="eager").eval()


@torch.no_grad()
def run(model, seq):
    """Logits [T, V] and log p(t_i | t_<i) for i >= 1, in the model's dtype."""
    logits = model(torch.tensor([seq])).logits[0]
    lp = torch.log_softmax(logits, dim=-1)
    return logits, [float(lp[i - 1, seq[i]]) for i in range(1, len(seq))]


def make(out, names):
    manifest = []
    for name in names:
        model_type, overrides, seed = CASES[name]
        config = AutoConfig.for_model(model_type, vocab_size=V, **overrides)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
        randomize(model, seed)
        folder = os.path.join(out, name)
        model.save_pretrained(folder)
        hf32, hf64 = load(folder, torch.float32), load(folder, torch.float64)
        cfg, params = models.load_model(folder)
        seqs = sequences(seed)
        entry = {"name": name, "folder": folder, "sequences": seqs, "logprobs32": [], "logprobs64": [],
                 "ref_logit_diff32": 0.0, "ref_logit_diff64": 0.0, "max_logit": 0.0}
        for s in seqs:
            l32, lp32 = run(hf32, s)
            l64, lp64 = run(hf64, s)
            ref = models.forward(cfg, params, s)
            entry["logprobs32"].append(lp32)
            entry["logprobs64"].append(lp64)
            entry["ref_logit_diff32"] = max(entry["ref_logit_diff32"], float((ref - l32).abs().max()))
            entry["ref_logit_diff64"] = max(entry["ref_logit_diff64"], float((ref.double() - l64).abs().max()))
            entry["max_logit"] = max(entry["max_logit"], float(l64.abs().max()))
        manifest.append(entry)
    return manifest


def score(jobs):
    out = []
    for job in jobs:
        model = load(job["folder"], torch.float32)
        out.append([run(model, s)[1] for s in job["sequences"]])
    return out


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "make":
        names = sys.argv[3:] or list(CASES)
        unknown = [n for n in names if n not in CASES]
        if unknown:
            sys.exit(f"unknown cases {unknown}; known: {list(CASES)}")
        print(json.dumps(make(sys.argv[2], names)))
    elif len(sys.argv) == 2 and sys.argv[1] == "score":
        print(json.dumps(score(json.load(sys.stdin))))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
