"""Writes a random-initialised OPT-shaped Hugging Face folder for the GPU benchmark,
on the machine that runs it (the weights are generated on the GPU, then saved):

  DIR/config.json        real OPT config keys (as bench/make-model.ts writes them)
  DIR/model.safetensors  float32, HF tensor names, tied embeddings (no lm_head.weight)
  DIR/spec.json          the Spillway engine spec of that file (what engineSpec() makes
                         for an OPT folder: units embed / block i / head, byte offsets)
  DIR/batch.json         BATCH random token sequences of SEQ tokens (seeded), rows of ids
  DIR/batch-T.json       the same for each --extra-seqs T (other sequence lengths)

Weights ~ N(0, 0.02) from torch's CUDA generator seeded with --seed (numpy's generator
where torch is not installed: the CPU smoke test), LayerNorm weights 1, biases 0: the
same recipe as bench/make-model.ts (not the same numbers).

--dtype bf16 stores the weights as bf16 (round to nearest even): half the disk, for the
13B shape on a 64 GiB disk (the engine widens them on load; PyTorch is not run on it).
--reuse keeps an existing model whose spec.json matches shape and dtype and whose
safetensors file has the expected size, and (re)writes only the token files.

usage: python3 bench/gpu/make_opt_model.py --shape 1.3b --out DIR [--seq 512] [--batch 16]
           [--extra-seqs 2048] [--dtype f32|bf16] [--reuse]
"""
import argparse
import json
import os
import struct
import time

import numpy as np

torch = None  # imported in main() (estimate.py imports this module for SHAPES only); numpy where it is missing

SHAPES = {
    "tiny": dict(vocab=1000, hidden=64, layers=4, heads=4, ffn=256),  # smoke tests only
    "125m": dict(vocab=50272, hidden=768, layers=12, heads=12, ffn=3072),
    "1.3b": dict(vocab=50272, hidden=2048, layers=24, heads=32, ffn=8192),
    "6.7b": dict(vocab=50272, hidden=4096, layers=32, heads=32, ffn=16384),
    "13b": dict(vocab=50272, hidden=5120, layers=40, heads=40, ffn=20480),
}
DTYPES = {"f32": ("F32", 4), "bf16": ("BF16", 2)}
MAX_POS = 2048


