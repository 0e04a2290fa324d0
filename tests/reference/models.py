"""Float32 PyTorch reference forward passes for the causal LMs the engine supports.

Independent re-implementation of the math of Hugging Face `transformers`
OPTForCausalLM, GPT2LMHeadModel, LlamaForCausalLM, MistralForCausalLM,
Qwen2ForCausalLM, GPTNeoXForCausalLM, Olmo2ForCausalLM, Gemma2ForCausalLM and Gemma3ForCausalLM
(text) (eager attention, no padding, batch size 1, positions 0..T-1).

    cfg, params = load_model("tests/fixtures/models/opt-tiny")
    logits = forward(cfg, params, [2, 17, 5])      # torch.float32 [T, V]

`params` maps Hugging Face tensor names to float32 tensors; pass a modified
dict (e.g. a MeZO-perturbed copy) to run the same model with other weights.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

try:  # package-style or script-style import
    from . import st
except ImportError:  # pragma: no cover
    import st

NEG = torch.finfo(torch.float32).min


# --------------------------------------------------------------------------- loading

def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json"), "r", encoding="utf-8") as f:
        return json.load(f)


def load_weights(model_dir):
    """All tensors of the checkpoint (single file or sharded index), upcast to float32."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    out = {}
    if os.path.exists(index):
        with open(index, "r", encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        for shard in sorted(set(weight_map.values())):
            tensors = st.load_file(os.path.join(model_dir, shard), upcast=True)
            for name, t in tensors.items():
                if weight_map.get(name) != shard:
                    raise ValueError(f"{name} found in {shard} but index says {weight_map.get(name)}")
                out[name] = t
        missing = set(weight_map) - set(out)
        if missing:
            raise ValueError(f"tensors missing from shards: {sorted(missing)}")
    else:
        out = st.load_file(os.path.join(model_dir, "model.safetensors"), upcast=True)
    return out


def family(cfg):
    mt = cfg.get("model_type")
    if mt == "opt":
        return "opt"
    if mt == "gpt2":
        return "gpt2"
    if mt in ("llama", "mistral", "ministral", "qwen2"):
        return "llama"
    if mt == "gpt_neox":
        return "gpt_neox"
    if mt == "olmo2":
        return "olmo2"
    if mt in ("gemma2", "gemma3_text"):
        return "gemma"
    raise ValueError(f"unsupported model_type {mt!r}")


def load_model(model_dir):
    return load_config(model_dir), load_weights(model_dir)


def tied(cfg):
    return bool(cfg.get("tie_word_embeddings", True))


# --------------------------------------------------------------------------- pieces

def _linear(x, params, prefix):
    b = params.get(prefix + ".bias")
    return F.linear(x, params[prefix + ".weight"], b)


def _layer_norm(x, params, prefix, eps):
    w = params.get(prefix + ".weight")
    b = params.get(prefix + ".bias")
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


def _rms_norm(x, weight, eps):
    # HF: variance in float32, x * rsqrt(var + eps), then weight * x (back in input dtype)
    xf = x.to(torch.float32)
    var = xf.pow(2).mean(-1, keepdim=True)
    xf = xf * torch.rsqrt(var + eps)
    return weight * xf.to(x.dtype)


def _act(name, x):
    if name == "relu":
        return F.relu(x)
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    if name == "gelu":
        return F.gelu(x)
    if name in ("silu", "swish"):
        return F.silu(x)
    raise ValueError(f"unsupported activation {name!r}")


def _mask(T, window=None):
    """Additive [T, T] mask: query i sees key j iff j <= i (and i - j < window when windowed)."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    ok = j <= i
    if window:
        ok = ok & ((i - j) < window)
    m = torch.zeros(T, T, dtype=torch.float32)
    m[~ok] = NEG
    return m


def _attend(q, k, v, scale, mask, divisors=()):
    """q [H, T, D], k/v [H, T, D] -> [T, H*D]. Scores in float32, softmax in float32.

    scale multiplies the scores (None: q already scaled); divisors divide them (GPT-2 style)."""
    w = torch.matmul(q, k.transpose(-1, -2))
    if scale is not None:
        w = w * scale
    for d in divisors:
        w = w / d
    w = w + mask
    w = torch.softmax(w, dim=-1, dtype=torch.float32)
    o = torch.matmul(w, v)                      # [H, T, D]
    return o.transpose(0, 1).reshape(q.shape[1], -1)


def _heads(x, n, d):
    return x.view(x.shape[0], n, d).transpose(0, 1)   # [T, n*d] -> [n, T, d]


# --------------------------------------------------------------------------- OPT

def _forward_opt(cfg, p, ids):
    pre = "model.decoder."
    C = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    D = C // H
    projected = cfg.get("word_embed_proj_dim", C) != C   # OPT-350m: project_in / project_out
    before = cfg.get("do_layer_norm_before", True)
    eps = 1e-5  # OPT uses nn.LayerNorm defaults
    T = ids.shape[0]
    x = F.embedding(ids, p[pre + "embed_tokens.weight"])
    if projected:
        x = F.linear(x, p[pre + "project_in.weight"])
    pos = torch.arange(T) + 2  # OPTLearnedPositionalEmbedding offset
    x = x + F.embedding(pos, p[pre + "embed_positions.weight"])
    mask = _mask(T)
    act = cfg.get("activation_function", "relu")
    for l in range(cfg["num_hidden_layers"]):
        lp = f"{pre}layers.{l}."
        res = x
        if before:
            x = _layer_norm(x, p, lp + "self_attn_layer_norm", eps)
        q = _linear(x, p, lp + "self_attn.q_proj") * (D ** -0.5)
        k = _linear(x, p, lp + "self_attn.k_proj")
        v = _linear(x, p, lp + "self_attn.v_proj")
        a = _attend(_heads(q, H, D), _heads(k, H, D), _heads(v, H, D), None, mask)
        x = res + _linear(a, p, lp + "self_attn.out_proj")
        if not before:
            x = _layer_norm(x, p, lp + "self_attn_layer_norm", eps)
        res = x
        if before:
            x = _layer_norm(x, p, lp + "final_layer_norm", eps)
        x = _linear(_act(act, _linear(x, p, lp + "fc1")), p, lp + "fc2")
        x = res + x
        if not before:
            x = _layer_norm(x, p, lp + "final_layer_norm", eps)
    # OPTDecoder has a final norm only before-norm and not removed.
    if before and not cfg.get("_remove_final_layer_norm", False):
        x = _layer_norm(x, p, pre + "final_layer_norm", eps)
    if projected:
        x = F.linear(x, p[pre + "project_out.weight"])
    head = p[pre + "embed_tokens.weight"] if tied(cfg) or "lm_head.weight" not in p else p["lm_head.weight"]
    return F.linear(x, head)


# --------------------------------------------------------------------------- GPT-2

def _conv1d(x, p, prefix):
    # HF Conv1D: weight stored [in, out]; y = x @ W + b
    return torch.addmm(p[prefix + ".bias"], x, p[prefix + ".weight"])


def _forward_gpt2(cfg, p, ids):
    pre = "transformer."
    C = cfg["n_embd"]
    H = cfg["n_head"]
    D = C // H
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    T = ids.shape[0]
    x = F.embedding(ids, p[pre + "wte.weight"]) + F.embedding(torch.arange(T), p[pre + "wpe.weight"])
    mask = _mask(T)
    act = cfg.get("activation_function", "gelu_new")
    for l in range(cfg["n_layer"]):
        lp = f"{pre}h.{l}."
        res = x
        h = _layer_norm(x, p, lp + "ln_1", eps)
        qkv = _conv1d(h, p, lp + "attn.c_attn")
        q, k, v = qkv.split(C, dim=-1)
        div = []  # HF GPT-2 divides the scores by sqrt(head_dim) (and by layer_idx + 1 if asked)
        if cfg.get("scale_attn_weights", True):
            div.append(float(D) ** 0.5)
        if cfg.get("scale_attn_by_inverse_layer_idx", False):
            div.append(float(l + 1))
        a = _attend(_heads(q, H, D), _heads(k, H, D), _heads(v, H, D), None, mask, div)
        x = res + _conv1d(a, p, lp + "attn.c_proj")
        res = x
        h = _layer_norm(x, p, lp + "ln_2", eps)
        h = _conv1d(_act(act, _conv1d(h, p, lp + "mlp.c_fc")), p, lp + "mlp.c_proj")
        x = res + h
    x = _layer_norm(x, p, pre + "ln_f", eps)
    head = p[pre + "wte.weight"] if tied(cfg) or "lm_head.weight" not in p else p["lm_head.weight"]
    return F.linear(x, head)


# --------------------------------------------------------------------------- Llama / Mistral / Qwen2

def head_dim(cfg):
    hd = cfg.get("head_dim")
    return int(hd) if hd else cfg["hidden_size"] // cfg["num_attention_heads"]


def _rope(T, dim, theta):
    # HF default rope: inv_freq in float32, positions float32, emb = cat(freqs, freqs)
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    freqs = torch.arange(T, dtype=torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _layer_window(cfg, l):
    """The sliding window of layer l (None: full causal), as each config class derives it."""
    mt = cfg.get("model_type")
    if mt == "mistral":  # one window for every layer; layer_types is not read
        return cfg.get("sliding_window", 4096) or None
    if mt == "ministral":  # layer_types, by default every layer sliding when there is a window
        window = cfg.get("sliding_window", 4096)
        types = cfg.get("layer_types") or ["sliding_attention" if window else "full_attention"] * cfg["num_hidden_layers"]
        return window if types[l] == "sliding_attention" else None
    if mt == "qwen2":  # a window only with use_sliding_window, by default from max_window_layers on
        window = cfg.get("sliding_window", 4096) if cfg.get("use_sliding_window", False) else None
        types = cfg.get("layer_types")
        if types is not None:
            sliding = types[l] == "sliding_attention"
        else:
            sliding = l >= cfg.get("max_window_layers", 28)
        return window if sliding else None
    return None


def _forward_llama(cfg, p, ids):
    if cfg.get("rope_scaling"):
        rs = cfg["rope_scaling"]
        if rs.get("rope_type", rs.get("type")) not in (None, "default"):
            raise NotImplementedError(f"rope_scaling {rs} not modelled")
    C = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads") or H
    D = head_dim(cfg)
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = float(cfg.get("rope_theta", 10000.0))
    T = ids.shape[0]
    x = F.embedding(ids, p["model.embed_tokens.weight"])
    cos, sin = _rope(T, D, theta)
    act = cfg.get("hidden_act", "silu")
    for l in range(cfg["num_hidden_layers"]):
        lp = f"model.layers.{l}."
        res = x
        h = _rms_norm(x, p[lp + "input_layernorm.weight"], eps)
        q = _heads(_linear(h, p, lp + "self_attn.q_proj"), H, D)
        k = _heads(_linear(h, p, lp + "self_attn.k_proj"), KV, D)
        v = _heads(_linear(h, p, lp + "self_attn.v_proj"), KV, D)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        rep = H // KV
        k = k.repeat_interleave(rep, dim=0)   # kv head g serves query heads g*rep .. g*rep+rep-1
        v = v.repeat_interleave(rep, dim=0)
        a = _attend(q, k, v, D ** -0.5, _mask(T, _layer_window(cfg, l)))
        x = res + _linear(a, p, lp + "self_attn.o_proj")
        res = x
        h = _rms_norm(x, p[lp + "post_attention_layernorm.weight"], eps)
        h = _linear(_act(act, _linear(h, p, lp + "mlp.gate_proj")) * _linear(h, p, lp + "mlp.up_proj"),
                    p, lp + "mlp.down_proj")
        x = res + h
    x = _rms_norm(x, p["model.norm.weight"], eps)
    head = p["model.embed_tokens.weight"] if tied(cfg) or "lm_head.weight" not in p else p["lm_head.weight"]
    if not tied(cfg) and "lm_head.weight" not in p:
        raise ValueError("untied model without lm_head.weight")
    return F.linear(x, head)


# --------------------------------------------------------------------------- GPT-NeoX (Pythia)

def neox_rope(cfg):
    """(rotary dims per head, theta): transformers 5's rope_parameters, else the older
    rotary_pct / rotary_emb_base (GPTNeoXConfig defaults 0.25 and 10000)."""
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    rp = cfg.get("rope_parameters") or {}
    pct = rp.get("partial_rotary_factor", cfg.get("rotary_pct", 0.25))
    theta = rp.get("rope_theta", cfg.get("rotary_emb_base", 10000.0))
    return int((C // H) * pct), float(theta)


def split_fused_qkv(qkv, T, H, D):
    """GPT-NeoX's query_key_value output [T, 3C] holds, per head, its q, k and v side by side
    ([T, H, 3, D]); returns q, k, v as [H, T, D]."""
    per_head = qkv.view(T, H, 3, D)
    return tuple(per_head[:, :, i, :].transpose(0, 1) for i in range(3))


def _rope_partial(x, cos, sin, R):
    """RoPE on the first R dims of each head of x [H, T, D]; the other dims pass through."""
    rot = x[..., :R] * cos + _rotate_half(x[..., :R]) * sin
    return torch.cat((rot, x[..., R:]), dim=-1)


def _forward_gpt_neox(cfg, p, ids):
    pre = "gpt_neox."
    C = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    D = C // H
    R, theta = neox_rope(cfg)
    eps = cfg.get("layer_norm_eps", 1e-5)
    parallel = cfg.get("use_parallel_residual", True)
    act = cfg.get("hidden_act", "gelu")
    T = ids.shape[0]
    x = F.embedding(ids, p[pre + "embed_in.weight"])
    cos, sin = _rope(T, R, theta)
    mask = _mask(T)

    def mlp(h, lp):
        return _linear(_act(act, _linear(h, p, lp + "mlp.dense_h_to_4h")), p, lp + "mlp.dense_4h_to_h")

    for l in range(cfg["num_hidden_layers"]):
        lp = f"{pre}layers.{l}."
        h = _layer_norm(x, p, lp + "input_layernorm", eps)
        q, k, v = split_fused_qkv(_linear(h, p, lp + "attention.query_key_value"), T, H, D)
        q = _rope_partial(q, cos, sin, R)
        k = _rope_partial(k, cos, sin, R)
        attn = _linear(_attend(q, k, v, D ** -0.5, mask), p, lp + "attention.dense")
        if parallel:
            # Both branches read the block's input: x + attn(ln1 x) + mlp(ln2 x).
            x = mlp(_layer_norm(x, p, lp + "post_attention_layernorm", eps), lp) + attn + x
        else:
            x = attn + x
            x = mlp(_layer_norm(x, p, lp + "post_attention_layernorm", eps), lp) + x
    x = _layer_norm(x, p, pre + "final_layer_norm", eps)
    # The untied head: embed_out in Hub checkpoints, lm_head once transformers 5 renames it.
    head = p["embed_out.weight"] if "embed_out.weight" in p else p["lm_head.weight"]
    return F.linear(x, head)


# --------------------------------------------------------------------------- OLMo 2

def qk_norm_olmo2(x, weight, eps, H, D):
    """OLMo 2 normalises q (or k) [T, H*D] over the whole projection width, before the heads
    are split; returns [H, T, D]."""
    return _heads(_rms_norm(x, weight, eps), H, D)


def post_norm_residual(x, y, weight, eps):
    """OLMo 2's residual: the branch's output y is normed, then added to x."""
    return x + _rms_norm(y, weight, eps)


def _forward_olmo2(cfg, p, ids):
    C = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads") or H
    D = C // H
    eps = cfg.get("rms_norm_eps", 1e-5)
    rp = cfg.get("rope_parameters") or {}
    theta = float(rp.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    act = cfg.get("hidden_act", "silu")
    T = ids.shape[0]
    x = F.embedding(ids, p["model.embed_tokens.weight"])
    cos, sin = _rope(T, D, theta)
    mask = _mask(T)
    for l in range(cfg["num_hidden_layers"]):
        lp = f"model.layers.{l}."
        # No norm before attention or the MLP: each branch's output is normed before its residual.
        q = qk_norm_olmo2(_linear(x, p, lp + "self_attn.q_proj"), p[lp + "self_attn.q_norm.weight"], eps, H, D)
        k = qk_norm_olmo2(_linear(x, p, lp + "self_attn.k_proj"), p[lp + "self_attn.k_norm.weight"], eps, KV, D)
        v = _heads(_linear(x, p, lp + "self_attn.v_proj"), KV, D)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=0)
        v = v.repeat_interleave(H // KV, dim=0)
        a = _linear(_attend(q, k, v, D ** -0.5, mask), p, lp + "self_attn.o_proj")
        x = post_norm_residual(x, a, p[lp + "post_attention_layernorm.weight"], eps)
        h = _linear(_act(act, _linear(x, p, lp + "mlp.gate_proj")) * _linear(x, p, lp + "mlp.up_proj"),
                    p, lp + "mlp.down_proj")
        x = post_norm_residual(x, h, p[lp + "post_feedforward_layernorm.weight"], eps)
    x = _rms_norm(x, p["model.norm.weight"], eps)
    head = p["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else p["lm_head.weight"]
    return F.linear(x, head)


# --------------------------------------------------------------------------- Gemma 2 / Gemma 3 (text)

def gemma_norm(x, weight, eps):
    """Gemma's RMSNorm: normalised in float32, then scaled by (1 + w)."""
    xf = x.to(torch.float32)
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return xf * (1.0 + weight.to(torch.float32))


def softcap(x, cap):
    """cap * tanh(x / cap); None: x unchanged."""
    return x if cap is None else torch.tanh(x / cap) * cap


def gemma_embed_scale(C):
    """sqrt(hidden) as transformers holds it: a float32 scalar."""
    return torch.tensor(C ** 0.5, dtype=torch.float32)


def gemma_layer_types(cfg):
    """layer_types, else every pattern-th layer global (Gemma 2: 2; Gemma 3: sliding_window_pattern, 6)."""
    L = cfg["num_hidden_layers"]
    if cfg.get("layer_types"):
        return list(cfg["layer_types"])
    pattern = 2 if cfg["model_type"] == "gemma2" else cfg.get("sliding_window_pattern", 6)
    return ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(L)]


