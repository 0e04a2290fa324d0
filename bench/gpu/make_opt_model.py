"""Writes a random-initialised OPT-shaped Hugging Face folder for the GPU benchmark,
on the machine that runs it (the weights are generated on the GPU, then saved):

  DIR/config.json        real OPT config keys (as bench/make-model.ts writes them)
  DIR/model.safetensors  float32, HF tensor names, tied embeddings (no lm_head.weight)
  DIR/spec.json          the Spillway engine spec of that file (what engineSpec() makes
                         for an OPT folder: units embed / block i / head, byte offsets)
  DIR/batch.json         BATCH random token sequences of SEQ tokens (seeded), rows of ids

Weights ~ N(0, 0.02) from torch's CUDA generator seeded with --seed, LayerNorm
weights 1, biases 0: the same recipe as bench/make-model.ts (not the same numbers).

usage: python3 bench/gpu/make_opt_model.py --shape 1.3b --out DIR [--seq 512] [--batch 16]
"""
import argparse
import json
import os
import struct
import time

import torch

SHAPES = {
    "125m": dict(vocab=50272, hidden=768, layers=12, heads=12, ffn=3072),
    "1.3b": dict(vocab=50272, hidden=2048, layers=24, heads=32, ffn=8192),
    "6.7b": dict(vocab=50272, hidden=4096, layers=32, heads=32, ffn=16384),
}
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


def write_safetensors(path, s, seed):
    """Streams tensors to disk one at a time (no whole-model host copy)."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device=dev)
    g.manual_seed(seed)
    shp = shapes_of(s)
    names = sorted(shp)
    header, off = {}, 0
    for n in names:
        nb = 4
        for d in shp[n]:
            nb *= d
        header[n] = {"dtype": "F32", "shape": list(shp[n]), "data_offsets": [off, off + nb]}
        off += nb
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for n in names:
            if n.endswith(".bias"):
                t = torch.zeros(shp[n], device=dev)
            elif "layer_norm" in n:
                t = torch.ones(shp[n], device=dev)
            else:
                t = torch.randn(shp[n], generator=g, device=dev) * 0.02
            f.write(t.cpu().numpy().tobytes())
    header.pop("__metadata__")
    return header, 8 + len(hb)


def engine_spec(path, s, header, base):
    def t(name):
        h = header[name]
        b0, b1 = h["data_offsets"]
        return {"name": name, "dtype": "F32", "shape": h["shape"], "file": path, "offset": base + b0,
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
        "activation": "relu", "positionOffset": 2, "ropeTheta": 0, "slidingWindow": 0,
        "tiedEmbeddings": True, "bosTokenId": 2, "eosTokenId": 2,
    }
    return {"config": config, "units": units}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    s = SHAPES[a.shape]
    os.makedirs(a.out, exist_ok=True)
    path = os.path.abspath(os.path.join(a.out, "model.safetensors"))
    t0 = time.time()
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(opt_config(s), f, indent=1)
    header, base = write_safetensors(path, s, a.seed)
    with open(os.path.join(a.out, "spec.json"), "w") as f:
        json.dump(engine_spec(path, s, header, base), f)
    g = torch.Generator().manual_seed(a.seed + 1)
    ids = torch.randint(3, s["vocab"], (a.batch, a.seq), generator=g)
    with open(os.path.join(a.out, "batch.json"), "w") as f:
        json.dump({"tokens": ids.tolist()}, f)
    n = sum(h["data_offsets"][1] - h["data_offsets"][0] for h in header.values()) // 4
    print(f"wrote {a.out}: OPT-{a.shape} shape, {n} parameters ({n * 4 / 2**30:.2f} GiB f32), "
          f"batch {a.batch}x{a.seq}, in {time.time() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
