"""ZO2's offloaded MeZO step, re-implemented in PyTorch to time it where ZO2 itself cannot run.

ZO2 (liangyuwang/zo2, MeZO2SGD with AMP) pins transformers 4.51.3; the GPU machine has 5.x and no
network. This is a re-implementation of its schedule, written for this benchmark from a reading of
ZO2's zo2/optimizer/mezo_sgd/zo2.py (no code of it is used); the report names it as such. What it keeps:

- three CUDA streams: uploads, offloads (write-backs) and compute; the embeddings, final norm and tied
  head resident on the GPU, every decoder layer homed in host memory;
- AMP: a layer is kept in host memory in fp16, widened to the working precision (fp32) after its
  upload and narrowed to fp16 before its offload; the forwards run under autocast to fp16;
- the host synchronises at every task, as ZO2's tasks do: an upload first waits for the previous
  upload; a compute for the previous compute and for the uploads; an offload for the previous offload
  and for the compute;
- the order of one step: upload layer 0; for i = 1..N-1: offload layer i-2, compute layer i-1, upload
  layer i; then offload N-2, compute N-1, offload N-1; the device synchronised before and after;
- each visit of a module (layers, embeddings, head) is a dual forward: first the previous step's update
  (its z regenerated from the CUDA RNG state saved then, times -lr * its projected gradient), then
  +eps z, the forward of stream 1, -2 eps z, the forward of stream 2, +eps z; the RNG state is set back
  before each of the three so that they draw the same z;
- the loss: cross-entropy of each stream's logits against the next tokens; g = (L1 - L2) / 2eps.

The layer forward is OPT's pre-LN decoder layer written out (layer norm, q/k/v/out projections with
scaled-dot-product causal attention, layer norm, fc1/ReLU/fc2), on the weights of the safetensors file
make_opt_model.py writes, so that it does not depend on the installed transformers.

usage: python3 bench/gpu/zo2_schedule.py MODEL_DIR [--shapes 1x512,1x2048] [--steps 3] [--warmup 1] [--device cuda]
       prints one JSON object on stdout (--device cpu: a smoke test without a GPU)
"""
import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open

LAYER = ("self_attn_layer_norm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
         "final_layer_norm", "fc1", "fc2")


class Streams:
    """The three streams (no-ops on the CPU)."""

    def __init__(self, dev):
        self.cuda = dev.type == "cuda"
        self.upload = torch.cuda.Stream() if self.cuda else None
        self.offload = torch.cuda.Stream() if self.cuda else None
        self.compute = torch.cuda.Stream() if self.cuda else None

    def on(self, s):
        return torch.cuda.stream(s) if self.cuda else contextlib.nullcontext()

    def wait(self, *ss):
        if self.cuda:
            for s in ss:
                s.synchronize()

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()


class Rng:
    """The generator z is drawn from: the CUDA RNG (the CPU's in a smoke test)."""

    def __init__(self, dev):
        self.cuda = dev.type == "cuda"

    def seed(self, s):
        torch.manual_seed(s)
        if self.cuda:
            torch.cuda.manual_seed(s)

    def get(self):
        return torch.cuda.get_rng_state() if self.cuda else torch.get_rng_state()

    def set(self, st):
        (torch.cuda.set_rng_state if self.cuda else torch.set_rng_state)(st)


