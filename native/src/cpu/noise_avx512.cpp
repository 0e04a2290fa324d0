// The AVX-512 bulk noise generator: 16 blocks per vector, the operations of noise_simd.h. This
// file alone is compiled with AVX-512 enabled and is called only where the CPU has it
// (noise_cpu.cpp), so it uses no inline function that other files also compile: the linker
// would keep one copy of it, perhaps this one, for machines without AVX-512. Four groups (64
// blocks) at a time: fewer leave the units waiting on Philox's and the polynomials' chains (one
// to four groups measured on a Zen 4: four was fastest, on AVX2 too).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "noise_simd.h"

namespace spw {

namespace {

struct Avx512Lanes {
    using U = __m512i;
    using F = __m512;
    using M = __mmask16;
    static constexpr int L = 16;

    // The low and high words of block indices b .. b + 15, a lane each, made in registers (written
    // as 32 scalars and loaded, they stalled every group on the store's forwarding: 5 % of the
    // generator's time). A lane whose low word wrapped past 2^32 carries into its high word.
    static void blocks_from(uint64_t b, U* lo, U* hi) {
        const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        const __m512i l = _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)b), iota);
        const __m512i h = _mm512_set1_epi32((int)(uint32_t)(b >> 32));
        *lo = l;
        *hi = _mm512_mask_add_epi32(h, _mm512_cmplt_epu32_mask(l, iota), h, _mm512_set1_epi32(1));
    }
    static U set1(uint32_t v) { return _mm512_set1_epi32((int)v); }
    static F set1f(float v) { return _mm512_set1_ps(v); }
    static U add(U a, U b) { return _mm512_add_epi32(a, b); }
    static U sub(U a, U b) { return _mm512_sub_epi32(a, b); }
    static U and_(U a, U b) { return _mm512_and_si512(a, b); }
    static U or_(U a, U b) { return _mm512_or_si512(a, b); }
    static U xor3(U a, U b, U c) { return _mm512_ternarylogic_epi32(a, b, c, 0x96); }
    template <int S> static U srli(U a) { return _mm512_srli_epi32(a, S); }
    // The 64-bit products of the even lanes and of the odd ones; each half put in place by one
    // masked shuffle (the other lanes kept): hi takes the even products' upper words down into
    // the even lanes, lo the odd products' lower words up into the odd lanes.
    static void mul_hilo(U a, U m, U* hi, U* lo) {
        __m512i even = _mm512_mul_epu32(a, m);
        __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
        *hi = _mm512_mask_shuffle_epi32(odd, 0x5555, even, _MM_PERM_DDBB);
        *lo = _mm512_mask_shuffle_epi32(even, 0xAAAA, odd, _MM_PERM_CCAA);
    }
    static U as_u(F a) { return _mm512_castps_si512(a); }
    static F as_f(U a) { return _mm512_castsi512_ps(a); }
    static F cvt(U a) { return _mm512_cvtepi32_ps(a); }
    static U cvtt(F a) { return _mm512_cvttps_epi32(a); }
    static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
    static F add(F a, F b) { return _mm512_add_ps(a, b); }
    static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
    static F div(F a, F b) { return _mm512_div_ps(a, b); }
    static F sqrt(F a) { return _mm512_sqrt_ps(a); }
    static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
    static F floor(F a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
    static M gt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
    static M ge(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
    static M test(U a, U bit) { return _mm512_test_epi32_mask(a, bit); }
    static F sel(M m, F t, F f) { return _mm512_mask_blend_ps(m, f, t); }
    static U inc_where(U a, M m) { return _mm512_mask_add_epi32(a, m, a, _mm512_set1_epi32(1)); }
    static F neg_where(F a, M m) {
        return _mm512_castsi512_ps(_mm512_mask_xor_epi32(_mm512_castps_si512(a), m, _mm512_castps_si512(a), _mm512_set1_epi32((int)0x80000000u)));
    }
    // out[4 l + w] = v[w][l]: as the AVX2 transpose per 128-bit lane (register r then holds
    // blocks r, r + 4, r + 8, r + 12), then the 128-bit lanes in block order.
    static void store_blocks(float* out, const F v[4]) {
        __m512 t0 = _mm512_unpacklo_ps(v[0], v[1]), t1 = _mm512_unpackhi_ps(v[0], v[1]);
        __m512 t2 = _mm512_unpacklo_ps(v[2], v[3]), t3 = _mm512_unpackhi_ps(v[2], v[3]);
        __m512 b0 = _mm512_shuffle_ps(t0, t2, 0x44), b1 = _mm512_shuffle_ps(t0, t2, 0xEE);
        __m512 b2 = _mm512_shuffle_ps(t1, t3, 0x44), b3 = _mm512_shuffle_ps(t1, t3, 0xEE);
        __m512 c0 = _mm512_shuffle_f32x4(b0, b1, 0x88), c1 = _mm512_shuffle_f32x4(b2, b3, 0x88);  // blocks 0, 8, 1, 9 | 2, 10, 3, 11
        __m512 c2 = _mm512_shuffle_f32x4(b0, b1, 0xDD), c3 = _mm512_shuffle_f32x4(b2, b3, 0xDD);  // blocks 4, 12, 5, 13 | 6, 14, 7, 15
        _mm512_storeu_ps(out, _mm512_shuffle_f32x4(c0, c1, 0x88));
        _mm512_storeu_ps(out + 16, _mm512_shuffle_f32x4(c2, c3, 0x88));
        _mm512_storeu_ps(out + 32, _mm512_shuffle_f32x4(c0, c1, 0xDD));
        _mm512_storeu_ps(out + 48, _mm512_shuffle_f32x4(c2, c3, 0xDD));
    }
};

}  // namespace

void noise_range_avx512(float* z, size_t n, uint64_t seed, uint32_t id, int kind, uint64_t k0) {
    simd_noise::fill<Avx512Lanes, 4>(z, n, seed, id, kind, k0);
}

}  // namespace spw
