"""Reference for bf16/fp16 masters with stochastic rounding, per docs/ENGINE-SPEC.md
("Reduced-precision masters"). Pure numpy, written from the specification's
neighbour-and-probability form rather than from the engine's bit tricks.

  python3 precision.py check FILE.json   verifies an engine dump (see tests/native/precision-reference.test.ts)
  python3 precision.py selftest          unbiasedness and neighbour checks of the reference itself
"""
import json
import sys

import numpy as np

from noise import COUNTER_TAG, MASK32, fnv1a32, noise_at, philox4x32_10  # noqa: F401

SR_TAG = 0x53524E44  # "SRND": the rounding bits' own Philox counter lane


def sr_bits(seed, tensor_id, indices):
    """uint64 array of the 32-bit rounding word of each element index."""
    idx = np.asarray(indices, dtype=np.uint64)
    blocks = idx >> np.uint64(2)
    ctr = np.empty(blocks.shape + (4,), dtype=np.uint64)
    ctr[..., 0] = blocks & np.uint64(MASK32)
    ctr[..., 1] = blocks >> np.uint64(32)
    ctr[..., 2] = np.uint64(tensor_id & MASK32)
    ctr[..., 3] = np.uint64(SR_TAG)
    x = philox4x32_10(ctr, (seed & MASK32, (seed >> 32) & MASK32))
    lane = (idx & np.uint64(3)).astype(np.int64)
    return np.take_along_axis(x, lane[..., None], axis=-1)[..., 0]


def _neighbours(a, dtype):
    """For magnitudes a (float64, exactly float32 values) the format's values lo <= a < hi (float64)."""
    if dtype == "bf16":
        # bf16 keeps the top 16 bits of a float32: lo drops the rest.
        bits = a.astype(np.float32).view(np.uint32)
        lo = (bits & np.uint32(0xFFFF0000)).view(np.float32).astype(np.float64)
        hi = ((bits & np.uint32(0xFFFF0000)) + np.uint32(0x10000)).view(np.float32).astype(np.float64)
        return lo, hi
    h = a.astype(np.float16)  # nearest half; step down when it rounded up
    h = np.where(h.astype(np.float64) > a, np.nextafter(h, np.float16(0)), h)
    lo = h.astype(np.float64)
    hi = np.nextafter(h, np.float16(np.inf)).astype(np.float64)
    return lo, hi


def round_sr(x, dtype, r):
    """x: float32 array; r: uint64 array of 32-bit words. Returns float32."""
    x = np.asarray(x, dtype=np.float32)
    a = np.abs(x).astype(np.float64)
    lo, hi = _neighbours(a, dtype)
    p_up = np.where(hi > lo, (a - lo) / (hi - lo), 0.0)  # exact: a power-of-two spacing
    if dtype == "bf16":
        # up with probability p_up, from the word's top 16 bits
        up = (r >> np.uint64(16)).astype(np.float64) / 65536.0 >= 1.0 - p_up
    else:
        sub = a < 2.0 ** -14
        normal_up = (r & np.uint64(0x1FFF)).astype(np.float64) / 8192.0 >= 1.0 - p_up
        sub_up = (r >> np.uint64(8)).astype(np.float64) * 2.0 ** -24 < p_up
        up = np.where(sub, sub_up, normal_up)
    up &= p_up > 0
    out = np.where(up, hi, lo)
    if dtype == "fp16":
        out = np.minimum(out, 65504.0)
    return (np.sign(x) * out).astype(np.float32)


def rounded_update(before, tensor_id, terms, decay, kind, dtype):
    """The engine's update of one tensor: sequential fma per term, decay, then SR with the
    first term's seed. Rademacher z makes every product exact, so float64 then one
    rounding to float32 equals the fused multiply-add."""
    before = np.asarray(before, dtype=np.float32)
    idx = np.arange(before.size, dtype=np.uint64)
    v = before.copy()
    for seed, coef in terms:
        z = noise_at(seed, tensor_id, idx, kind)
        v = (v.astype(np.float64) - np.float64(np.float32(coef)) * z).astype(np.float32)
    if decay != 0.0:
        v = (v.astype(np.float64) - np.float64(np.float32(decay)) * before.astype(np.float64)).astype(np.float32)
    return round_sr(v, dtype, sr_bits(terms[0][0], tensor_id, idx))


def check(path):
    d = json.load(open(path))
    dtype = d["dtype"]
    terms = [(int(s), float(c)) for s, c in d["terms"]]
    bad = total = moved_total = 0
    for name, t in d["tensors"].items():
        orig = np.asarray(t["original"], dtype=np.float32)
        loaded = np.asarray(t["loaded"], dtype=np.float32)
        rne = orig.astype(np.float16).astype(np.float32) if dtype == "fp16" else _bf16_rne(orig)
        n_load = int(np.sum(rne.view(np.uint32) != loaded.view(np.uint32)))
        decay = float(d["decay"]) if t.get("decay", True) else 0.0
        exp = rounded_update(loaded, fnv1a32(name), terms, decay, d["kind"], dtype)
        after = np.asarray(t["after"], dtype=np.float32)
        n_upd = int(np.sum(exp.view(np.uint32) != after.view(np.uint32)))
        moved = int(np.sum(after != loaded))
        print(f"{name}: {orig.size} elements, load mismatches {n_load}, update mismatches {n_upd}, moved {moved}")
        bad += n_load + n_upd
        total += orig.size
        moved_total += moved
    print(json.dumps({"elements": total, "mismatches": bad, "moved": moved_total}))
    return 0 if bad == 0 else 1


def _bf16_rne(x):
    """Round to nearest even in bf16 through float64 neighbours (independent of the bit trick)."""
    a = np.abs(x).astype(np.float64)
    lo, hi = _neighbours(a, "bf16")
    mid = (lo + hi) / 2
    lo_even = ((lo.astype(np.float32).view(np.uint32) >> np.uint32(16)) & np.uint32(1)) == 0
    out = np.where(a < mid, lo, np.where(a > mid, hi, np.where(lo_even, lo, hi)))
    return (np.sign(x) * out).astype(np.float32)


def selftest():
    rng = np.random.default_rng(0)
    for dtype in ("bf16", "fp16"):
        x = (rng.standard_normal(64) * 0.02).astype(np.float32)
        x[:4] = [3e-6, -5e-7, 1.0, -0.3]  # fp16 subnormals and exact values included
        n = 4096
        rs = np.array([sr_bits(s, 7, np.arange(64, dtype=np.uint64)) for s in range(n)])
        outs = np.array([round_sr(x, dtype, rs[s]) for s in range(n)], dtype=np.float64)
        lo, hi = _neighbours(np.abs(x).astype(np.float64), dtype)
        mag = np.abs(outs)
        assert np.all((mag == lo) | (mag == hi)), f"{dtype}: a result is not a neighbour"
        spacing = np.maximum(hi - lo, 1e-30)
        err = np.abs(outs.mean(axis=0) - x.astype(np.float64)) / spacing
        # the mean of n Bernoulli draws is within 5 / (2 sqrt(n)) of p with overwhelming probability
        assert np.all(err < 5 / (2 * np.sqrt(n))), f"{dtype}: biased, worst {err.max():.4f} ulp"
        print(f"{dtype}: unbiased to {err.max():.4f} ulp over {n} draws; results are neighbours")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2]))
    sys.exit(selftest())
