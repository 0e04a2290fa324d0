"""Generate the tiny model fixtures and golden outputs.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 tests/reference/make_fixtures.py [NAME ...]

With names, only those models (and their MeZO steps) are written; the others stay as they are.
Deterministic: weights come from numpy RandomState seeded per model (seeds in
MODELS below), sequences/examples from RandomState(FIXTURE_SEED + k) (k below),
torch runs on CPU with 2 threads; rerunning on one machine rewrites the same bytes (another
machine's BLAS may move the goldens' last digits, ~4e-6 in the logits: write only new models).

Writes
  tests/fixtures/models/<name>/config.json + model.safetensors
        (llama-tiny-sharded: model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json)
  tests/fixtures/golden/<name>.json                      logits + losses (schema: README.md)
  tests/fixtures/golden/mezo-<name>.json / .safetensors  one MeZO step

Weights are deliberately larger than a real init (embeddings std 0.5, matrices
std 0.15, norm weights 1 +/- 0.1, biases std 0.05) so logits are O(1) and
attention is far from uniform: mistakes in masks, RoPE, scaling or layouts
move the logits by far more than the comparison tolerance.
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import losses  # noqa: E402
import mezo  # noqa: E402
import models  # noqa: E402
import noise  # noqa: E402
import st  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
MODELS_DIR = os.path.join(ROOT, "tests", "fixtures", "models")
GOLDEN_DIR = os.path.join(ROOT, "tests", "fixtures", "golden")
FIXTURE_SEED = 20240601
TRANSFORMERS_VERSION = "4.46.0"  # recorded in config.json as HF does; informational only

V, C, L, H, P = 128, 32, 2, 4, 64
DTYPES = {"F32": (torch.float32, "float32"), "F16": (torch.float16, "float16"),
          "BF16": (torch.bfloat16, "bfloat16")}


def f32(x):
    """Shortest decimal that round-trips to the same float32."""
    return float(repr(np.float32(x)))


# --------------------------------------------------------------------------- configs

def cfg_opt():
    return {
        "_remove_final_layer_norm": False, "activation_dropout": 0.0, "activation_function": "relu",
        "architectures": ["OPTForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 2,
        "do_layer_norm_before": True, "dropout": 0.1, "enable_bias": True, "eos_token_id": 2,
        "ffn_dim": 64, "hidden_size": C, "init_std": 0.02, "layer_norm_elementwise_affine": True,
        "layerdrop": 0.0, "max_position_embeddings": P, "model_type": "opt", "num_attention_heads": H,
        "num_hidden_layers": L, "pad_token_id": 1, "prefix": "</s>", "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True, "vocab_size": V,
        "word_embed_proj_dim": C,
    }


def cfg_opt350m():
    # facebook/opt-350m's shape: post-LayerNorm blocks, no final norm, embeddings narrower than
    # the model (project_in / project_out).
    return {**cfg_opt(), "do_layer_norm_before": False, "word_embed_proj_dim": C // 2, "torch_dtype": "float16"}


def cfg_gpt2():
    return {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
        "bos_token_id": V - 1, "embd_pdrop": 0.1, "eos_token_id": V - 1, "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": P, "n_embd": C, "n_head": H,
        "n_inner": None, "n_layer": L, "n_positions": P, "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.1, "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True,
        "summary_activation": None, "summary_first_dropout": 0.1, "summary_proj_to_labels": True,
        "summary_type": "cls_index", "summary_use_proj": True, "torch_dtype": "float16",
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True, "vocab_size": V,
    }


def cfg_llama():
    return {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 1, "eos_token_id": 2, "head_dim": 8, "hidden_act": "silu", "hidden_size": C,
        "initializer_range": 0.02, "intermediate_size": 64, "max_position_embeddings": P,
        "mlp_bias": False, "model_type": "llama", "num_attention_heads": H, "num_hidden_layers": L,
        "num_key_value_heads": 2, "pretraining_tp": 1, "rms_norm_eps": 1e-06, "rope_scaling": None,
        "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True, "vocab_size": V,
    }


def cfg_mistral():
    return {
        "architectures": ["MistralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
        "eos_token_id": 2, "head_dim": 8, "hidden_act": "silu", "hidden_size": C,
        "initializer_range": 0.02, "intermediate_size": 64, "max_position_embeddings": P,
        "model_type": "mistral", "num_attention_heads": H, "num_hidden_layers": L,
        "num_key_value_heads": 1, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True, "vocab_size": V,
    }


def cfg_gpt_neox(parallel=True):
    # Pythia's config.json as the Hub has it (transformers 4 keys: rotary_pct, rotary_emb_base).
    return {
        "architectures": ["GPTNeoXForCausalLM"], "bos_token_id": 0, "eos_token_id": 0,
        "hidden_act": "gelu", "hidden_size": C, "initializer_range": 0.02, "intermediate_size": 64,
        "layer_norm_eps": 1e-05, "max_position_embeddings": P, "model_type": "gpt_neox",
        "num_attention_heads": H, "num_hidden_layers": L, "rotary_emb_base": 10000, "rotary_pct": 0.5,
        "tie_word_embeddings": False, "torch_dtype": "float16" if parallel else "float32",
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True,
        "use_parallel_residual": parallel, "vocab_size": V,
    }


def cfg_olmo2():
    return {
        "architectures": ["Olmo2ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": None, "eos_token_id": 100, "hidden_act": "silu", "hidden_size": C,
        "initializer_range": 0.02, "intermediate_size": 64, "max_position_embeddings": P,
        "model_type": "olmo2", "num_attention_heads": H, "num_hidden_layers": L,
        "num_key_value_heads": 2, "pad_token_id": 1, "rms_norm_eps": 1e-06, "rope_scaling": None,
        "rope_theta": 500000, "tie_word_embeddings": False, "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True, "vocab_size": V,
    }


def cfg_gemma2():
    """Gemma 2 with every Gemma-specific piece set away from what a mistake would give: head_dim 16
    (not hidden / heads), query_pre_attn_scalar 24 (not head_dim), soft-caps the scores and logits
    reach, a window of 4 on layer 0 (layer 1 global)."""
    return {
        "architectures": ["Gemma2ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "attn_logit_softcapping": 4.0, "bos_token_id": 2, "eos_token_id": 1,
        "final_logit_softcapping": 6.0, "head_dim": 16, "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": C, "initializer_range": 0.02, "intermediate_size": 64,
        "max_position_embeddings": P, "model_type": "gemma2", "num_attention_heads": H,
        "num_hidden_layers": L, "num_key_value_heads": 2, "pad_token_id": 0,
        "query_pre_attn_scalar": 24, "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "sliding_window": 4,
        "tie_word_embeddings": True, "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True, "vocab_size": V,
    }


def cfg_gemma3():
    """Gemma 3 (text) as transformers 4 wrote it: rope_theta for the global layers,
    rope_local_base_freq for the local ones, sliding_window_pattern instead of layer_types (2:
    layer 0 local with a window of 4, layer 1 global); per-head q/k norms; no soft-caps."""
    return {
        "architectures": ["Gemma3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "attn_logit_softcapping": None, "bos_token_id": 2, "eos_token_id": 1,
        "final_logit_softcapping": None, "head_dim": 16, "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": C, "initializer_range": 0.02, "intermediate_size": 64,
        "max_position_embeddings": P, "model_type": "gemma3_text", "num_attention_heads": H,
        "num_hidden_layers": L, "num_key_value_heads": 2, "pad_token_id": 0,
        "query_pre_attn_scalar": 24, "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000.0,
        "rope_scaling": None, "rope_theta": 1000000.0, "sliding_window": 4, "sliding_window_pattern": 2,
        "tie_word_embeddings": False, "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True, "vocab_size": V,
    }


def cfg_qwen2():
    return {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 0,
        "eos_token_id": 1, "head_dim": 16, "hidden_act": "silu", "hidden_size": C,
        "initializer_range": 0.02, "intermediate_size": 64, "max_position_embeddings": P,
        "max_window_layers": L, "model_type": "qwen2", "num_attention_heads": H,
        "num_hidden_layers": L, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_scaling": None,
        "rope_theta": 1000000.0, "sliding_window": 4, "tie_word_embeddings": True,
        "torch_dtype": "float32", "transformers_version": TRANSFORMERS_VERSION, "use_cache": True,
        "use_sliding_window": False, "vocab_size": V,
    }


def cfg_qwen2_window():
    """Qwen2 with its window on the layers from max_window_layers on: layer 0 full, layer 1 sliding."""
    c = cfg_qwen2()
    c.update({"use_sliding_window": True, "max_window_layers": 1, "sliding_window": 3,
              "tie_word_embeddings": False, "rope_theta": 10000.0})
    del c["head_dim"]
    return c


def cfg_ministral():
    """Ministral: the window on the layers layer_types names (here the second)."""
    return {
        "architectures": ["MinistralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
        "eos_token_id": 2, "head_dim": 8, "hidden_act": "silu", "hidden_size": C,
        "initializer_range": 0.02, "intermediate_size": 64,
        "layer_types": ["full_attention", "sliding_attention"], "max_position_embeddings": P,
        "model_type": "ministral", "num_attention_heads": H, "num_hidden_layers": L,
        "num_key_value_heads": 2, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 3,
        "tie_word_embeddings": False, "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True, "vocab_size": V,
    }


# --------------------------------------------------------------------------- weights

class Gen:
    def __init__(self, seed):
        self.rs = np.random.RandomState(seed)
        self.out = {}

    def _put(self, name, a):
        self.out[name] = torch.from_numpy(np.asarray(a, dtype=np.float32))

    def emb(self, name, shape):
        self._put(name, self.rs.normal(0.0, 0.5, shape))

    def mat(self, name, shape):
        self._put(name, self.rs.normal(0.0, 0.15, shape))

    def bias(self, name, n):
        self._put(name, self.rs.normal(0.0, 0.05, (n,)))

    def norm(self, name, n, bias=True):
        self._put(name + ".weight", 1.0 + self.rs.normal(0.0, 0.1, (n,)))
        if bias:
            self.bias(name + ".bias", n)


def weights_opt(cfg, seed):
    g = Gen(seed)
    F_ = cfg["ffn_dim"]
    E = cfg["word_embed_proj_dim"]
    p = "model.decoder."
    g.emb(p + "embed_tokens.weight", (V, E))
    if E != C:
        g.mat(p + "project_in.weight", (C, E))
        g.mat(p + "project_out.weight", (E, C))
    g.emb(p + "embed_positions.weight", (P + 2, C))
    for l in range(L):
        lp = f"{p}layers.{l}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            g.mat(lp + f"self_attn.{proj}.weight", (C, C))
            g.bias(lp + f"self_attn.{proj}.bias", C)
        g.norm(lp + "self_attn_layer_norm", C)
        g.mat(lp + "fc1.weight", (F_, C))
        g.bias(lp + "fc1.bias", F_)
        g.mat(lp + "fc2.weight", (C, F_))
        g.bias(lp + "fc2.bias", C)
        g.norm(lp + "final_layer_norm", C)
    if cfg["do_layer_norm_before"]:
        g.norm(p + "final_layer_norm", C)
    return g.out


def weights_gpt2(cfg, seed):
    g = Gen(seed)
    inner = cfg["n_inner"] or 4 * C
    p = "transformer."
    g.emb(p + "wte.weight", (V, C))
    g.emb(p + "wpe.weight", (P, C))
    for l in range(L):
        lp = f"{p}h.{l}."
        g.norm(lp + "ln_1", C)
        g.mat(lp + "attn.c_attn.weight", (C, 3 * C))     # Conv1D: [in, out]
        g.bias(lp + "attn.c_attn.bias", 3 * C)
        g.mat(lp + "attn.c_proj.weight", (C, C))
        g.bias(lp + "attn.c_proj.bias", C)
        g.norm(lp + "ln_2", C)
        g.mat(lp + "mlp.c_fc.weight", (C, inner))
        g.bias(lp + "mlp.c_fc.bias", inner)
        g.mat(lp + "mlp.c_proj.weight", (inner, C))
        g.bias(lp + "mlp.c_proj.bias", C)
    g.norm(p + "ln_f", C)
    return g.out


def weights_llama(cfg, seed, qkv_bias=False):
    g = Gen(seed)
    D = models.head_dim(cfg)
    KV = cfg["num_key_value_heads"]
    I = cfg["intermediate_size"]
    g.emb("model.embed_tokens.weight", (V, C))
    for l in range(L):
        lp = f"model.layers.{l}."
        g.norm(lp + "input_layernorm", C, bias=False)
        g.mat(lp + "self_attn.q_proj.weight", (H * D, C))
        g.mat(lp + "self_attn.k_proj.weight", (KV * D, C))
        g.mat(lp + "self_attn.v_proj.weight", (KV * D, C))
        if qkv_bias:
            g.bias(lp + "self_attn.q_proj.bias", H * D)
            g.bias(lp + "self_attn.k_proj.bias", KV * D)
            g.bias(lp + "self_attn.v_proj.bias", KV * D)
        g.mat(lp + "self_attn.o_proj.weight", (C, H * D))
        g.norm(lp + "post_attention_layernorm", C, bias=False)
        g.mat(lp + "mlp.gate_proj.weight", (I, C))
        g.mat(lp + "mlp.up_proj.weight", (I, C))
        g.mat(lp + "mlp.down_proj.weight", (C, I))
    g.norm("model.norm", C, bias=False)
    if not cfg.get("tie_word_embeddings", True):
        g.mat("lm_head.weight", (V, C))
    return g.out


def weights_gpt_neox(cfg, seed):
    g = Gen(seed)
    I = cfg["intermediate_size"]
    R, theta = models.neox_rope(cfg)
    p = "gpt_neox."
    g.emb(p + "embed_in.weight", (V, C))
    for l in range(L):
        lp = f"{p}layers.{l}."
        g.norm(lp + "input_layernorm", C)
        g.mat(lp + "attention.query_key_value.weight", (3 * C, C))   # per head: q, k, v rows
        g.bias(lp + "attention.query_key_value.bias", 3 * C)
        g.mat(lp + "attention.dense.weight", (C, C))
        g.bias(lp + "attention.dense.bias", C)
        g.norm(lp + "post_attention_layernorm", C)
        g.mat(lp + "mlp.dense_h_to_4h.weight", (I, C))
        g.bias(lp + "mlp.dense_h_to_4h.bias", I)
        g.mat(lp + "mlp.dense_4h_to_h.weight", (C, I))
        g.bias(lp + "mlp.dense_4h_to_h.bias", C)
        # Older Pythia files carry the rotary table as a buffer: not a weight, never trained.
        g._put(lp + "attention.rotary_emb.inv_freq",
               1.0 / (theta ** (np.arange(0, R, 2, dtype=np.float32) / R)))
    g.norm(p + "final_layer_norm", C)
    g.mat("embed_out.weight", (V, C))
    return g.out


def weights_olmo2(cfg, seed):
    g = Gen(seed)
    D = C // H
    KV = cfg["num_key_value_heads"]
    I = cfg["intermediate_size"]
    g.emb("model.embed_tokens.weight", (V, C))
    for l in range(L):
        lp = f"model.layers.{l}."
        g.mat(lp + "self_attn.q_proj.weight", (H * D, C))
        g.mat(lp + "self_attn.k_proj.weight", (KV * D, C))
        g.mat(lp + "self_attn.v_proj.weight", (KV * D, C))
        g.norm(lp + "self_attn.q_norm", H * D, bias=False)      # over the whole projection width
        g.norm(lp + "self_attn.k_norm", KV * D, bias=False)
        g.mat(lp + "self_attn.o_proj.weight", (C, H * D))
        g.norm(lp + "post_attention_layernorm", C, bias=False)
        g.mat(lp + "mlp.gate_proj.weight", (I, C))
        g.mat(lp + "mlp.up_proj.weight", (I, C))
        g.mat(lp + "mlp.down_proj.weight", (C, I))
        g.norm(lp + "post_feedforward_layernorm", C, bias=False)
    g.norm("model.norm", C, bias=False)
    g.mat("lm_head.weight", (V, C))
    return g.out


def weights_gemma(cfg, seed):
    """Norm weights are offsets from 1 ((1 + w) norms): N(0, 0.2)."""
    g = Gen(seed)
    D = cfg["head_dim"]
    KV = cfg["num_key_value_heads"]
    I = cfg["intermediate_size"]

    def norm(name, n):
        g._put(name + ".weight", g.rs.normal(0.0, 0.2, (n,)))

    g.emb("model.embed_tokens.weight", (V, C))
    for l in range(L):
        lp = f"model.layers.{l}."
        norm(lp + "input_layernorm", C)
        g.mat(lp + "self_attn.q_proj.weight", (H * D, C))
        g.mat(lp + "self_attn.k_proj.weight", (KV * D, C))
        g.mat(lp + "self_attn.v_proj.weight", (KV * D, C))
        if cfg["model_type"] == "gemma3_text":
            norm(lp + "self_attn.q_norm", D)
            norm(lp + "self_attn.k_norm", D)
        g.mat(lp + "self_attn.o_proj.weight", (C, H * D))
        norm(lp + "post_attention_layernorm", C)
        norm(lp + "pre_feedforward_layernorm", C)
        g.mat(lp + "mlp.gate_proj.weight", (I, C))
        g.mat(lp + "mlp.up_proj.weight", (I, C))
        g.mat(lp + "mlp.down_proj.weight", (C, I))
        norm(lp + "post_feedforward_layernorm", C)
    norm("model.norm", C)
    if not cfg["tie_word_embeddings"]:
        g.mat("lm_head.weight", (V, C))
    return g.out


# name, config, weight fn, file dtype, weight seed
MODELS = [
    ("opt-tiny", cfg_opt, weights_opt, "F32", 101),
    ("gpt2-tiny", cfg_gpt2, weights_gpt2, "F16", 102),
    ("llama-tiny", cfg_llama, weights_llama, "F32", 103),
    ("llama-tiny-sharded", cfg_llama, weights_llama, "F32", 103),   # same weights as llama-tiny
    ("mistral-tiny", cfg_mistral, weights_llama, "BF16", 105),
    ("qwen2-tiny", cfg_qwen2, lambda c, s: weights_llama(c, s, qkv_bias=True), "F32", 106),
    ("qwen2-window-tiny", cfg_qwen2_window, lambda c, s: weights_llama(c, s, qkv_bias=True), "F32", 107),
    ("ministral-tiny", cfg_ministral, weights_llama, "F32", 108),
    ("gptneox-tiny", cfg_gpt_neox, weights_gpt_neox, "F16", 201),
    ("gptneox-seq-tiny", lambda: cfg_gpt_neox(parallel=False), weights_gpt_neox, "F32", 202),
    ("olmo2-tiny", cfg_olmo2, weights_olmo2, "F32", 203),
    ("opt350m-tiny", cfg_opt350m, weights_opt, "F16", 204),
    ("gemma2-tiny", cfg_gemma2, weights_gemma, "F32", 205),
    ("gemma3-tiny", cfg_gemma3, weights_gemma, "BF16", 206),
]
# The models above "gptneox-tiny" draw their sequences and examples from RandomState(FIXTURE_SEED
# + their place in the list) (the sharded copy shares llama-tiny's); it and later ones from
# FIXTURE_SEED + their weight seed, so that adding a model changes no other model's fixture.
BY_PLACE = 8

MEZO = [
    # model, run_seed, step, q, lr, eps, wd, kind
    ("opt-tiny", 1234, 0, 1, 1e-3, 1e-3, 0.0, "gaussian"),
    ("llama-tiny", 987654321, 3, 1, 1e-3, 1e-3, 0.0, "gaussian"),
    ("qwen2-tiny", 42, 7, 2, 1e-3, 1e-3, 0.1, "rademacher"),
]


# --------------------------------------------------------------------------- writing

def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=False)
        f.write("\n")


def write_model(name, cfg, weights, dtype_tag):
    d = os.path.join(MODELS_DIR, name)
    os.makedirs(d, exist_ok=True)
    for fn in os.listdir(d):
        os.remove(os.path.join(d, fn))
    tdt = DTYPES[dtype_tag][0]
    tensors = {k: weights[k].to(tdt) for k in sorted(weights)}
    write_json(os.path.join(d, "config.json"), cfg)
    meta = {"format": "pt"}
    if name.endswith("-sharded"):
        names = sorted(tensors)
        first = [n for n in names if n.startswith("model.embed_tokens") or n.startswith("model.layers.0.")]
        second = [n for n in names if n not in first]
        shards = [("model-00001-of-00002.safetensors", first), ("model-00002-of-00002.safetensors", second)]
        weight_map = {}
        total = 0
        for fn, group in shards:
            st.save_file({n: tensors[n] for n in group}, os.path.join(d, fn), meta)
            for n in group:
                weight_map[n] = fn
                total += tensors[n].numel() * tensors[n].element_size()
        write_json(os.path.join(d, "model.safetensors.index.json"),
                   {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    else:
        st.save_file(tensors, os.path.join(d, "model.safetensors"), meta)
    return d


def make_sequences(rs, lengths):
    return [[int(t) for t in rs.randint(3, V, size=n)] for n in lengths]


def make_examples(rs):
    def toks(n):
        return [int(t) for t in rs.randint(3, V, size=n)]

    prompt = toks(6)
    cands = [toks(1), toks(2), toks(1)]
    prompt2 = toks(5)
    cands2 = [toks(2), toks(3)]
    return [
        {"kind": "lm", "tokens": toks(9), "span": [1, 9]},
        {"kind": "completion", "tokens": toks(10), "span": [6, 10]},
        {"kind": "classify", "label": 1,
         "candidates": [{"tokens": prompt + c, "span": [6, 6 + len(c)]} for c in cands]},
        {"kind": "classify", "label": 0,
         "candidates": [{"tokens": prompt2 + c, "span": [5, 5 + len(c)]} for c in cands2]},
    ]


def golden_examples(cfg, params, batch):
    total, per = losses.batch_loss(cfg, params, batch, detail=True)
    out = []
    for loss, correct, scores in per:
        out.append({"loss": loss, "correct": correct,
                    "scores": None if scores is None else scores})
    return {"batch": batch, "per_example": out, "batch_loss": total}


def main():
    torch.set_num_threads(2)
    os.makedirs(GOLDEN_DIR, exist_ok=True)
    only = set(sys.argv[1:])
    unknown = only - {m[0] for m in MODELS}
    if unknown:
        sys.exit(f"unknown fixture models: {sorted(unknown)}")
    loaded = {}
    for mi, (name, cfg_fn, w_fn, dtag, wseed) in enumerate(MODELS):
        if only and name not in only:
            continue
        cfg = cfg_fn()
        weights = w_fn(cfg, wseed)
        d = write_model(name, cfg, weights, dtag)
        cfg, params = models.load_model(d)       # goldens come from what is on disk
        loaded[name] = (cfg, params)
        rs = np.random.RandomState(FIXTURE_SEED + (2 if name == "llama-tiny-sharded" else mi if mi < BY_PLACE else wseed))
        seqs = make_sequences(rs, [7, 10, 12])
        batch = make_examples(rs)
        # make the last classify example correct (label = its arg-max) so both outcomes are covered
        _, per = losses.batch_loss(cfg, params, batch[3:], detail=True)
        sc = per[0][2]
        batch[3]["label"] = max(range(len(sc)), key=lambda i: (sc[i], -i))
        logits = models.forward_many(cfg, params, seqs)
        write_json(os.path.join(GOLDEN_DIR, f"{name}.json"), {
            "magic": "spillway-golden", "version": 1, "model": name,
            "vocab_size": V,
            "sequences": seqs,
            "logits": [[f32(v) for v in lg.reshape(-1).tolist()] for lg in logits],
            "examples": golden_examples(cfg, params, batch),
        })
        print(f"{name}: {len(params)} tensors, {sum(t.numel() for t in params.values())} params")

    for name, run_seed, step, q, lr, eps, wd, kind in MEZO:
        if name not in loaded:
            continue
        cfg, params = loaded[name]
        with open(os.path.join(GOLDEN_DIR, f"{name}.json"), "r", encoding="utf-8") as f:
            batch = json.load(f)["examples"]["batch"]
        loss_before = losses.batch_loss(cfg, params, batch)
        new, info = mezo.mezo_step(cfg, params, batch, run_seed=run_seed, step=step, q=q,
                                   lr=lr, eps=eps, wd=wd, kind=kind)
        loss_after = losses.batch_loss(cfg, new, batch)
        # z samples: a few (tensor, element) pairs per perturbation, incl. odd lanes and a tail element
        names = sorted(params)
        picks = [names[0], names[len(names) // 2], names[-1]]
        zs = []
        for j, seed in enumerate(info["seeds"]):
            for n in picks:
                numel = params[n].numel()
                for idx in sorted({0, 1, 2, 3, 5, numel // 2 + 1, numel - 1}):
                    z = float(noise.noise_at(seed, noise.fnv1a32(n), [idx], kind)[0])
                    zs.append({"perturbation": j, "name": n, "tensor_id": noise.fnv1a32(n),
                               "index": idx, "z": z})
        st.save_file({n: new[n].contiguous() for n in names},
                     os.path.join(GOLDEN_DIR, f"mezo-{name}.safetensors"), {"format": "pt"})
        write_json(os.path.join(GOLDEN_DIR, f"mezo-{name}.json"), {
            "magic": "spillway-golden-mezo", "version": 1, "model": name,
            "inputs": {
                "run_seed": run_seed, "run_seed_str": str(run_seed), "step": step, "q": q,
                "lr": lr, "eps": eps, "weight_decay": wd, "noise": kind, "schedule": "constant",
                "batch": batch,
            },
            "outputs": {
                "seeds": [str(s) for s in info["seeds"]],
                "seeds_hex": ["0x%016x" % s for s in info["seeds"]],
                "loss_plus": info["loss_plus"], "loss_minus": info["loss_minus"],
                "projected_grad": info["projected_grad"],
                "batch_loss": loss_before,
                "loss_pm_mean": sum(a + b for a, b in zip(info["loss_plus"], info["loss_minus"])) / (2 * q),
                "loss_after": loss_after,
                "skipped": info["skipped"],
                "no_decay": [n for n in names if models.no_decay(n)],
                "updated_params": f"mezo-{name}.safetensors",
            },
            "z_samples": zs,
        })
        print(f"mezo-{name}: g={info['projected_grad']} loss {loss_before:.6f} -> {loss_after:.6f}")


if __name__ == "__main__":
    main()
