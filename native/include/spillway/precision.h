// Reduced-precision masters: bf16 or fp16 storage with stochastic rounding of
// ZO updates, identical on every backend (shared __host__ __device__ source).
//
// A master in reduced precision only ever holds values of that format. An
// update is computed in float32 exactly as for float32 masters, then rounded
// stochastically to the format: up or down to the two neighbouring values with
// probabilities proportional to the distance, so the rounding is unbiased and
// updates far smaller than one ulp still move the weights on average (Gupta et
// al., "Deep Learning with Limited Numerical Precision", ICML 2015). The random
// bits are counter-based, a pure function of (step seed, tensor id, element),
// so every placement and every backend rounds identically. The contract is
// docs/ENGINE-SPEC.md; tests/reference/precision.py is the independent reference.
#pragma once

#include <cstdint>

#include "spillway/hd.h"
#include "spillway/noise.h"

namespace spw {

enum MasterDtype : int { MASTER_F32 = 0, MASTER_BF16 = 1, MASTER_F16 = 2 };

inline const char* master_dtype_name(int d) { return d == MASTER_BF16 ? "bf16" : d == MASTER_F16 ? "fp16" : "fp32"; }
inline size_t master_dtype_bytes(int d) { return d == MASTER_F32 ? 4 : 2; }

// Four rounding words for elements 4b .. 4b+3 of tensor `id` at the step seed: Philox
// keyed like the noise but on a counter lane of its own ("SRND"), so they are
// independent of every noise value.
SPW_HD inline void sr_bits4(uint64_t seed, uint32_t id, uint64_t b, uint32_t out[4]) {
    Philox4 r = philox4x32_10((uint32_t)b, (uint32_t)(b >> 32), id, 0x53524E44u, (uint32_t)seed, (uint32_t)(seed >> 32));
    for (int i = 0; i < 4; i++) out[i] = r.x[i];
}

SPW_HD inline float bf16_to_f32(uint16_t h) { return bits_to_float((uint32_t)h << 16); }

// Round to nearest even (loading a checkpoint, narrowing values already representable).
SPW_HD inline uint16_t f32_to_bf16(float f) {
    uint32_t u = float_to_bits(f);
    if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x7FFFFFu)) return (uint16_t)((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

SPW_HD inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    if (exp == 0x1Fu) return bits_to_float(sign | 0x7F800000u | (man << 13));
    if (exp != 0) return bits_to_float(sign | ((exp + 112u) << 23) | (man << 13));
    // Subnormal: man * 2^-24, exact in float32.
    float v = (float)man * 5.9604644775390625e-08f;
    return sign ? -v : v;
}

// Round to nearest even, saturating at the largest finite half (65504).
SPW_HD inline uint16_t f32_to_f16(float f) {
    uint32_t u = float_to_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (uint16_t)(sign | 0x7E00u);  // NaN
    if (a == 0x7F800000u) return (uint16_t)(sign | 0x7C00u);
    float af = bits_to_float(a);
    if (af >= 65504.0f) return (uint16_t)(sign | 0x7BFFu);
    if (a < 0x38800000u) {  // below 2^-14: subnormal half, quantum 2^-24
        float t = af * 16777216.0f;  // exact
        float fl = floorf(t);
        float frac = t - fl;
        uint32_t m = (uint32_t)fl;
        if (frac > 0.5f || (frac == 0.5f && (m & 1u))) m++;
        return (uint16_t)(sign | m);  // m == 1024 is the smallest normal, encoded alike
    }
    uint32_t e = (a >> 23) - 112u, man = a & 0x7FFFFFu;
    uint32_t r = (e << 10) | (man >> 13);
    uint32_t rest = man & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (r & 1u))) r++;
    if (r >= 0x7C00u) r = 0x7BFFu;
    return (uint16_t)(sign | r);
}

// x rounded stochastically to bf16 (returned as float32) with one 32-bit random word.
SPW_HD inline float round_bf16_sr(float x, uint32_t r) {
    uint32_t u = float_to_bits(x);
    if ((u & 0x7F800000u) == 0x7F800000u) return x;  // inf and NaN stay
    // Adding 16 uniform bits below the kept mantissa carries into it with probability
    // equal to the dropped fraction; sign-magnitude makes this symmetric for negatives.
    u += r >> 16;
    u &= 0xFFFF0000u;
    return bits_to_float(u);
}

// x rounded stochastically to fp16 (returned as float32), saturating at +-65504.
SPW_HD inline float round_f16_sr(float x, uint32_t r) {
    uint32_t u = float_to_bits(x);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a >= 0x7F800000u) return x;
    float out;
    if (a < 0x38800000u) {
        // Subnormal range: multiples of 2^-24. floor(t) + 1 with probability frac(t).
        float t = bits_to_float(a) * 16777216.0f;
        float fl = floorf(t);
        float frac = t - fl;
        float uni = (float)(r >> 8) * 5.9604644775390625e-08f;  // [0, 1), 24 bits
        out = (uni < frac ? fl + 1.0f : fl) * 5.9604644775390625e-08f;
    } else {
        a += r & 0x1FFFu;  // 13 dropped mantissa bits
        a &= ~0x1FFFu;
        out = bits_to_float(a);
        if (out > 65504.0f) out = 65504.0f;
    }
    return (u & 0x80000000u) ? -out : out;
}

SPW_HD inline float round_sr(float x, int dtype, uint32_t r) {
    return dtype == MASTER_BF16 ? round_bf16_sr(x, r) : dtype == MASTER_F16 ? round_f16_sr(x, r) : x;
}

SPW_HD inline float widen_one(uint16_t h, int dtype) { return dtype == MASTER_BF16 ? bf16_to_f32(h) : f16_to_f32(h); }
SPW_HD inline uint16_t narrow_one(float f, int dtype) { return dtype == MASTER_BF16 ? f32_to_bf16(f) : f32_to_f16(f); }

}  // namespace spw
