// The CPU backend: reference kernels, multithreaded; the big GEMMs on its own kernel (gemm_avx512.cpp
// where the CPU has AVX-512F, else gemm_avx2.cpp: the same bits), the rest through OpenBLAS.
//
// Threads: the backend's pool is the only set of threads. OpenBLAS (and the own GEMM) runs
// single-threaded and the pool splits the products into independent single-threaded calls (a
// linear's output columns, the head's vocabulary chunks, attention's heads). OpenBLAS's own threads would
// otherwise stay awake (yielding) between its calls, beside the pool's kernels, on the same cores.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <vector>

#include "spillway/backend.h"
#include "spillway/noise.h"
#include "spillway/precision.h"
#include "gemm_cpu.h"
#include "noise_cpu.h"
#include "simd_cpu.h"
#include "../thread_pool.h"

extern "C" void openblas_set_num_threads(int num_threads);

namespace spw {

namespace {

constexpr size_t kElemGrain = 4096;  // elements per task: a multiple of the Philox block (4)
// A linear is split into bands of output columns (the threads a stream has: all of them, or
// their share when a pair's streams run side by side) only where every band has at least
// kBandMinMacs multiply-adds: a smaller product is one call whatever the thread count, so a small
// model gives the same bits on any number of threads. On OpenBLAS a band can round differently
// from the whole product (its kernels, its small-matrix paths below ~28 x 512 x 512), so bigger
// products depend on the thread count, as they did under OpenBLAS's own threads (a pair on up to
// two threads: whole products, whatever the count); run to run they do not (each band is always
// the same call). The own AVX-512 GEMM rounds every element alike, so its bands never differ.
constexpr double kBandMinMacs = 8.0 * 1024 * 1024;
// A product of a few rows (decoding: one per sequence) is bound by reading the weight, not by
// arithmetic: it is worth splitting from far fewer multiply-adds.
constexpr int kFewRows = 8;
constexpr double kFewRowsBandMinMacs = 1.0 * 1024 * 1024;
constexpr int kColumnGrain = 16;     // band widths are multiples of the GEMM kernels' tiles
constexpr int kPairGrain = 32;       // linear_pair_noisy: the own kernel's 32 columns
// token_logprobs: logits are made kVocabChunk columns at a time for up to kLogitRows rows, and
// reduced while they are in cache; the chunks (fixed, whatever the thread count) are combined
// in order, so the result does not depend on the number of threads.
constexpr int kVocabChunk = 1024;
constexpr int kLogitRows = 1024;
// token_logprobs_noisy: a perturbed chunk of the head is made once per band of rows, the partial
// maxima and sums of a band's rows kept per chunk for every stream: kHeadRows rows for a pair of
// streams, fewer for more streams (FZOO's q + 1), never under kLogitRows. Bands are whole row
// blocks of kLogitRows, so the products, and the bits, do not depend on the band.
constexpr int kHeadRows = 8 * kLogitRows;
// The own GEMM makes and reduces the logits in row blocks of about kLogitBlock rows instead, so
// that a block's logits (a pair's two: 576 KiB) are still in L2 when they are reduced, and its
// stores do not push A's block and the chunk's panels out of L2: a 1,008-row chunk of OPT's head,
// product and reduction, 5-6 % faster on one Emerald Rapids core (48 to 168 rows alike), the
// step's head 7 % (bench/results/zo-step-profile-cpu.md). Its bits do not depend on the rows a
// product is given; OpenBLAS's can, so it keeps kLogitRows.
constexpr int kLogitBlock = 72;
constexpr int kQueryBlock = 64;      // attention: query rows per pair of products

// The products' library: the backend's own GEMM, its AVX-512 kernel (gemm_avx512.cpp) where the
// CPU has AVX-512F, else its AVX2 one (gemm_avx2.cpp), or OpenBLAS. $SPILLWAY_CPU_GEMM chooses, to
// compare them: own (the default: the best kernel this CPU has), avx2 (the AVX2 kernel even where
// AVX-512 is there: the two give the same bits), openblas.
enum class Gemm { Avx512, Avx2, OpenBlas };

bool avx512_gemm_available() {
#ifdef SPW_GEMM_AVX512
    return __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

Gemm gemm_from_env() {
    const char* env = std::getenv("SPILLWAY_CPU_GEMM");
    const Gemm own = avx512_gemm_available() ? Gemm::Avx512 : Gemm::Avx2;
    if (!env || !*env || std::strcmp(env, "own") == 0) return own;
    if (std::strcmp(env, "avx2") == 0) return Gemm::Avx2;
    if (std::strcmp(env, "openblas") == 0) return Gemm::OpenBlas;
    throw std::runtime_error(std::string("SPILLWAY_CPU_GEMM=") + env + ": expected own, avx2 or openblas");
}

// Which products the own GEMM takes. Its every row gets the bits of one chain however many rows
// come with it and whichever kernel (AVX-512 or AVX2) runs it, where OpenBLAS's bits depend on the
// core type it picked for the CPU (Prescott, Haswell, SkylakeX, Zen...) and, on Zen, on the count
// of rows. So a training step's every product is the own GEMM's, and a run replays bit for bit on
// any x86-64 CPU with AVX2 (tests/cli/replay-cpus.test.ts), and a data-parallel rank's shard gives
// each example the bits the whole batch's forward gives it (tests/cli/ranks.test.ts):
//   Always: the head's scores (token_logprobs: a classification task scores one row per example)
//     and attention's products (per block of queries: 64 deep for most heads) at any size;
//   From16Rows: a linear's products (the projections, adapters) from 16 rows at any depth.
// Decoding's few rows stay on OpenBLAS, whose kernels read a weight without packing it (a linear's
// rows, and attention over the cache one query at a time). The choice never depends on the
// columns, so the bands of columns a product is split into (any width) take the same GEMM, and the
// whole product's bits.
constexpr int kOwnGemmMinRows = 16;
enum class Takes { From16Rows, Always };

bool takes_own(Gemm gemm, int M, Takes rule) {
    if (gemm == Gemm::OpenBlas) return false;
    return rule == Takes::Always || M >= kOwnGemmMinRows;
}

// The own GEMM's kernels (gemm_cpu.h), on the one `gemm` names.
bool own_gemm(Gemm gemm, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, bool b_nk, float* C,
              int ldc, bool accumulate, const float* bias = nullptr) {
#ifdef SPW_GEMM_AVX512
    if (gemm == Gemm::Avx512) return gemm_avx512(M, N, K, alpha, A, lda, B, ldb, b_nk, C, ldc, accumulate, bias);
#endif
    return gemm_avx2(M, N, K, alpha, A, lda, B, ldb, b_nk, C, ldc, accumulate, bias);
}
bool own_gemm_pair(Gemm gemm, int M, int N, int K, const float* const* A, int lda, const NoisyPairB& b, float* const* C, int ldc,
                   const float* const* bias, bool relu = false) {
#ifdef SPW_GEMM_AVX512
    if (gemm == Gemm::Avx512) return gemm_avx512_pair(M, N, K, A, lda, b, C, ldc, bias, relu);
#endif
    return gemm_avx2_pair(M, N, K, A, lda, b, C, ldc, bias, relu);
}
size_t own_pair_panel_floats(Gemm gemm, int N, int K) {
#ifdef SPW_GEMM_AVX512
    if (gemm == Gemm::Avx512) return pair_panel_floats(N, K);
#endif
    return pair_panel_floats_avx2(N, K);
}

// C[M, N] = alpha A[M, K] B^T (+ C when accumulate), B stored [N, K]; row-major with leading
// dimensions; `rule`: which products of this kind the own GEMM takes (takes_own).
void sgemm_nt(Gemm gemm, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
              Takes rule, bool accumulate = false) {
    if (takes_own(gemm, M, rule) && own_gemm(gemm, M, N, K, alpha, A, lda, B, ldb, true, C, ldc, accumulate)) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, alpha, A, lda, B, ldb, accumulate ? 1.0f : 0.0f, C, ldc);
}
// The same with B stored [K, N].
void sgemm_nn(Gemm gemm, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
              Takes rule, bool accumulate = false) {
    if (takes_own(gemm, M, rule) && own_gemm(gemm, M, N, K, alpha, A, lda, B, ldb, false, C, ldc, accumulate)) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, accumulate ? 1.0f : 0.0f, C, ldc);
}

// A row of a tensor gathered with optional noise: out[c] = src[c] + scale * z(k0 + c).
void noisy_row(NoiseIsa isa, float* out, const float* src, int C, const NoiseSpec& ns, uint64_t k0, bool accumulate) {
    if (ns.scale == 0.0f) {
        if (accumulate)
            for (int c = 0; c < C; c++) out[c] += src[c];
        else
            std::memcpy(out, src, sizeof(float) * (size_t)C);
        return;
    }
    // k0 need not be a multiple of 4 here: the blocks that cover [k0, k0 + C), in bulk from
    // the first whole block (the same values block by block).
    constexpr int kSpan = 256;
    float z[kSpan];
    int c = 0;
    while (c < C) {
        uint64_t k = k0 + (uint64_t)c;
        int lane = (int)(k & 3);
        int n = std::min(kSpan - lane, C - c);
        noise_range_isa(isa, z, (size_t)(lane + n), ns.seed, ns.id, ns.kind, k - (uint64_t)lane);
        for (int i = 0; i < n; i++) {
            float w = fmaf(ns.scale, z[lane + i], src[c + i]);
            out[c + i] = accumulate ? out[c + i] + w : w;
        }
        c += n;
    }
}

float gelu_tanh(float x) {
    const float k = 0.7978845608028654f;  // sqrt(2 / pi)
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

float act_one(float x, Act act) {
    switch (act) {
        case Act::Relu: return x > 0.f ? x : 0.f;
        case Act::Gelu: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case Act::GeluNew: return gelu_tanh(x);
        case Act::Silu: return x / (1.0f + expf(-x));
    }
    return x;
}

bool head_whole_from_env() {
    const char* env = std::getenv("SPILLWAY_HEAD_WHOLE");
    if (!env || !*env || std::strcmp(env, "0") == 0) return false;
    if (std::strcmp(env, "1") == 0) return true;
    throw std::runtime_error(std::string("SPILLWAY_HEAD_WHOLE=") + env + ": expected 0 or 1");
}

// SPILLWAY_CPU_PAIR_COPIES=1: a pair's perturbed weights written into working copies first and
// packed from there (the path before linear_pair_noisy), to compare the two (the same bits).
bool pair_copies_from_env() {
    const char* env = std::getenv("SPILLWAY_CPU_PAIR_COPIES");
    if (!env || !*env || std::strcmp(env, "0") == 0) return false;
    if (std::strcmp(env, "1") == 0) return true;
    throw std::runtime_error(std::string("SPILLWAY_CPU_PAIR_COPIES=") + env + ": expected 0 or 1");
}

// w = theta + scale z over elements [k0, k0 + n) of the tensor (and w2 = theta - scale z when
// given), z drawn on `isa` a piece at a time into L1 and zeroed where !(|theta| < mask_below): the
// bits of noise_fill, mask_small and perturb (perturb_pair), single-threaded.
void perturb_rows(NoiseIsa isa, float* w, float* w2, const float* theta, size_t n, const NoiseSpec& ns, uint64_t k0,
                  float mask_below) {
    constexpr size_t kPiece = 1024;
    float z[kPiece];
    for (size_t c0 = 0; c0 < n; c0 += kPiece) {
        const size_t m = std::min(kPiece, n - c0);
        const float* t = theta + c0;
        noise_range_isa(isa, z, m, ns.seed, ns.id, ns.kind, k0 + c0);
        if (mask_below != INFINITY)
            for (size_t i = 0; i < m; i++)
                if (!(fabsf(t[i]) < mask_below)) z[i] = 0.0f;
        if (w2) {
            for (size_t i = 0; i < m; i++) {
                w[c0 + i] = fmaf(ns.scale, z[i], t[i]);
                w2[c0 + i] = fmaf(-ns.scale, z[i], t[i]);
            }
        } else {
            for (size_t i = 0; i < m; i++) w[c0 + i] = fmaf(ns.scale, z[i], t[i]);
        }
    }
}

// A pair's B for the own GEMM's pair: tensor ns.id, its rows perturbed both ways as perturb_rows
// does (z drawn on `isa`).
struct PairDraw {
    NoiseIsa isa;
    NoiseSpec ns;
    NoisyPairB b(const float* theta, size_t ldt, uint64_t first, float* panels = nullptr, bool packed = false) const {
        NoisyPairB nb;
        nb.theta = theta;
        nb.ldt = ldt;
        nb.first = first;
        nb.ctx = this;
        // z alone (a pair from the masters masks nothing): the kernels perturb as they transpose,
        // with perturb_rows' fmas.
        nb.draw = [](const void* ctx, float* z, size_t m, uint64_t k0) {
            const PairDraw& d = *static_cast<const PairDraw*>(ctx);
            noise_range_isa(d.isa, z, m, d.ns.seed, d.ns.id, d.ns.kind, k0);
        };
        nb.scale = ns.scale;
        nb.panels = panels;
        nb.packed = packed;
        return nb;
    }
};

class CpuBackend final : public Backend {
public:
    CpuBackend(int threads, bool sets_blas_threads)
        : pool_(threads), isa_(noise_isa_from_env()), gemm_(gemm_from_env()), head_whole_(head_whole_from_env()),
          pairs_off_(pair_copies_from_env()) {
        if (sets_blas_threads) openblas_set_num_threads(1);
    }

    std::string name() const override { return "cpu"; }
    int threads() const override { return pool_.size(); }
    bool runs_pairs() const override { return true; }

    // The CPU backend's "device" memory is the arena the scheduler fills exactly as on a GPU:
    // it keeps the same ledger, so a budget is enforced (and measured) here too.
    void* alloc(size_t bytes) override {
        size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
        ledger_.reserve(rounded, budget_, "the CPU backend's device arena");
        void* p = std::aligned_alloc(64, rounded);
        if (!p) throw std::bad_alloc();
        ledger_.commit(p, rounded);
        return p;
    }
    void release(void* p) override {
        if (!p) return;
        ledger_.forget(p);
        std::free(p);
    }
    void upload(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes); }
    void download(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes); }
    void copy(void* dst, const void* src, size_t bytes) override {
        auto* d = static_cast<char*>(dst);
        auto* s = static_cast<const char*>(src);
        pool_.parallel_for(bytes, 1 << 20, [&](size_t b, size_t e) { std::memcpy(d + b, s + b, e - b); });
    }
    void synchronize() override {}

