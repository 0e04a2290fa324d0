// The CPU backend: reference kernels, multithreaded, GEMMs through OpenBLAS.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <vector>

#include "spillway/backend.h"
#include "spillway/noise.h"
#include "spillway/precision.h"
#include "noise_cpu.h"
#include "simd_cpu.h"
#include "../thread_pool.h"

extern "C" void openblas_set_num_threads(int num_threads);

namespace spw {

namespace {

constexpr size_t kElemGrain = 4096;  // elements per task: a multiple of the Philox block (4)

// A row of a tensor gathered with optional noise: out[c] = src[c] + scale * z(k0 + c).
void noisy_row(float* out, const float* src, int C, const NoiseSpec& ns, uint64_t k0, bool accumulate) {
    if (ns.scale == 0.0f) {
        if (accumulate)
            for (int c = 0; c < C; c++) out[c] += src[c];
        else
            std::memcpy(out, src, sizeof(float) * (size_t)C);
        return;
    }
    // k0 need not be a multiple of 4 here: walk the blocks that cover [k0, k0 + C).
    uint64_t k = k0;
    int c = 0;
    float v[4];
    while (c < C) {
        uint64_t b = k >> 2;
        noise_block4(ns.seed, ns.id, b, ns.kind, v);
        int lane = (int)(k & 3);
        for (; lane < 4 && c < C; lane++, c++, k++) {
            float w = fmaf(ns.scale, v[lane], src[c]);
            out[c] = accumulate ? out[c] + w : w;
        }
    }
}

float gelu_tanh(float x) {
    const float k = 0.7978845608028654f;  // sqrt(2 / pi)
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

class CpuBackend final : public Backend {
public:
    CpuBackend(int threads, bool sets_blas_threads) : pool_(threads) {
        if (sets_blas_threads) openblas_set_num_threads(std::max(1, threads));
    }

    std::string name() const override { return "cpu"; }
    int threads() const override { return pool_.size(); }

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
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) { noise_range(z + b, e - b, seed, id, kind, k0 + b); });
    }

