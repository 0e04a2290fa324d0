// The CPU backend's own GEMM: gemm_avx512.cpp for CPUs with AVX-512F, gemm_avx2.cpp (AVX2 and FMA)
// for the others, with the same bits: each element is the same chain of fused multiply-adds.
#pragma once

#include <cstddef>

namespace spw {

// The own GEMM's depth block: a product no deeper is one pass over K per block of columns.
constexpr int kOwnGemmDepthBlock = 768;

// C[M, N] = alpha A[M, K] op(B) + C when accumulate, else + bias[N] on every row when bias is not
// null; single-threaded, row-major with leading dimensions; op(B) = B^T for B stored [N, K]
// (b_nk), else B stored [K, N]. Every element is the same chain of fused multiply-adds whatever
// its place, so bands of columns or rows give the whole product's bits; with a bias, the bits of
// C = bias then accumulating. Call only where the CPU has AVX-512F. False, with C untouched, when
// its packing buffers (under 4 MiB per thread) could not be allocated.
bool gemm_avx512(int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, bool b_nk, float* C,
                 int ldc, bool accumulate, const float* bias = nullptr);

// B of a +eps/-eps pair, made from the master as it is packed: theta stored [N, K], element
// (j, k) at theta[j * ldt + k] with noise index first + j * ldt + k; C[0] is computed with
// fma(scale, z, theta), C[1] with fma(-scale, z, theta), z drawn once for both (perturb_pair's
// bits where nothing is masked). draw(ctx, z, n, k0) writes z for the n noise indices [k0, k0 + n)
// (k0 % 4 == 0): the backend's own generator (noise_fill's bits); the kernels perturb with it as
// they transpose.
// panels, when not null, keeps both Bs packed (2 * pair_panel_floats(N, K)): a call with
// packed = false writes them, later calls with packed = true read them and draw nothing.
struct NoisyPairB {
    const float* theta = nullptr;
    size_t ldt = 0;
    uint64_t first = 0;
    void (*draw)(const void* ctx, float* z, size_t n, uint64_t k0) = nullptr;
    float scale = 0.0f;
    const void* ctx = nullptr;
    float* panels = nullptr;
    bool packed = false;
};
// Floats of one packed B of the pair: N rounded up to the kernel's 32 columns, times K.
size_t pair_panel_floats(int N, int K);

// The pair's products, C[s][M, N] = A[s][M, K] B_s^T (+ bias[s][N] on every row when not null),
// single-threaded, with gemm_avx512's bits for each (B_s as perturb_pair would have written it);
// relu: max(C, 0) stored instead (the bits of x > 0 ? x : 0 afterwards).
// False, with C untouched, when its buffers could not be allocated, or where the noise indices
// are not multiples of 4 at the rows' starts (ldt or first; the caller then makes the copies).
bool gemm_avx512_pair(int M, int N, int K, const float* const* A, int lda, const NoisyPairB& b, float* const* C, int ldc,
                      const float* const* bias, bool relu = false);

// The AVX-512 12 x 32 kernel alone, for gemm_rate --kernel (where a product's operands sit, and
// what that costs the kernel): `tiles` packed A panels (kc x 12 each, as pack_a leaves them)
// against `panels` packed B panels (kc x 32 each, as pack_b leaves them), every tile against
// every panel, panels outermost as gemm_avx512's loop runs them; each tile's result is stored
// into C (12 x 32, row stride 32), the last one kept. kc <= kOwnGemmDepthBlock. Only where the CPU
// has AVX-512F.
void gemm_avx512_kernel_sweep(int kc, const float* a, int tiles, const float* b, int panels, float* c);

// What each kernel file's loop computes: one or two streams' products against the same panels'
// layout. Plain: B (ldb, b_nk) packed into the thread's buffer. Pair: panels made from the master
// (pair != null), kept in pair->panels when given. Streams' bias and ReLU as above.
struct GemmProduct {
    int M, N, K;
    int streams;
    const float* const* A;
    int lda;
    const float* B;  // plain
    int ldb;
    bool b_nk;
    const NoisyPairB* pair;
    float* const* C;
    int ldc;
    float alpha;
    bool accumulate;
    const float* const* bias;
    bool relu;
};

// A kernel file's loop over a GemmProduct (its `run`).
using GemmLoop = bool (*)(const GemmProduct&);

// The entry points' shared part, around a kernel file's loop (gemm_avx2.cpp), with the contracts
// of gemm_avx512 and gemm_avx512_pair above. Plain: an empty product is done; one with no depth
// is alpha times an empty sum (C + 0 accumulating, the bias + 0, or 0); else the one stream is
// handed to `run`. Pair: an empty product is done; no depth, noise indices whose rows do not start
// at multiples of 4, or neither a draw nor kept panels, are refused; else both streams.
bool gemm_plain_via(GemmLoop run, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, bool b_nk,
                    float* C, int ldc, bool accumulate, const float* bias);
bool gemm_pair_via(GemmLoop run, int M, int N, int K, const float* const* A, int lda, const NoisyPairB& b, float* const* C,
                   int ldc, const float* const* bias, bool relu);

// The AVX2 twins (gemm_avx2.cpp): the same contracts and the same bits, for any x86-64 CPU with
// AVX2 and FMA. Their panels are 16 columns wide: pair_panel_floats_avx2 sizes the kept ones.
bool gemm_avx2(int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, bool b_nk, float* C, int ldc,
               bool accumulate, const float* bias = nullptr);
size_t pair_panel_floats_avx2(int N, int K);
bool gemm_avx2_pair(int M, int N, int K, const float* const* A, int lda, const NoisyPairB& b, float* const* C, int ldc,
                    const float* const* bias, bool relu = false);

namespace {

// Both kernel files' pack_b_pair past its last whole transpose: depth [k, kc) of W rows of z
// (staged, row stride kc) and of theta (row stride ldt), `rows` of them real, one element at a
// time into W lanes of both panels (row stride ld; the lanes of missing rows zero), with
// perturb_pair's bits. In an anonymous namespace: each file that uses it has its own copy, so the
// AVX-512 file's (compiled with AVX-512) is never the one the AVX2 file calls.
template <int W>
void pack_pair_tail(const float* stage, const float* theta, size_t ldt, int rows, int k, int kc, float scale, float* plus,
                    float* minus, size_t ld) {
    for (; k < kc; k++)
        for (int r = 0; r < W; r++) {
            const float z = r < rows ? stage[(size_t)r * kc + k] : 0.0f, t = r < rows ? theta[(size_t)r * ldt + k] : 0.0f;
            plus[(size_t)k * ld + r] = r < rows ? __builtin_fmaf(scale, z, t) : 0.0f;
            minus[(size_t)k * ld + r] = r < rows ? __builtin_fmaf(-scale, z, t) : 0.0f;
        }
}

}  // namespace

}  // namespace spw