    void noise_fill(float* z, size_t n, uint64_t seed, uint32_t id, int kind, uint64_t k0) override {
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) { noise_range_isa(isa_, z + b, e - b, seed, id, kind, k0 + b); });
    }

    void perturb(float* w, const float* theta, const float* z, float scale, size_t n) override {
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) {
            for (size_t i = b; i < e; i++) w[i] = fmaf(scale, z[i], theta[i]);
        });
    }

    // z a chunk at a time in a buffer that stays in L1, both copies written from it (perturb_rows
    // over each thread's share).
    void perturb_pair(float* w_plus, float* w_minus, const float* theta, size_t n, uint64_t seed, uint32_t id, int kind,
                      float scale) override {
        const NoiseSpec ns{seed, id, kind, scale};
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) {
            perturb_rows(isa_, w_plus + b, w_minus + b, theta + b, e - b, ns, b, INFINITY);
        });
    }

    // The ZO update over chunks of 1024 elements: load(c0, m, buf) gives the values before the
    // step (widened into buf, or where they lie), store(c0, m, v) writes the updated ones; in
    // between theta -= sum_j coef_j z_j, then theta -= decay * theta_before, in that order per element.
    // Elements with |before| >= mask_below keep their value (sparse training; +inf: none).
    // in_place (float32 masters): where nothing needs the values before the step (no decay, no
    // mask), the terms are applied to theta itself, in the same order, and store is not called.
    template <class Load, class Store>
    void update_chunks(size_t n, uint32_t id, int kind, const UpdateTerm* terms, int nterms, float decay,
                       float mask_below, Load load, Store store, float* in_place = nullptr) {
        const bool direct = in_place && decay == 0.0f && mask_below == INFINITY;
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) {
            constexpr size_t kChunk = 1024;
            float z[kChunk], v_buf[kChunk], buf[kChunk];
            for (size_t c0 = b; c0 < e; c0 += kChunk) {
                size_t m = std::min(kChunk, e - c0);
                // The next chunk of the parameters (float32 masters) is fetched while this chunk's
                // noise is drawn: the hardware's prefetch, paced by the loop's bursts of loads, left
                // them waiting on memory. 10 % off the update of OPT-125M's 125 M parameters on two
                // Emerald Rapids cores (84-88 ms against 95-99: zo-step-profile-cpu.md).
                if (in_place)
                    for (size_t i = c0 + kChunk, end = std::min(e, c0 + 2 * kChunk); i < end; i += 16)
                        __builtin_prefetch(in_place + i, 0, 3);
                const float* before = load(c0, m, buf);
                float* v = direct ? in_place + c0 : v_buf;
                if (nterms == 0 && !direct) std::memcpy(v, before, m * sizeof(float));
                for (int j = 0; j < nterms; j++) {
                    noise_range_isa(isa_, z, m, terms[j].seed, id, kind, c0);
                    float neg = -terms[j].coef;
                    const float* from = j == 0 ? before : v;
                    for (size_t i = 0; i < m; i++) v[i] = fmaf(neg, z[i], from[i]);
                }
                if (decay != 0.0f)
                    for (size_t i = 0; i < m; i++) v[i] = fmaf(-decay, before[i], v[i]);
                if (mask_below != INFINITY)
                    for (size_t i = 0; i < m; i++)
                        if (!(fabsf(before[i]) < mask_below)) v[i] = before[i];
                if (!direct) store(c0, m, v);
            }
        });
    }

    void zo_update(float* theta, size_t n, uint32_t id, int kind, const UpdateTerm* terms, int nterms,
                   float decay, float mask_below) override {
        update_chunks(
            n, id, kind, terms, nterms, decay, mask_below, [&](size_t c0, size_t, float*) -> const float* { return theta + c0; },
            [&](size_t c0, size_t m, const float* v) { std::memcpy(theta + c0, v, m * sizeof(float)); }, theta);
    }

    void zo_update_rounded(void* theta, bool packed, int dtype, size_t n, uint32_t id, int kind, const UpdateTerm* terms,
                           int nterms, float decay, float mask_below) override {
        if (dtype != MASTER_BF16 && dtype != MASTER_F16) throw std::runtime_error("zo_update_rounded needs bf16 or fp16");
        if (nterms < 1) return;
        float* t32 = static_cast<float*>(theta);
        uint16_t* t16 = static_cast<uint16_t*>(theta);
        const uint64_t sr_seed = terms[0].seed;
        update_chunks(
            n, id, kind, terms, nterms, decay, mask_below,
            [&](size_t c0, size_t m, float* buf) -> const float* {
                if (!packed) return t32 + c0;
                for (size_t i = 0; i < m; i++) buf[i] = widen_one(t16[c0 + i], dtype);
                return buf;
            },
            [&](size_t c0, size_t m, const float* v) {
                uint32_t bits[1024];
                for (size_t i = 0; i < m; i += 4) sr_bits4(sr_seed, id, (c0 + i) >> 2, bits + i);
                for (size_t i = 0; i < m; i++) {
                    float r = round_sr(v[i], dtype, bits[i]);
                    if (packed)
                        t16[c0 + i] = narrow_one(r, dtype);
                    else
                        t32[c0 + i] = r;
                }
            });
    }

    void mask_small(float* z, const float* theta, float below, size_t n) override {
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) {
            for (size_t i = b; i < e; i++)
                if (!(fabsf(theta[i]) < below)) z[i] = 0.0f;
        });
    }

    void widen(float* out, const uint16_t* in, size_t n, int dtype) override {
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) {
            for (size_t i = b; i < e; i++) out[i] = widen_one(in[i], dtype);
        });
    }

    void perturb_packed(float* w, const uint16_t* theta, const float* z, float scale, size_t n, int dtype) override {
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) {
            for (size_t i = b; i < e; i++) w[i] = fmaf(scale, z[i], widen_one(theta[i], dtype));
        });
    }

    void narrow(uint16_t* out, const float* in, size_t n, int dtype) override {
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) {
            for (size_t i = b; i < e; i++) out[i] = narrow_one(in[i], dtype);
        });
    }

    void embed(float* out, const float* tok, const int32_t* ids, int N, int C, const NoiseSpec& tok_noise,
               const float* pos, const int32_t* posidx, const NoiseSpec& pos_noise) override {
        pool_.parallel_for((size_t)N, 1, [&](size_t b, size_t e) {
            for (size_t n = b; n < e; n++) {
                uint64_t row = (uint64_t)ids[n];
                noisy_row(isa_, out + n * C, tok + row * C, C, tok_noise, row * (uint64_t)C, false);
                if (pos) {
                    uint64_t prow = (uint64_t)posidx[n];
                    noisy_row(isa_, out + n * C, pos + prow * C, C, pos_noise, prow * (uint64_t)C, true);
                }
            }
        });
    }

    void layernorm(float* out, const float* inp, const float* w, const float* b, int N, int C,
                   float eps) override {
        pool_.parallel_for((size_t)N, 1, [&](size_t r0, size_t r1) {
            for (size_t n = r0; n < r1; n++) {
                const float* x = inp + n * C;
                float* y = out + n * C;
                float mean = sum_of(x, C) / (float)C;
                float var = sum_sq_dev(x, C, mean) / (float)C;
                float rstd = 1.0f / sqrtf(var + eps);
                for (int c = 0; c < C; c++) y[c] = (x[c] - mean) * rstd * w[c] + (b ? b[c] : 0.f);
            }
        });
    }

    void rmsnorm(float* out, const float* inp, const float* w, int N, int C, float eps) override {
        rmsnorm_offset(out, inp, w, 0.f, N, C, eps);
    }

    // offset 0 is rmsnorm exactly: 0 + w[c] is w[c].
    void rmsnorm_offset(float* out, const float* inp, const float* w, float offset, int N, int C,
                        float eps) override {
        pool_.parallel_for((size_t)N, 1, [&](size_t r0, size_t r1) {
            for (size_t n = r0; n < r1; n++) {
                const float* x = inp + n * C;
                float* y = out + n * C;
                float ss = dot(x, x, C);
                float rstd = 1.0f / sqrtf(ss / (float)C + eps);
                for (int c = 0; c < C; c++) y[c] = (offset + w[c]) * (x[c] * rstd);
            }
        });
    }

    void linear(float* out, const float* inp, const float* W, const float* b, int N, int I, int O,
                bool transposed) override {
        linear_streams(1, &out, &inp, &W, &b, N, I, O, transposed);
    }

    // The streams' products side by side, each split into bands of output columns when there are
    // more threads than streams: every band its own single-threaded product. The bias is written
    // into the band first and the product accumulated onto it: no pass to clear the output, none
    // to add the bias.
    void linear_streams(int streams, float* const* out, const float* const* inp, const float* const* W,
                        const float* const* b, int N, int I, int O, bool transposed) override {
        int bands = std::max(1, pool_.size() / streams), width = O;
        for (; bands > 0; bands--) {
            width = (O + bands - 1) / bands;
            width = (width + kColumnGrain - 1) / kColumnGrain * kColumnGrain;
            int narrowest = O - (bands - 1) * width;  // the last band
            if (bands == 1 || (narrowest > 0 && (double)N * I * narrowest >= (N <= kFewRows ? kFewRowsBandMinMacs : kBandMinMacs))) break;
        }
        pool_.parallel_tasks((size_t)streams * bands, [&](size_t task) {
            size_t s = task / (size_t)bands;
            int o0 = (int)(task % (size_t)bands) * width, n = std::min(O, o0 + width) - o0;
            float* y = out[s];
            // The own GEMM adds the bias as it stores the band (the same bits): no pass to write it first.
            if (takes_own(gemm_, N, Takes::From16Rows) &&
                own_gemm(gemm_, N, n, I, 1.0f, inp[s], I, transposed ? W[s] + o0 : W[s] + (size_t)o0 * I, transposed ? O : I,
                         !transposed, y + o0, O, false, b[s] ? b[s] + o0 : nullptr))
                return;
            if (b[s])
                for (int r = 0; r < N; r++) std::memcpy(y + (size_t)r * O + o0, b[s] + o0, sizeof(float) * (size_t)n);
            const float beta = b[s] ? 1.0f : 0.0f;
            // One row (decoding a single sequence): a matrix-vector product reads the weight once,
            // where OpenBLAS's GEMM would first pack all of it.
            if (N == 1 && transposed)
                cblas_sgemv(CblasRowMajor, CblasTrans, I, n, 1.0f, W[s] + o0, O, inp[s], 1, beta, y + o0, 1);
            else if (N == 1)
                cblas_sgemv(CblasRowMajor, CblasNoTrans, n, I, 1.0f, W[s] + (size_t)o0 * I, I, inp[s], 1, beta, y + o0, 1);
            else if (transposed)
                sgemm_nn(gemm_, N, n, I, 1.0f, inp[s], I, W[s] + o0, O, y + o0, O, Takes::From16Rows, b[s] != nullptr);
            else
                sgemm_nt(gemm_, N, n, I, 1.0f, inp[s], I, W[s] + (size_t)o0 * I, I, y + o0, O, Takes::From16Rows, b[s] != nullptr);
        });
    }

    // The own GEMM makes both perturbed weights as it packs them (gemm_avx512_pair, gemm_avx2_pair), a band of
    // output columns per thread with both streams in it: z is drawn once per weight, and neither
    // working copy is written. The bias pair is made first (O floats).
    bool linear_pair_noisy(float* const* out, const float* const* inp, const float* W, const float* b,
                           const NoiseSpec& w_ns, uint64_t w_first, const NoiseSpec& b_ns, uint64_t b_first, int N, int I,
                           int O, bool transposed, bool relu) override {
        // Any depth: since the panels are perturbed in registers (gemm_avx512.cpp's pack_b_pair),
        // a product deeper than one depth block (fc2, 3,072 deep) is faster from the masters too,
        // though each band packs both streams' A for every depth block (gemm_rate --pair, 2 threads,
        // eight rounds on an Emerald Rapids guest: 1008 x 3072 x 768 at 273-276 GFLOP/s from the
        // masters, 250-255 from the copies; before that change, level).
        if (transposed || !takes_own(gemm_, N, Takes::From16Rows) || pairs_off_ || I % 4 || w_first % 4) return false;
        if (b) {
            // The bias pair as perturb_pair makes it (noisy_row draws from any first element).
            pair_bias_.resize(2 * (size_t)O);
            const NoiseSpec down{b_ns.seed, b_ns.id, b_ns.kind, -b_ns.scale};
            noisy_row(isa_, pair_bias_.data(), b, O, b_ns, b_first, false);
            noisy_row(isa_, pair_bias_.data() + O, b, O, down, b_first, false);
        }
        int bands = pool_.size(), width = O;
        for (; bands > 0; bands--) {
            width = ((O + bands - 1) / bands + kPairGrain - 1) / kPairGrain * kPairGrain;
            const int narrowest = O - (bands - 1) * width;
            if (bands == 1 || (narrowest > 0 && 2.0 * N * I * narrowest >= kBandMinMacs)) break;
        }
        const PairDraw draw{isa_, w_ns};
        pool_.parallel_tasks((size_t)bands, [&](size_t task) {
            const int o0 = (int)task * width, n = std::min(O, o0 + width) - o0;
            const NoisyPairB nb = draw.b(W + (size_t)o0 * I, (size_t)I, w_first + (uint64_t)o0 * (uint64_t)I);
            float* const c[2] = {out[0] + o0, out[1] + o0};
            const float* const bias[2] = {b ? pair_bias_.data() + o0 : nullptr, b ? pair_bias_.data() + O + o0 : nullptr};
            if (own_gemm_pair(gemm_, N, n, I, inp, I, nb, c, O, bias, relu)) return;
            // Its buffers could not be had: the band's copies, and OpenBLAS's products on them.
            std::vector<float> wp((size_t)n * I), wm((size_t)n * I);
            perturb_rows(isa_, wp.data(), wm.data(), nb.theta, (size_t)n * I, w_ns, nb.first, INFINITY);
            const float* const ws[2] = {wp.data(), wm.data()};
            for (int s = 0; s < 2; s++) {
                if (bias[s])
                    for (int r = 0; r < N; r++) std::memcpy(c[s] + (size_t)r * O, bias[s], sizeof(float) * (size_t)n);
                sgemm_nt(Gemm::OpenBlas, N, n, I, 1.0f, inp[s], I, ws[s], I, c[s], O, Takes::From16Rows, bias[s] != nullptr);
                if (relu)
                    for (int r = 0; r < N; r++)
                        for (int j = 0; j < n; j++) c[s][(size_t)r * O + j] = act_one(c[s][(size_t)r * O + j], Act::Relu);
            }
        });
        return true;
    }

    void rope(float* x, int ld, int nheads, int head_dim, int rotary_dim, const int32_t* positions, int N,
              const float* inv_freq, float scale) override {
        int half = rotary_dim / 2;
        pool_.parallel_for((size_t)N, 1, [&](size_t r0, size_t r1) {
            std::vector<float> cs((size_t)half), sn((size_t)half);
            for (size_t n = r0; n < r1; n++) {
                float p = (float)positions[n];
                for (int i = 0; i < half; i++) {
                    float a = p * inv_freq[i];
                    cs[i] = cosf(a) * scale;
                    sn[i] = sinf(a) * scale;
                }
                for (int h = 0; h < nheads; h++) {
                    float* r = x + n * (size_t)ld + (size_t)h * head_dim;
                    for (int i = 0; i < half; i++) {
                        float x1 = r[i], x2 = r[i + half];
                        r[i] = x1 * cs[i] - x2 * sn[i];
                        r[i + half] = x2 * cs[i] + x1 * sn[i];
                    }
                }
            }
        });
    }

    // Per (sequence, head), kQueryBlock queries at a time: their scores against the keys they
    // see (one product), a softmax over each row's causal (and windowed) span, zeros beyond
    // it, then the weighted sum of the values (a second product).
    void attention(float* out, const float* qb, const float* kb, const float* vb, const AttentionShape& s,
                   const int32_t* seq_start, int nseq) override {
        int HD = s.head_dim;
        int group = s.heads / s.kv_heads;
        size_t tasks = (size_t)nseq * (size_t)s.heads;
        int out_ld = s.heads * HD;
        pool_.parallel_tasks(tasks, [&](size_t t) {
            thread_local std::vector<float> scores;
            int sq = (int)(t / s.heads), h = (int)(t % s.heads);
            int kvh = h / group;
            int start = seq_start[sq], T = seq_start[sq + 1] - start;
            const float* q = qb + (size_t)start * s.ldq + (size_t)h * HD;
            const float* k = kb + (size_t)start * s.ldk + (size_t)kvh * HD;
            const float* v = vb + (size_t)start * s.ldv + (size_t)kvh * HD;
            float* o = out + (size_t)start * out_ld + (size_t)h * HD;
            for (int i0 = 0; i0 < T; i0 += kQueryBlock) {
                int i1 = std::min(T, i0 + kQueryBlock), rows = i1 - i0;
                int j0 = s.window > 0 ? std::max(0, i0 - s.window + 1) : 0;
                int keys = i1 - j0;
                scores.resize((size_t)rows * keys);
                sgemm_nt(gemm_, rows, keys, HD, s.scale, q + (size_t)i0 * s.ldq, s.ldq, k + (size_t)j0 * s.ldk, s.ldk,
                         scores.data(), keys, Takes::Always);
                for (int r = 0; r < rows; r++) {
                    int i = i0 + r;
                    int lo = (s.window > 0 ? std::max(0, i - s.window + 1) : 0) - j0, hi = i - j0 + 1;
                    float* p = scores.data() + (size_t)r * keys;
                    if (s.softcap > 0.f)
                        for (int j = lo; j < hi; j++) p[j] = s.softcap * tanhf(p[j] / s.softcap);
                    float inv = 1.0f / exp_shift(p + lo, hi - lo, max_of(p + lo, hi - lo));
                    for (int j = 0; j < lo; j++) p[j] = 0.f;
                    for (int j = lo; j < hi; j++) p[j] *= inv;
                    for (int j = hi; j < keys; j++) p[j] = 0.f;
                }
                sgemm_nn(gemm_, rows, HD, keys, 1.0f, scores.data(), keys, v + (size_t)j0 * s.ldv, s.ldv, o + (size_t)i0 * out_ld,
                         out_ld, Takes::Always);
            }
        });
    }

    void kv_store(float* cache, const float* x, int ld, const int32_t* rows, int N, int width) override {
        pool_.parallel_for((size_t)N, 16, [&](size_t b, size_t e) {
            for (size_t n = b; n < e; n++)
                std::memcpy(cache + (size_t)rows[n] * width, x + n * (size_t)ld, sizeof(float) * (size_t)width);
        });
    }

    void attention_cached(float* out, const float* qb, const float* kc, const float* vc, const AttentionShape& s,
                          const int32_t* positions, int N, const int32_t* seq_start, const int32_t* kv_start,
                          int nseq) override {
        const int HD = s.head_dim, group = s.heads / s.kv_heads;
        const size_t out_ld = (size_t)s.heads * HD;
        // One task per (token, head); a decoding pass has one token per sequence.
        pool_.parallel_for((size_t)N * (size_t)s.heads, 1, [&](size_t t0, size_t t1) {
            std::vector<float> scores;
            int sq = 0;
            for (size_t t = t0; t < t1; t++) {
                int n = (int)(t / s.heads), h = (int)(t % s.heads);
                while (seq_start[sq + 1] <= n) sq++;
                int kvh = h / group, pos = positions[n];
                int j0 = s.window > 0 ? std::max(0, pos - s.window + 1) : 0;
                const float* base_k = kc + (size_t)kv_start[sq] * s.ldk + (size_t)kvh * HD;
                const float* base_v = vc + (size_t)kv_start[sq] * s.ldv + (size_t)kvh * HD;
                const float* q = qb + (size_t)n * s.ldq + (size_t)h * HD;
                // The training attention's products and softmax, for one query row over the keys it sees.
                const int keys = pos - j0 + 1;
                scores.resize((size_t)keys);
                float* p = scores.data();
                sgemm_nt(gemm_, 1, keys, HD, s.scale, q, s.ldq, base_k + (size_t)j0 * s.ldk, s.ldk, p, keys, Takes::From16Rows);
                if (s.softcap > 0.f)
                    for (int j = 0; j < keys; j++) p[j] = s.softcap * tanhf(p[j] / s.softcap);
                const float inv = 1.0f / exp_shift(p, keys, max_of(p, keys));
                for (int j = 0; j < keys; j++) p[j] *= inv;
                sgemm_nn(gemm_, 1, HD, keys, 1.0f, p, keys, base_v + (size_t)j0 * s.ldv, s.ldv, out + (size_t)n * out_ld + (size_t)h * HD,
                         (int)out_ld, Takes::From16Rows);
            }
        });
    }

    void activation(float* x, size_t n, Act act) override {
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) {
            for (size_t i = b; i < e; i++) x[i] = act_one(x[i], act);
        });
    }

    void gated_silu(float* gate, const float* up, size_t n) override {
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) {
            for (size_t i = b; i < e; i++) {
                float g = gate[i];
                gate[i] = (g / (1.0f + expf(-g))) * up[i];
            }
        });
    }

    void gated_act(float* gate, const float* up, size_t n, Act act) override {
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) {
            for (size_t i = b; i < e; i++) gate[i] = act_one(gate[i], act) * up[i];
        });
    }

    void scale(float* x, float s, size_t n) override {
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) {
            for (size_t i = b; i < e; i++) x[i] *= s;
        });
    }

    void add(float* x, const float* y, size_t n) override {
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) {
            for (size_t i = b; i < e; i++) x[i] += y[i];
        });
    }

    void scale_rows(float* x, const float* d, int rows, int cols) override {
        const size_t n = (size_t)rows * cols;
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) {
            for (size_t i = b; i < e; i++) x[i] *= d[i / (size_t)cols];
        });
    }

    void copy_rows(float* out, int ld_out, const float* in, int ld_in, int rows, int cols) override {
        pool_.parallel_for((size_t)rows, 64, [&](size_t b, size_t e) {
            for (size_t r = b; r < e; r++)
                std::memcpy(out + r * (size_t)ld_out, in + r * (size_t)ld_in, sizeof(float) * (size_t)cols);
        });
    }

    void gather_rows(float* out, const float* inp, const int32_t* rows, int M, int C) override {
        pool_.parallel_for((size_t)M, 16, [&](size_t b, size_t e) {
            for (size_t m = b; m < e; m++) std::memcpy(out + m * C, inp + (size_t)rows[m] * C, sizeof(float) * C);
        });
    }

    // Two chunks (a pair's) per thread at work; none with SPILLWAY_HEAD_WHOLE=1 (the engine then
    // perturbs the head whole into its working copy, as on backends without chunks: the same bits).
    size_t head_chunk_floats(int C, int V) const override {
        return head_whole_ ? 0 : head_slots(V) * 2 * (size_t)std::min(V, kVocabChunk) * (size_t)C;
    }
    // The chunks made at once: one per thread, no more than there are.
    size_t head_slots(int V) const { return (size_t)std::min(pool_.size(), (V + kVocabChunk - 1) / kVocabChunk); }

    void token_logprobs(float* logprob, const float* x, const float* W, const int32_t* target, int M, int C, int V,
                        float softcap) override {
        const NoiseSpec clean{};
        token_logprobs_noisy(1, &logprob, &x, W, &clean, INFINITY, nullptr, 0, nullptr, nullptr, target, M, C, V, softcap);
    }

    // log_softmax at the target, per stream, a block of rows at a time (logit_block): each
    // vocabulary chunk's logits are made by one single-threaded product and reduced to their
    // maximum and sum of exponentials right away; the chunks are then combined in order
    // (log-sum-exp of the partial sums). A perturbed stream's chunk of the weight is made in the
    // task's slot of the scratch (both of a pair's from one draw of z) just before its products,
    // once per kHeadRows rows.
    void token_logprobs_noisy(int S, float* const* logprob, const float* const* x, const float* theta,
                              const NoiseSpec* ns, float mask_below, const int32_t* patch_rows, int npatch,
                              const float* const* patch_values, float* scratch, const int32_t* target, int M, int C,
                              int V, float softcap) override {
        const int chunks = (V + kVocabChunk - 1) / kVocabChunk;
        const size_t chunk_floats = (size_t)std::min(V, kVocabChunk) * C;
        // The patched rows (index into patch_rows) of each chunk.
        std::vector<std::vector<int>> patches((size_t)chunks);
        for (int j = 0; patch_values && j < npatch; j++) {
            if (patch_rows[j] < 0 || patch_rows[j] >= V) throw std::logic_error("token_logprobs_noisy: a patched row outside the vocabulary");
            patches[(size_t)(patch_rows[j] / kVocabChunk)].push_back(j);
        }
        // pair[s]: stream s is the -eps (or +eps) twin of stream s - 1, its chunk made with that one's.
        std::vector<char> pair((size_t)S, 0);
        bool perturbed = false;
        for (int s = 0; s < S; s++) {
            const bool patched = patch_values && patch_values[s] && npatch > 0;
            if (patched && ns[s].scale != 0.f) throw std::logic_error("token_logprobs_noisy: a patched stream must not be perturbed");
            perturbed |= ns[s].scale != 0.f || patched;
            if (s > 0 && !pair[(size_t)s - 1] && ns[s - 1].scale != 0.f && ns[s].seed == ns[s - 1].seed &&
                ns[s].id == ns[s - 1].id && ns[s].kind == ns[s - 1].kind && ns[s].scale == -ns[s - 1].scale)
                pair[(size_t)s] = 1;
        }
        if (perturbed && !scratch) throw std::logic_error("token_logprobs_noisy: a perturbed head needs its scratch");
        std::vector<int> free_slots;
        for (int i = (int)head_slots(V) - 1; i >= 0; i--) free_slots.push_back(i);
        std::mutex slots_mu;
        const int band = std::max(kLogitRows, 2 * kHeadRows / std::max(1, S) / kLogitRows * kLogitRows);
        for (int b0 = 0; b0 < M; b0 += band) {
            const int rows = std::min(band, M - b0);
            part_max_.resize((size_t)S * rows * chunks);
            part_sum_.resize((size_t)S * rows * chunks);
            target_logit_.resize((size_t)S * rows);
            // A pair's chunk can be made as the own GEMM packs it (own_gemm_pair, into the slot,
            // kept there for the band's later row blocks) where every block of the band takes
            // the own GEMM, as sgemm_nt would choose: the same bits.
            const int last_block = rows - (rows - 1) / kLogitRows * kLogitRows;
            const bool fuse = fuses_head_pairs(last_block, C, mask_below);
            // The last chunks (one per thread) are split by rows among the threads, so that they
            // finish together: an odd count of whole chunks (OPT's 49 and a 96-row one) left one
            // thread idle for most of a chunk. Only where every part takes the own GEMM, whose
            // bits do not depend on the rows it is given (each part draws its chunk's noise), and
            // where there are as many chunks as threads: every part running holds a slot, and there
            // are head_slots(V) = min(threads, chunks) of them.
            const int T = pool_.size();
            const int tail = T > 1 && chunks >= T && rows <= kLogitRows && takes_own(gemm_, rows / T, Takes::From16Rows) ? T : 0;
            const size_t tasks = (size_t)(chunks - tail) + (size_t)tail * T;
            pool_.parallel_tasks(tasks, [&](size_t task) {
                size_t c = task;
                int lo = 0, hi = rows;
                if (task >= (size_t)(chunks - tail)) {
                    const size_t u = task - (size_t)(chunks - tail), part = u % (size_t)T;
                    c = (size_t)(chunks - tail) + u / (size_t)T;
                    lo = (int)((size_t)rows * part / (size_t)T);
                    hi = (int)((size_t)rows * (part + 1) / (size_t)T);
                }
                thread_local std::vector<float> logits, logits2;
                const int v0 = (int)c * kVocabChunk, n = std::min(kVocabChunk, V - v0);
                const float* base = theta + (size_t)v0 * C;
                float* slot = nullptr;
                if (perturbed) {
                    std::lock_guard<std::mutex> lock(slots_mu);
                    if (free_slots.empty()) throw std::logic_error("token_logprobs_noisy: more chunks at once than head slots");
                    slot = scratch + (size_t)free_slots.back() * 2 * chunk_floats;
                    free_slots.pop_back();
                }
                // Row block m0 of stream s's logits, reduced to their maxima and sums.
                auto reduce = [&](int s, int m0, int m, float* l0) {
                    if (softcap > 0.f)
                        for (size_t i = 0; i < (size_t)m * n; i++) l0[i] = softcap * tanhf(l0[i] / softcap);
                    for (int r = 0; r < m; r++) {
                        const float* l = l0 + (size_t)r * n;
                        const size_t row = (size_t)s * rows + (size_t)(m0 + r);
                        const float mx = max_of(l, n);
                        part_max_[row * chunks + c] = mx;
                        part_sum_[row * chunks + c] = head_sum_exp(l, n, mx);
                        const int t = target[b0 + m0 + r] - v0;
                        if (t >= 0 && t < n) target_logit_[row] = l[t];
                    }
                };
                const int block = logit_block(hi - lo);
                // A block's logits (72 rows on the own GEMM: 288 KiB, not the 4 MiB of kLogitRows).
                if (logits.size() < (size_t)block * kVocabChunk) logits.resize((size_t)block * kVocabChunk);
                for (int s = 0; s < S; s++) {
                    if (fuse && s + 1 < S && pair[(size_t)s + 1] && own_pair_panel_floats(gemm_, n, C) <= chunk_floats) {
                        logits2.resize(logits.size());
                        const PairDraw draw{isa_, ns[s]};
                        bool done = true;
                        for (int m0 = lo; m0 < hi && done; m0 += block) {
                            const int m = std::min(block, hi - m0);
                            const float* const a[2] = {x[s] + (size_t)(b0 + m0) * C, x[s + 1] + (size_t)(b0 + m0) * C};
                            float* const out[2] = {logits.data(), logits2.data()};
                            const float* const none[2] = {nullptr, nullptr};
                            // Only the first block can fail (its buffers are the largest): then the copies.
                            done = own_gemm_pair(gemm_, m, n, C, a, C, draw.b(base, (size_t)C, (uint64_t)v0 * (uint64_t)C, slot, m0 > lo),
                                                    out, n, none);
                            if (!done && m0 > lo) throw std::logic_error("own_gemm_pair failed after its first block");
                            if (!done) break;
                            reduce(s, m0, m, logits.data());
                            reduce(s + 1, m0, m, logits2.data());
                        }
                        if (done) {
                            s++;
                            continue;
                        }
                    }
                    const float* w = base;
                    if (pair[(size_t)s]) {
                        w = slot + chunk_floats;
                    } else if (patch_values && patch_values[s] && !patches[c].empty()) {
                        // The base's chunk with this stream's rows in place of the patched ones.
                        std::memcpy(slot, base, sizeof(float) * (size_t)n * C);
                        for (int j : patches[c])
                            std::memcpy(slot + (size_t)(patch_rows[j] - v0) * C, patch_values[s] + (size_t)j * C, sizeof(float) * (size_t)C);
                        w = slot;
                    } else if (ns[s].scale != 0.f) {
                        const bool twin = s + 1 < S && pair[(size_t)s + 1];
                        perturb_rows(isa_, slot, twin ? slot + chunk_floats : nullptr, base, (size_t)n * C, ns[s],
                                     (uint64_t)v0 * (uint64_t)C, mask_below);
                        w = slot;
                    }
                    for (int m0 = lo; m0 < hi; m0 += block) {
                        const int m = std::min(block, hi - m0);
                        sgemm_nt(gemm_, m, n, C, 1.0f, x[s] + (size_t)(b0 + m0) * C, C, w, C, logits.data(), n, Takes::Always);
                        reduce(s, m0, m, logits.data());
                    }
                }
                if (slot) {
                    std::lock_guard<std::mutex> lock(slots_mu);
                    free_slots.push_back((int)((slot - scratch) / (std::ptrdiff_t)(2 * chunk_floats)));
                }
            });
            for (int s = 0; s < S; s++)
                for (int r = 0; r < rows; r++) {
                    const size_t row = (size_t)s * rows + (size_t)r;
                    const float* pm = part_max_.data() + row * chunks;
                    const float* ps = part_sum_.data() + row * chunks;
                    const float mx = max_of(pm, chunks);
                    float sum = 0.f;
                    for (int c = 0; c < chunks; c++) sum += ps[c] * expf(pm[c] - mx);
                    logprob[s][b0 + r] = target_logit_[row] - mx - logf(sum);
                }
        }
    }