def gemma_thetas(cfg):
    """(global theta, local theta). Gemma 2 has one base; Gemma 3 a global and a local one, from
    rope_parameters keyed by layer type (transformers 5) or rope_theta / rope_local_base_freq."""
    rp = cfg.get("rope_parameters") or {}
    if cfg["model_type"] == "gemma2":
        theta = float(rp.get("rope_theta", cfg.get("rope_theta", 10000.0)))
        return theta, theta
    if "full_attention" in rp or "sliding_attention" in rp:
        return (float(rp.get("full_attention", {}).get("rope_theta", 1e6)),
                float(rp.get("sliding_attention", {}).get("rope_theta", 1e4)))
    return float(cfg.get("rope_theta", 1e6)), float(cfg.get("rope_local_base_freq", 1e4))


def gemma_qk_norm(x, weight, eps, H, D):
    """Gemma 3: each head of q (or k) [T, H*D] normed over its D dims; returns [H, T, D]."""
    return gemma_norm(_heads(x, H, D), weight, eps)


def _forward_gemma(cfg, p, ids):
    C = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads") or H
    D = cfg.get("head_dim", 256)
    eps = cfg.get("rms_norm_eps", 1e-6)
    gemma3 = cfg["model_type"] == "gemma3_text"
    defaults = (None, None) if gemma3 else (50.0, 30.0)
    attn_cap = cfg.get("attn_logit_softcapping", defaults[0])
    final_cap = cfg.get("final_logit_softcapping", defaults[1])
    scale = cfg.get("query_pre_attn_scalar", 256) ** -0.5
    window = cfg.get("sliding_window", 4096)
    types = gemma_layer_types(cfg)
    T = ids.shape[0]
    x = F.embedding(ids, p["model.embed_tokens.weight"]) * gemma_embed_scale(C)
    theta_global, theta_local = gemma_thetas(cfg)
    ropes = {"full_attention": _rope(T, D, theta_global), "sliding_attention": _rope(T, D, theta_local)}
    for l in range(cfg["num_hidden_layers"]):
        lp = f"model.layers.{l}."
        cos, sin = ropes[types[l]]
        mask = _mask(T, window if types[l] == "sliding_attention" else None)
        h = gemma_norm(x, p[lp + "input_layernorm.weight"], eps)
        q = _linear(h, p, lp + "self_attn.q_proj")
        k = _linear(h, p, lp + "self_attn.k_proj")
        v = _heads(_linear(h, p, lp + "self_attn.v_proj"), KV, D)
        if gemma3:
            q = gemma_qk_norm(q, p[lp + "self_attn.q_norm.weight"], eps, H, D)
            k = gemma_qk_norm(k, p[lp + "self_attn.k_norm.weight"], eps, KV, D)
        else:
            q, k = _heads(q, H, D), _heads(k, KV, D)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=0)
        v = v.repeat_interleave(H // KV, dim=0)
        w = softcap(torch.matmul(q, k.transpose(-1, -2)) * scale, attn_cap) + mask
        a = torch.matmul(torch.softmax(w, dim=-1, dtype=torch.float32), v).transpose(0, 1).reshape(T, -1)
        a = _linear(a, p, lp + "self_attn.o_proj")
        x = x + gemma_norm(a, p[lp + "post_attention_layernorm.weight"], eps)
        h = gemma_norm(x, p[lp + "pre_feedforward_layernorm.weight"], eps)
        h = _linear(_act("gelu_pytorch_tanh", _linear(h, p, lp + "mlp.gate_proj")) * _linear(h, p, lp + "mlp.up_proj"),
                    p, lp + "mlp.down_proj")
        x = x + gemma_norm(h, p[lp + "post_feedforward_layernorm.weight"], eps)
    x = gemma_norm(x, p["model.norm.weight"], eps)
    head = p["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", True) else p["lm_head.weight"]
    return softcap(F.linear(x, head), final_cap)


_FORWARD = {"opt": _forward_opt, "gpt2": _forward_gpt2, "llama": _forward_llama, "gpt_neox": _forward_gpt_neox,
            "olmo2": _forward_olmo2, "gemma": _forward_gemma}


@torch.no_grad()
def forward(cfg, params, tokens):
    """Logits [T, V] (float32) for one unpadded sequence at positions 0..T-1."""
    ids = torch.as_tensor(list(tokens), dtype=torch.long)
    return _FORWARD[family(cfg)](cfg, params, ids).to(torch.float32)


def forward_many(cfg, params, sequences):
    """Each sequence run on its own (batch size 1)."""
    return [forward(cfg, params, s) for s in sequences]


def no_decay(name):
    """ENGINE-SPEC: no weight decay for biases and norms."""
    low = name.lower()
    return low.endswith(".bias") or "norm" in low or "ln_" in low
