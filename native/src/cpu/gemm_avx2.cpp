// The CPU backend's own float32 GEMM for CPUs with AVX2 and FMA but no AVX-512 (AMD's Zen 1-3,
// Intel's desktop parts since Alder Lake): gemm_avx512.cpp's twin, with its bits. Every element
// is the same chain as there (per depth block of kOwnGemmDepthBlock, a sum started at zero and
// fused-multiply-added in the order of k, times alpha, then added to C, the bias or nothing; the
// ReLU as max(c, 0)), so a product, and a training run, gives the same bits on either kind of CPU.
// Before it, such a CPU ran every product on OpenBLAS, whose Zen kernels give a row other bits
// when it comes with another count of rows (a data-parallel shard's forward then drifted from
// the whole batch's), and a pair's perturbed weights went through working copies.
//
// Blocking as gemm_avx512.cpp's, for 16 registers of 8 lanes: for each block of NC output columns
// and KC of depth, and each block of MC rows, A's block is packed into panels of 6 rows ([k][6]),
// B's into panels of 16 columns ([k][16]) as the first row block reaches them (8 x 8 transposes
// where B is stored [N, K]). The 6 x 16 kernel keeps its tile in 12 registers, broadcasting A and
// loading two vectors of B per step, over a slice of the depth block at a time (kKSub) for all
// the tiles of a panel before the next slice, the tiles' sums kept between slices.
//
// A pair (gemm_avx2_pair) runs both streams' products in the same loop against panels made from
// the master as they are packed (z drawn once per weight, perturbed both ways in a staging block
// that stays in L2): the loop below takes one or two streams, so the single product and the pair
// share it.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "gemm_cpu.h"

