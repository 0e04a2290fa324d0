"""One MeZO step in PyTorch on CPU, timed: the baseline for `npm run bench`.

Faithful to princeton-nlp/MeZO (large_models/trainer.py, the in-place path,
`zo_inplace`/default trainer):
  zo_perturb_parameters(seed, s): torch.manual_seed(seed); for each parameter
      z = torch.normal(0, 1, size) and theta += s * eps * z     (in place here)
  zo_step:   seed = np.random.randint(1e9); +1 -> L1; -2 -> L2; +1 (restore);
             projected_grad = (L1 - L2) / (2 eps)
  zo_update: torch.manual_seed(seed); regenerate z per parameter;
             theta -= lr * (g * z + wd * theta) for weights,
             theta -= lr * g * z for biases and layer norms.
The in-place `add_` (instead of MeZO's `param.data = param.data + ...`) only
saves temporaries: it is the faster form of the same arithmetic.

The model is a batched OPT decoder in plain torch (pre-LayerNorm, learned
positions with offset 2, causal softmax attention, ReLU MLP, tied LM head with
full logits [B, T, V]); the loss is the "lm" loss of the engine: per-example
mean NLL of tokens 1..T-1, batch mean. Attention is PyTorch's fused
scaled_dot_product_attention where the version has it (2.x), matmul + mask
otherwise (1.13): each PyTorch at its fastest.

--compile wraps the loss (the whole forward) in torch.compile (inductor; on the
CPU it needs a C++ compiler). The perturbations and the update stay eager:
they are MeZO's own loops over the parameters, with torch.normal regenerating
z from the seed, which a compiled graph would draw from another generator.
The first (warm-up) step then includes the compilation.

Usage: python bench/mezo_torch.py MODEL_DIR BATCH_JSON [--threads 2]
       [--steps 3] [--warmup 1] [--lr 1e-6] [--eps 1e-3] [--wd 0] [--compile] [--serve]
Prints one JSON object on stdout. With --serve it steps when asked (a line
'step' or 'warmup' on stdin), answers each with a JSON line, and prints the
summary when stdin closes: bench/zo-step.ts pairs its steps with the engine's.
"""
import argparse
import json
import os
import platform
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def load_safetensors(path):
    """{name: float32 tensor}, read tensor by tensor (no whole-file buffer)."""
    out = {}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
        base = 8 + n
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if info["dtype"] != "F32":
                raise ValueError(f"{name}: dtype {info['dtype']}, expected F32")
            b0, b1 = info["data_offsets"]
            count = (b1 - b0) // 4
            f.seek(base + b0)
            a = np.fromfile(f, dtype="<f4", count=count)
            out[name] = torch.from_numpy(a).reshape(tuple(info["shape"]))
    return out


