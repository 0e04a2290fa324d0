// The CPU backend's own float32 GEMM for AVX-512: C = alpha A op(B) (+ C, or + a bias row),
// single-threaded (the backend's pool splits products into bands, one call per band), for the big
// products of a step (the projections and the head). At a ZO step's shapes its kernel runs at
// 96 % of the FMA peak inside the step on a Zen 4 and ~89 % on an Emerald Rapids guest (98 %
// there with its operands in L2; bench/results/zo-step-profile-cpu.md), a whole product, packing
// included, at 84-90 %: level with oneDNN's dnnl_sgemm, 3-5 % above OpenBLAS's Cooperlake
// kernels as the backend called them (`npm run bench:gemm`), 7-12 % under MKL on the Emerald
// Rapids guest.
//
// Blocking (Goto's): for each block of NC output columns and KC of depth, and each block of MC
// rows, A's block is packed into panels of 12 rows ([k][12]), or, where A's rows do not crowd
// L1's sets (reads_a_in_place: 768 floats a row, not 3,072), read by the kernel where it is
// stored, its next block fetched into L2 meanwhile; B's panels of 32 columns ([k][32]) are packed
// as the first row block reaches them, while the next panel's source is fetched into L2 (16 x 16
// transposes where B is stored [N, K]). The 12 x 32 kernel keeps its tile in 24 registers over
// the block's depth, broadcasting A and loading two vectors of B per step. Sizes for a Zen 4 core
// (32 KiB L1, 1 MiB L2): a 12 x 768 panel of A (36 KiB) streams from L2, the 768 x 32 panel of B
// (96 KiB) stays in L2 across the MC / 12 tiles that use it.
//
// Every element is the same chain whatever its place or the product's shape: per depth block, a
// sum started at zero and fused-multiply-added in the order of k, times alpha, then added to C
// (the previous blocks, or C's value when accumulating). Zero rows and columns pad the edges of
// the panels and are never stored. So a band of columns gives the bits of the whole product.
//
// This file alone is compiled with AVX-512 and called only where the CPU has it
// (backend_cpu.cpp), so, like noise_avx512.cpp, it uses no inline function that other files
// also compile (no std::min, no std::vector, no exception thrown): the linker could keep this
// copy for every caller.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "gemm_cpu.h"

