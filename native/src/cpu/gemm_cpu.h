// The CPU backend's own GEMM (gemm_avx512.cpp), for CPUs with AVX-512F.
#pragma once

namespace spw {

// C[M, N] = alpha A[M, K] op(B) + C when accumulate, else + bias[N] on every row when bias is not
// null; single-threaded, row-major with leading dimensions; op(B) = B^T for B stored [N, K]
// (b_nk), else B stored [K, N]. Every element is the same chain of fused multiply-adds whatever
// its place, so bands of columns or rows give the whole product's bits; with a bias, the bits of
// C = bias then accumulating. Call only where the CPU has AVX-512F. False, with C untouched, when
// its packing buffers (under 4 MiB per thread) could not be allocated.
bool gemm_avx512(int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, bool b_nk, float* C,
                 int ldc, bool accumulate, const float* bias = nullptr);

}  // namespace spw
