// Every spw::Backend kernel on the CPU backend (the reference) and on the CUDA
// backend with the same random inputs, compared by normalised error
//     err = sum |cpu - cuda|^2 / sum |cpu|^2
// against a per-op threshold (below). The ZO kernels (noise_fill, perturb,
// zo_update) and the pure data movers must be bit-identical. GEMM ops run
// twice on CUDA: through cuBLAS (when libcublas.so.13 can be dlopen'ed) and
// through the built-in tiled kernel (SPILLWAY_CUBLAS=0). SPILLWAY_GEMM=tf32 or
// bf16 puts the cuBLAS backend's GEMMs in that precision (the tiled kernel is
// always fp32): their ops are then held to the looser thresholds below, and a
// mode that did not take effect on a cuBLAS device of compute capability 8.0+
// is a failure. Then the memory and queue checks: the staging ring behind
// upload(), the copy queue with its events, pin_host/unpin_host.
//
// usage: backend_ops [--perf | --perf-gemm] [--device N] [--threads N]
//   prints one line per op and "N passed, N failed"; exit status 1 on a failure.
//   Without CUDA compiled in, or without a device, prints a SKIP line and exits 0.
//   --perf: also times every op on bigger shapes on both backends, and the copy
//   queue (bandwidth from pinned, pageable and pin_host'ed memory; overlap with kernels).
//   --perf-gemm: times only the GEMM ops, on the CUDA backends (to compare SPILLWAY_GEMM modes).
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "spillway/backend.h"
#include "spillway/noise.h"
#include "spillway/precision.h"

using namespace spw;

