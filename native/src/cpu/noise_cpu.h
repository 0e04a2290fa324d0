// Bulk noise for the CPU backend: eight Philox blocks (32 values) at a time,
// one block per AVX2 lane. Every step is the same IEEE operation as in
// noise_block4 (spillway/noise.h: fmaf is vfmadd, division and sqrt are
// correctly rounded), so the values are bit-identical to the scalar and CUDA
// paths; tests/native checks that, and so does backend_ops.
#pragma once

#include <cstddef>
#include <cstdint>

#include "spillway/noise.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SPW_NOISE_AVX2 1
#endif

namespace spw {

#ifdef SPW_NOISE_AVX2
namespace avx {

// hi:lo of a 32x32 -> 64-bit product in every 32-bit lane, m the same in every lane.
inline void mul_hilo(__m256i a, __m256i m, __m256i* hi, __m256i* lo) {
    __m256i even = _mm256_mul_epu32(a, m);                          // lanes 0,2,4,6: 64-bit products
    __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);    // lanes 1,3,5,7
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
    *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

// out[4 l + w] = v[w][l]: eight Philox blocks of four values, lane by lane, back in element order.
inline void store_blocks(float* out, const __m256 v[4]) {
    __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    __m256 b0 = _mm256_shuffle_ps(t0, t2, 0x44), b1 = _mm256_shuffle_ps(t0, t2, 0xEE);  // blocks 0, 1 | 4, 5
    __m256 b2 = _mm256_shuffle_ps(t1, t3, 0x44), b3 = _mm256_shuffle_ps(t1, t3, 0xEE);  // blocks 2, 3 | 6, 7
    _mm256_storeu_ps(out, _mm256_permute2f128_ps(b0, b1, 0x20));
    _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(b2, b3, 0x20));
    _mm256_storeu_ps(out + 16, _mm256_permute2f128_ps(b0, b1, 0x31));
    _mm256_storeu_ps(out + 24, _mm256_permute2f128_ps(b2, b3, 0x31));
}

inline __m256 fma(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }

// portable_logf, lane-wise, same operations.
inline __m256 logf8(__m256 x) {
    __m256i b = _mm256_castps_si256(x);
    __m256i e = _mm256_sub_epi32(_mm256_and_si256(_mm256_srli_epi32(b, 23), _mm256_set1_epi32(0xFF)), _mm256_set1_epi32(127));
    __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(b, _mm256_set1_epi32(0x7FFFFF)), _mm256_set1_epi32(0x3F800000)));
    __m256 big = _mm256_cmp_ps(m, _mm256_set1_ps(1.41421356f), _CMP_GT_OQ);
    m = _mm256_blendv_ps(m, _mm256_mul_ps(m, _mm256_set1_ps(0.5f)), big);
    e = _mm256_sub_epi32(e, _mm256_castps_si256(big));  // big lanes are all ones (-1)
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 s = _mm256_div_ps(_mm256_sub_ps(m, one), _mm256_add_ps(m, one));
    __m256 s2 = _mm256_mul_ps(s, s);
    __m256 p = _mm256_set1_ps(2.0f / 13.0f);
    p = fma(p, s2, _mm256_set1_ps(2.0f / 11.0f));
    p = fma(p, s2, _mm256_set1_ps(2.0f / 9.0f));
    p = fma(p, s2, _mm256_set1_ps(2.0f / 7.0f));
    p = fma(p, s2, _mm256_set1_ps(2.0f / 5.0f));
    p = fma(p, s2, _mm256_set1_ps(2.0f / 3.0f));
    __m256 lnm = fma(_mm256_mul_ps(p, s2), s, _mm256_mul_ps(_mm256_set1_ps(2.0f), s));
    __m256 ef = _mm256_cvtepi32_ps(e);
    return fma(ef, _mm256_set1_ps(0.693145751953125f), fma(ef, _mm256_set1_ps(1.428606765330187e-06f), lnm));
}