    void perturb(float* w, const float* theta, const float* z, float scale, size_t n) override {
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) {
            for (size_t i = b; i < e; i++) w[i] = fmaf(scale, z[i], theta[i]);
        });
    }

    // The ZO update over chunks of 1024 elements: load(c0, m, before) reads the values before the
    // step, store(c0, m, v) writes the updated ones; in between theta -= sum_j coef_j z_j, then
    // theta -= decay * theta_before, in that order per element.
    // Elements with |before| >= mask_below keep their value (sparse training; +inf: none).
    template <class Load, class Store>
    void update_chunks(size_t n, uint32_t id, int kind, const UpdateTerm* terms, int nterms, float decay,
                       float mask_below, Load load, Store store) {
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) {
            constexpr size_t kChunk = 1024;
            float z[kChunk], v[kChunk], before[kChunk];
            for (size_t c0 = b; c0 < e; c0 += kChunk) {
                size_t m = std::min(kChunk, e - c0);
                load(c0, m, before);
                std::memcpy(v, before, m * sizeof(float));
                for (int j = 0; j < nterms; j++) {
                    noise_range(z, m, terms[j].seed, id, kind, c0);
                    float neg = -terms[j].coef;
                    for (size_t i = 0; i < m; i++) v[i] = fmaf(neg, z[i], v[i]);
                }
                if (decay != 0.0f)
                    for (size_t i = 0; i < m; i++) v[i] = fmaf(-decay, before[i], v[i]);
                if (mask_below != INFINITY)
                    for (size_t i = 0; i < m; i++)
                        if (!(fabsf(before[i]) < mask_below)) v[i] = before[i];
                store(c0, m, v);
            }
        });
    }

    void zo_update(float* theta, size_t n, uint32_t id, int kind, const UpdateTerm* terms, int nterms,
                   float decay, float mask_below) override {
        update_chunks(
            n, id, kind, terms, nterms, decay, mask_below,
            [&](size_t c0, size_t m, float* before) { std::memcpy(before, theta + c0, m * sizeof(float)); },
            [&](size_t c0, size_t m, const float* v) { std::memcpy(theta + c0, v, m * sizeof(float)); });
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
            [&](size_t c0, size_t m, float* before) {
                for (size_t i = 0; i < m; i++) before[i] = packed ? widen_one(t16[c0 + i], dtype) : t32[c0 + i];
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
                noisy_row(out + n * C, tok + row * C, C, tok_noise, row * (uint64_t)C, false);
                if (pos) {
                    uint64_t prow = (uint64_t)posidx[n];
                    noisy_row(out + n * C, pos + prow * C, C, pos_noise, prow * (uint64_t)C, true);
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
                float mean = 0.f;
                for (int c = 0; c < C; c++) mean += x[c];
                mean /= (float)C;
                float var = 0.f;
                for (int c = 0; c < C; c++) {
                    float d = x[c] - mean;
                    var += d * d;
                }
                var /= (float)C;
                float rstd = 1.0f / sqrtf(var + eps);
                for (int c = 0; c < C; c++) y[c] = (x[c] - mean) * rstd * w[c] + (b ? b[c] : 0.f);
            }
        });
    }

    void rmsnorm(float* out, const float* inp, const float* w, int N, int C, float eps) override {
        pool_.parallel_for((size_t)N, 1, [&](size_t r0, size_t r1) {
            for (size_t n = r0; n < r1; n++) {
                const float* x = inp + n * C;
                float* y = out + n * C;
                float ss = 0.f;
                for (int c = 0; c < C; c++) ss += x[c] * x[c];
                float rstd = 1.0f / sqrtf(ss / (float)C + eps);
                for (int c = 0; c < C; c++) y[c] = w[c] * (x[c] * rstd);
            }
        });
    }

    void linear(float* out, const float* inp, const float* W, const float* b, int N, int I, int O,
                bool transposed) override {
        if (transposed)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, O, I, 1.0f, inp, I, W, O, 0.0f, out, O);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, O, I, 1.0f, inp, I, W, I, 0.0f, out, O);
        if (b) {
            pool_.parallel_for((size_t)N, 16, [&](size_t r0, size_t r1) {
                for (size_t n = r0; n < r1; n++) {
                    float* y = out + n * O;
                    for (int o = 0; o < O; o++) y[o] += b[o];
                }
            });
        }
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

    void attention(float* out, const float* qb, const float* kb, const float* vb, const AttentionShape& s,
                   const int32_t* seq_start, int nseq) override {
        int HD = s.head_dim;
        int group = s.heads / s.kv_heads;
        size_t tasks = (size_t)nseq * (size_t)s.heads;
        size_t out_ld = (size_t)s.heads * HD;
        pool_.parallel_for(tasks, 1, [&](size_t t0, size_t t1) {
            std::vector<float> scores;
            for (size_t t = t0; t < t1; t++) {
                int sq = (int)(t / s.heads), h = (int)(t % s.heads);
                int kvh = h / group;
                int start = seq_start[sq], T = seq_start[sq + 1] - start;
                scores.resize((size_t)T);
                for (int i = 0; i < T; i++) {
                    const float* q = qb + (size_t)(start + i) * s.ldq + (size_t)h * HD;
                    int j0 = s.window > 0 ? std::max(0, i - s.window + 1) : 0;
                    float mx = -INFINITY;
                    for (int j = j0; j <= i; j++) {
                        const float* k = kb + (size_t)(start + j) * s.ldk + (size_t)kvh * HD;
                        float d = dot(q, k, HD) * s.scale;
                        scores[j] = d;
                        mx = std::max(mx, d);
                    }
                    float sum = 0.f;
                    for (int j = j0; j <= i; j++) {
                        scores[j] = expf(scores[j] - mx);
                        sum += scores[j];
                    }
                    float inv = 1.0f / sum;
                    float* o = out + (size_t)(start + i) * out_ld + (size_t)h * HD;
                    for (int c = 0; c < HD; c++) o[c] = 0.f;
                    for (int j = j0; j <= i; j++) {
                        const float* v = vb + (size_t)(start + j) * s.ldv + (size_t)kvh * HD;
                        axpy(o, v, scores[j] * inv, HD);
                    }
                }
            }
        });
    }

    void activation(float* x, size_t n, Act act) override {
        pool_.parallel_for(n, kElemGrain, [&](size_t b, size_t e) {
            switch (act) {
                case Act::Relu:
                    for (size_t i = b; i < e; i++) x[i] = x[i] > 0.f ? x[i] : 0.f;
                    break;
                case Act::Gelu:
                    for (size_t i = b; i < e; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
                    break;
                case Act::GeluNew:
                    for (size_t i = b; i < e; i++) x[i] = gelu_tanh(x[i]);
                    break;
                case Act::Silu:
                    for (size_t i = b; i < e; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
                    break;
            }
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

    void gather_rows(float* out, const float* inp, const int32_t* rows, int M, int C) override {
        pool_.parallel_for((size_t)M, 16, [&](size_t b, size_t e) {
            for (size_t m = b; m < e; m++) std::memcpy(out + m * C, inp + (size_t)rows[m] * C, sizeof(float) * C);
        });
    }

    void token_logprobs(float* logprob, const float* x, const float* W, const int32_t* target, int M, int C,
                        int V) override {
        // Logits in chunks of rows so that memory stays bounded for long batches.
        const int kRows = std::max(1, std::min(M, (int)((64u << 20) / (sizeof(float) * (size_t)V))));
        logits_.resize((size_t)kRows * V);
        for (int m0 = 0; m0 < M; m0 += kRows) {
            int m = std::min(kRows, M - m0);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, V, C, 1.0f, x + (size_t)m0 * C, C, W, C, 0.0f,
                        logits_.data(), V);
            pool_.parallel_for((size_t)m, 1, [&](size_t b, size_t e) {
                for (size_t r = b; r < e; r++) {
                    const float* l = logits_.data() + r * V;
                    float mx = max_of(l, V);
                    float sum = sum_exp(l, V, mx);
                    logprob[m0 + r] = l[target[m0 + r]] - mx - logf(sum);
                }
            });
        }
    }

private:
    ThreadPool pool_;
    std::vector<float> logits_;
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
        throw std::runtime_error("device memory budget exceeded on " + device + ": asked for " + mib(bytes) + " with " +
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