namespace {

// Thresholds on the normalised squared error. Exact ops must match bit for bit.
constexpr double EXACT = -1.0;
constexpr double TH_NORM = 1e-10;       // layernorm, rmsnorm: tree vs sequential sums, ~1e-14 seen
constexpr double TH_ELEMENTWISE = 1e-10; // activations, gated_silu, rope: libm vs CUDA math, 1-2 ulp
constexpr double TH_GEMM = 1e-9;        // linear: fp32 accumulation order (no TF32)
constexpr double TH_ATTENTION = 1e-9;   // online vs two-pass softmax, fp32
constexpr double TH_LOGPROBS = 1e-9;    // GEMM + log-softmax over the vocabulary

// Reduced-precision GEMMs (SPILLWAY_GEMM, cuBLAS backend only), for linear and token_logprobs.
// Each operand is rounded to a p-bit significand before its products (TF32: p = 11, 10 bits
// stored; bf16: p = 8, 7 stored), products and sums stay fp32. An operand x becomes x (1 + d),
// |d| < 2^(1-p) whatever the rounding (2^-p for round-to-nearest; the TF32 conversion inside
// cuBLAS may truncate, which also biases d). A product becomes a b (1 + e), e = d_a + d_b,
// |e| < 2^(2-p), and out = sum_k a_k b_k (1 + e_k). With independent inputs the error
// sum_k a_k b_k e_k has a mean square of E[e^2] times the output's, whatever K: the mean of e
// (a bias) scales the whole output, the rest adds up like the output's own terms. So the
// expected norm_err is E[e^2] <= 2^(4-2p): TF32 3.8e-6, bf16 2.4e-4 (round-to-nearest with
// unbiased d: 2^(1-2p) / 3 x 2 = 1.6e-7 and 1.0e-5). As relative errors (square roots): TF32
// ~1e-3 at most, bf16 ~1.6e-2, for K up to thousands. The thresholds leave a margin of 2.5x
// (TF32) and 4x (bf16) over those bounds; the fp32 accumulation adds ~1e-13. token_logprobs
// inherits the logits' error but divides it by |log p| ~ log V >= 1 and the softmax averages
// it: the same thresholds hold with room to spare.
constexpr double TH_GEMM_TF32 = 1e-5;
constexpr double TH_GEMM_BF16 = 1e-3;

std::mt19937 rng(1234);

std::vector<float> randn(size_t n, float scale = 1.0f) {
    std::normal_distribution<float> d(0.f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}
std::vector<int32_t> randint(size_t n, int hi) {
    std::uniform_int_distribution<int> d(0, hi - 1);
    std::vector<int32_t> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

// Buffers on one backend, released at scope end.
struct Dev {
    Backend& be;
    std::vector<void*> ptrs;
    explicit Dev(Backend& b) : be(b) {}
    ~Dev() {
        be.synchronize();
        for (void* p : ptrs) be.release(p);
    }
    float* f(const std::vector<float>& h) {
        auto* p = static_cast<float*>(be.alloc(h.size() * sizeof(float)));
        ptrs.push_back(p);
        be.upload(p, h.data(), h.size() * sizeof(float));
        return p;
    }
    float* zeros(size_t n) { return f(std::vector<float>(n, 0.f)); }
    int32_t* i(const std::vector<int32_t>& h) {
        auto* p = static_cast<int32_t*>(be.alloc(std::max<size_t>(1, h.size()) * sizeof(int32_t)));
        ptrs.push_back(p);
        if (!h.empty()) be.upload(p, h.data(), h.size() * sizeof(int32_t));
        return p;
    }
    std::vector<float> get(const float* p, size_t n) {
        std::vector<float> h(n);
        be.download(h.data(), p, n * sizeof(float));
        return h;
    }
};

// An op: set up its inputs on a backend, then `run` (the timed kernel) and `result`.
struct Prepared {
    std::function<void()> run;
    std::function<std::vector<float>()> result;
};
using Setup = std::function<Prepared(Backend&, Dev&)>;

struct Op {
    std::string name;
    double threshold;
    bool gemm;  // also run on the tiled-GEMM CUDA backend; looser thresholds in tf32 / bf16 modes
    Setup setup;
    bool timed = true;  // false: a correctness check only (too slow on the CPU at --perf shapes)
};

// The GEMM precision a backend's name says is in effect ("gemm tf32"), else fp32.
std::string gemm_mode_of(const Backend& be) {
    std::string n = be.name();
    for (const char* m : {"tf32", "bf16"})
        if (n.find(std::string("gemm ") + m) != std::string::npos) return m;
    return "fp32";
}

double threshold_for(const Op& op, const std::string& mode) {
    if (!op.gemm || op.threshold == EXACT || mode == "fp32") return op.threshold;
    return mode == "tf32" ? TH_GEMM_TF32 : TH_GEMM_BF16;
}

// Shapes of one test set.
struct Shapes {
    int N, C, I, V, M;
    int heads, kv_heads, head_dim;
    std::vector<int32_t> seq_start;  // nseq + 1
    size_t noise_n;
};

std::vector<int32_t> packed(const std::vector<int>& lens) {
    std::vector<int32_t> s{0};
    for (int l : lens) s.push_back(s.back() + l);
    return s;
}

std::vector<Op> make_ops(const Shapes& S) {
    std::vector<Op> ops;
    const int N = S.N, C = S.C, I = S.I, V = S.V, M = S.M;
    const size_t n = S.noise_n;

    for (int kind : {NOISE_GAUSSIAN, NOISE_RADEMACHER}) {
        std::string nm = std::string("noise_fill/") + (kind == NOISE_GAUSSIAN ? "gaussian" : "rademacher");
        ops.push_back({nm, EXACT, false, [=](Backend& be, Dev& d) {
                           float* z = d.zeros(n);
                           return Prepared{[=, &be] { be.noise_fill(z, n, 0x123456789ABCDEFull, 0xC0FFEEu, kind, 4096); },
                                           [=, &d] { return d.get(z, n); }};
                       }});
    }
    {
        auto theta = randn(n, 0.05f), z = randn(n);
        ops.push_back({"perturb", EXACT, false, [=](Backend& be, Dev& d) {
                           float* w = d.zeros(n);
                           float* t = d.f(theta);
                           float* zz = d.f(z);
                           return Prepared{[=, &be] { be.perturb(w, t, zz, -1e-3f, n); }, [=, &d] { return d.get(w, n); }};
                       }});
    }
    for (int kind : {NOISE_GAUSSIAN, NOISE_RADEMACHER}) {
        // A pair's two copies in one pass (z drawn inside); the last block is partial (n % 4 != 0).
        auto theta = randn(n, 0.05f);
        std::string nm = std::string("perturb_pair/") + (kind == NOISE_GAUSSIAN ? "gaussian" : "rademacher");
        ops.push_back({nm, EXACT, false, [=](Backend& be, Dev& d) {
                           float* plus = d.zeros(n);
                           float* minus = d.zeros(n);
                           float* t = d.f(theta);
                           return Prepared{[=, &be] { be.perturb_pair(plus, minus, t, n, 0x0DDBA11ull, 0xACEu, kind, 1e-3f); },
                                           [=, &d] {
                                               std::vector<float> out = d.get(plus, n), m = d.get(minus, n);
                                               out.insert(out.end(), m.begin(), m.end());
                                               return out;
                                           }};
                       }});
    }
    for (int nterms : {3, 40}) {
        auto theta = randn(n, 0.05f);
        std::vector<UpdateTerm> terms;
        for (int j = 0; j < nterms; j++) terms.push_back({step_seed(7, 3, (uint64_t)j), 1e-4f * (float)(j + 1) - 2e-3f});
        int kind = nterms == 3 ? NOISE_GAUSSIAN : NOISE_RADEMACHER;
        ops.push_back({"zo_update/q" + std::to_string(nterms) + "+decay", EXACT, false, [=](Backend& be, Dev& d) {
                           float* t = d.f(theta);
                           return Prepared{[=, &be] { be.zo_update(t, n, 0xBEEFu, kind, terms.data(), nterms, 1e-5f); },
                                           [=, &d] { return d.get(t, n); }};
                       }});
    }
    {
        // More terms than travel in the kernel's parameters (32): they go through a device buffer,
        // filled without a host wait. Two updates back to back, the second with more terms (the
        // buffer grows while the first kernel may still be reading it).
        const size_t nb = std::min(n, (size_t)65543);
        auto theta = randn(nb, 0.05f);
        std::vector<UpdateTerm> ta, tb;
        for (int j = 0; j < 300; j++) ta.push_back({step_seed(11, 5, (uint64_t)j), 2e-5f * (float)(j % 17) - 1e-4f});
        for (int j = 0; j < 500; j++) tb.push_back({step_seed(11, 6, (uint64_t)j), 1e-3f - 3e-5f * (float)(j % 29)});
        ops.push_back({"zo_update/q300,q500+decay", EXACT, false, [=](Backend& be, Dev& d) {
                           float* t = d.f(theta);
                           return Prepared{[=, &be] {
                                               be.zo_update(t, nb, 0xFACEu, NOISE_GAUSSIAN, ta.data(), 300, 0.0f);
                                               be.zo_update(t, nb, 0xFACEu, NOISE_GAUSSIAN, tb.data(), 500, 3e-5f);
                                           },
                                           [=, &d] { return d.get(t, nb); }};
                       }});
    }
    {
        // Sparse training: only |theta| < below moves (about a third of N(0, 0.05) here), in float32
        // and through the rounded update; the mask of the perturbation likewise.
        auto theta = randn(n, 0.05f), z = randn(n);
        const float below = 0.02f;
        std::vector<UpdateTerm> terms;
        for (int j = 0; j < 3; j++) terms.push_back({step_seed(13, 2, (uint64_t)j), 4e-4f * (float)(j + 1) - 1e-3f});
        ops.push_back({"zo_update/masked+decay", EXACT, false, [=](Backend& be, Dev& d) {
                           float* t = d.f(theta);
                           return Prepared{[=, &be] { be.zo_update(t, n, 0xD00Du, NOISE_GAUSSIAN, terms.data(), 3, 1e-5f, below); },
                                           [=, &d] { return d.get(t, n); }};
                       }});
        ops.push_back({"mask_small", EXACT, false, [=](Backend& be, Dev& d) {
                           float* dz = d.f(z);
                           float* t = d.f(theta);
                           return Prepared{[=, &be] { be.mask_small(dz, t, below, n); }, [=, &d] { return d.get(dz, n); }};
                       }});
        std::vector<float> rounded(n);
        for (size_t i = 0; i < n; i++) rounded[i] = widen_one(narrow_one(theta[i], MASTER_BF16), MASTER_BF16);
        ops.push_back({"zo_update_rounded/bf16/masked", EXACT, false, [=](Backend& be, Dev& d) {
                           float* t = d.f(rounded);
                           return Prepared{[=, &be] { be.zo_update_rounded(t, false, MASTER_BF16, n, 0xD00Du, NOISE_RADEMACHER, terms.data(), 3, 0.0f, below); },
                                           [=, &d] { return d.get(t, n); }};
                       }});
    }
    // bf16/fp16 masters: the stochastically rounded update (float32 storage and packed 16-bit
    // storage) and the widen/narrow conversions must match the CPU bit for bit.
    for (int dtype : {(int)MASTER_BF16, (int)MASTER_F16}) {
        const std::string dn = master_dtype_name(dtype);
        auto theta = randn(n, 0.05f);
        // Small magnitudes too: fp16 subnormals (below 2^-14) take their own rounding path.
        for (size_t i = 0; i < n; i += 7) theta[i] *= 1e-4f;
        std::vector<uint16_t> packed(n);
        std::vector<float> rounded(n);
        for (size_t i = 0; i < n; i++) {
            packed[i] = narrow_one(theta[i], dtype);
            rounded[i] = widen_one(packed[i], dtype);
        }
        std::vector<UpdateTerm> terms;
        for (int j = 0; j < 3; j++) terms.push_back({step_seed(9, 4, (uint64_t)j), 3e-4f * (float)(j + 1) - 5e-4f});
        ops.push_back({"zo_update_rounded/" + dn, EXACT, false, [=](Backend& be, Dev& d) {
                           float* t = d.f(rounded);
                           return Prepared{[=, &be] { be.zo_update_rounded(t, false, dtype, n, 0xABCDu, NOISE_GAUSSIAN, terms.data(), 3, 1e-5f); },
                                           [=, &d] { return d.get(t, n); }};
                       }});
        auto u16_buffer = [](Backend& be, Dev& d, const std::vector<uint16_t>& h) {
            auto* p = static_cast<uint16_t*>(be.alloc(h.size() * sizeof(uint16_t)));
            d.ptrs.push_back(p);
            be.upload(p, h.data(), h.size() * sizeof(uint16_t));
            return p;
        };
        auto widened = [dtype](Backend& be, const uint16_t* p, size_t m) {
            std::vector<uint16_t> h(m);
            be.download(h.data(), p, m * sizeof(uint16_t));
            std::vector<float> out(m);
            for (size_t i = 0; i < m; i++) out[i] = widen_one(h[i], dtype);
            return out;
        };
        ops.push_back({"zo_update_rounded/" + dn + "/packed", EXACT, false, [=](Backend& be, Dev& d) {
                           uint16_t* t = u16_buffer(be, d, packed);
                           return Prepared{[=, &be] { be.zo_update_rounded(t, true, dtype, n, 0xABCDu, NOISE_RADEMACHER, terms.data(), 3, 0.0f); },
                                           [=, &be] { return widened(be, t, n); }};
                       }});
        auto zz = randn(n);
        ops.push_back({"perturb_packed/" + dn, EXACT, false, [=](Backend& be, Dev& d) {
                           uint16_t* t = u16_buffer(be, d, packed);
                           float* z = d.f(zz);
                           float* w = d.zeros(n);
                           return Prepared{[=, &be] { be.perturb_packed(w, t, z, -1e-3f, n, dtype); }, [=, &d] { return d.get(w, n); }};
                       }});
        ops.push_back({"narrow+widen/" + dn, EXACT, false, [=](Backend& be, Dev& d) {
                           float* in = d.f(theta);
                           float* out = d.zeros(n);
                           uint16_t* mid = u16_buffer(be, d, std::vector<uint16_t>(n, 0));
                           return Prepared{[=, &be] {
                                               be.narrow(mid, in, n, dtype);
                                               be.widen(out, mid, n, dtype);
                                           },
                                           [=, &d] { return d.get(out, n); }};
                       }});
    }
    {
        int Vtok = V, P = 1024 + 2;
        auto tok = randn((size_t)Vtok * C, 0.02f), pos = randn((size_t)P * C, 0.02f);
        auto ids = randint((size_t)N, Vtok), posidx = randint((size_t)N, P);
        for (float scale : {0.0f, 1e-3f}) {
            ops.push_back({std::string("embed/") + (scale == 0.f ? "clean" : "noisy"), EXACT, false,
                           [=](Backend& be, Dev& d) {
                               float* out = d.zeros((size_t)N * C);
                               float* t = d.f(tok);
                               float* p = d.f(pos);
                               int32_t* di = d.i(ids);
                               int32_t* dp = d.i(posidx);
                               NoiseSpec tn{99, 0x1111u, NOISE_GAUSSIAN, scale}, pn{99, 0x2222u, NOISE_GAUSSIAN, -scale};
                               return Prepared{[=, &be] { be.embed(out, t, di, N, C, tn, p, dp, pn); },
                                               [=, &d] { return d.get(out, (size_t)N * C); }};
                           }});
        }
    }
    {
        auto x = randn((size_t)N * C, 2.0f), w = randn((size_t)C), b = randn((size_t)C);
        for (auto& v : x) v += 0.5f;
        for (bool bias : {true, false}) {
            ops.push_back({std::string("layernorm") + (bias ? "" : "/nobias"), TH_NORM, false, [=](Backend& be, Dev& d) {
                               float* out = d.zeros((size_t)N * C);
                               float* dx = d.f(x);
                               float* dw = d.f(w);
                               float* db = bias ? d.f(b) : nullptr;
                               return Prepared{[=, &be] { be.layernorm(out, dx, dw, db, N, C, 1e-5f); },
                                               [=, &d] { return d.get(out, (size_t)N * C); }};
                           }});
        }
        ops.push_back({"rmsnorm", TH_NORM, false, [=](Backend& be, Dev& d) {
                           float* out = d.zeros((size_t)N * C);
                           float* dx = d.f(x);
                           float* dw = d.f(w);
                           return Prepared{[=, &be] { be.rmsnorm(out, dx, dw, N, C, 1e-6f); },
                                           [=, &d] { return d.get(out, (size_t)N * C); }};
                       }});
        // Gemma's (1 + w) norm, in place (its q/k and post-branch norms overwrite their input).
        ops.push_back({"rmsnorm_offset/inplace", TH_NORM, false, [=](Backend& be, Dev& d) {
                           float* dx = d.f(x);
                           float* dw = d.f(w);
                           return Prepared{[=, &be] { be.rmsnorm_offset(dx, dx, dw, 1.f, N, C, 1e-6f); },
                                           [=, &d] { return d.get(dx, (size_t)N * C); }};
                       }});
    }
    {
        // In place over each head's dims (Qwen3's q and k norms): N * heads rows of head_dim.
        const int rows = N * S.heads, HD = S.head_dim;
        auto x = randn((size_t)rows * HD, 2.0f), w = randn((size_t)HD);
        ops.push_back({"rmsnorm/in place per head", TH_NORM, false, [=](Backend& be, Dev& d) {
                           float* dx = d.f(x);
                           float* dw = d.f(w);
                           return Prepared{[=, &be] { be.rmsnorm(dx, dx, dw, rows, HD, 1e-6f); },
                                           [=, &d] { return d.get(dx, (size_t)rows * HD); }};
                       }});
    }
    {
        auto x = randn((size_t)N * C), W = randn((size_t)I * C, 0.05f), b = randn((size_t)I);
        for (bool tr : {false, true}) {
            for (bool bias : {true, false}) {
                std::string nm = std::string("linear") + (tr ? "/transposed" : "") + (bias ? "+bias" : "");
                ops.push_back({nm, TH_GEMM, true, [=](Backend& be, Dev& d) {
                                   float* out = d.zeros((size_t)N * I);
                                   float* dx = d.f(x);
                                   float* dW = d.f(W);
                                   float* db = bias ? d.f(b) : nullptr;
                                   return Prepared{[=, &be] { be.linear(out, dx, dW, db, N, C, I, tr); },
                                                   [=, &d] { return d.get(out, (size_t)N * I); }};
                               }});
            }
        }
        // A pair's products in one call (the CPU runs them side by side), biases on one of them.
        auto x2 = randn((size_t)N * C), W2 = randn((size_t)I * C, 0.05f);
        ops.push_back({"linear_streams/2", TH_GEMM, true, [=](Backend& be, Dev& d) {
                           float* out0 = d.zeros((size_t)N * I);
                           float* out1 = d.zeros((size_t)N * I);
                           const float* ins[2] = {d.f(x), d.f(x2)};
                           const float* Ws[2] = {d.f(W), d.f(W2)};
                           const float* bs[2] = {d.f(b), nullptr};
                           return Prepared{[=, &be] {
                                               float* outs[2] = {out0, out1};
                                               be.linear_streams(2, outs, ins, Ws, bs, N, C, I, false);
                                           },
                                           [=, &d] {
                                               std::vector<float> o = d.get(out0, (size_t)N * I), o1 = d.get(out1, (size_t)N * I);
                                               o.insert(o.end(), o1.begin(), o1.end());
                                               return o;
                                           }};
                       }});
    }
    {
        // A row range of a fused weight (Phi-3's qkv_proj and gate_up_proj are computed piece by
        // piece): W and b start mid-tensor (b at an odd offset).
        const int rows = 2 * I + 3;
        auto x = randn((size_t)N * C), W = randn((size_t)rows * C, 0.05f), b = randn((size_t)rows);
        ops.push_back({"linear/fused row slice+bias", TH_GEMM, true, [=](Backend& be, Dev& d) {
                           float* out = d.zeros((size_t)N * I);
                           float* dx = d.f(x);
                           float* dW = d.f(W);
                           float* db = d.f(b);
                           const size_t row0 = (size_t)I + 3;
                           return Prepared{[=, &be] { be.linear(out, dx, dW + row0 * C, db + row0, N, C, I, false); },
                                           [=, &d] { return d.get(out, (size_t)N * I); }};
                       }});
    }
    {
        int HD = S.head_dim, NH = S.heads, KV = S.kv_heads;
        int ld = (NH + 2 * KV) * HD;  // q, k, v heads side by side in one row (strided like a fused qkv)
        auto x = randn((size_t)N * ld);
        std::vector<int32_t> positions((size_t)N);
        for (size_t s = 0; s + 1 < S.seq_start.size(); s++)
            for (int t = S.seq_start[s]; t < S.seq_start[s + 1]; t++) positions[(size_t)t] = t - S.seq_start[s];
        // Every dim rotated; and partial rotary (the first half of each head, Phi-3 / GPT-NeoX style)
        // with cos and sin scaled (yarn, longrope).
        for (bool partial : {false, true}) {
            int rot = partial ? HD / 2 : HD;
            float scale = partial ? 1.19f : 1.0f;
            std::vector<float> inv((size_t)rot / 2);
            for (int i = 0; i < rot / 2; i++) inv[(size_t)i] = 1.0f / powf(10000.f, (float)(2 * i) / (float)rot);
            ops.push_back({partial ? "rope/partial+scaled" : "rope", TH_ELEMENTWISE, false, [=](Backend& be, Dev& d) {
                               float* dx = d.f(x);
                               int32_t* dp = d.i(positions);
                               float* di = d.f(inv);
                               return Prepared{[=, &be] { be.rope(dx, ld, NH + KV, HD, rot, dp, N, di, scale); },
                                               [=, &d] { return d.get(dx, (size_t)N * ld); }};
                           }});
        }
        int nseq = (int)S.seq_start.size() - 1;
        for (int variant = 0; variant < 4; variant++) {
            // 0: GQA causal; 1: GQA with a sliding window; 2: plain multi-head (kv_heads = heads) on the same rows;
            // 3: GQA, windowed, scores soft-capped (Gemma 2) at a cap the scores reach
            int kvh = variant == 2 ? NH : KV;
            int window = variant == 1 || variant == 3 ? 37 : 0;
            float softcap = variant == 3 ? 2.5f : 0.f;
            std::string nm = variant == 0 ? "attention/gqa" : variant == 1 ? "attention/gqa+window"
                             : variant == 2 ? "attention/mha" : "attention/gqa+window+softcap";
            // MHA reads k and v heads at offsets NH*HD and 2*NH*HD: it gets its own wider rows.
            int ldm = variant == 2 ? 3 * NH * HD : ld;
            auto xm = variant == 2 ? randn((size_t)N * ldm) : x;
            ops.push_back({nm, TH_ATTENTION, false, [=](Backend& be, Dev& d) {
                               float* out = d.zeros((size_t)N * NH * HD);
                               float* dx = d.f(xm);
                               int32_t* ds = d.i(S.seq_start);
                               AttentionShape s{NH, kvh, HD, ldm, ldm, ldm, 1.0f / sqrtf((float)HD), window, softcap};
                               const float* q = dx;
                               const float* k = dx + (size_t)NH * HD;
                               const float* v = dx + (size_t)(NH + kvh) * HD;
                               return Prepared{[=, &be] { be.attention(out, q, k, v, s, ds, nseq); },
                                               [=, &d] { return d.get(out, (size_t)N * NH * HD); }};
                           }});
        }
    }
    {
        // Decoding: keys and values into cache rows (a strided source, like a fused qkv row), and
        // attention of one new token per sequence (at the end of each test sequence, so caches of
        // every test length) over a random cache, causal, with a window and multi-head.
        int HD = S.head_dim, NH = S.heads, KV = S.kv_heads;
        int nseq = (int)S.seq_start.size() - 1;
        int rows = 0;
        for (int s = 0; s < nseq; s++) rows = std::max(rows, S.seq_start[s + 1] - S.seq_start[s]);
        int width = KV * HD, ldx = (NH + 2 * KV) * HD;
        auto x = randn((size_t)N * ldx);
        std::vector<int32_t> cache_rows((size_t)N);
        for (int s = 0; s < nseq; s++)
            for (int t = S.seq_start[s]; t < S.seq_start[s + 1]; t++) cache_rows[(size_t)t] = s * rows + (t - S.seq_start[s]);
        ops.push_back({"kv_store", EXACT, false, [=](Backend& be, Dev& d) {
                           float* cache = d.zeros((size_t)nseq * rows * width);
                           float* dx = d.f(x);
                           int32_t* dr = d.i(cache_rows);
                           return Prepared{[=, &be] { be.kv_store(cache, dx + (size_t)NH * HD, ldx, dr, N, width); },
                                           [=, &d] { return d.get(cache, (size_t)nseq * rows * width); }};
                       }});
        std::vector<int32_t> positions((size_t)nseq), one_each((size_t)nseq + 1), kv_start((size_t)nseq);
        for (int s = 0; s < nseq; s++) {
            positions[(size_t)s] = S.seq_start[s + 1] - S.seq_start[s] - 1;
            one_each[(size_t)s + 1] = s + 1;
            kv_start[(size_t)s] = s * rows;
        }
        for (int variant = 0; variant < 3; variant++) {
            int kvh = variant == 2 ? NH : KV;
            int window = variant == 1 ? 37 : 0;
            std::string nm = variant == 0 ? "attention_cached/gqa" : variant == 1 ? "attention_cached/gqa+window" : "attention_cached/mha";
            auto q = randn((size_t)nseq * NH * HD);
            auto kc = randn((size_t)nseq * rows * kvh * HD), vc = randn((size_t)nseq * rows * kvh * HD);
            ops.push_back({nm, TH_ATTENTION, false, [=](Backend& be, Dev& d) {
                               float* out = d.zeros((size_t)nseq * NH * HD);
                               float* dq = d.f(q);
                               float* dk = d.f(kc);
                               float* dv = d.f(vc);
                               int32_t* dp = d.i(positions);
                               int32_t* ds = d.i(one_each);
                               int32_t* dks = d.i(kv_start);
                               AttentionShape s{NH, kvh, HD, NH * HD, kvh * HD, kvh * HD, 1.0f / sqrtf((float)HD), window};
                               return Prepared{[=, &be] { be.attention_cached(out, dq, dk, dv, s, dp, nseq, ds, dks, nseq); },
                                               [=, &d] { return d.get(out, (size_t)nseq * NH * HD); }};
                           }});
        }
    }
    {
        size_t ne = (size_t)N * I;
        auto x = randn(ne, 3.0f), y = randn(ne);
        const char* names[] = {"relu", "gelu", "gelu_new", "silu"};
        for (int a = 0; a < 4; a++) {
            ops.push_back({std::string("activation/") + names[a], a == 0 ? EXACT : TH_ELEMENTWISE, false,
                           [=](Backend& be, Dev& d) {
                               float* dx = d.f(x);
                               return Prepared{[=, &be] { be.activation(dx, ne, (Act)a); },
                                               [=, &d] { return d.get(dx, ne); }};
                           }});
        }
        ops.push_back({"gated_silu", TH_ELEMENTWISE, false, [=](Backend& be, Dev& d) {
                           float* dx = d.f(x);
                           float* dy = d.f(y);
                           return Prepared{[=, &be] { be.gated_silu(dx, dy, ne); }, [=, &d] { return d.get(dx, ne); }};
                       }});
        for (Act a : {Act::GeluNew, Act::Silu}) {
            ops.push_back({std::string("gated_act/") + (a == Act::GeluNew ? "gelu_new" : "silu"), TH_ELEMENTWISE, false,
                           [=](Backend& be, Dev& d) {
                               float* dx = d.f(x);
                               float* dy = d.f(y);
                               return Prepared{[=, &be] { be.gated_act(dx, dy, ne, a); }, [=, &d] { return d.get(dx, ne); }};
                           }});
        }
        ops.push_back({"scale", TH_ELEMENTWISE, false, [=](Backend& be, Dev& d) {
                           float* dx = d.f(x);
                           return Prepared{[=, &be] { be.scale(dx, 5.656854f, ne); }, [=, &d] { return d.get(dx, ne); }};
                       }});
        ops.push_back({"add", EXACT, false, [=](Backend& be, Dev& d) {
                           float* dx = d.f(x);
                           float* dy = d.f(y);
                           return Prepared{[=, &be] { be.add(dx, dy, ne); }, [=, &d] { return d.get(dx, ne); }};
                       }});
        // A LoLDU adapter's diag(v) U (rows) and its scale (one row: every element).
        const int rows = 24, cols = (int)(ne / 24);
        auto dv = randn((size_t)rows);
        ops.push_back({"scale_rows", EXACT, false, [=](Backend& be, Dev& d) {
                           float* dx = d.f(x);
                           float* v = d.f(dv);
                           return Prepared{[=, &be] {
                                               be.scale_rows(dx, v, rows, cols);
                                               be.scale_rows(dx, v + 3, 1, rows * cols);
                                           },
                                           [=, &d] { return d.get(dx, (size_t)rows * cols); }};
                       }});
    }
    {
        auto h = randn((size_t)N * C);
        auto rows = randint((size_t)M, N);
        ops.push_back({"gather_rows", EXACT, false, [=](Backend& be, Dev& d) {
                           float* out = d.zeros((size_t)M * C);
                           float* dh = d.f(h);
                           int32_t* dr = d.i(rows);
                           return Prepared{[=, &be] { be.gather_rows(out, dh, dr, M, C); },
                                           [=, &d] { return d.get(out, (size_t)M * C); }};
                       }});
        // GPT-NeoX's split of a fused per-head q|k|v ([N, heads, 3, HD]) into its k part.
        const int NH = S.heads, HD = S.head_dim;
        auto qkv = randn((size_t)N * NH * 3 * HD);
        ops.push_back({"copy_rows/strided", EXACT, false, [=](Backend& be, Dev& d) {
                           float* out = d.zeros((size_t)N * NH * HD);
                           float* in = d.f(qkv);
                           return Prepared{[=, &be] { be.copy_rows(out, HD, in + HD, 3 * HD, N * NH, HD); },
                                           [=, &d] { return d.get(out, (size_t)N * NH * HD); }};
                       }});
        auto x = randn((size_t)M * C), W = randn((size_t)V * C, 0.1f);
        auto target = randint((size_t)M, V);
        ops.push_back({"token_logprobs", TH_LOGPROBS, true, [=](Backend& be, Dev& d) {
                           float* lp = d.zeros((size_t)M);
                           float* dx = d.f(x);
                           float* dW = d.f(W);
                           int32_t* dt = d.i(target);
                           return Prepared{[=, &be] { be.token_logprobs(lp, dx, dW, dt, M, C, V); },
                                           [=, &d] { return d.get(lp, (size_t)M); }};
                       }});
        ops.push_back({"token_logprobs/softcap", TH_LOGPROBS, true, [=](Backend& be, Dev& d) {
                           float* lp = d.zeros((size_t)M);
                           float* dx = d.f(x);
                           float* dW = d.f(W);
                           int32_t* dt = d.i(target);
                           return Prepared{[=, &be] { be.token_logprobs(lp, dx, dW, dt, M, C, V, 1.5f); },
                                           [=, &d] { return d.get(lp, (size_t)M); }};
                       }});
        // A few rows, then more rows than any call so far: the logits buffer grows between calls
        // that are both still queued.
        const int M1 = std::max(1, M / 3), M2 = 2 * M;
        auto x2 = randn((size_t)M2 * C);
        auto target2 = randint((size_t)M2, V);
        Op grow{"token_logprobs/grow", TH_LOGPROBS, true, [=](Backend& be, Dev& d) {
                    float* lp1 = d.zeros((size_t)M1);
                    float* lp2 = d.zeros((size_t)M2);
                    float* dx = d.f(x2);
                    float* dW = d.f(W);
                    int32_t* dt = d.i(target2);
                    return Prepared{[=, &be] {
                                        be.token_logprobs(lp1, dx, dW, dt, M1, C, V);
                                        be.token_logprobs(lp2, dx, dW, dt, M2, C, V);
                                    },
                                    [=, &d] {
                                        auto r = d.get(lp2, (size_t)M2);
                                        auto r1 = d.get(lp1, (size_t)M1);
                                        r.insert(r.end(), r1.begin(), r1.end());
                                        return r;
                                    }};
                }};
        grow.timed = false;
        ops.push_back(grow);
    }
    return ops;
}

struct Compare {
    double err = 0;
    bool identical = false;
    bool finite = true;
};

Compare compare(const std::vector<float>& a, const std::vector<float>& b) {
    Compare c;
    c.identical = a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) {
        if (!std::isfinite(a[i]) || !std::isfinite(b[i])) c.finite = false;
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)a[i] * (double)a[i];
    }
    c.err = den > 0 ? num / den : num;
    return c;
}

std::vector<float> run_once(Backend& be, const Op& op) {
    Dev d(be);
    Prepared p = op.setup(be, d);
    p.run();
    be.synchronize();
    return p.result();
}

double time_ms(Backend& be, const Op& op, int reps) {
    Dev d(be);
    Prepared p = op.setup(be, d);
    p.run();  // warm-up (cuBLAS heuristics, first-touch)
    be.synchronize();
    auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; r++) p.run();
    be.synchronize();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
}