// portable_sincos_turns, lane-wise, same operations.
inline void sincos8(__m256 u, __m256* s_out, __m256* c_out) {
    __m256 t4 = _mm256_mul_ps(u, _mm256_set1_ps(4.0f));
    __m256 q = _mm256_floor_ps(t4);
    __m256 t = _mm256_sub_ps(t4, q);
    __m256i quadrant = _mm256_cvttps_epi32(q);
    __m256 upper = _mm256_cmp_ps(t, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    t = _mm256_blendv_ps(t, _mm256_sub_ps(t, _mm256_set1_ps(1.0f)), upper);
    quadrant = _mm256_sub_epi32(quadrant, _mm256_castps_si256(upper));
    __m256 t2 = _mm256_mul_ps(t, t);
    __m256 sp = _mm256_set1_ps(-3.598843235212084e-06f);
    sp = fma(sp, t2, _mm256_set1_ps(1.6044118478735975e-04f));
    sp = fma(sp, t2, _mm256_set1_ps(-4.681754135318687e-03f));
    sp = fma(sp, t2, _mm256_set1_ps(7.969262624616703e-02f));
    sp = fma(sp, t2, _mm256_set1_ps(-6.459640975062462e-01f));
    sp = fma(sp, t2, _mm256_set1_ps(1.5707963267948966e+00f));
    __m256 sn = _mm256_mul_ps(sp, t);
    __m256 cp = _mm256_set1_ps(4.710874778818169e-07f);
    cp = fma(cp, t2, _mm256_set1_ps(-2.5202042373060596e-05f));
    cp = fma(cp, t2, _mm256_set1_ps(9.192602748394263e-04f));
    cp = fma(cp, t2, _mm256_set1_ps(-2.0863480763352957e-02f));
    cp = fma(cp, t2, _mm256_set1_ps(2.53669507901048e-01f));
    cp = fma(cp, t2, _mm256_set1_ps(-1.2337005501361697e+00f));
    __m256 cs = fma(cp, t2, _mm256_set1_ps(1.0f));
    __m256i q2 = _mm256_and_si256(quadrant, _mm256_set1_epi32(3));
    __m256 odd = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(q2, _mm256_set1_epi32(1)), _mm256_set1_epi32(1)));
    __m256 s_sel = _mm256_blendv_ps(sn, cs, odd);
    __m256 c_sel = _mm256_blendv_ps(cs, sn, odd);
    __m256 sign_bit = _mm256_set1_ps(-0.0f);
    __m256 s_neg = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(q2, _mm256_set1_epi32(2)), _mm256_set1_epi32(2)));
    __m256i q21 = _mm256_and_si256(_mm256_add_epi32(q2, _mm256_set1_epi32(1)), _mm256_set1_epi32(2));
    __m256 c_neg = _mm256_castsi256_ps(_mm256_cmpeq_epi32(q21, _mm256_set1_epi32(2)));
    *s_out = _mm256_xor_ps(s_sel, _mm256_and_ps(s_neg, sign_bit));
    *c_out = _mm256_xor_ps(c_sel, _mm256_and_ps(c_neg, sign_bit));
}

}  // namespace avx
#endif

inline void noise_blocks8(uint64_t seed, uint32_t id, uint64_t b0, int kind, float* out) {
#ifdef SPW_NOISE_AVX2
    // Lane l holds block b0 + l.
    alignas(32) uint32_t lo[8], hi[8];
    for (int l = 0; l < 8; l++) {
        uint64_t b = b0 + (uint64_t)l;
        lo[l] = (uint32_t)b;
        hi[l] = (uint32_t)(b >> 32);
    }
    __m256i x0 = _mm256_load_si256((const __m256i*)lo), x1 = _mm256_load_si256((const __m256i*)hi);
    __m256i x2 = _mm256_set1_epi32((int)id), x3 = _mm256_set1_epi32(0x5A4F5A4F);
    __m256i m0 = _mm256_set1_epi32((int)0xD2511F53u), m1 = _mm256_set1_epi32((int)0xCD9E8D57u);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        __m256i hi0, lo0, hi1, lo1;
        avx::mul_hilo(x0, m0, &hi0, &lo0);
        avx::mul_hilo(x2, m1, &hi1, &lo1);
        __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, x1), _mm256_set1_epi32((int)k0));
        __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, x3), _mm256_set1_epi32((int)k1));
        x0 = n0;
        x1 = lo1;
        x2 = n2;
        x3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    __m256 o[4];
    if (kind == NOISE_RADEMACHER) {
        __m256i one = _mm256_set1_epi32(1);
        __m256 pos = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-1.0f);
        __m256i xs[4] = {x0, x1, x2, x3};
        for (int w = 0; w < 4; w++) {
            __m256 bit = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(xs[w], one), one));
            o[w] = _mm256_blendv_ps(neg, pos, bit);
        }
    } else {
        __m256 scale = _mm256_set1_ps(5.9604644775390625e-08f);
        __m256i pairs[2][2] = {{x0, x1}, {x2, x3}};
        for (int p = 0; p < 2; p++) {
            __m256i xa = _mm256_add_epi32(_mm256_srli_epi32(pairs[p][0], 8), _mm256_set1_epi32(1));
            __m256i xb = _mm256_srli_epi32(pairs[p][1], 8);
            __m256 u1 = _mm256_mul_ps(_mm256_cvtepi32_ps(xa), scale);
            __m256 u2 = _mm256_mul_ps(_mm256_cvtepi32_ps(xb), scale);
            __m256 rad = _mm256_sqrt_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), avx::logf8(u1)));
            __m256 sn, cs;
            avx::sincos8(u2, &sn, &cs);
            o[2 * p] = _mm256_mul_ps(rad, cs);
            o[2 * p + 1] = _mm256_mul_ps(rad, sn);
        }
    }
    avx::store_blocks(out, o);
#else
    for (int l = 0; l < 8; l++) noise_block4(seed, id, b0 + (uint64_t)l, kind, out + 4 * l);
#endif
}

// Noise of elements [k0, k0 + n) of tensor `id` into z; k0 % 4 == 0.
inline void noise_range(float* z, size_t n, uint64_t seed, uint32_t id, int kind, uint64_t k0) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) noise_blocks8(seed, id, (k0 + i) >> 2, kind, z + i);
    for (; i < n; i += 4) {
        float tail[4];
        noise_block4(seed, id, (k0 + i) >> 2, kind, tail);
        for (size_t j = 0; j < 4 && i + j < n; j++) z[i + j] = tail[j];
    }
}

}  // namespace spw
