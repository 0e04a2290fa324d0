"""Reference perturbation noise, per docs/ENGINE-SPEC.md ("Noise: Philox4x32-10", "Step seeds").

Pure numpy. 32x32->64 multiplies are done in uint64; Box-Muller uses float64 math
(np.log / np.sqrt / np.cos / np.sin). The engine uses its own float polynomials that
agree with float64 to ~2e-7 relative, so compare z values at ~1e-6 relative.
"""
import numpy as np

MASK32 = 0xFFFFFFFF
MASK64 = 0xFFFFFFFFFFFFFFFF

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
COUNTER_TAG = 0x5A4F5A4F


def fnv1a32(name):
    """FNV-1a 32-bit of the UTF-8 bytes of `name` (str or bytes)."""
    data = name.encode("utf-8") if isinstance(name, str) else bytes(name)
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & MASK32
    return h


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def step_seed(run_seed, step, j):
    """Seed of perturbation j (0-based) at step t (0-based) of a run with seed S."""
    inner = splitmix64((run_seed ^ ((step * 0xD1B54A32D192ED03) & MASK64)) & MASK64)
    return splitmix64((inner + j) & MASK64)


def philox4x32_10(ctr, key):
    """Philox4x32-10.

    ctr: array-like (..., 4) of uint32 values; key: (k0, k1) ints.
    Returns uint64 array (..., 4) holding the 32-bit output words.
    """
    c = np.asarray(ctr, dtype=np.uint64)
    c0, c1, c2, c3 = (c[..., i].copy() for i in range(4))
    k0 = np.uint64(key[0] & MASK32)
    k1 = np.uint64(key[1] & MASK32)
    m0 = np.uint64(PHILOX_M0)
    m1 = np.uint64(PHILOX_M1)
    lo_mask = np.uint64(MASK32)
    sh = np.uint64(32)
    for rnd in range(10):
        p0 = m0 * c0           # < 2^64, exact in uint64
        p1 = m1 * c2
        hi0, lo0 = p0 >> sh, p0 & lo_mask
        hi1, lo1 = p1 >> sh, p1 & lo_mask
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        if rnd < 9:
            k0 = np.uint64((int(k0) + PHILOX_W0) & MASK32)
            k1 = np.uint64((int(k1) + PHILOX_W1) & MASK32)
    return np.stack([c0, c1, c2, c3], axis=-1)


def _blocks(seed, tensor_id, blocks):
    blocks = np.asarray(blocks, dtype=np.uint64)
    ctr = np.empty(blocks.shape + (4,), dtype=np.uint64)
    ctr[..., 0] = blocks & np.uint64(MASK32)
    ctr[..., 1] = blocks >> np.uint64(32)
    ctr[..., 2] = np.uint64(tensor_id & MASK32)
    ctr[..., 3] = np.uint64(COUNTER_TAG)
    return philox4x32_10(ctr, (seed & MASK32, (seed >> 32) & MASK32))


def _box_muller(xa, xb):
    u1 = ((xa >> np.uint64(8)) + np.uint64(1)).astype(np.float64) * 2.0 ** -24
    u2 = (xb >> np.uint64(8)).astype(np.float64) * 2.0 ** -24
    r = np.sqrt(-2.0 * np.log(u1))
    ang = 2.0 * np.pi * u2
    return r * np.cos(ang), r * np.sin(ang)


def noise_at(seed, tensor_id, indices, kind="gaussian"):
    """float64 z for the given element indices (row-major, HF layout) of tensor `tensor_id`."""
    idx = np.asarray(indices, dtype=np.uint64)
    x = _blocks(seed, tensor_id, idx >> np.uint64(2))
    lane = (idx & np.uint64(3)).astype(np.int64)
    if kind == "rademacher":
        w = np.take_along_axis(x, lane[..., None], axis=-1)[..., 0]
        return np.where((w & np.uint64(1)) == 1, 1.0, -1.0)
    if kind != "gaussian":
        raise ValueError(kind)
    pair = lane >> 1
    xa = np.where(pair == 0, x[..., 0], x[..., 2])
    xb = np.where(pair == 0, x[..., 1], x[..., 3])
    zc, zs = _box_muller(xa, xb)
    return np.where((lane & 1) == 0, zc, zs)


def tensor_noise(seed, name_or_id, numel, kind="gaussian"):
    """float64 z for every element 0..numel-1 of a tensor (by HF name or tensor id)."""
    tid = fnv1a32(name_or_id) if isinstance(name_or_id, str) else int(name_or_id)
    nb = (numel + 3) // 4
    x = _blocks(seed, tid, np.arange(nb, dtype=np.uint64))
    if kind == "rademacher":
        z = np.where((x & np.uint64(1)) == 1, 1.0, -1.0)
    elif kind == "gaussian":
        z = np.empty((nb, 4), dtype=np.float64)
        z[:, 0], z[:, 1] = _box_muller(x[:, 0], x[:, 1])
        z[:, 2], z[:, 3] = _box_muller(x[:, 2], x[:, 3])
    else:
        raise ValueError(kind)
    return z.reshape(-1)[:numel]