#ifdef SPW_WITH_CUDA
// ---- the staging ring behind upload(), the copy queue and its events, pin_host / unpin_host
struct Check {
    std::string name, expect;
    bool ok;
    std::string detail;
};

std::vector<Check> queue_checks(Backend& gpu) {
    using Q = Backend::Queue;
    std::vector<Check> out;
    // f returns true on success; detail is printed either way; an exception is a failure.
    auto check = [&](const std::string& name, const std::string& expect, const std::function<bool(std::string&)>& f) {
        std::string detail;
        bool ok = false;
        try {
            ok = f(detail);
        } catch (const std::exception& e) {
            detail = std::string("threw: ") + e.what();
        }
        out.push_back({name, expect, ok, detail});
    };

    check("upload/staged sizes", "identical", [&](std::string& d) {
        // Through the ring (up to 1 MiB) and past it; odd destination; the source overwritten as
        // soon as upload() returns.
        const std::vector<size_t> sizes{1, 3, 4096 + 5, (size_t)1 << 20, ((size_t)1 << 20) + 4};
        auto* dv = static_cast<uint8_t*>(gpu.alloc(((size_t)2 << 20) + 64));
        std::mt19937 r(7);
        bool ok = true;
        for (size_t sz : sizes) {
            std::vector<uint8_t> src(sz);
            for (auto& b : src) b = (uint8_t)r();
            std::vector<uint8_t> keep = src, back(sz);
            gpu.upload(dv + 1, src.data(), sz);
            std::fill(src.begin(), src.end(), (uint8_t)0xA5);
            gpu.download(back.data(), dv + 1, sz);
            if (back != keep) {
                d = "size " + std::to_string(sz) + " differs";
                ok = false;
                break;
            }
        }
        gpu.release(dv);
        return ok;
    });

    check("upload/staging ring wraps", "identical", [&](std::string& d) {
        // The compute queue is held behind a 512 MiB upload on the copy queue (an event), then 300
        // uploads of 64 KiB + 1 are queued on it: the 8 MiB ring fills while none of its copies can
        // run, so upload() must wait for the oldest before reusing its bytes. Every source is
        // overwritten as soon as upload() returns.
        const size_t nbig = (size_t)512 << 20, each = 65537, count = 300;
        void* hbig = gpu.alloc_host(nbig);
        std::memset(hbig, 0, nbig);
        void* dbig = gpu.alloc(nbig);
        auto* dv = static_cast<uint8_t*>(gpu.alloc(each * count));
        std::vector<uint8_t> src(each), expect(each * count), back(each * count);
        for (size_t i = 0; i < expect.size(); i++) expect[i] = (uint8_t)((i / each) * 131 + (i % each) * 7);
        Backend::Event* e = gpu.event_create();
        gpu.upload_on(Q::Copy, dbig, hbig, nbig);
        gpu.record(e, Q::Copy);
        gpu.wait(Q::Compute, e);
        auto t0 = std::chrono::steady_clock::now();
        for (size_t i = 0; i < count; i++) {
            std::memcpy(src.data(), expect.data() + i * each, each);
            gpu.upload(dv + i * each, src.data(), each);
            std::memset(src.data(), 0xEE, each);
        }
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        gpu.download(back.data(), dv, back.size());
        gpu.event_destroy(e);
        gpu.release(dv);
        gpu.release(dbig);
        gpu.release_host(hbig);
        char buf[160];
        std::snprintf(buf, sizeof buf, "%zu uploads of %zu bytes behind a 512 MiB copy, queued in %.1f ms", count, each, ms);
        d = buf;
        if (back != expect) d += "; contents differ";
        return back == expect;
    });

    check("copy queue + events", "identical", [&](std::string& d) {
        // compute writes dv; the copy queue waits for it, then overwrites dv; compute waits for
        // the upload, then doubles dv. Any missing wait shows as noise or as undoubled values.
        const size_t n = (size_t)16 << 20, bytes = n * sizeof(float);
        auto* h = static_cast<float*>(gpu.alloc_host(bytes));
        for (size_t i = 0; i < n; i++) h[i] = (float)(i % 1000003) * 0.25f - 3.f;
        auto* dv = static_cast<float*>(gpu.alloc(bytes));
        Backend::Event* e1 = gpu.event_create();
        Backend::Event* e2 = gpu.event_create();
        for (int r = 0; r < 4; r++) gpu.noise_fill(dv, n, 1, 2, NOISE_GAUSSIAN, 0);
        gpu.record(e1, Q::Compute);
        gpu.wait(Q::Copy, e1);
        gpu.upload_on(Q::Copy, dv, h, bytes);
        gpu.record(e2, Q::Copy);
        gpu.wait(Q::Compute, e2);
        gpu.add(dv, dv, n);
        std::vector<float> back(n);
        gpu.download(back.data(), dv, bytes);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) bad += back[i] != 2.f * h[i];
        gpu.event_destroy(e1);
        gpu.event_destroy(e2);
        gpu.release(dv);
        gpu.release_host(h);
        if (bad) d = std::to_string(bad) + " of " + std::to_string(n) + " values wrong";
        return bad == 0;
    });

    check("pin_host + upload_on", "identical", [&](std::string& d) {
        // Pageable memory pinned by pin_host (twice: tolerated), uploaded on the copy queue; once
        // host_wait() on an event recorded after it returns, the source may be overwritten.
        // upload_on(Compute) from unpinned memory, in kernel order.
        const size_t n = (size_t)4 << 20, bytes = n * sizeof(float);
        std::vector<float> pv(n);
        for (size_t i = 0; i < n; i++) pv[i] = (float)(i % 4099) - 17.f;
        const std::vector<float> keep = pv;
        gpu.pin_host(pv.data(), bytes);
        gpu.pin_host(pv.data(), bytes);
        auto* dv = static_cast<float*>(gpu.alloc(bytes));
        auto* dv2 = static_cast<float*>(gpu.alloc(bytes));
        Backend::Event* e = gpu.event_create();
        gpu.host_wait(e);  // never recorded: returns at once
        gpu.upload_on(Q::Copy, dv, pv.data(), bytes);
        gpu.record(e, Q::Copy);
        gpu.host_wait(e);
        std::fill(pv.begin(), pv.end(), -1.f);
        gpu.wait(Q::Compute, e);
        gpu.upload_on(Q::Compute, dv2, keep.data(), bytes);
        gpu.add(dv2, dv, n);  // dv2 = keep + dv = 2 keep, after both uploads
        std::vector<float> back(n), back2(n);
        gpu.download(back.data(), dv, bytes);
        gpu.download(back2.data(), dv2, bytes);
        gpu.unpin_host(pv.data());
        gpu.unpin_host(pv.data());  // a no-op
        gpu.event_destroy(e);
        gpu.release(dv);
        gpu.release(dv2);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) bad += (back[i] != keep[i]) + (back2[i] != 2.f * keep[i]);
        if (bad) d = std::to_string(bad) + " values wrong";
        return bad == 0;
    });

    check("native_queue + bind_thread", "three distinct streams", [&](std::string& d) {
        // What NCCL is handed (src/dist/slices.cpp): the copy queue's stream, distinct from the
        // others; on the CPU backend there is none (the slices then go through MPI).
        gpu.bind_thread();
        void* c = gpu.native_queue(Q::Compute);
        void* u = gpu.native_queue(Q::Copy);
        void* w = gpu.native_queue(Q::CopyOut);
        bool cpu_has_none = make_cpu_backend(1, false)->native_queue(Q::Copy) == nullptr;
        d = cpu_has_none ? "" : "the CPU backend reports a native queue";
        return c && u && w && c != u && u != w && c != w && cpu_has_none;
    });

    check("pin_host tolerance", "no error", [&](std::string& d) {
        // alloc_host memory (pinned by CUDA already), then two ranges sharing a page.
        void* h = gpu.alloc_host((size_t)1 << 20);
        gpu.pin_host(h, (size_t)1 << 20);
        gpu.unpin_host(h);  // not this backend's registration: left alone
        gpu.release_host(h);
        const size_t page = (size_t)sysconf(_SC_PAGESIZE);
        char* buf = static_cast<char*>(std::aligned_alloc(page, 4 * page));
        gpu.pin_host(buf, page + page / 2);
        gpu.pin_host(buf + page + page / 2, 2 * page + page / 2);
        gpu.unpin_host(buf + page + page / 2);
        gpu.unpin_host(buf);
        std::free(buf);
        d = "alloc_host memory, a range pinned twice, neighbours sharing a page";
        return true;
    });

    check("pin_host error", "an error", [&](std::string& d) {
        try {
            gpu.pin_host(reinterpret_cast<void*>((uintptr_t)4096), 4096);  // nothing mapped there
        } catch (const std::runtime_error& e) {
            d = e.what();
            return d.find("cudaHostRegister") != std::string::npos;
        }
        d = "no exception for an unmapped address";
        return false;
    });

    check("events: null event", "an error", [&](std::string& d) {
        try {
            gpu.record(nullptr, Q::Compute);
        } catch (const std::runtime_error& e) {
            d = e.what();
            return true;
        }
        d = "no exception";
        return false;
    });
    return out;
}

