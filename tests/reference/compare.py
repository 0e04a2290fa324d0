"""Comparing float64 results of transcendental functions across machines.

The reference noise is float64 Box-Muller: z = sqrt(-2 log u1) * cos(2 pi u2) (or sin). numpy
computes log, cos and sin with different code on different CPUs: glibc's scalar routines (within
1 ulp) on AVX2 machines, its own AVX-512 SIMD loops (SVML-derived, within 4 ulp) where the CPU has
AVX-512, so the same z can differ in its last bits from one machine to the next (3 ulp seen
between an AVX2 and an AVX-512 machine). Through sqrt (which halves log's relative error) and one
product, z stays within about 7 ulp; NOISE_ULPS allows 16, about 3.6e-15 relative, still nine
orders of magnitude tighter than the engine's own 1e-6 tolerance on z.

Inputs that involve no transcendental function (Philox words, Rademacher signs, the stochastic
rounding's neighbours) are compared exactly.
"""
import numpy as np

NOISE_ULPS = 16


def ulps_apart(got, want):
    """Distance in units in the last place of the larger magnitude (0 where both are equal)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    scale = np.spacing(np.maximum(np.abs(got), np.abs(want)))
    return np.where(got == want, 0.0, np.abs(got - want) / scale)


def assert_ulp_close(got, want, ulps, what):
    worst = float(np.max(ulps_apart(got, want), initial=0.0))
    assert worst <= ulps, f"{what}: {worst:.0f} ulp apart (allowed {ulps})"