private:
    // sum_exp's bits, with AVX-512 where the AVX-512 kernel runs the products (the CPU has it).
    float head_sum_exp(const float* l, int n, float mx) const {
#ifdef SPW_GEMM_AVX512
        if (gemm_ == Gemm::Avx512) return sum_exp_avx512(l, n, mx);
#endif
        return sum_exp(l, n, mx);
    }

    // token_logprobs_noisy's rows per product and reduction, for `rows` rows: about kLogitBlock on
    // the own GEMM, in equal blocks of whole tiles (a last block of a few rows would read the
    // chunk's panels for little work); kLogitRows on OpenBLAS.
    int logit_block(int rows) const {
        if (gemm_ == Gemm::OpenBlas || rows <= 0) return kLogitRows;
        const int blocks = (rows + kLogitBlock - 1) / kLogitBlock, per = (rows + blocks - 1) / blocks;
        return std::min(kLogitRows, (per + 11) / 12 * 12);
    }

    // Whether token_logprobs_noisy makes a pair's chunks as the own GEMM packs them: where every
    // row block takes the own GEMM (the smallest, `fewest_rows`), unmasked, not switched off.
    bool fuses_head_pairs(int fewest_rows, int C, float mask_below) const {
        return takes_own(gemm_, fewest_rows, Takes::Always) && !pairs_off_ && mask_below == INFINITY && C % 4 == 0;
    }

    ThreadPool pool_;
    NoiseIsa isa_;  // the bulk noise generator (all give the same bits)
    Gemm gemm_;     // the products' library
    bool head_whole_;  // SPILLWAY_HEAD_WHOLE=1: no token_logprobs_noisy
    bool pairs_off_;   // SPILLWAY_CPU_PAIR_COPIES=1: a pair's working copies as before linear_pair_noisy
    std::vector<float> part_max_, part_sum_, target_logit_;  // token_logprobs: per row and vocabulary chunk
    std::vector<float> pair_bias_;  // linear_pair_noisy: the bias pair
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads, bool sets_blas_threads) {
    return std::make_unique<CpuBackend>(threads, sets_blas_threads);
}