class Zo2Step:
    def __init__(self, model_dir, dev, lr, eps, wd, heads):
        self.dev, self.lr, self.eps, self.wd, self.heads = dev, lr, eps, wd, heads
        self.streams, self.rng = Streams(dev), Rng(dev)
        f = safe_open(os.path.join(model_dir, "model.safetensors"), framework="pt")
        get = lambda n: f.get_tensor(n).float()  # noqa: E731
        p = "model.decoder."
        # Resident: the embeddings (tokens, learned positions at offset 2), the final norm; the head is tied.
        self.embed = {"tok": get(p + "embed_tokens.weight").to(dev), "pos": get(p + "embed_positions.weight").to(dev)}
        self.final = {"w": get(p + "final_layer_norm.weight").to(dev), "b": get(p + "final_layer_norm.bias").to(dev)}
        n = 1 + max(int(k.split(".")[3]) for k in f.keys() if k.startswith(p + "layers."))
        # Offloaded: every layer in host memory, fp16 (ZO2's AMP compression).
        self.layers = [{f"{m}.{w}": get(f"{p}layers.{i}.{m}.{w}").half() for m in LAYER for w in ("weight", "bias")} for i in range(n)]
        self.grad, self.last_state, self.state = 0.0, None, None

    # ---- the dual forward of one module, with the previous step's update first
    # Each module draws its z from where the previous module left the generator: the update replays last
    # step's chain (from last_state), the perturbations this step's (from state), module by module.
    def perturb(self, params, scale):
        self.rng.set(self.state)
        for t in params.values():
            t.add_(torch.randn(t.shape, device=self.dev, dtype=t.dtype), alpha=scale * self.eps)

    def update(self, params, decay):
        if self.grad == 0.0:
            return
        self.rng.set(self.last_state)
        for name, t in params.items():
            z = torch.randn(t.shape, device=self.dev, dtype=t.dtype)
            if decay and self.wd and not (name.endswith("bias") or "norm" in name):
                t.mul_(1 - self.lr * self.wd)
            t.add_(z, alpha=-self.lr * self.grad)
        self.last_state = self.rng.get()

    def dual(self, params, fwd, x1, x2, decay=True):
        self.update(params, decay)
        amp = dict(device_type=self.dev.type, dtype=torch.float16, enabled=self.dev.type == "cuda")
        self.perturb(params, 1)
        with torch.autocast(**amp):
            y1 = fwd(params, x1)
        self.perturb(params, -2)
        with torch.autocast(**amp):
            y2 = fwd(params, x2)
        self.perturb(params, 1)
        self.state = self.rng.get()
        return y1, y2

    # ---- forwards
    def layer_fwd(self, w, x):
        B, T, C = x.shape
        H = self.heads
        h = F.layer_norm(x, (C,), w["self_attn_layer_norm.weight"], w["self_attn_layer_norm.bias"])
        q, k, v = (F.linear(h, w[f"self_attn.{n}_proj.weight"], w[f"self_attn.{n}_proj.bias"]).view(B, T, H, C // H).transpose(1, 2) for n in "qkv")
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + F.linear(a, w["self_attn.out_proj.weight"], w["self_attn.out_proj.bias"])
        h = F.layer_norm(x, (C,), w["final_layer_norm.weight"], w["final_layer_norm.bias"])
        return x + F.linear(F.relu(F.linear(h, w["fc1.weight"], w["fc1.bias"])), w["fc2.weight"], w["fc2.bias"])

    # ---- tasks (the host waits as ZO2's do)
    def upload(self, i):
        s = self.streams
        s.wait(s.upload)
        with s.on(s.upload):
            self.layers[i] = {k: t.to(self.dev, non_blocking=True).float() for k, t in self.layers[i].items()}

    def offload(self, i):
        s = self.streams
        s.wait(s.offload, s.compute)
        with s.on(s.offload):
            self.layers[i] = {k: t.half().to("cpu", non_blocking=True) for k, t in self.layers[i].items()}

    def compute(self, params, fwd, x1, x2, decay=True):
        s = self.streams
        s.wait(s.compute, s.upload)
        with s.on(s.compute):
            return self.dual(params, fwd, x1, x2, decay)

    @torch.inference_mode()
    def step(self, ids, seed):
        self.rng.seed(seed)
        start = self.state = self.rng.get()
        s = self.streams
        s.sync()
        T = ids.shape[1]
        pos = torch.arange(T, device=self.dev) + 2
        x1, x2 = self.compute(self.embed, lambda w, _: w["tok"][ids] + w["pos"][pos], None, None)
        N = len(self.layers)
        self.upload(0)
        for i in range(1, N):
            if i != 1:
                self.offload(i - 2)
            x1, x2 = self.compute(self.layers[i - 1], self.layer_fwd, x1, x2)
            self.upload(i)
        self.offload(N - 2)
        x1, x2 = self.compute(self.layers[N - 1], self.layer_fwd, x1, x2)
        self.offload(N - 1)
        # The head: the final norm and the tied embedding, perturbed again in this visit as ZO2's tied lm_head is.
        head = lambda w, x: F.linear(F.layer_norm(x, (x.shape[-1],), w["w"], w["b"]), w["tok"])  # noqa: E731
        l1, l2 = self.compute({**self.final, "tok": self.embed["tok"]}, head, x1, x2, decay=False)
        loss = lambda lg: F.cross_entropy(lg[:, :-1].float().reshape(-1, lg.shape[-1]), ids[:, 1:].reshape(-1))  # noqa: E731
        L1, L2 = loss(l1), loss(l2)
        s.sync()
        self.last_state, self.grad = start, ((L1 - L2) / (2 * self.eps)).item()
        return L1.item(), L2.item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--shapes", default="1x512")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.0)
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    dev = torch.device(a.device)
    cfg = json.load(open(os.path.join(a.model_dir, "config.json")))
    t0 = time.perf_counter()
    zo = Zo2Step(a.model_dir, dev, a.lr, a.eps, a.wd, cfg["num_attention_heads"])
    load_s = time.perf_counter() - t0
    print(f"[zo2-schedule] {len(zo.layers)} layers in host memory (fp16), loaded in {load_s:.1f} s", file=sys.stderr, flush=True)
    runs, rng = [], np.random.default_rng(0)
    for shape in a.shapes.split(","):
        B, T = map(int, shape.split("x"))
        f = os.path.join(a.model_dir, "batch.json" if os.path.exists(os.path.join(a.model_dir, "batch.json")) and T == len(json.load(open(os.path.join(a.model_dir, "batch.json")))["tokens"][0]) else f"batch-{T}.json")
        ids = torch.tensor(json.load(open(f))["tokens"][:B], dtype=torch.long, device=dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        steps = []
        for i in range(a.warmup + a.steps):
            w0 = time.perf_counter()
            l1, l2 = zo.step(ids, int(rng.integers(1_000_000_000)))
            ms = (time.perf_counter() - w0) * 1e3
            steps.append({"ms": ms, "lossPlus": l1, "lossMinus": l2, "projectedGrad": zo.grad, "warmup": i < a.warmup})
            print(f"[zo2-schedule] B={B} T={T} step {i}{' (warm-up)' if i < a.warmup else ''}: {ms:.1f} ms L+ {l1:.6f} L- {l2:.6f}",
                  file=sys.stderr, flush=True)
        timed = [s["ms"] for s in steps if not s["warmup"]]
        runs.append({
            "impl": "zo2-schedule", "precision": "fp16-amp", "offload": "cpu", "masters": "fp16", "batch": B, "seq": T,
            "ms": {"median": statistics.median(timed), "min": min(timed), "max": max(timed)},
            "peakAllocatedBytes": torch.cuda.max_memory_allocated() if dev.type == "cuda" else 0,
            "peakReservedBytes": torch.cuda.max_memory_reserved() if dev.type == "cuda" else 0,
            "steps": steps,
        })
    print(json.dumps({"impl": "zo2-schedule", "torch": torch.__version__, "loadSeconds": load_s, "layers": len(zo.layers),
                      "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu", "runs": runs}))


if __name__ == "__main__":
    main()