def opt_config(s):
    return {
        "_remove_final_layer_norm": False, "activation_dropout": 0.0, "activation_function": "relu",
        "architectures": ["OPTForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 2,
        "do_layer_norm_before": True, "dropout": 0.0, "enable_bias": True, "eos_token_id": 2,
        "ffn_dim": s["ffn"], "hidden_size": s["hidden"], "init_std": 0.02,
        "layer_norm_elementwise_affine": True, "layerdrop": 0.0, "max_position_embeddings": MAX_POS,
        "model_type": "opt", "num_attention_heads": s["heads"], "num_hidden_layers": s["layers"],
        "pad_token_id": 1, "prefix": "</s>", "tie_word_embeddings": True, "torch_dtype": "float32",
        "use_cache": False, "vocab_size": s["vocab"], "word_embed_proj_dim": s["hidden"],
    }


# role -> HF suffix, for one decoder layer (the engine's OPT roles)
BLOCK_ROLES = {
    "attn_norm_w": "self_attn_layer_norm.weight", "attn_norm_b": "self_attn_layer_norm.bias",
    "q_w": "self_attn.q_proj.weight", "q_b": "self_attn.q_proj.bias",
    "k_w": "self_attn.k_proj.weight", "k_b": "self_attn.k_proj.bias",
    "v_w": "self_attn.v_proj.weight", "v_b": "self_attn.v_proj.bias",
    "o_w": "self_attn.out_proj.weight", "o_b": "self_attn.out_proj.bias",
    "mlp_norm_w": "final_layer_norm.weight", "mlp_norm_b": "final_layer_norm.bias",
    "fc1_w": "fc1.weight", "fc1_b": "fc1.bias", "fc2_w": "fc2.weight", "fc2_b": "fc2.bias",
}


def shapes_of(s):
    C, F, V = s["hidden"], s["ffn"], s["vocab"]
    out = {
        "model.decoder.embed_tokens.weight": (V, C),
        "model.decoder.embed_positions.weight": (MAX_POS + 2, C),
        "model.decoder.final_layer_norm.weight": (C,),
        "model.decoder.final_layer_norm.bias": (C,),
    }
    for l in range(s["layers"]):
        p = f"model.decoder.layers.{l}."
        for suf in BLOCK_ROLES.values():
            if "layer_norm" in suf or suf.endswith(".bias"):
                shp = (C,)
                if suf == "fc1.bias":
                    shp = (F,)
            elif suf.startswith("fc1"):
                shp = (F, C)
            elif suf.startswith("fc2"):
                shp = (C, F)
            else:
                shp = (C, C)
            out[p + suf] = shp
    return out


def to_bytes(t, dtype):
    """float32 tensor (torch or numpy) -> little-endian bytes of F32 or BF16 (round to nearest even)."""
    if torch is not None and isinstance(t, torch.Tensor):
        if dtype == "bf16":  # torch rounds to nearest even, on the tensor's device
            return t.to(torch.bfloat16).view(torch.int16).cpu().numpy().tobytes()
        return t.float().cpu().numpy().tobytes()
    a = np.asarray(t, np.float32)
    if dtype == "f32":
        return a.astype("<f4").tobytes()
    u = a.astype("<f4").view("<u4").astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2").tobytes()


def header_of(s, dtype):
    shp = shapes_of(s)
    names = sorted(shp)
    header, off = {}, 0
    for n in names:
        nb = DTYPES[dtype][1]
        for d in shp[n]:
            nb *= d
        header[n] = {"dtype": DTYPES[dtype][0], "shape": list(shp[n]), "data_offsets": [off, off + nb]}
        off += nb
    return names, shp, header, off


def write_safetensors(path, s, seed, dtype="f32"):
    """Streams tensors to disk one at a time (no whole-model host copy)."""
    if torch is not None:
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        g = torch.Generator(device=dev)
        g.manual_seed(seed)
    else:
        rng = np.random.default_rng(seed)
    names, shp, header, _ = header_of(s, dtype)
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for n in names:
            if torch is None:
                t = (np.zeros(shp[n], np.float32) if n.endswith(".bias") else np.ones(shp[n], np.float32)
                     if "layer_norm" in n else (rng.standard_normal(shp[n], dtype=np.float32) * 0.02))
            elif n.endswith(".bias"):
                t = torch.zeros(shp[n], device=dev)
            elif "layer_norm" in n:
                t = torch.ones(shp[n], device=dev)
            else:
                t = torch.randn(shp[n], generator=g, device=dev) * 0.02
            f.write(to_bytes(t, dtype))
    header.pop("__metadata__")
    return header, 8 + len(hb)


def engine_spec(path, s, header, base):
    def t(name):
        h = header[name]
        b0, b1 = h["data_offsets"]
        return {"name": name, "dtype": h["dtype"], "shape": h["shape"], "file": path, "offset": base + b0,
                "nbytes": b1 - b0, "transposed": False}

    pre = "model.decoder."
    units = [{"kind": "embed", "index": -1,
              "tensors": {"tok": t(pre + "embed_tokens.weight"), "pos": t(pre + "embed_positions.weight")}}]
    for l in range(s["layers"]):
        units.append({"kind": "block", "index": l,
                      "tensors": {r: t(f"{pre}layers.{l}.{suf}") for r, suf in BLOCK_ROLES.items()}})
    units.append({"kind": "head", "index": -1,
                  "tensors": {"norm_w": t(pre + "final_layer_norm.weight"), "norm_b": t(pre + "final_layer_norm.bias")}})
    config = {
        "hfArchitecture": "OPTForCausalLM", "family": "opt", "vocabSize": s["vocab"], "hidden": s["hidden"],
        "layers": s["layers"], "heads": s["heads"], "kvHeads": s["heads"], "headDim": s["hidden"] // s["heads"],
        "intermediate": s["ffn"], "maxPositions": MAX_POS, "normEps": 1e-5, "norm": "layernorm",
        "activation": "relu", "positionOffset": 2, "ropes": [],
        "tiedEmbeddings": True, "bosTokenId": 2, "eosTokenId": 2,
    }
    return {"config": config, "units": units}


def base_of(spec):
    """Byte offset of the data section: the smallest tensor offset in the spec."""
    return min(t["offset"] for u in spec["units"] for t in u["tensors"].values())


def main():
    global torch
    try:
        import torch as _torch
        torch = _torch
    except ImportError:  # the CPU smoke test: numpy instead
        pass
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra-seqs", default="", help="comma-separated: also write batch-T.json for these T")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    ap.add_argument("--reuse", action="store_true")
    a = ap.parse_args()
    s = SHAPES[a.shape]
    os.makedirs(a.out, exist_ok=True)
    path = os.path.abspath(os.path.join(a.out, "model.safetensors"))
    t0 = time.time()
    _, _, want, data_bytes = header_of(s, a.dtype)
    kept = False
    if a.reuse and os.path.exists(os.path.join(a.out, "spec.json")) and os.path.exists(path):
        try:
            spec = json.load(open(os.path.join(a.out, "spec.json")))
            t = spec["units"][0]["tensors"]["tok"]
            c = spec["config"]
            kept = (c["hidden"] == s["hidden"] and c["layers"] == s["layers"] and c["vocabSize"] == s["vocab"]
                    and t["dtype"] == DTYPES[a.dtype][0] and t["file"] == path
                    and os.path.getsize(path) == base_of(spec) + data_bytes)
        except (KeyError, ValueError, IndexError, OSError):
            kept = False
    if not kept:
        cfg = opt_config(s)
        if a.dtype == "bf16":
            cfg["torch_dtype"] = "bfloat16"
        with open(os.path.join(a.out, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        header, base = write_safetensors(path, s, a.seed, a.dtype)
        with open(os.path.join(a.out, "spec.json"), "w") as f:
            json.dump(engine_spec(path, s, header, base), f)
    seqs = [a.seq] + [int(x) for x in a.extra_seqs.split(",") if x.strip()]
    for T in seqs:
        if torch is not None:
            g = torch.Generator().manual_seed(a.seed + 1)
            ids = torch.randint(3, s["vocab"], (a.batch, T), generator=g).tolist()
        else:
            ids = np.random.default_rng(a.seed + 1).integers(3, s["vocab"], (a.batch, T)).tolist()
        name = "batch.json" if T == a.seq else f"batch-{T}.json"
        with open(os.path.join(a.out, name), "w") as f:
            json.dump({"tokens": ids}, f)
    n = sum(h["data_offsets"][1] - h["data_offsets"][0] for h in want.values()) // DTYPES[a.dtype][1]
    print(f"{'kept' if kept else 'wrote'} {a.out}: OPT-{a.shape} shape, {n} parameters "
          f"({n * DTYPES[a.dtype][1] / 2**30:.2f} GiB {a.dtype}), batch {a.batch} x {','.join(map(str, seqs))}, "
          f"in {time.time() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
