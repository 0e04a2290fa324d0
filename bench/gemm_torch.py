"""Float32 GEMM rates of a PyTorch build at given shapes: the MKL side of the floor of
`npm run bench` (bench/zo-step.ts), beside the engine's own (native/bench/gemm_rate.cpp).

Shapes:
  MxKxN        F.linear(x[M, K], W[N, K]): a projection or the head, as the anchor runs it
  bmm:BxMxKxN  torch.bmm(a[B, M, K], b[B, K, N]): attention's per-head products

Usage: python bench/gemm_torch.py [--threads 2] [--reps 5] SHAPE ...
Prints one JSON line per shape: {"shape", "via", "threads", "reps", "bestMs", "medianMs",
"gflops", "gflopsMedian", "bestCpuMs", "gflopsPerCpuSecond"} (gflops from the best repetition,
gflopsPerCpuSecond from the one that took the least CPU time of the process, after one
untimed call; a repetition is a batch of callsPerRep calls lasting at least 50 ms, its times
per call). Run it with OMP_WAIT_POLICY=PASSIVE for CPU times that count no spinning.
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

BATCH_S = 0.05


def operands(shape):
    """(function, flops) for one shape string."""
    if shape.startswith("bmm:"):
        b, m, k, n = (int(v) for v in shape[4:].split("x"))
        x, y = torch.randn(b, m, k), torch.randn(b, k, n)
        return (lambda: torch.bmm(x, y)), 2.0 * b * m * k * n
    m, k, n = (int(v) for v in shape.split("x"))
    x, w = torch.randn(m, k), torch.randn(n, k) * 0.02
    return (lambda: F.linear(x, w)), 2.0 * m * k * n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shapes", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with torch.inference_mode():
        for shape in args.shapes:
            run, flops = operands(shape)
            run()
            # A repetition is a batch of calls lasting at least BATCH_S (as gemm_rate's): the CPU
            # time of a thread running on another core is only counted at its next tick or
            # switch, so one call of a few ms can miss most of a worker's time.
            t0 = time.perf_counter()
            run()
            inner = max(1, math.ceil(BATCH_S / max(time.perf_counter() - t0, 1e-6)))
            ms, cpu = [], []
            for _ in range(args.reps):
                c0 = time.process_time()
                t0 = time.perf_counter()
                for _ in range(inner):
                    run()
                ms.append((time.perf_counter() - t0) * 1e3 / inner)
                cpu.append((time.process_time() - c0) * 1e3 / inner)
            best, med = min(ms), statistics.median(ms)
            print(json.dumps({
                "shape": shape, "via": f"torch {torch.__version__}", "threads": torch.get_num_threads(),
                "reps": args.reps, "callsPerRep": inner, "bestMs": best, "medianMs": med,
                "gflops": flops / best / 1e6, "gflopsMedian": flops / med / 1e6,
                "bestCpuMs": min(cpu), "gflopsPerCpuSecond": flops / min(cpu) / 1e6,
            }), flush=True)


if __name__ == "__main__":
    main()
