#include "noise_cpu.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SPW_NOISE_AVX2 1
#include "noise_simd.h"
#endif

namespace spw {

#ifdef SPW_NOISE_AVX512  // the build has noise_avx512.cpp (x86-64)
void noise_range_avx512(float* z, size_t n, uint64_t seed, uint32_t id, int kind, uint64_t k0);
#endif

namespace {

#ifdef SPW_NOISE_AVX2
// AVX2 lanes for noise_simd.h: 8 blocks per vector.
struct Avx2Lanes {
    using U = __m256i;
    using F = __m256;
    using M = __m256;  // all-ones lanes where true
    static constexpr int L = 8;

    // Block indices b .. b + 7 as noise_avx512.cpp's blocks_from makes them (the carry found by a
    // signed compare of the words with their top bits flipped: AVX2 has no unsigned one).
    static void blocks_from(uint64_t b, U* lo, U* hi) {
        const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), top = _mm256_set1_epi32((int)0x80000000u);
        const __m256i l = _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)b), iota);
        // l < iota, unsigned: the lanes whose low word wrapped.
        const __m256i wrapped = _mm256_cmpgt_epi32(_mm256_xor_si256(iota, top), _mm256_xor_si256(l, top));
        *lo = l;
        *hi = _mm256_sub_epi32(_mm256_set1_epi32((int)(uint32_t)(b >> 32)), wrapped);  // -(-1) where it wrapped
    }
    static U set1(uint32_t v) { return _mm256_set1_epi32((int)v); }
    static F set1f(float v) { return _mm256_set1_ps(v); }
    static U add(U a, U b) { return _mm256_add_epi32(a, b); }
    static U sub(U a, U b) { return _mm256_sub_epi32(a, b); }
    static U and_(U a, U b) { return _mm256_and_si256(a, b); }
    static U or_(U a, U b) { return _mm256_or_si256(a, b); }
    static U xor3(U a, U b, U c) { return _mm256_xor_si256(_mm256_xor_si256(a, b), c); }
    template <int S> static U srli(U a) { return _mm256_srli_epi32(a, S); }
    // hi:lo of the 32x32 -> 64-bit product in every lane.
    static void mul_hilo(U a, U m, U* hi, U* lo) {
        __m256i even = _mm256_mul_epu32(a, m);
        __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
        *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
        *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    }
    static U as_u(F a) { return _mm256_castps_si256(a); }
    static F as_f(U a) { return _mm256_castsi256_ps(a); }
    static F cvt(U a) { return _mm256_cvtepi32_ps(a); }
    static U cvtt(F a) { return _mm256_cvttps_epi32(a); }
    static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
    static F add(F a, F b) { return _mm256_add_ps(a, b); }
    static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
    static F div(F a, F b) { return _mm256_div_ps(a, b); }
    static F sqrt(F a) { return _mm256_sqrt_ps(a); }
    static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
    static F floor(F a) { return _mm256_floor_ps(a); }
    static M gt(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
    static M ge(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
    static M test(U a, U bit) { return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(a, bit), bit)); }
    static F sel(M m, F t, F f) { return _mm256_blendv_ps(f, t, m); }
    static U inc_where(U a, M m) { return _mm256_sub_epi32(a, _mm256_castps_si256(m)); }  // true lanes are -1
    static F neg_where(F a, M m) { return _mm256_xor_ps(a, _mm256_and_ps(m, _mm256_set1_ps(-0.0f))); }
    // out[4 l + w] = v[w][l]: the lanes' blocks back in element order.
    static void store_blocks(float* out, const F v[4]) {
        __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
        __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
        __m256 b0 = _mm256_shuffle_ps(t0, t2, 0x44), b1 = _mm256_shuffle_ps(t0, t2, 0xEE);  // blocks 0, 1 | 4, 5
        __m256 b2 = _mm256_shuffle_ps(t1, t3, 0x44), b3 = _mm256_shuffle_ps(t1, t3, 0xEE);  // blocks 2, 3 | 6, 7
        _mm256_storeu_ps(out, _mm256_permute2f128_ps(b0, b1, 0x20));
        _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(b2, b3, 0x20));
        _mm256_storeu_ps(out + 16, _mm256_permute2f128_ps(b0, b1, 0x31));
        _mm256_storeu_ps(out + 24, _mm256_permute2f128_ps(b2, b3, 0x31));
    }
};
#endif

}  // namespace

bool noise_isa_available(NoiseIsa isa) {
    switch (isa) {
        case NoiseIsa::Best:
        case NoiseIsa::Scalar: return true;
#ifdef SPW_NOISE_AVX2
        case NoiseIsa::Avx2: return true;
#endif
#ifdef SPW_NOISE_AVX512
        case NoiseIsa::Avx512: return __builtin_cpu_supports("avx512f");
#endif
        default: return false;
    }
}

NoiseIsa noise_isa_from_env() {
    const char* env = std::getenv("SPILLWAY_NOISE_ISA");
    if (!env || !*env) return NoiseIsa::Best;
    std::string v = env;
    NoiseIsa isa = v == "scalar" ? NoiseIsa::Scalar : v == "avx2" ? NoiseIsa::Avx2 : v == "avx512" ? NoiseIsa::Avx512 : NoiseIsa::Best;
    if (isa == NoiseIsa::Best) throw std::runtime_error("SPILLWAY_NOISE_ISA=" + v + ": expected scalar, avx2 or avx512");
    if (!noise_isa_available(isa)) throw std::runtime_error("SPILLWAY_NOISE_ISA=" + v + ": this CPU (or build) has no such generator");
    return isa;
}

void noise_range_isa(NoiseIsa isa, float* z, size_t n, uint64_t seed, uint32_t id, int kind, uint64_t k0) {
    if (isa == NoiseIsa::Best) {
        static const NoiseIsa widest = noise_isa_available(NoiseIsa::Avx512) ? NoiseIsa::Avx512
                                       : noise_isa_available(NoiseIsa::Avx2) ? NoiseIsa::Avx2
                                                                              : NoiseIsa::Scalar;
        isa = widest;
    }
#ifdef SPW_NOISE_AVX512
    if (isa == NoiseIsa::Avx512) return noise_range_avx512(z, n, seed, id, kind, k0);
#endif
#ifdef SPW_NOISE_AVX2
    // Four groups (32 blocks) at a time, as the AVX-512 path (noise_avx512.cpp says why).
    if (isa == NoiseIsa::Avx2) return simd_noise::fill<Avx2Lanes, 4>(z, n, seed, id, kind, k0);
#endif
    for (size_t i = 0; i < n; i += 4) {
        float part[4];
        noise_block4(seed, id, (k0 + i) >> 2, kind, part);
        for (size_t j = 0; j < 4 && i + j < n; j++) z[i + j] = part[j];
    }
}

}  // namespace spw