// Copy-queue bandwidth from pinned, pageable and pin_host'ed memory; pin cost; overlap of a copy
// with kernels on the compute queue (1.0 = the shorter one hidden entirely); the host cost of
// upload() through the staging ring.
void copy_queue_perf(Backend& gpu) {
    using Q = Backend::Queue;
    using clk = std::chrono::steady_clock;
    auto ms_since = [](clk::time_point t0) { return std::chrono::duration<double, std::milli>(clk::now() - t0).count(); };
    const size_t n = (size_t)64 << 20, bytes = n * sizeof(float);
    std::printf("\ncopy queue: %zu MiB host -> device per copy\n", bytes >> 20);
    auto* h = static_cast<float*>(gpu.alloc_host(bytes));
    std::memset(h, 0, bytes);
    auto* dv = static_cast<float*>(gpu.alloc(bytes));
    auto* dz = static_cast<float*>(gpu.alloc(bytes));
    Backend::Event* e = gpu.event_create();
    auto copy_ms = [&](const void* src) {
        gpu.upload_on(Q::Copy, dv, src, bytes);
        gpu.record(e, Q::Copy);
        gpu.host_wait(e);
        auto t0 = clk::now();
        for (int r = 0; r < 3; r++) gpu.upload_on(Q::Copy, dv, src, bytes);
        gpu.record(e, Q::Copy);
        gpu.host_wait(e);
        return ms_since(t0) / 3;
    };
    auto gbs = [&](double ms) { return (double)bytes / 1e6 / ms; };
    double t_pinned = copy_ms(h);
    std::vector<float> pv(n, 1.0f);
    double t_pageable = copy_ms(pv.data());
    auto t0 = clk::now();
    gpu.pin_host(pv.data(), bytes);
    double t_pin = ms_since(t0);
    double t_pinned2 = copy_ms(pv.data());
    t0 = clk::now();
    gpu.unpin_host(pv.data());
    double t_unpin = ms_since(t0);
    std::printf("  from alloc_host memory      %8.2f ms  %6.1f GB/s\n", t_pinned, gbs(t_pinned));
    std::printf("  from pageable memory        %8.2f ms  %6.1f GB/s\n", t_pageable, gbs(t_pageable));
    std::printf("  from pin_host'ed memory     %8.2f ms  %6.1f GB/s  (pin_host %.1f ms, unpin_host %.1f ms)\n", t_pinned2,
                gbs(t_pinned2), t_pin, t_unpin);

    gpu.noise_fill(dz, n, 1, 1, NOISE_GAUSSIAN, 0);
    gpu.synchronize();
    t0 = clk::now();
    gpu.noise_fill(dz, n, 1, 1, NOISE_GAUSSIAN, 0);
    gpu.synchronize();
    double t1 = ms_since(t0);
    int K = std::max(1, (int)std::lround(t_pinned / std::max(t1, 1e-3)));
    auto kernels = [&] {
        for (int k = 0; k < K; k++) gpu.noise_fill(dz, n, 1, (uint32_t)k, NOISE_GAUSSIAN, 0);
    };
    t0 = clk::now();
    kernels();
    gpu.synchronize();
    double t_k = ms_since(t0);
    t0 = clk::now();
    kernels();
    gpu.upload_on(Q::Copy, dv, h, bytes);
    gpu.record(e, Q::Copy);
    gpu.host_wait(e);
    gpu.synchronize();
    double t_both = ms_since(t0);
    double overlap = (t_pinned + t_k - t_both) / std::min(t_pinned, t_k);
    std::printf("  overlap: copy %.2f ms, %d noise_fill kernels %.2f ms, both queued together %.2f ms: %.2f\n", t_pinned, K,
                t_k, t_both, overlap);

    // upload() through the staging ring: host time per call, no wait (4 KiB, the size of a batch's indices).
    std::vector<uint8_t> small(4096, 1);
    gpu.synchronize();
    t0 = clk::now();
    for (int r = 0; r < 1000; r++) gpu.upload(dv, small.data(), small.size());
    double t_up = ms_since(t0);
    gpu.synchronize();
    std::printf("  upload() of 4 KiB, 1000 in a row: %.2f us per call (staged, no host wait)\n", t_up);
    gpu.event_destroy(e);
    gpu.release(dv);
    gpu.release(dz);
    gpu.release_host(h);
}
#endif

}  // namespace

