"""RoPE tables from transformers itself, for tests/native/rope.test.ts.

Reads a JSON list of cases on stdin, each {"rope_parameters": {...}, "head_dim",
"max_position_embeddings", "seq_len"}, and prints a JSON list of
{"inv_freq": [...], "attention_factor": x}: the inverse frequencies and the
cos/sin scale that transformers' own ROPE_INIT_FUNCTIONS (or, for "default",
Phi3RotaryEmbedding.compute_default_rope_parameters, which honours
partial_rotary_factor) give for a Llama config
with those rope parameters at that sequence length. Needs the venv's torch and
transformers (tests/helpers/python.ts, venvPython).
"""
import json
import sys

import transformers
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.phi3.modeling_phi3 import Phi3RotaryEmbedding

transformers.logging.set_verbosity_error()


def table(case):
    head_dim = case["head_dim"]
    heads = 4
    config = LlamaConfig(
        hidden_size=head_dim * heads,
        num_attention_heads=heads,
        head_dim=head_dim,
        max_position_embeddings=case["max_position_embeddings"],
        rope_parameters=dict(case["rope_parameters"]),
    )
    kind = config.rope_parameters["rope_type"]
    if kind == "default":
        inv_freq, factor = Phi3RotaryEmbedding.compute_default_rope_parameters(config)
    else:
        inv_freq, factor = ROPE_INIT_FUNCTIONS[kind](config, "cpu", seq_len=case["seq_len"])
    return {"inv_freq": inv_freq.tolist(), "attention_factor": float(factor), "transformers": transformers.__version__}


print(json.dumps([table(c) for c in json.load(sys.stdin)]))