namespace spw {

namespace {

constexpr int kMR = 6, kNR = 16;
// KC is the chain's depth block (the bits); the kernel runs it kKSub at a time over all the tiles
// of a panel, so that the panel's slice (12 KiB) stays in L1 beside the tile's slice of A. On the
// Zen 3 host these were chosen on (32 KiB L1, 512 KiB L2, shared with other tenants), gemm_rate's
// rates moved 10-20 % between runs of one build: MC 48-480, NC 256-1024 and slices of 128-768
// could not be told apart beyond that; one thread ran at 76-82 GFLOP/s, OpenBLAS's Zen kernels
// 72-77, the core's FMA peak 76 (gemm_rate --peak, at the clock of that run).
constexpr int kKC = kOwnGemmDepthBlock, kMC = 120, kNC = 1024, kKSub = 192;
// pack_a stores 8 floats for each 6 it keeps (the next k's first 2 are written after): the
// panel buffer has this much room past its end.
constexpr size_t kSlack = 8;

int lesser(int a, int b) { return a < b ? a : b; }

// Per-thread packing buffers, grown on demand and kept for the thread's life.
struct Panels {
    float* a = nullptr;
    float* b = nullptr;
    float* stage = nullptr;  // a pair's z, rows before their transposes
    float* part = nullptr;   // the tiles' sums between slices of a depth block
    size_t a_floats = 0, b_floats = 0, stage_floats = 0, part_floats = 0;
    ~Panels() {
        std::free(a);
        std::free(b);
        std::free(stage);
        std::free(part);
    }
    // Null when the memory is not there (the caller then takes another GEMM).
    static float* grow(float*& p, size_t& have, size_t want) {
        if (want <= have) return p;
        std::free(p);
        p = static_cast<float*>(std::aligned_alloc(64, (want * sizeof(float) + 63) / 64 * 64));
        have = p ? want : 0;
        return p;
    }
};
thread_local Panels tls_panels;

// r[j] = column j of the 8 x 8 block whose rows r held (in place).
void transpose8(__m256 r[8]) {
    __m256 t[8];
    for (int j = 0; j < 8; j += 2) {
        t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);
        t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);
    }
    __m256 u[8];
    for (int g = 0; g < 8; g += 4) {
        u[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
        u[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xEE);
        u[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        u[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    for (int q = 0; q < 4; q++) {
        r[q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x20);
        r[4 + q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x31);
    }
}

// Rows [0, rows) of src (stride lds), 8 of their columns from `col`, as 8 vectors of 8 rows each
// (rows past `rows` zero, and not read).
void load_columns8(const float* src, size_t lds, int rows, __m256 r[8]) {
    for (int j = 0; j < 8; j++) r[j] = j < rows ? _mm256_loadu_ps(src + (size_t)j * lds) : _mm256_setzero_ps();
    transpose8(r);
}

// B's columns [j, j + kNR) over depth [k0, k0 + kc) into one panel (element (k, c) at k * kNR + c),
// B stored [N, K] (b_nk: rows of B become columns of the panel) or [K, N]; columns past `cols` zero.
void pack_b_panel(const float* B, int ldb, bool b_nk, int j, int cols, int k0, int kc, float* panel) {
    if (b_nk) {
        for (int h = 0; h < kNR; h += 8) {
            const int rows = cols - h < 0 ? 0 : lesser(8, cols - h);
            const float* src = B + (size_t)(j + h) * ldb + k0;
            int k = 0;
            for (; k + 8 <= kc; k += 8) {
                __m256 r[8];
                load_columns8(src + k, (size_t)ldb, rows, r);
                for (int q = 0; q < 8; q++) _mm256_store_ps(panel + (size_t)(k + q) * kNR + h, r[q]);
            }
            for (; k < kc; k++)
                for (int c = 0; c < 8; c++) panel[(size_t)k * kNR + h + c] = c < rows ? src[(size_t)c * ldb + k] : 0.0f;
        }
        return;
    }
    for (int k = 0; k < kc; k++) {
        const float* row = B + (size_t)(k0 + k) * ldb + j;
        float* out = panel + (size_t)k * kNR;
        if (cols >= kNR) {
            _mm256_store_ps(out, _mm256_loadu_ps(row));
            _mm256_store_ps(out + 8, _mm256_loadu_ps(row + 8));
        } else {
            for (int c = 0; c < kNR; c++) out[c] = c < cols ? row[c] : 0.0f;
        }
    }
}

// Both of a pair's panels of columns [j, j + kNR) (`cols` real) over depth [k0, k0 + kc), 8 rows
// of theta at a time, as gemm_avx512.cpp's pack_b_pair: b.draw stages their z, then each 8 x 8
// tile of z and of theta is transposed in registers and perturbed there both ways.
void pack_b_pair(const NoisyPairB& b, int j, int cols, int k0, int kc, float* plus, float* minus, float* stage) {
    const __m256 up = _mm256_set1_ps(b.scale), down = _mm256_set1_ps(-b.scale);
    for (int h = 0; h < kNR; h += 8) {
        const int rows = cols - h < 0 ? 0 : lesser(8, cols - h);
        const float* theta = b.theta + (size_t)(j + h) * b.ldt + k0;
        for (int r = 0; r < rows; r++) b.draw(b.ctx, stage + (size_t)r * kc, (size_t)kc, b.first + (size_t)(j + h + r) * b.ldt + (size_t)k0);
        int k = 0;
        for (; k + 8 <= kc; k += 8) {
            __m256 z[8], t[8];
            load_columns8(stage + k, (size_t)kc, rows, z);
            load_columns8(theta + k, b.ldt, rows, t);
            for (int q = 0; q < 8; q++) {
                _mm256_store_ps(plus + (size_t)(k + q) * kNR + h, _mm256_fmadd_ps(up, z[q], t[q]));
                _mm256_store_ps(minus + (size_t)(k + q) * kNR + h, _mm256_fmadd_ps(down, z[q], t[q]));
            }
        }
        pack_pair_tail<8>(stage, theta, b.ldt, rows, k, kc, b.scale, plus + h, minus + h, kNR);
    }
}

// A's block, rows [i0, i0 + mc) and depth [k0, k0 + kc), into panels of kMR rows: panel p at
// out + p * kc * kMR, element (i, k) at k * kMR + i; rows past M are zero. Each k's 6 floats are
// stored as 8, the 2 past them overwritten by the next k (kSlack floats past the end).
void pack_a(const float* A, int lda, int M, int i0, int mc, int k0, int kc, float* out) {
    for (int p0 = 0; p0 < mc; p0 += kMR) {
        float* panel = out + (size_t)p0 * kc;
        const int rows = lesser(kMR, M - (i0 + p0));
        const float* x = A + (size_t)(i0 + p0) * lda + k0;
        int k = 0;
        for (; k + 8 <= kc; k += 8) {
            __m256 r[8];
            load_columns8(x + k, (size_t)lda, rows > 0 ? rows : 0, r);
            for (int q = 0; q < 8; q++) _mm256_storeu_ps(panel + (size_t)(k + q) * kMR, r[q]);
        }
        for (; k < kc; k++)
            for (int i = 0; i < kMR; i++) panel[(size_t)k * kMR + i] = i < rows ? x[(size_t)i * lda + k] : 0.0f;
    }
}

// The 6 x 16 tile: c = alpha (a b) + what `add` points at, rows x cols of it stored. `add` is c
// itself (row stride ldc), one row added to every row (stride 0: a bias), or null. relu: max(c, 0)
// is stored (max_ps returns its second operand for NaN and for zeros of either sign: x > 0 ? x : 0).
void kernel(int kc, const float* a, const float* b, const float* from, float* part, float alpha, float* c, size_t ldc, int rows,
            int cols, const float* add, size_t ld_add, bool relu) {
    // The last slice fetches the tile's lines of C now, as gemm_avx512.cpp's kernel does.
    if (!part)
        for (int i = 0; i < rows; i++) {
            const char* r = reinterpret_cast<const char*>(c + (size_t)i * ldc);
            _mm_prefetch(r, _MM_HINT_T0);
            _mm_prefetch(r + 63, _MM_HINT_T0);
        }
    __m256 c0[kMR], c1[kMR];
    if (from) {
#pragma GCC unroll 6
        for (int i = 0; i < kMR; i++) {
            c0[i] = _mm256_load_ps(from + i * kNR);
            c1[i] = _mm256_load_ps(from + i * kNR + 8);
        }
    } else {
#pragma GCC unroll 6
        for (int i = 0; i < kMR; i++) c0[i] = c1[i] = _mm256_setzero_ps();
    }
    for (int k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
        for (int i = 0; i < kMR; i++) {
            const __m256 ai = _mm256_broadcast_ss(a + i);
            c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
        }
        a += kMR;
        b += kNR;
    }
    if (part) {
#pragma GCC unroll 6
        for (int i = 0; i < kMR; i++) {
            _mm256_store_ps(part + i * kNR, c0[i]);
            _mm256_store_ps(part + i * kNR + 8, c1[i]);
        }
        return;
    }
    // The tile leaves the registers here (constant indices above keep it in them over the depth).
    alignas(32) float t[kMR][kNR];
#pragma GCC unroll 6
    for (int i = 0; i < kMR; i++) {
        _mm256_store_ps(t[i], c0[i]);
        _mm256_store_ps(t[i] + 8, c1[i]);
    }
    const __m256 va = _mm256_set1_ps(alpha), zero = _mm256_setzero_ps();
    const bool whole = cols == kNR;
    for (int i = 0; i < rows; i++) {
        float* r = c + (size_t)i * ldc;
        __m256 v0 = _mm256_load_ps(t[i]), v1 = _mm256_load_ps(t[i] + 8);
        if (alpha != 1.0f) {
            v0 = _mm256_mul_ps(va, v0);
            v1 = _mm256_mul_ps(va, v1);
        }
        if (add) {
            const float* s = add + (size_t)i * ld_add;
            if (whole) {
                v0 = _mm256_add_ps(_mm256_loadu_ps(s), v0);
                v1 = _mm256_add_ps(_mm256_loadu_ps(s + 8), v1);
            } else {
                alignas(32) float in[kNR] = {};
                for (int j = 0; j < cols; j++) in[j] = s[j];
                v0 = _mm256_add_ps(_mm256_load_ps(in), v0);
                v1 = _mm256_add_ps(_mm256_load_ps(in + 8), v1);
            }
        }
        if (relu) {
            v0 = _mm256_max_ps(v0, zero);
            v1 = _mm256_max_ps(v1, zero);
        }
        if (whole) {
            _mm256_storeu_ps(r, v0);
            _mm256_storeu_ps(r + 8, v1);
        } else {
            alignas(32) float out[kNR];
            _mm256_store_ps(out, v0);
            _mm256_store_ps(out + 8, v1);
            for (int j = 0; j < cols; j++) r[j] = out[j];
        }
    }
}

using Product = GemmProduct;

bool run(const Product& x) {
    if (x.M <= 0 || x.N <= 0) return true;
    Panels& tls = tls_panels;
    const int kc_max = lesser(x.K, kKC), mc_max = lesser((x.M + kMR - 1) / kMR * kMR, kMC);
    const int nc_max = lesser((x.N + kNR - 1) / kNR * kNR, kNC);
    const NoisyPairB* pb = x.pair;
    const bool kept = pb && pb->panels;
    float* pa = Panels::grow(tls.a, tls.a_floats, (size_t)mc_max * (size_t)kc_max + kSlack);
    float* own_b = kept ? nullptr : Panels::grow(tls.b, tls.b_floats, (size_t)x.streams * (size_t)nc_max * (size_t)kc_max);
    float* stage = pb ? Panels::grow(tls.stage, tls.stage_floats, 8 * (size_t)kc_max) : nullptr;
    float* part = Panels::grow(tls.part, tls.part_floats, (size_t)mc_max * kNR);
    if (!pa || !part || (!kept && !own_b) || (pb && !stage)) return false;
    const bool make = !(kept && pb->packed);
    const size_t second = kept ? pair_panel_floats_avx2(x.N, x.K) : (size_t)nc_max * (size_t)kc_max;
    for (int j0 = 0; j0 < x.N; j0 += kNC) {
        const int nc = lesser(kNC, x.N - j0), nc_padded = (nc + kNR - 1) / kNR * kNR;
        for (int k0 = 0; k0 < x.K; k0 += kKC) {
            const int kc = lesser(kKC, x.K - k0);
            const bool last = k0 + kc >= x.K;
            // The first depth block adds C (accumulating) or the bias; later ones add C.
            const bool add_c = x.accumulate || k0 > 0;
            float* blk = kept ? pb->panels + (size_t)j0 * x.K + (size_t)k0 * nc_padded : own_b;
            for (int i0 = 0; i0 < x.M; i0 += kMC) {
                const int mc = lesser(kMC, x.M - i0), mc_padded = (mc + kMR - 1) / kMR * kMR;
                for (int s = 0; s < x.streams; s++) {
                    pack_a(x.A[s], x.lda, x.M, i0, mc_padded, k0, kc, pa);
                    const float* bias = !add_c && x.bias ? x.bias[s] : nullptr;
                    for (int p = 0; p < nc_padded; p += kNR) {
                        const int cols = lesser(kNR, nc - p);
                        // B's panels are packed as the first block of rows (and stream) reaches them.
                        if (make && i0 == 0 && s == 0) {
                            if (pb)
                                pack_b_pair(*pb, j0 + p, cols, k0, kc, blk + (size_t)p * kc, blk + second + (size_t)p * kc, stage);
                            else
                                pack_b_panel(x.B, x.ldb, x.b_nk, j0 + p, cols, k0, kc, blk + (size_t)p * kc);
                        }
                        const float* panel = blk + (s ? second : 0) + (size_t)p * kc;
                        // The depth block a slice at a time over all the tiles, so that the panel's
                        // slice stays in L1; each tile's sums wait in `part` between slices (the
                        // same chain of fused multiply-adds: the bits of one pass).
                        for (int kk = 0; kk < kc; kk += kKSub) {
                            const int ks = lesser(kKSub, kc - kk);
                            const bool first = kk == 0, final = kk + ks >= kc;
                            for (int q = 0; q < mc_padded; q += kMR) {
                                float* c = x.C[s] + (size_t)(i0 + q) * x.ldc + j0 + p;
                                float* tp = part + (size_t)q * kNR;
                                kernel(ks, pa + (size_t)q * kc + (size_t)kk * kMR, panel + (size_t)kk * kNR, first ? nullptr : tp,
                                       final ? nullptr : tp, x.alpha, c, (size_t)x.ldc, lesser(kMR, mc - q), cols,
                                       add_c ? c : bias ? bias + j0 + p : nullptr, add_c ? (size_t)x.ldc : 0, x.relu && last);
                            }
                        }
                    }
                }
            }
        }
    }
    return true;
}

}  // namespace

bool gemm_avx2(int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, bool b_nk, float* C, int ldc,
               bool accumulate, const float* bias) {
    return gemm_plain_via(run, M, N, K, alpha, A, lda, B, ldb, b_nk, C, ldc, accumulate, bias);
}

bool gemm_plain_via(GemmLoop run, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, bool b_nk,
                    float* C, int ldc, bool accumulate, const float* bias) {
    if (M <= 0 || N <= 0) return true;
    if (K <= 0) {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = accumulate ? C[(size_t)i * ldc + j] + 0.0f : bias ? bias[j] + 0.0f : 0.0f;
        return true;
    }
    const float* const a[1] = {A};
    float* const c[1] = {C};
    const float* const b[1] = {bias};
    return run(GemmProduct{M, N, K, 1, a, lda, B, ldb, b_nk, nullptr, c, ldc, alpha, accumulate, bias ? b : nullptr, false});
}

bool gemm_pair_via(GemmLoop run, int M, int N, int K, const float* const* A, int lda, const NoisyPairB& b, float* const* C,
                   int ldc, const float* const* bias, bool relu) {
    if (M <= 0 || N <= 0) return true;
    if (K <= 0 || b.first % 4 || b.ldt % 4 || (!b.draw && !b.packed)) return false;
    return run(GemmProduct{M, N, K, 2, A, lda, nullptr, 0, true, &b, C, ldc, 1.0f, false, bias, relu});
}

size_t pair_panel_floats_avx2(int N, int K) {
    return N <= 0 || K <= 0 ? 0 : (size_t)((N + kNR - 1) / kNR * kNR) * (size_t)K;
}

bool gemm_avx2_pair(int M, int N, int K, const float* const* A, int lda, const NoisyPairB& b, float* const* C, int ldc,
                    const float* const* bias, bool relu) {
    return gemm_pair_via(run, M, N, K, A, lda, b, C, ldc, bias, relu);
}

}  // namespace spw
