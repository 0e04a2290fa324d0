"""One MeZO step in PyTorch with the model resident on the GPU, timed: the GPU
baseline of bench/gpu/run.sh.

MeZO as in princeton-nlp/MeZO (large_models/trainer.py, default in-place path):
  zo_perturb_parameters(seed, s): torch.manual_seed(seed); per parameter
      z = torch.normal(0, 1, size, device, dtype); theta += s * eps * z (in place)
  zo_step:   seed = np.random.randint(1e9); +1 -> L1; -2 -> L2; +1 (restore);
             projected_grad = (L1 - L2) / (2 eps)
  zo_update: torch.manual_seed(seed); regenerate z; theta -= lr * (g * z + wd * theta)
             (no decay for bias / layer norm; wd = 0 here)
The model is transformers' OPTForCausalLM (random init written by make_opt_model.py,
loaded from the same safetensors Spillway reads), fp32, on cuda, eval mode,
torch.inference_mode, attention "sdpa" by default. Precisions: fp32 (TF32 off),
tf32 (TF32 matmuls allowed) and bf16 (the forwards under torch.autocast to bfloat16;
weights, perturbation and update stay fp32, as Spillway's bf16 GEMM mode keeps them). Tied head: named_parameters()
lists the embedding once, as in MeZO. Loss = the engine's "lm" loss: per-example
mean NLL of tokens 1..T-1 over full [B, T, V] logits, batch mean.

Each configuration (batch size x matmul precision) runs warm-up + timed steps;
steps are timed with torch.cuda.synchronize() around them (and CUDA events);
the peak is torch.cuda.max_memory_allocated after reset_peak_memory_stats.

usage: python3 bench/gpu/mezo_torch_gpu.py MODEL_DIR [--batches 1,16] [--precisions fp32,tf32,bf16]
       [--attn sdpa] [--steps 5] [--warmup 2] [--device cuda]      prints one JSON object on stdout
       (--device cpu: a smoke test of the script without a GPU)
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers import OPTForCausalLM


def no_decay(name):
    return "bias" in name or "layer_norm" in name or "layernorm" in name


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def lm_loss(model, ids, bf16=False):
    with torch.autocast(device_type=ids.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=ids, use_cache=False).logits.float()  # [B, T, V]
    B, T, V = logits.shape
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1), reduction="none")
    return nll.view(B, T - 1).mean(dim=1).mean()


class MeZO:
    def __init__(self, model, lr, eps, wd, bf16=False):
        self.model, self.lr, self.eps, self.wd, self.bf16 = model, lr, eps, wd, bf16
        self.named_parameters_to_optim = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.reset_times()

    def reset_times(self):
        self.t_perturb = self.t_forward = self.t_update = 0.0

    def zo_perturb_parameters(self, random_seed, scaling_factor=1):
        t0 = time.perf_counter()
        torch.manual_seed(random_seed)
        for _, param in self.named_parameters_to_optim:
            z = torch.normal(mean=0, std=1, size=param.data.size(), device=param.data.device, dtype=param.data.dtype)
            param.data.add_(z, alpha=scaling_factor * self.eps)
        sync()
        self.t_perturb += time.perf_counter() - t0

    def zo_forward(self, ids):
        t0 = time.perf_counter()
        loss = lm_loss(self.model, ids, self.bf16).item()  # .item() synchronizes
        self.t_forward += time.perf_counter() - t0
        return loss

    def zo_step(self, ids):
        self.zo_random_seed = int(np.random.randint(1000000000))
        self.zo_perturb_parameters(self.zo_random_seed, 1)
        loss1 = self.zo_forward(ids)
        self.zo_perturb_parameters(self.zo_random_seed, -2)
        loss2 = self.zo_forward(ids)
        self.projected_grad = (loss1 - loss2) / (2 * self.eps)
        self.zo_perturb_parameters(self.zo_random_seed, 1)
        return loss1, loss2

    def zo_update(self):
        t0 = time.perf_counter()
        torch.manual_seed(self.zo_random_seed)
        g = self.projected_grad
        for name, param in self.named_parameters_to_optim:
            z = torch.normal(mean=0, std=1, size=param.data.size(), device=param.data.device, dtype=param.data.dtype)
            if not no_decay(name) and self.wd != 0.0:
                param.data.mul_(1.0 - self.lr * self.wd)
            param.data.add_(z, alpha=-self.lr * g)
        sync()
        self.t_update += time.perf_counter() - t0


def summary(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--precisions", default="fp32,tf32,bf16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()

    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        model = OPTForCausalLM.from_pretrained(a.model_dir, dtype=torch.float32, attn_implementation=a.attn)
    except TypeError:
        model = OPTForCausalLM.from_pretrained(a.model_dir, torch_dtype=torch.float32, attn_implementation=a.attn)
    model.to(dev).eval()
    load_s = time.perf_counter() - t0
    sync()
    weights_bytes = torch.cuda.memory_allocated() if cuda else 0
    with open(os.path.join(a.model_dir, "batch.json")) as f:
        all_ids = torch.tensor(json.load(f)["tokens"], dtype=torch.long, device=dev)
    nparams = sum(p.numel() for _, p in model.named_parameters())
    print(f"[torch] loaded in {load_s:.1f} s: {nparams} parameters, {weights_bytes / 2**30:.2f} GiB allocated, "
          f"attn {model.config._attn_implementation}", file=sys.stderr, flush=True)

    runs = []
    with torch.inference_mode():
        for B in [int(x) for x in a.batches.split(",")]:
            ids = all_ids[:B].contiguous()
            T = ids.shape[1]
            # unperturbed loss, full fp32 (sanity check against Spillway's score())
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            loss0 = lm_loss(model, ids).item()
            for prec in a.precisions.split(","):
                tf32 = prec == "tf32"
                torch.backends.cuda.matmul.allow_tf32 = tf32
                torch.backends.cudnn.allow_tf32 = tf32
                loss0_prec = lm_loss(model, ids, prec == "bf16").item()
                np.random.seed(a.seed)
                trainer = MeZO(model, a.lr, a.eps, a.wd, bf16=prec == "bf16")
                sync()
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                steps = []
                for i in range(a.warmup + a.steps):
                    trainer.reset_times()
                    sync()
                    if cuda:
                        ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        ev0.record()
                    w0 = time.perf_counter()
                    l1, l2 = trainer.zo_step(ids)
                    trainer.zo_update()
                    if cuda:
                        ev1.record()
                    sync()
                    ms = (time.perf_counter() - w0) * 1e3
                    steps.append({"ms": ms, "eventMs": ev0.elapsed_time(ev1) if cuda else ms, "perturbMs": trainer.t_perturb * 1e3,
                                  "forwardMs": trainer.t_forward * 1e3, "updateMs": trainer.t_update * 1e3,
                                  "lossPlus": l1, "lossMinus": l2, "projectedGrad": trainer.projected_grad,
                                  "warmup": i < a.warmup})
                    print(f"[torch] B={B} T={T} {prec} step {i}{' (warm-up)' if i < a.warmup else ''}: {ms:.1f} ms "
                          f"(perturb {trainer.t_perturb * 1e3:.1f}, forward {trainer.t_forward * 1e3:.1f}, "
                          f"update {trainer.t_update * 1e3:.1f}) L+ {l1:.6f} L- {l2:.6f}", file=sys.stderr, flush=True)
                timed = [s for s in steps if not s["warmup"]]
                runs.append({
                    "impl": "pytorch", "precision": prec, "attn": model.config._attn_implementation,
                    "batch": B, "seq": T, "loss0": loss0, "loss0AtThisPrecision": loss0_prec,
                    "ms": summary([s["ms"] for s in timed]), "eventMs": summary([s["eventMs"] for s in timed]),
                    "phasesMedianMs": {k: statistics.median([s[k] for s in timed])
                                       for k in ("perturbMs", "forwardMs", "updateMs")},
                    "peakAllocatedBytes": torch.cuda.max_memory_allocated() if cuda else 0,
                    "peakReservedBytes": torch.cuda.max_memory_reserved() if cuda else 0,
                    "steps": steps,
                })
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "transformers": transformers.__version__,
        "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0) if cuda else "cpu", "parameters": nparams,
        "weightsAllocatedBytes": weights_bytes, "loadSeconds": load_s,
        "lr": a.lr, "eps": a.eps, "wd": a.wd, "runs": runs,
    }))


if __name__ == "__main__":
    main()
