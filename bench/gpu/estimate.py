"""Expected wall time of bench/gpu/run.sh on one H100 (80 GB, PCIe 5), printed before it starts.

usage: python3 bench/gpu/estimate.py --models "1.3b 6.7b" --batches "1 16" --seq 512 --gemms "fp32 tf32 bf16" \
           --steps 5 --warmup 2 [--resident 1] [--streamed 1 --stream-models "1.3b 6.7b" --stream-shapes "1x512 16x512 1x2048" \
           --stream-masters "fp32 bf16" --stream-gemms fp32 --stream-steps 3 --stream-warmup 1]

Rough by design (+-30%): fitted to the run of 2026-11-23 (bench/results/gpu-zo-step.md: Spillway fp32
22-40 TFLOP/s effective, PyTorch fp32 ~45 and TF32 ~180 TFLOP/s on the linear layers, loads at ~1.1 GB/s
from the page cache, model writing at ~0.55 GB/s) plus assumptions for what has not run on a GPU yet:
Spillway's tf32/bf16 GEMM modes at 2x its fp32 rate, H2D at 45 GB/s, bf16 master packing at 3 ns a
parameter (single-threaded), a streamed step at 1.15 x max(compute, transfer), the transfer being H2D + D2H
with updates on the device (one copy queue carries both).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_opt_model import SHAPES  # noqa: E402


def params(m):
    s = SHAPES[m]
    C, F, V, L = s["hidden"], s["ffn"], s["vocab"], s["layers"]
    block = 4 * C * C + 2 * C * F + 9 * C + F
    return {"all": V * C + 2050 * C + L * block + 2 * C, "blocks": L * block, "C": C}


def spill_rate(m, gemm):
    """Spillway's effective FLOP/s on 4 x P x tokens (two forwards)."""
    p = params(m)["all"]
    r = 27e12 if p < 3e9 else 38e12 if p < 10e9 else 40e12
    return r * (2.0 if gemm in ("tf32", "bf16") else 1.0)


def compute_s(m, B, T, gemm):
    p = params(m)
    attn = 1 + T / (6 * p["C"])  # attention's share grows with T
    return 4 * p["all"] * B * T * attn / spill_rate(m, gemm) + 1.8e-11 * p["all"]  # + noise/update passes


def torch_step_s(m, B, T, prec):
    p = params(m)
    attn = 1 + T / (6 * p["C"])
    return 4 * p["all"] * B * T * attn / {"fp32": 45e12, "tf32": 180e12}.get(prec, 250e12) + 0.027 * p["all"] / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resident", type=int, default=1)
    ap.add_argument("--models", default="1.3b")
    ap.add_argument("--batches", default="1 16")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--gemms", default="fp32 tf32 bf16")
    ap.add_argument("--torch-precisions", default="fp32,tf32,bf16")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--streamed", type=int, default=1)
    ap.add_argument("--stream-models", default="1.3b 6.7b")
    ap.add_argument("--stream-shapes", default="1x512 16x512 1x2048")
    ap.add_argument("--stream-masters", default="fp32 bf16")
    ap.add_argument("--stream-gemms", default="fp32")
    ap.add_argument("--stream-offload", default="cpu")
    ap.add_argument("--stream-update", default="device")
    ap.add_argument("--stream-steps", type=int, default=3)
    ap.add_argument("--stream-warmup", type=int, default=1)
    ap.add_argument("--h2d", type=float, default=45e9)
    ap.add_argument("--zo2-schedule", type=int, default=1)
    a = ap.parse_args()
    rows, written = [], set()

    def write_model(m):
        if m in written:
            return 0.0
        written.add(m)
        nb = 2 if m == "13b" else 4
        t = params(m)["all"] * nb / 0.55e9
        rows.append((f"OPT-{m}: write the model ({nb * params(m)['all'] / 1e9:.1f} GB)", t))
        return t

    if a.resident:
        for m in a.models.split():
            write_model(m)
            P = params(m)["all"]
            for g in a.gemms.split():  # one engine (one load) per GEMM precision, every batch size
                t = 3 + P * 4 / 1.15e9 + sum((a.warmup + a.steps + 0.5) * compute_s(m, B, a.seq, g) for B in map(int, a.batches.split()))
                rows.append((f"OPT-{m} resident Spillway {g}, batches {a.batches} x {a.seq}", t))
            t = 12 + P * 4 / 5e9 + sum((a.warmup + a.steps) * torch_step_s(m, B, a.seq, p) + torch_step_s(m, B, a.seq, "fp32") / 2
                                       for B in map(int, a.batches.split()) for p in a.torch_precisions.split(","))
            rows.append((f"OPT-{m} resident PyTorch {a.torch_precisions}, batches {a.batches} x {a.seq}", t))
    if a.streamed:
        shapes = [tuple(map(int, s.split("x"))) for s in a.stream_shapes.split()]
        for m in a.stream_models.split():
            write_model(m)
            p = params(m)
            for mast in a.stream_masters.split():
                eb = 4 if mast == "fp32" else 2
                for g in a.stream_gemms.split():
                    load = 3 + p["all"] * 4 / 1.15e9 + p["blocks"] * eb / 10e9 + (3e-9 * p["all"] if mast != "fp32" else 0)
                    xfer = p["blocks"] * eb / a.h2d
                    # update on device: every block also goes back D2H on the same copy queue (serial)
                    queue = xfer * (2 if a.stream_update == "device" else 1)
                    t = load + 3  # + calibrate
                    for B, T in shapes:
                        step = 1.15 * max(compute_s(m, B, T, g), queue)
                        t += (a.stream_warmup + a.stream_steps + 0.5) * step
                    rows.append((f"OPT-{m} streamed ({a.stream_offload}) masters {mast}, gemm {g}, {a.stream_shapes} "
                                 f"(H2D {p['blocks'] * eb / 1e9:.1f} GB/step, floor {1e3 * xfer:.0f} ms)", t))
    if a.streamed and a.zo2_schedule:
        shapes = [tuple(map(int, s.split("x"))) for s in a.stream_shapes.split()]
        for m in a.stream_models.split():
            p = params(m)
            # the fp32 file read and narrowed to fp16 in host memory; per step every layer up and back down, one
            # after the other (the host waits at each task), at pageable-memory rates
            t = 5 + p["all"] * 4 / 2e9
            for B, T in shapes:
                step = 2 * p["blocks"] * 2 / 12e9 + compute_s(m, B, T, "tf32")
                t += (a.stream_warmup + a.stream_steps + 0.5) * step
            rows.append((f"OPT-{m} ZO2's schedule (re-implemented), {a.stream_shapes}", t))
    total = sum(t for _, t in rows) + 20  # + setup (node, OpenBLAS, report)
    w = max(len(r) for r, _ in rows) if rows else 10
    for r, t in rows:
        print(f"  {r:<{w}}  {t:7.0f} s")
    print(f"  {'expected wall time (setup included)':<{w}}  {total:7.0f} s = {total / 60:.1f} min")


if __name__ == "__main__":
    main()
