// Reductions for the CPU backend's hot loops (norms, attention's softmax, log-softmax),
// written with AVX2 where available and plain loops otherwise. Results are
// deterministic for a given build (fixed lane order), not bit-equal to the
// scalar order; the golden tests bound them against the reference.
#pragma once

#include <algorithm>
#include <cmath>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SPW_SIMD_AVX2 1
#endif

namespace spw {

#ifdef SPW_SIMD_AVX2
inline float hsum8(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    __m128 s = _mm_add_ps(lo, hi);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

// e^x for x <= 0 (inputs above 0 are fine up to ~88): Cody-Waite reduction and a
// degree-7 polynomial, ~2 ulp. NaN in, NaN out.
inline __m256 exp8(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(-87.3f), x);  // NaN stays in the second operand: propagated
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#endif

inline float dot(const float* a, const float* b, int n) {
    int i = 0;
    float s = 0.f;
#ifdef SPW_SIMD_AVX2
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    s = hsum8(_mm256_add_ps(acc0, acc1));
#endif
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

inline float max_of(const float* x, int n) {
    float m = -INFINITY;
    int i = 0;
#ifdef SPW_SIMD_AVX2
    __m256 acc = _mm256_set1_ps(-INFINITY);
    bool nan = false;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        nan |= _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0;
        acc = _mm256_max_ps(acc, v);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, acc);
    for (float v : lanes) m = std::max(m, v);
    if (nan) return NAN;
#endif
    for (; i < n; i++) {
        if (std::isnan(x[i])) return NAN;
        m = std::max(m, x[i]);
    }
    return m;
}

// sum_i x[i]
inline float sum_of(const float* x, int n) {
    int i = 0;
    float s = 0.f;
#ifdef SPW_SIMD_AVX2
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_add_ps(acc0, _mm256_loadu_ps(x + i));
        acc1 = _mm256_add_ps(acc1, _mm256_loadu_ps(x + i + 8));
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_add_ps(acc0, _mm256_loadu_ps(x + i));
    s = hsum8(_mm256_add_ps(acc0, acc1));
#endif
    for (; i < n; i++) s += x[i];
    return s;
}

// sum_i (x[i] - mean)^2
inline float sum_sq_dev(const float* x, int n, float mean) {
    int i = 0;
    float s = 0.f;
#ifdef SPW_SIMD_AVX2
    __m256 m = _mm256_set1_ps(mean);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), m), d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), m);
        acc0 = _mm256_fmadd_ps(d0, d0, acc0);
        acc1 = _mm256_fmadd_ps(d1, d1, acc1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), m);
        acc0 = _mm256_fmadd_ps(d, d, acc0);
    }
    s = hsum8(_mm256_add_ps(acc0, acc1));
#endif
    for (; i < n; i++) {
        float d = x[i] - mean;
        s += d * d;
    }
    return s;
}

// x[i] = exp(x[i] - shift) in place; returns their sum (a softmax's numerators and denominator).
inline float exp_shift(float* x, int n, float shift) {
    float s = 0.f;
    int i = 0;
#ifdef SPW_SIMD_AVX2
    __m256 acc = _mm256_setzero_ps();
    __m256 sh = _mm256_set1_ps(shift);
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), sh));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    s = hsum8(acc);
#endif
    for (; i < n; i++) {
        x[i] = expf(x[i] - shift);
        s += x[i];
    }
    return s;
}

// sum_i exp(x[i] - shift)
inline float sum_exp(const float* x, int n, float shift) {
    float s = 0.f;
    int i = 0;
#ifdef SPW_SIMD_AVX2
    __m256 acc = _mm256_setzero_ps();
    __m256 sh = _mm256_set1_ps(shift);
    for (; i + 8 <= n; i += 8) acc = _mm256_add_ps(acc, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), sh)));
    s = hsum8(acc);
#endif
    for (; i < n; i++) s += expf(x[i] - shift);
    return s;
}

// sum_exp's bits with AVX-512 (reduce_avx512.cpp): call only where the CPU has AVX-512F.
float sum_exp_avx512(const float* x, int n, float shift);

}  // namespace spw