void* Backend::alloc_host(size_t bytes) {
    size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) throw std::bad_alloc();
    return p;
}

void Backend::release_host(void* p) { std::free(p); }

namespace {
std::string mib(size_t b) {
    char s[64];
    std::snprintf(s, sizeof s, "%.1f MiB", (double)b / (1024.0 * 1024.0));
    return s;
}
}  // namespace

void MemoryLedger::reserve(size_t bytes, size_t budget, const std::string& device) const {
    if (budget == 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (in_use_ + bytes > budget)
        throw DeviceOutOfMemory("device memory budget exceeded on " + device + ": asked for " + mib(bytes) + " with " +
                                 mib(in_use_) + " of the " + mib(budget) + " budget in use (--gpu-mem); plan with this budget " +
                                 "(spillway plan) to stream more blocks");
}
void MemoryLedger::commit(void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    sizes_[p] = bytes;
    in_use_ += bytes;
    peak_ = std::max(peak_, in_use_);
}
void MemoryLedger::forget(void* p) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sizes_.find(p);
    if (it == sizes_.end()) return;
    in_use_ -= it->second;
    sizes_.erase(it);
}
size_t MemoryLedger::in_use() const {
    std::lock_guard<std::mutex> lock(mu_);
    return in_use_;
}
size_t MemoryLedger::peak() const {
    std::lock_guard<std::mutex> lock(mu_);
    return peak_;
}

