// Counter-based perturbation noise, identical on every backend.
//
// z for element k of tensor `id` at seed s is a pure function of (s, id, k):
// Philox4x32-10 (Salmon et al., SC'11) followed by Box-Muller written with
// explicit fused multiply-adds, so the CPU and CUDA builds produce the same
// bits. The contract is docs/ENGINE-SPEC.md; tests/reference/noise.py is the
// independent reference.
#pragma once

#include <cstdint>
#include <cstring>
#include <cmath>

#include "spillway/hd.h"

namespace spw {

enum NoiseKind : int { NOISE_GAUSSIAN = 0, NOISE_RADEMACHER = 1 };

SPW_HD inline uint32_t fnv1a32(const char* s, size_t n) {
    uint32_t h = 0x811C9DC5u;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x01000193u;
    }
    return h;
}

SPW_HD inline uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Seed of perturbation j at step t of a run seeded with S.
SPW_HD inline uint64_t step_seed(uint64_t run_seed, uint64_t step, uint64_t j) {
    return splitmix64(splitmix64(run_seed ^ (step * 0xD1B54A32D192ED03ull)) + j);
}

struct Philox4 {
    uint32_t x[4];
};

SPW_HD inline Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                    uint32_t k1) {
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c1 ^ k0;
        uint32_t n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        if (r < 9) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
    }
    Philox4 out = {{c0, c1, c2, c3}};
    return out;
}

SPW_HD inline float bits_to_float(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

SPW_HD inline uint32_t float_to_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

// Natural log for x in [2^-24, 1], float, from fmaf and exact operations only.
SPW_HD inline float portable_logf(float x) {
    uint32_t b = float_to_bits(x);
    int e = (int)((b >> 23) & 0xFF) - 127;
    float m = bits_to_float((b & 0x7FFFFFu) | 0x3F800000u);  // [1, 2)
    // Branch-free so that bulk generators vectorise: m / 2 is exact.
    bool big = m > 1.41421356f;
    m = big ? m * 0.5f : m;
    e += big ? 1 : 0;
    float s = (m - 1.0f) / (m + 1.0f);  // |s| < 0.1716, IEEE division on every backend
    float s2 = s * s;
    // 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...)
    float p = 2.0f / 13.0f;
    p = fmaf(p, s2, 2.0f / 11.0f);
    p = fmaf(p, s2, 2.0f / 9.0f);
    p = fmaf(p, s2, 2.0f / 7.0f);
    p = fmaf(p, s2, 2.0f / 5.0f);
    p = fmaf(p, s2, 2.0f / 3.0f);
    float lnm = fmaf(p * s2, s, 2.0f * s);
    const float ln2_hi = 0.693145751953125f;      // ln 2 rounded to 16 bits: e * ln2_hi is exact
    const float ln2_lo = 1.428606765330187e-06f;  // ln 2 - ln2_hi
    float ef = (float)e;
    return fmaf(ef, ln2_hi, fmaf(ef, ln2_lo, lnm));
}

// sin and cos of 2*pi*u for u in [0, 1) given as an exact multiple of 2^-24.
SPW_HD inline void portable_sincos_turns(float u, float* s_out, float* c_out) {
    float t4 = u * 4.0f;             // exact
    float q = floorf(t4);
    float t = t4 - q;                // [0, 1), exact
    int quadrant = (int)q;
    if (t >= 0.5f) {
        t = t - 1.0f;                // [-0.5, 0), exact
        quadrant += 1;
    }
    // a = t * pi/2 in [-pi/4, pi/4); polynomials in t with Taylor coefficients of (pi/2)^k / k!.
    float t2 = t * t;
    float sp = -3.598843235212084e-06f;              // -(pi/2)^11 / 11!
    sp = fmaf(sp, t2, 1.6044118478735975e-04f);      //  (pi/2)^9 / 9!
    sp = fmaf(sp, t2, -4.681754135318687e-03f);      // -(pi/2)^7 / 7!
    sp = fmaf(sp, t2, 7.969262624616703e-02f);       //  (pi/2)^5 / 5!
    sp = fmaf(sp, t2, -6.459640975062462e-01f);      // -(pi/2)^3 / 3!
    sp = fmaf(sp, t2, 1.5707963267948966e+00f);      //  pi/2
    float sn = sp * t;
    float cp = 4.710874778818169e-07f;               //  (pi/2)^12 / 12!
    cp = fmaf(cp, t2, -2.5202042373060596e-05f);     // -(pi/2)^10 / 10!
    cp = fmaf(cp, t2, 9.192602748394263e-04f);       //  (pi/2)^8 / 8!
    cp = fmaf(cp, t2, -2.0863480763352957e-02f);     // -(pi/2)^6 / 6!
    cp = fmaf(cp, t2, 2.53669507901048e-01f);        //  (pi/2)^4 / 4!
    cp = fmaf(cp, t2, -1.2337005501361697e+00f);     // -(pi/2)^2 / 2!
    float cs = fmaf(cp, t2, 1.0f);
    // Rotate by the quadrant with exact sign flips (branch-free, same bits as a switch).
    int q2 = quadrant & 3;
    float s_sel = (q2 & 1) ? cs : sn;
    float c_sel = (q2 & 1) ? sn : cs;
    *s_out = (q2 & 2) ? -s_sel : s_sel;
    *c_out = ((q2 + 1) & 2) ? -c_sel : c_sel;
}

// Four consecutive noise values of block b (elements 4b .. 4b+3) of tensor `id`.
SPW_HD inline void noise_block4(uint64_t seed, uint32_t id, uint64_t b, int kind, float out[4]) {
    Philox4 r = philox4x32_10((uint32_t)b, (uint32_t)(b >> 32), id, 0x5A4F5A4Fu, (uint32_t)seed,
                              (uint32_t)(seed >> 32));
    if (kind == NOISE_RADEMACHER) {
        for (int i = 0; i < 4; i++) out[i] = (r.x[i] & 1u) ? 1.0f : -1.0f;
        return;
    }
    for (int pair = 0; pair < 2; pair++) {
        uint32_t xa = r.x[2 * pair], xb = r.x[2 * pair + 1];
        float u1 = (float)((xa >> 8) + 1u) * 5.9604644775390625e-08f;  // (0, 1]
        float u2 = (float)(xb >> 8) * 5.9604644775390625e-08f;         // [0, 1)
        float rad = sqrtf(-2.0f * portable_logf(u1));
        float sn, cs;
        portable_sincos_turns(u2, &sn, &cs);
        out[2 * pair] = rad * cs;
        out[2 * pair + 1] = rad * sn;
    }
}

// Noise of one element (slow path; bulk generation works block by block).
SPW_HD inline float noise_at(uint64_t seed, uint32_t id, uint64_t k, int kind) {
    float v[4];
    noise_block4(seed, id, k >> 2, kind, v);
    return v[k & 3];
}

}  // namespace spw