int main(int argc, char** argv) {
    bool perf = false, perf_gemm = false;
    int device = 0;
    int threads = (int)std::max(1u, std::thread::hardware_concurrency());
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--perf") perf = true;
        else if (a == "--perf-gemm") perf_gemm = true;
        else if (a == "--device" && i + 1 < argc) device = std::atoi(argv[++i]);
        else if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
        else {
            std::fprintf(stderr, "usage: backend_ops [--perf | --perf-gemm] [--device N] [--threads N]\n");
            return 2;
        }
    }

    CudaReport rep = cuda_report();
    if (!rep.compiled) {
        std::printf("SKIP: CUDA not compiled in (this build has only the CPU backend)\n");
        return 0;
    }
    if (rep.state != "ok" || device >= (int)rep.devices.size()) {
        std::printf("SKIP: %s%s%s\n", rep.state == "ok" ? "no such device" : rep.state.c_str(),
                    rep.detail.empty() ? "" : ": ", rep.detail.c_str());
        return 0;
    }
#ifdef SPW_WITH_CUDA
    const CudaDeviceInfo& di = rep.devices[(size_t)device];
    std::printf("device %d: %s, cc %d.%d, %d SMs, %.1f GiB, driver %d, runtime %d\n", device, di.name.c_str(),
                di.cc_major, di.cc_minor, di.multiprocessors, (double)di.total_bytes / (1 << 30), rep.driver_version,
                rep.runtime_version);

    auto cpu = make_cpu_backend(threads);
    std::unique_ptr<Backend> gpu, tiled;
    try {
        gpu = make_cuda_backend(device);
        setenv("SPILLWAY_CUBLAS", "0", 1);
        tiled = make_cuda_backend(device);
        unsetenv("SPILLWAY_CUBLAS");
    } catch (const std::exception& e) {
        std::printf("cannot make the CUDA backend: %s\n0 passed, 1 failed\n", e.what());
        return 1;
    }
    bool has_cublas = gpu->name().find("tiled") == std::string::npos;
    std::printf("backends: %s | %s | %s\n", cpu->name().c_str(), gpu->name().c_str(), tiled->name().c_str());
    const char* env_gemm = std::getenv("SPILLWAY_GEMM");
    std::string want_mode = env_gemm && *env_gemm ? env_gemm : "fp32";
    for (char& c : want_mode) c = (char)std::tolower((unsigned char)c);
    const std::string gpu_mode = gemm_mode_of(*gpu);

    // Correctness shapes: odd sizes everywhere (C not a multiple of 4, head_dim not of 32, ragged sequences).
    Shapes S;
    S.C = 200;
    S.I = 333;
    S.V = 5003;
    S.heads = 8;
    S.kv_heads = 2;
    S.head_dim = 80;
    S.seq_start = packed({1, 17, 64, 130, 5, 200});
    S.N = S.seq_start.back();
    S.M = 300;
    S.noise_n = 100003;

    int passed = 0, failed = 0;
    // The precision asked for must be the one measured: a fallback is a failure where it has no
    // excuse (cuBLAS there, tensor cores of compute capability 8.0+).
    {
        bool excused = !has_cublas || di.cc_major < 8;
        bool ok = gpu_mode == want_mode || (excused && gpu_mode == "fp32");
        (ok ? passed : failed)++;
        std::printf("%-28s %-10s %12s %10s  %s: SPILLWAY_GEMM=%s, in effect %s%s\n", "gemm mode", "cuda", "-", want_mode.c_str(),
                    ok ? "PASS" : "FAIL", env_gemm ? env_gemm : "(unset)", gpu_mode.c_str(),
                    gpu_mode != want_mode ? " (see the backend's name for why)" : "");
    }
    std::printf("%-28s %-10s %12s %10s  %s\n", "op", "backend", "norm_err", "threshold", "result");
    for (const Op& op : make_ops(S)) {
        std::vector<float> ref = run_once(*cpu, op);
        std::vector<Backend*> targets{gpu.get()};
        if (op.gemm && has_cublas) targets.push_back(tiled.get());
        for (Backend* be : targets) {
            std::vector<float> out = run_once(*be, op);
            Compare c = compare(ref, out);
            const std::string mode = gemm_mode_of(*be);
            const double th_op = threshold_for(op, mode);
            bool ok = c.finite && out.size() == ref.size() && (th_op == EXACT ? c.identical : c.err <= th_op);
            (ok ? passed : failed)++;
            char th[32];
            if (th_op == EXACT) std::snprintf(th, sizeof th, "identical");
            else std::snprintf(th, sizeof th, "%.0e", th_op);
            std::string label = be == tiled.get() ? "tiled" : !(has_cublas && op.gemm) ? "cuda" : mode == "fp32" ? "cublas" : "cublas-" + mode;
            std::printf("%-28s %-10s %12.3e %10s  %s%s\n", op.name.c_str(), label.c_str(), c.err, th, ok ? "PASS" : "FAIL",
                        c.identical ? " (bit-identical)" : "");
        }
    }

    // Memory: an impossible allocation is a clear error (bytes asked, bytes free), the backend stays usable;
    // pinned host memory and asynchronous copies round-trip exactly.
    {
        bool ok = false;
        std::string msg = "no exception";
        try {
            void* p = gpu->alloc((size_t)1 << 50);
            gpu->release(p);
        } catch (const DeviceOutOfMemory& e) {  // the binding's EDEVICEMEM: the trainer explains it
            msg = e.what();
            ok = msg.find("1125899906842624 bytes") != std::string::npos && msg.find("free") != std::string::npos;
        } catch (const std::runtime_error& e) {
            msg = std::string("not a DeviceOutOfMemory: ") + e.what();
        }
        (ok ? passed : failed)++;
        std::printf("%-28s %-10s %12s %10s  %s: %s\n", "alloc/1PiB", "cuda", "-", "error", ok ? "PASS" : "FAIL", msg.c_str());

        // A budget refuses alike on both backends, with the same error type.
        for (Backend* be : {cpu.get(), gpu.get()}) {
            bool refused = false;
            std::string said = "no exception";
            be->set_memory_budget(be->memory_in_use() + (1u << 20));
            try {
                void* p = be->alloc(2u << 20);
                be->release(p);
            } catch (const DeviceOutOfMemory& e) {
                said = e.what();
                refused = said.find("budget") != std::string::npos;
            }
            be->set_memory_budget(0);
            (refused ? passed : failed)++;
            std::printf("%-28s %-10s %12s %10s  %s: %s\n", "alloc/over-budget", be == gpu.get() ? "cuda" : "cpu", "-", "error",
                        refused ? "PASS" : "FAIL", said.c_str());
        }

        // The run's --gemm reaches the backend (SPILLWAY_GEMM, when set, overrides it); a typo is refused.
        if (!env_gemm || !*env_gemm) {
            bool excused = !has_cublas || di.cc_major < 8;
            std::string got = gemm_mode_of(*make_cuda_backend(device, "tf32"));
            bool ok_mode = got == "tf32" || (excused && got == "fp32");
            bool typo_refused = false;
            try {
                make_cuda_backend(device, "tf23");
            } catch (const std::runtime_error&) {
                typo_refused = true;
            }
            bool ok_arg = ok_mode && typo_refused;
            (ok_arg ? passed : failed)++;
            std::printf("%-28s %-10s %12s %10s  %s: asked tf32, in effect %s; 'tf23' %s\n", "gemm argument", "cuda", "-", "tf32",
                        ok_arg ? "PASS" : "FAIL", got.c_str(), typo_refused ? "refused" : "accepted");
        }

        const size_t n = ((size_t)1 << 20) + 3;
        auto* h = static_cast<float*>(gpu->alloc_host(n * sizeof(float)));
        auto* h2 = static_cast<float*>(gpu->alloc_host(n * sizeof(float)));
        auto* dv = static_cast<float*>(gpu->alloc(n * sizeof(float)));
        for (size_t i = 0; i < n; i++) h[i] = (float)i * 0.5f - 7.f;
        std::memset(h2, 0, n * sizeof(float));
        gpu->upload_async(dv, h, n * sizeof(float));
        gpu->add(dv, dv, n);  // queued behind the copy on the same stream
        gpu->download_async(h2, dv, n * sizeof(float));
        gpu->synchronize();
        bool same = true;
        for (size_t i = 0; i < n && same; i++) same = h2[i] == 2.f * h[i];
        gpu->release(dv);
        gpu->release_host(h);
        gpu->release_host(h2);
        (same ? passed : failed)++;
        std::printf("%-28s %-10s %12s %10s  %s\n", "pinned+async copies", "cuda", "-", "identical", same ? "PASS" : "FAIL");
    }
    for (const Check& c : queue_checks(*gpu)) {
        (c.ok ? passed : failed)++;
        std::printf("%-28s %-10s %12s %10s  %s%s%s\n", c.name.c_str(), "cuda", "-", c.expect.c_str(), c.ok ? "PASS" : "FAIL",
                    c.detail.empty() ? "" : ": ", c.detail.c_str());
    }
    std::printf("%d passed, %d failed\n", passed, failed);

    if (perf || perf_gemm) {
        Shapes P;
        P.C = 2048;
        P.I = 5632;
        P.V = 32000;
        P.heads = 16;
        P.kv_heads = 4;
        P.head_dim = 128;
        P.seq_start = packed(std::vector<int>(8, 256));
        P.N = P.seq_start.back();
        P.M = 1024;
        P.noise_n = (size_t)1 << 24;
        std::printf("\nperf (N=%d tokens in 8x256, C=%d, I=%d, V=%d, heads %d/%d x %d, noise n=%zu), ms per call:\n",
                    P.N, P.C, P.I, P.V, P.heads, P.kv_heads, P.head_dim, P.noise_n);
        std::printf("gemm mode of the cuda column: %s\n", gpu_mode.c_str());
        std::printf("%-28s %12s %12s %12s %9s\n", "op", "cpu", "cuda", "cuda tiled", "speedup");
        for (const Op& op : make_ops(P)) {
            if (!op.timed || (perf_gemm && !perf && !op.gemm)) continue;
            double tc = perf ? time_ms(*cpu, op, 2) : -1;
            double tg = time_ms(*gpu, op, 10);
            double tt = op.gemm && has_cublas ? time_ms(*tiled, op, 5) : -1;
            char tcs[32] = "-", tts[32] = "-", sp[32] = "-";
            if (tc >= 0) std::snprintf(tcs, sizeof tcs, "%.3f", tc);
            if (tt >= 0) std::snprintf(tts, sizeof tts, "%.3f", tt);
            if (tc >= 0) std::snprintf(sp, sizeof sp, "%.1fx", tc / tg);
            std::printf("%-28s %12s %12.3f %12s %9s\n", op.name.c_str(), tcs, tg, tts, sp);
        }
        if (perf) copy_queue_perf(*gpu);
    }
    return failed ? 1 : 0;
#else
    (void)perf, (void)perf_gemm, (void)device, (void)threads;
    return 0;
#endif
}