def machine_busy_ms():
    """Busy CPU time of the whole machine (all processes), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) * 1000.0 / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


FUSED_ATTENTION = hasattr(F, "scaled_dot_product_attention")


def attend(q, k, v, mask):
    """Causal softmax(q k^T) v over [B, H, T, D]; q comes scaled."""
    if FUSED_ATTENTION:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)
    w = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) + mask, dim=-1)
    return torch.matmul(w, v)


class Opt:
    """Batched OPT forward over a dict of parameters (tied head)."""

    def __init__(self, cfg, params):
        self.cfg = cfg
        self.p = params
        self.C = cfg["hidden_size"]
        self.H = cfg["num_attention_heads"]
        self.D = self.C // self.H
        self.L = cfg["num_hidden_layers"]
        self.eps = 1e-5

    def named_parameters(self):
        # Tied head: the embedding is one parameter (as in model.named_parameters()).
        return list(self.p.items())

    def _lin(self, x, pre):
        return F.linear(x, self.p[pre + ".weight"], self.p[pre + ".bias"])

    def _ln(self, x, pre):
        return F.layer_norm(x, (self.C,), self.p[pre + ".weight"], self.p[pre + ".bias"], self.eps)

    def logits(self, ids):
        B, T = ids.shape
        H, D, C = self.H, self.D, self.C
        pre = "model.decoder."
        x = F.embedding(ids, self.p[pre + "embed_tokens.weight"])
        pos = torch.arange(T) + 2
        x = x + F.embedding(pos, self.p[pre + "embed_positions.weight"])[None]
        mask = torch.full((T, T), float("-inf")).triu_(1)
        for l in range(self.L):
            lp = f"{pre}layers.{l}."
            res = x
            h = self._ln(x, lp + "self_attn_layer_norm")
            q = self._lin(h, lp + "self_attn.q_proj") * (D ** -0.5)  # OPT scales q before the product
            k = self._lin(h, lp + "self_attn.k_proj")
            v = self._lin(h, lp + "self_attn.v_proj")
            q = q.view(B, T, H, D).transpose(1, 2)
            k = k.view(B, T, H, D).transpose(1, 2)
            v = v.view(B, T, H, D).transpose(1, 2)
            a = attend(q, k, v, mask).transpose(1, 2).reshape(B, T, C)
            x = res + self._lin(a, lp + "self_attn.out_proj")
            res = x
            h = self._ln(x, lp + "final_layer_norm")
            h = self._lin(torch.relu(self._lin(h, lp + "fc1")), lp + "fc2")
            x = res + h
        x = self._ln(x, pre + "final_layer_norm")
        return F.linear(x, self.p[pre + "embed_tokens.weight"])  # [B, T, V]

    def loss(self, ids):
        """lm loss: per-example mean NLL of tokens 1..T-1, batch mean."""
        logits = self.logits(ids)
        B, T, V = logits.shape
        nll = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1), reduction="none")
        return nll.view(B, T - 1).mean(dim=1).mean()


def no_decay(name):
    return "bias" in name or "layer_norm" in name or "layernorm" in name


class MeZO:
    def __init__(self, model, lr, eps, wd, loss):
        self.model = model
        self.loss = loss
        self.lr = lr
        self.eps = eps
        self.wd = wd
        self.named_parameters_to_optim = model.named_parameters()
        self.t_perturb = 0.0
        self.t_forward = 0.0
        self.t_update = 0.0

    def zo_perturb_parameters(self, random_seed, scaling_factor=1):
        t0 = time.perf_counter()
        torch.manual_seed(random_seed)
        for _, param in self.named_parameters_to_optim:
            z = torch.normal(mean=0, std=1, size=param.size(), dtype=param.dtype)
            param.add_(z, alpha=scaling_factor * self.eps)
        self.t_perturb += time.perf_counter() - t0

    def zo_forward(self, ids):
        t0 = time.perf_counter()
        loss = self.loss(ids).item()
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
            z = torch.normal(mean=0, std=1, size=param.size(), dtype=param.dtype)
            if not no_decay(name) and self.wd != 0.0:
                # theta -= lr * (g * z + wd * theta)
                param.mul_(1.0 - self.lr * self.wd)
            param.add_(z, alpha=-self.lr * g)
        self.t_update += time.perf_counter() - t0

    def reset_times(self):
        self.t_perturb = self.t_forward = self.t_update = 0.0


def blas_info():
    """The BLAS this torch was built with (BLAS_INFO) and the math libraries it has loaded."""
    built = "unknown"
    for part in torch.__config__.show().replace("\n", ",").split(","):
        if part.strip().startswith("BLAS_INFO="):
            built = part.strip()[len("BLAS_INFO="):]
    loaded = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            name = os.path.basename(path)
            if any(k in name for k in ("blas", "mkl", "dnnl", "blis")):
                loaded.add(os.path.realpath(path))
    return {"built": built, "loaded": sorted(loaded)}


def timed_step(trainer, ids, i, warmup):
    """One MeZO step (zo_step + zo_update) with its wall and CPU time and the machine's load."""
    trainer.reset_times()
    b0 = machine_busy_ms()
    c0 = time.process_time()
    t0 = time.perf_counter()
    l1, l2 = trainer.zo_step(ids)
    trainer.zo_update()
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    others = max(0.0, machine_busy_ms() - b0 - cpu * 1e3)
    print(f"[torch] step {i}{' (warm-up)' if warmup else ''}: {dt:.3f} s "
          f"(perturb {trainer.t_perturb:.3f}, forward {trainer.t_forward:.3f}, update {trainer.t_update:.3f}) "
          f"L+ {l1:.6f} L- {l2:.6f}", file=sys.stderr, flush=True)
    return {
        "ms": dt * 1e3,
        "cpuMs": cpu * 1e3,  # user + system time of all threads
        "load1": os.getloadavg()[0],
        "otherCpuMs": others,  # CPU time other processes used during the step
        "perturbMs": trainer.t_perturb * 1e3,
        "forwardMs": trainer.t_forward * 1e3,
        "updateMs": trainer.t_update * 1e3,
        "lossPlus": l1,
        "lossMinus": l2,
        "projectedGrad": trainer.projected_grad,
        "warmup": warmup,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("batch_json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--compile", action="store_true", help="torch.compile the forward and loss")
    ap.add_argument("--serve", action="store_true",
                    help="step on request: one line 'step' or 'warmup' on stdin per step, one JSON line back; "
                         "at the end of stdin the summary (without --steps and --warmup)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    np.random.seed(args.seed)
    with open(os.path.join(args.model_dir, "config.json")) as f:
        cfg = json.load(f)
    params = load_safetensors(os.path.join(args.model_dir, "model.safetensors"))
    with open(args.batch_json) as f:
        batch = json.load(f)
    ids = torch.tensor(batch["tokens"], dtype=torch.long)  # [B, T]
    B, T = ids.shape

    model = Opt(cfg, params)
    trainer = MeZO(model, args.lr, args.eps, args.wd, torch.compile(model.loss) if args.compile else model.loss)
    steps = []
    with torch.inference_mode():
        if args.serve:
            print(json.dumps({"ready": True}), flush=True)
            for i, line in enumerate(sys.stdin):
                rec = timed_step(trainer, ids, i, line.strip() == "warmup")
                print(json.dumps(rec), flush=True)
        else:
            for i in range(args.warmup + args.steps):
                steps.append(timed_step(trainer, ids, i, i < args.warmup))

    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "impl": "pytorch",
        "torch": torch.__version__,
        "blas": blas_info(),
        "compile": args.compile,
        "attention": "scaled_dot_product_attention" if FUSED_ATTENTION else "matmul + mask + softmax",
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "openblasNumThreads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "ompNumThreads": os.environ.get("OMP_NUM_THREADS"),
        "ompWaitPolicy": os.environ.get("OMP_WAIT_POLICY"),
        "parameters": int(sum(p.numel() for _, p in model.named_parameters())),
        "batch": [B, T],
        "steps": steps,
        "maxRssBytes": ru.ru_maxrss * 1024,  # Linux: KiB
    }), flush=True)


if __name__ == "__main__":
    main()
