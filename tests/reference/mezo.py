"""One MeZO step with clean float32 masters, per docs/ENGINE-SPEC.md.

For perturbation j (seed_j = noise.step_seed(S, t, j) unless seeds are given):
  z_j      = noise.tensor_noise(seed_j, name, numel, kind) cast to float32, per tensor
  w+ / w-  = theta +/- eps * z_j          (float32; the master is not modified)
  g_j      = (L+ - L-) / (2 eps)           (losses: losses.batch_loss, float64)
Update, per element, in float32, in this order:
  theta = theta - float32(lr * g_j / q) * z_j    for j = 0..q-1
  theta = theta - float32(lr * wd) * theta_before_step   (decayed tensors only)
A non-finite g_j / L+ / L- skips the whole update.

Every tensor of the checkpoint is trainable; a tied LM head has no tensor of its
own (the forward reads the perturbed embedding, so it shares its noise).
"""
import math

import numpy as np
import torch

try:
    from . import losses, models, noise
except ImportError:  # pragma: no cover
    import losses
    import models
    import noise


def z_tensor(seed, name, shape, kind):
    n = int(np.prod(shape)) if len(shape) else 1
    z = noise.tensor_noise(seed, name, n, kind).astype(np.float32)
    return torch.from_numpy(z).reshape(tuple(shape))


def mezo_step(cfg, params, batch, *, run_seed, step, q, lr, eps, wd, kind="gaussian", seeds=None):
    """Returns (new_params, info). params: {name: float32 tensor} (not modified)."""
    names = list(params.keys())
    if seeds is None:
        seeds = [noise.step_seed(run_seed, step, j) for j in range(q)]
    eps32 = torch.tensor(eps, dtype=torch.float32)
    info = {"seeds": seeds, "loss_plus": [], "loss_minus": [], "projected_grad": []}
    zs = []
    for j in range(q):
        z = {n: z_tensor(seeds[j], n, params[n].shape, kind) for n in names}
        zs.append(z)
        plus = {n: params[n] + eps32 * z[n] for n in names}
        minus = {n: params[n] - eps32 * z[n] for n in names}
        lp = losses.batch_loss(cfg, plus, batch)
        lm = losses.batch_loss(cfg, minus, batch)
        g = (lp - lm) / (2.0 * eps)
        info["loss_plus"].append(lp)
        info["loss_minus"].append(lm)
        info["projected_grad"].append(g)
    vals = info["loss_plus"] + info["loss_minus"] + info["projected_grad"]
    if not all(math.isfinite(v) for v in vals):
        info["skipped"] = True
        return {n: params[n].clone() for n in names}, info
    info["skipped"] = False
    new = {}
    decay = torch.tensor(lr * wd, dtype=torch.float32)
    for n in names:
        before = params[n]
        th = before.clone()
        for j in range(q):
            c = torch.tensor(lr * info["projected_grad"][j] / q, dtype=torch.float32)
            th = th - c * zs[j][n]
        if wd != 0.0 and not models.no_decay(n):
            th = th - decay * before
        new[n] = th
    return new, info