void Backend::linear_streams(int streams, float* const* out, const float* const* inp, const float* const* W,
                             const float* const* b, int N, int I, int O, bool transposed) {
    for (int s = 0; s < streams; s++) linear(out[s], inp[s], W[s], b[s], N, I, O, transposed);
}

void Backend::token_logprobs_noisy(int, float* const*, const float* const*, const float*, const NoiseSpec*, float,
                                   const int32_t*, int, const float* const*, float*, const int32_t*, int, int, int, float) {
    throw std::logic_error("the " + name() + " backend perturbs the head whole (head_chunk_floats is 0)");
}
void Backend::zo_update_rounded(void*, bool, int, size_t, uint32_t, int, const UpdateTerm*, int, float, float) {
    throw std::runtime_error("the " + name() + " backend cannot keep bf16/fp16 masters");
}
void Backend::widen(float*, const uint16_t*, size_t, int) {
    throw std::runtime_error("the " + name() + " backend cannot keep bf16/fp16 masters");
}
void Backend::perturb_packed(float*, const uint16_t*, const float*, float, size_t, int) {
    throw std::runtime_error("the " + name() + " backend cannot keep bf16/fp16 masters");
}
void Backend::narrow(uint16_t*, const float*, size_t, int) {
    throw std::runtime_error("the " + name() + " backend cannot keep bf16/fp16 masters");
}

#ifndef SPW_WITH_CUDA
CudaReport cuda_report() {
    CudaReport r;
    r.compiled = false;
    r.state = "CUDA not compiled in";
    return r;
}
#endif

}  // namespace spw
