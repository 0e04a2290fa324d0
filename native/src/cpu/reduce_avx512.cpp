// sum_exp (simd_cpu.h) with AVX-512: exp of 16 logits at a time, their two halves added to the
// same 8 running sums, in the same order, as the AVX2 loop adds its 8 at a time, so the result
// has sum_exp's bits (gemm_check compares them). The head's log-softmax reduces every logit of
// the vocabulary twice per step with it: 0.43 ns a logit with AVX2, 0.30 here (one Emerald
// Rapids core, rows of 1,024 in L1).
//
// Like gemm_avx512.cpp, this file alone is compiled with AVX-512 and is called only where the CPU
// has it (backend_cpu.cpp), so it uses no inline function that other files also compile (not even
// simd_cpu.h's, where it is declared): exp8's and hsum8's steps are written out again here.
#include <immintrin.h>

#include <cmath>

namespace spw {

namespace {

// exp8 (simd_cpu.h), lane for lane: the same operations in the same order.
__m512 exp16(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-87.3f), x);  // NaN stays in the second operand: propagated
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

}  // namespace

float sum_exp_avx512(const float* x, int n, float shift) {
    int i = 0;
    __m256 acc = _mm256_setzero_ps();
    const __m512 sh = _mm512_set1_ps(shift);
    for (; i + 16 <= n; i += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), sh));
        acc = _mm256_add_ps(acc, _mm512_castps512_ps256(e));
        acc = _mm256_add_ps(acc, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)));
    }
    if (i + 8 <= n) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_zextps256_ps512(_mm256_loadu_ps(x + i)), sh));
        acc = _mm256_add_ps(acc, _mm512_castps512_ps256(e));
        i += 8;
    }
    // hsum8: the halves, then pairs, then the last two.
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_shuffle_ps(s4, s4, 1));
    float s = _mm_cvtss_f32(s4);
    for (; i < n; i++) s += expf(x[i] - shift);
    return s;
}

}  // namespace spw