namespace spw {

namespace {

constexpr int kMR = 12, kNR = 32;
// Measured on the step's shapes (1024 rows x 768 / 3072): MC from 120 to 360 and NC from 512 to
// 4096 within 3 % of each other; NC 256 and KC 384 or 512 slower.
constexpr int kKC = kOwnGemmDepthBlock, kMC = 240, kNC = 1024;
// Steps of depth before a tile's end at which its lines of C are fetched into L1 (kernel): 24 to
// 96 measured alike.
constexpr int kCFetchL1 = 48;

int lesser(int a, int b) { return a < b ? a : b; }

// Per-thread packing buffers, grown on demand and kept for the thread's life.
struct Panels {
    float* a = nullptr;
    float* b = nullptr;
    float* stage = nullptr;  // a pair's z, rows before their transposes
    size_t a_floats = 0, b_floats = 0, stage_floats = 0;
    ~Panels() {
        std::free(a);
        std::free(b);
        std::free(stage);
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

// out[k] lane j = src[j * lds + k] for k < 16: rows j >= rows read as zero (and are not read).
void transpose16_regs(const float* src, size_t lds, int rows, __m512 out[16]) {
    __m512 r[16], t[16];
    for (int j = 0; j < 16; j++) r[j] = j < rows ? _mm512_loadu_ps(src + (size_t)j * lds) : _mm512_setzero_ps();
    // Within each 128-bit lane: pairs of rows interleaved, then groups of four rows gathered, so
    // u[4g + q] holds, in lane L, column 4L + q of rows 4g .. 4g + 3.
    for (int j = 0; j < 16; j += 2) {
        t[j] = _mm512_unpacklo_ps(r[j], r[j + 1]);      // columns 4L, 4L + 1
        t[j + 1] = _mm512_unpackhi_ps(r[j], r[j + 1]);  // columns 4L + 2, 4L + 3
    }
    for (int g = 0; g < 16; g += 4) {
        r[g] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
        r[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
        r[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        r[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    // Column 4L + q: lane L of r[q], r[4 + q], r[8 + q], r[12 + q].
    for (int q = 0; q < 4; q++) {
        __m512 x0 = _mm512_shuffle_f32x4(r[q], r[4 + q], 0x44);   // lanes 0, 1 of each
        __m512 x1 = _mm512_shuffle_f32x4(r[q], r[4 + q], 0xEE);   // lanes 2, 3
        __m512 y0 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0x44);
        __m512 y1 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], 0xEE);
        out[q] = _mm512_shuffle_f32x4(x0, y0, 0x88);
        out[4 + q] = _mm512_shuffle_f32x4(x0, y0, 0xDD);
        out[8 + q] = _mm512_shuffle_f32x4(x1, y1, 0x88);
        out[12 + q] = _mm512_shuffle_f32x4(x1, y1, 0xDD);
    }
}

// dst[k * ldd + j] = src[j * lds + k] for k < 16 and the lanes j that `keep` sets; rows j >= rows
// read as zero (and are not read).
void transpose16(const float* src, size_t lds, int rows, float* dst, size_t ldd, __mmask16 keep) {
    __m512 c[16];
    transpose16_regs(src, lds, rows, c);
    for (int k = 0; k < 16; k++) _mm512_mask_storeu_ps(dst + (size_t)k * ldd, keep, c[k]);
}

// A region of `rows` rows of `lines` cache lines each (leading dimension ld floats), fetched into
// L2 a slice of lines at a time, a row's lines in order, then the next row's.
struct Fetch {
    const float* base = nullptr;
    size_t ld = 0;
    int rows = 0, lines = 0;
    int total() const { return rows * lines; }
    // Lines [done, done + count); returns where the next slice starts.
    int issue(int done, int count) const {
        const int end = lesser(done + count, total());
        if (end <= done) return done;
        int r = done / lines, c = done % lines;
        for (int l = done; l < end; l++) {
            _mm_prefetch(reinterpret_cast<const char*>(base + (size_t)r * ld) + (size_t)c * 64, _MM_HINT_T1);
            if (++c == lines) c = 0, r++;
        }
        return end;
    }
};

// B's block, columns [j0, j0 + nc) and depth [k0, k0 + kc), into panels of kNR columns:
// panel p at out + p * kc * kNR, element (k, j) at k * kNR + j; columns past N are zero.
void pack_b(const float* B, int ldb, bool b_nk, int N, int j0, int nc, int k0, int kc, float* out) {
    for (int p0 = 0; p0 < nc; p0 += kNR) {
        float* panel = out + (size_t)p0 * kc;
        const int cols = lesser(kNR, N - (j0 + p0));
        if (b_nk) {
            // B stored [N, K]: rows of B become columns of the panel.
            int k = 0;
            for (; k + 16 <= kc; k += 16)
                for (int h = 0; h < kNR; h += 16)
                    transpose16(B + (size_t)(j0 + p0 + h) * ldb + k0 + k, (size_t)ldb, cols - h, panel + (size_t)k * kNR + h, kNR, 0xFFFF);
            for (; k < kc; k++)
                for (int j = 0; j < kNR; j++) panel[(size_t)k * kNR + j] = j < cols ? B[(size_t)(j0 + p0 + j) * ldb + k0 + k] : 0.0f;
        } else {
            // B stored [K, N]: a row of the panel is a run of B's row.
            const __mmask16 m0 = (__mmask16)(cols >= 16 ? 0xFFFF : (1u << (cols > 0 ? cols : 0)) - 1);
            const __mmask16 m1 = (__mmask16)(cols >= 32 ? 0xFFFF : cols > 16 ? (1u << (cols - 16)) - 1 : 0);
            for (int k = 0; k < kc; k++) {
                const float* row = B + (size_t)(k0 + k) * ldb + j0 + p0;
                _mm512_store_ps(panel + (size_t)k * kNR, _mm512_maskz_loadu_ps(m0, row));
                _mm512_store_ps(panel + (size_t)k * kNR + 16, _mm512_maskz_loadu_ps(m1, row + 16));
            }
        }
    }
}

// Both of a pair's panels of columns [j, j + kNR) (`cols` of them real) over depth [k0, k0 + kc),
// 16 rows of theta at a time: b.draw stages their z (16 rows of kc, in L1 or L2), then each 16 x 16
// tile of z and of theta is transposed in registers and perturbed there both ways (fma(scale, z,
// theta), fma(-scale, z, theta): perturb_pair's bits). Nothing the size of B is written. 10-20 %
// faster than staging both perturbed rows and transposing those (a band of 384 to 1,536 rows of
// 768, one thread, z's draw included: bench/results/zo-step-profile-cpu.md).
void pack_b_pair(const NoisyPairB& b, int j, int cols, int k0, int kc, float* plus, float* minus, float* stage) {
    const __m512 up = _mm512_set1_ps(b.scale), down = _mm512_set1_ps(-b.scale);
    for (int h = 0; h < kNR; h += 16) {
        const int rows = cols - h < 0 ? 0 : lesser(16, cols - h);
        const float* theta = b.theta + (size_t)(j + h) * b.ldt + k0;
        for (int r = 0; r < rows; r++) b.draw(b.ctx, stage + (size_t)r * kc, (size_t)kc, b.first + (size_t)(j + h + r) * b.ldt + (size_t)k0);
        int k = 0;
        for (; k + 16 <= kc; k += 16) {
            __m512 z[16], t[16];
            transpose16_regs(stage + k, (size_t)kc, rows, z);
            transpose16_regs(theta + k, b.ldt, rows, t);
            for (int q = 0; q < 16; q++) {
                _mm512_store_ps(plus + (size_t)(k + q) * kNR + h, _mm512_fmadd_ps(up, z[q], t[q]));
                _mm512_store_ps(minus + (size_t)(k + q) * kNR + h, _mm512_fmadd_ps(down, z[q], t[q]));
            }
        }
        pack_pair_tail<16>(stage, theta, b.ldt, rows, k, kc, b.scale, plus + h, minus + h, kNR);
    }
}

// A's block, rows [i0, i0 + mc) and depth [k0, k0 + kc), into panels of kMR rows: panel p at
// out + p * kc * kMR, element (i, k) at k * kMR + i; rows past M are zero.
void pack_a(const float* A, int lda, int M, int i0, int mc, int k0, int kc, float* out) {
    for (int p0 = 0; p0 < mc; p0 += kMR) {
        float* panel = out + (size_t)p0 * kc;
        const int rows = lesser(kMR, M - (i0 + p0));
        const float* x = A + (size_t)(i0 + p0) * lda + k0;
        int k = 0;
        for (; k + 16 <= kc; k += 16) transpose16(x + k, (size_t)lda, rows > 0 ? rows : 0, panel + (size_t)k * kMR, kMR, 0x0FFF);
        for (; k < kc; k++)
            for (int i = 0; i < kMR; i++) panel[(size_t)k * kMR + i] = i < rows ? x[(size_t)i * lda + k] : 0.0f;
    }
}

// The lines of a tile's `rows` rows of C (three a row where it does not start a line) fetched
// toward the core: Hint is _MM_HINT_T1 (into L2) or _MM_HINT_T0 (into L1).
template <int Hint>
void fetch_tile_c(const float* c, size_t ldc, int rows) {
    for (int i = 0; i < rows; i++) {
        const char* r = reinterpret_cast<const char*>(c + (size_t)i * ldc);
        _mm_prefetch(r, static_cast<_mm_hint>(Hint));
        _mm_prefetch(r + 64, static_cast<_mm_hint>(Hint));
        _mm_prefetch(r + 127, static_cast<_mm_hint>(Hint));
    }
}

// The MR x 32 tile (12 rows, or the first 4 or 8 of a panel for a product's last rows, so that
// their padding is not computed: 1024 rows leave 4): c = alpha (a b) + what `add` points at, rows
// x cols of it stored. `add` is c itself (row stride ldc), one row added to every row (stride 0: a
// bias), or null. relu: max(c, 0) is stored (max_ps returns its second operand for NaN and for
// zeros of either sign: x > 0 ? x : 0). Each element is the same chain whatever MR.
// A is a packed panel ([k][12], lda unused), or with Direct, 12 whole rows of A where it is stored
// (lda floats apart), read through four row pointers and multiples of the row stride that x86
// addressing takes (base + index * 1, 2, 4 or 8), so nothing spills.
template <int MR, bool Direct = false>
void kernel(int kc, const float* a, size_t lda, const float* b, float alpha, float* c, size_t ldc, int rows, int cols,
            const float* add, size_t ld_add, bool relu = false) {
    static_assert(!Direct || MR == kMR, "a direct tile has 12 rows");
    // The tile's lines of C are fetched into L2 now and into L1 kCFetchL1 steps before the end of
    // the depth, to be there when they are stored or added to: stores that missed held up the
    // start of the next tile, and lines fetched into L1 at the start were pushed out by A's and B's
    // panels before the end. 2-3 % on one Emerald Rapids core for the first fetch, 0.5-1 % more
    // for the second, on the step's products (bench/results/zo-step-profile-cpu.md).
    fetch_tile_c<_MM_HINT_T1>(c, ldc, rows);
    __m512 c0[MR], c1[MR];
    for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    const int l1_from = kc > kCFetchL1 ? kc - kCFetchL1 : 0;
    const size_t L = lda * sizeof(float);
    const char* p0 = reinterpret_cast<const char*>(a);
    const char *p3 = p0 + 3 * L, *p6 = p0 + 6 * L, *p9 = p0 + 9 * L;
    const auto row = [L](const char* p, size_t s) { return *reinterpret_cast<const float*>(p + s * L); };
    for (int k = 0; k < kc; k++) {
        if (k == l1_from) fetch_tile_c<_MM_HINT_T0>(c, ldc, rows);
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        const auto step = [&](const float* v) {
#pragma GCC unroll 12
            for (int i = 0; i < MR; i++) {
                const __m512 ai = _mm512_set1_ps(v[i]);
                c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
                c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
            }
        };
        if constexpr (Direct) {
            const float v[kMR] = {row(p0, 0), row(p0, 1), row(p0, 2), row(p3, 0), row(p0, 4), row(p3, 2),
                                  row(p6, 0), row(p3, 4), row(p0, 8), row(p9, 0), row(p6, 4), row(p3, 8)};
            step(v);
            p0 += sizeof(float), p3 += sizeof(float), p6 += sizeof(float), p9 += sizeof(float);
        } else {
            step(a);
            a += kMR;
        }
        b += kNR;
    }
    const __m512 va = _mm512_set1_ps(alpha);
    if (alpha != 1.0f)
        for (int i = 0; i < MR; i++) {
            c0[i] = _mm512_mul_ps(va, c0[i]);
            c1[i] = _mm512_mul_ps(va, c1[i]);
        }
    const __m512 zero = _mm512_setzero_ps();
    if (rows == MR && cols == kNR) {
        for (int i = 0; i < MR; i++) {
            float* r = c + (size_t)i * ldc;
            if (add) {
                const float* s = add + (size_t)i * ld_add;
                c0[i] = _mm512_add_ps(_mm512_loadu_ps(s), c0[i]);
                c1[i] = _mm512_add_ps(_mm512_loadu_ps(s + 16), c1[i]);
            }
            if (relu) {
                c0[i] = _mm512_max_ps(c0[i], zero);
                c1[i] = _mm512_max_ps(c1[i], zero);
            }
            _mm512_storeu_ps(r, c0[i]);
            _mm512_storeu_ps(r + 16, c1[i]);
        }
        return;
    }
    const __mmask16 m0 = (__mmask16)(cols >= 16 ? 0xFFFF : (1u << cols) - 1);
    const __mmask16 m1 = (__mmask16)(cols >= 32 ? 0xFFFF : cols > 16 ? (1u << (cols - 16)) - 1 : 0);
    for (int i = 0; i < rows; i++) {
        float* r = c + (size_t)i * ldc;
        if (add) {
            const float* s = add + (size_t)i * ld_add;
            c0[i] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, s), c0[i]);
            c1[i] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, s + 16), c1[i]);
        }
        if (relu) {
            c0[i] = _mm512_max_ps(c0[i], zero);
            c1[i] = _mm512_max_ps(c1[i], zero);
        }
        _mm512_mask_storeu_ps(r, m0, c0[i]);
        _mm512_mask_storeu_ps(r + 16, m1, c1[i]);
    }
}

using Product = GemmProduct;

// Whether the kernel reads a tile's 12 rows of A where A is stored (kernel<12, true>) rather than
// from a packed panel: where the rows' cache lines fall in at most 3 of a set of L1 (64 sets of
// 64-byte lines, a 4 KiB period, on Intel's and AMD's cores alike), so that they leave B's panel
// and C most of the set's 8 or 12 ways. A row of 768 floats puts 3 rows a set; one of 1,024 or
// 3,072 floats puts all 12 in one, and is packed. In place, the transposes of pack_a are not
// made: on two Emerald Rapids cores, a pair's 1024 x 768 x 768 1-4 % faster, 1024 x 768 x 3072
// level within the host's noise (A rewritten before each product, as in a step); the head, whose
// rows stay in L2 across its chunks, gains most.
bool reads_a_in_place(size_t lda) {
    int in_set[64] = {}, most = 0;
    for (int i = 0; i < kMR; i++) {
        const int n = ++in_set[(i * lda * sizeof(float) / 64) % 64];
        most = n > most ? n : most;
    }
    return most <= 3;
}

// Goto's loops. For each block of rows, A's block of each stream in turn, all its tiles, against
// the panels the first stream's first block packed (a pair: one draw of z for both). The kept
// layout of a pair's panels: block (j0, k0) at j0 * K + k0 * (its padded width).
bool run(const Product& x) {
    if (x.M <= 0 || x.N <= 0) return true;
    Panels& tls = tls_panels;
    const int kc_max = lesser(x.K, kKC), mc_max = lesser((x.M + kMR - 1) / kMR * kMR, kMC);
    const int nc_max = lesser((x.N + kNR - 1) / kNR * kNR, kNC);
    const NoisyPairB* pb = x.pair;
    const bool kept = pb && pb->panels;
    float* pa = Panels::grow(tls.a, tls.a_floats, (size_t)mc_max * (size_t)kc_max);
    float* own_b = kept ? nullptr : Panels::grow(tls.b, tls.b_floats, (size_t)x.streams * (size_t)nc_max * (size_t)kc_max);
    float* stage = pb ? Panels::grow(tls.stage, tls.stage_floats, 16 * (size_t)kc_max) : nullptr;
    if (!pa || (!kept && !own_b) || (pb && !stage)) return false;
    const bool make = !(kept && pb->packed);
    const size_t second = kept ? pair_panel_floats(x.N, x.K) : (size_t)nc_max * (size_t)kc_max;
    // Where B's next panel is read from: the master of a pair, else B as stored.
    const float* const src = pb ? pb->theta : x.B;
    const size_t ld_src = pb ? pb->ldt : (size_t)x.ldb;
    const bool src_nk = pb || x.b_nk;
    const bool direct = reads_a_in_place((size_t)x.lda);
    for (int j0 = 0; j0 < x.N; j0 += kNC) {
        const int nc = lesser(kNC, x.N - j0), nc_padded = (nc + kNR - 1) / kNR * kNR, panels = nc_padded / kNR;
        for (int k0 = 0; k0 < x.K; k0 += kKC) {
            const int kc = lesser(kKC, x.K - k0);
            const int lines = (kc * (int)sizeof(float) + 63) / 64;  // cache lines in a row of this block
            const bool last = k0 + kc >= x.K;
            // The first depth block adds C (accumulating) or the bias; later ones add C.
            const bool add_c = x.accumulate || k0 > 0;
            float* blk = kept ? pb->panels + (size_t)j0 * x.K + (size_t)k0 * nc_padded : own_b;
            for (int i0 = 0; i0 < x.M; i0 += kMC) {
                const int mc = lesser(kMC, x.M - i0), mc_padded = (mc + kMR - 1) / kMR * kMR, tiles = mc_padded / kMR;
                for (int s = 0; s < x.streams; s++) {
                    // Read in place, A's block needs packing only in a last tile of under 12 rows.
                    if (!direct)
                        pack_a(x.A[s], x.lda, x.M, i0, mc_padded, k0, kc, pa);
                    else if (mc % kMR)
                        pack_a(x.A[s], x.lda, x.M, i0 + mc_padded - kMR, kMR, k0, kc, pa + (size_t)(mc_padded - kMR) * kc);
                    // The next block of A (the next stream's of these rows, or the first stream's
                    // next rows) is fetched into L2 a slice per tile while this one is used.
                    const bool same_rows = s + 1 < x.streams;
                    const int next_i = same_rows ? i0 : i0 + kMC, next_rows = lesser(kMC, x.M - next_i);
                    const Fetch next_a{x.A[same_rows ? s + 1 : 0] + (size_t)next_i * x.lda + k0, (size_t)x.lda,
                                       next_rows > 0 ? next_rows : 0, lines};
                    const int a_lines = next_a.total(), a_slice = (a_lines + panels * tiles - 1) / (panels * tiles);
                    int a_done = 0;
                    const float* const bias = !add_c && x.bias ? x.bias[s] : nullptr;
                    for (int p = 0; p < nc_padded; p += kNR) {
                        const int cols = lesser(kNR, nc - p);
                        // B's panels are packed as the first block of rows (and stream) reaches them,
                        // the next one's source fetched into L2 while this one's tiles run: the
                        // packing reads L2, not memory.
                        Fetch next_b{};
                        if (make && i0 == 0 && s == 0) {
                            if (pb)
                                pack_b_pair(*pb, j0 + p, cols, k0, kc, blk + (size_t)p * kc, blk + second + (size_t)p * kc, stage);
                            else
                                pack_b(x.B, x.ldb, x.b_nk, x.N, j0 + p, kNR, k0, kc, blk + (size_t)p * kc);
                            const int next_cols = lesser(kNR, nc - (p + kNR));
                            if (next_cols > 0)
                                next_b = src_nk ? Fetch{src + (size_t)(j0 + p + kNR) * ld_src + k0, ld_src, next_cols, lines}
                                                : Fetch{src + (size_t)k0 * ld_src + j0 + p + kNR, ld_src, kc, 2};
                        }
                        const int b_lines = next_b.total(), b_slice = (b_lines + tiles - 1) / tiles;
                        int b_done = 0;
                        const float* panel = blk + (s ? second : 0) + (size_t)p * kc;
                        for (int q = 0; q < mc_padded; q += kMR) {
                            b_done = next_b.issue(b_done, b_slice);
                            a_done = next_a.issue(a_done, a_slice);
                            float* c = x.C[s] + (size_t)(i0 + q) * x.ldc + j0 + p;
                            const int rows = lesser(kMR, mc - q);
                            const float* const a = pa + (size_t)q * kc;
                            const float* const add = add_c ? c : bias ? bias + j0 + p : nullptr;
                            const size_t ldc = (size_t)x.ldc, ld_add = add_c ? ldc : 0;
                            const bool relu = x.relu && last;
                            if (direct && rows == kMR) {
                                const float* const in_place = x.A[s] + (size_t)(i0 + q) * x.lda + k0;
                                kernel<kMR, true>(kc, in_place, (size_t)x.lda, panel, x.alpha, c, ldc, rows, cols, add, ld_add, relu);
                            } else if (rows > 8) {
                                kernel<kMR>(kc, a, 0, panel, x.alpha, c, ldc, rows, cols, add, ld_add, relu);
                            } else if (rows > 4) {
                                kernel<8>(kc, a, 0, panel, x.alpha, c, ldc, rows, cols, add, ld_add, relu);
                            } else {
                                kernel<4>(kc, a, 0, panel, x.alpha, c, ldc, rows, cols, add, ld_add, relu);
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

bool gemm_avx512(int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, bool b_nk, float* C,
                 int ldc, bool accumulate, const float* bias) {
    return gemm_plain_via(run, M, N, K, alpha, A, lda, B, ldb, b_nk, C, ldc, accumulate, bias);
}

void gemm_avx512_kernel_sweep(int kc, const float* a, int tiles, const float* b, int panels, float* c) {
    for (int p = 0; p < panels; p++)
        for (int q = 0; q < tiles; q++)
            kernel<kMR>(kc, a + (size_t)q * kc * kMR, 0, b + (size_t)p * kc * kNR, 1.0f, c, kNR, kMR, kNR, nullptr, 0);
}

size_t pair_panel_floats(int N, int K) {
    return N <= 0 || K <= 0 ? 0 : (size_t)((N + kNR - 1) / kNR * kNR) * (size_t)K;
}

bool gemm_avx512_pair(int M, int N, int K, const float* const* A, int lda, const NoisyPairB& b, float* const* C, int ldc,
                      const float* const* bias, bool relu) {
    return gemm_pair_via(run, M, N, K, A, lda, b, C, ldc, bias, relu);
}

}  // namespace spw
