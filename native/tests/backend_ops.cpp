// Every spw::Backend kernel on the CPU backend (the reference) and on the CUDA
// backend with the same random inputs, compared by normalised error
//     err = sum |cpu - cuda|^2 / sum |cpu|^2
// against a per-op threshold (below). The ZO kernels (noise_fill, perturb,
// zo_update) and the pure data movers must be bit-identical. GEMM ops run
// twice on CUDA: through cuBLAS (when libcublas.so.13 can be dlopen'ed) and
// through the built-in tiled kernel (SPILLWAY_CUBLAS=0).
//
// usage: backend_ops [--perf] [--device N] [--threads N]
//   prints one line per op and "N passed, N failed"; exit status 1 on a failure.
//   Without CUDA compiled in, or without a device, prints a SKIP line and exits 0.
//   --perf: also times every op on bigger shapes on both backends.
#include <algorithm>
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

using namespace spw;

namespace {

// Thresholds on the normalised squared error. Exact ops must match bit for bit.
constexpr double EXACT = -1.0;
constexpr double TH_NORM = 1e-10;       // layernorm, rmsnorm: tree vs sequential sums, ~1e-14 seen
constexpr double TH_ELEMENTWISE = 1e-10; // activations, gated_silu, rope: libm vs CUDA math, 1-2 ulp
constexpr double TH_GEMM = 1e-9;        // linear: fp32 accumulation order (no TF32)
constexpr double TH_ATTENTION = 1e-9;   // online vs two-pass softmax, fp32
constexpr double TH_LOGPROBS = 1e-9;    // GEMM + log-softmax over the vocabulary

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
    bool gemm;  // also run on the tiled-GEMM CUDA backend
    Setup setup;
};

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
    }
    {
        int HD = S.head_dim, NH = S.heads, KV = S.kv_heads;
        int ld = (NH + 2 * KV) * HD;  // q, k, v heads side by side in one row (strided like a fused qkv)
        auto x = randn((size_t)N * ld);
        std::vector<int32_t> positions((size_t)N);
        for (size_t s = 0; s + 1 < S.seq_start.size(); s++)
            for (int t = S.seq_start[s]; t < S.seq_start[s + 1]; t++) positions[(size_t)t] = t - S.seq_start[s];
        std::vector<float> inv((size_t)HD / 2);
        for (int i = 0; i < HD / 2; i++) inv[(size_t)i] = 1.0f / powf(10000.f, (float)(2 * i) / (float)HD);
        ops.push_back({"rope", TH_ELEMENTWISE, false, [=](Backend& be, Dev& d) {
                           float* dx = d.f(x);
                           int32_t* dp = d.i(positions);
                           float* di = d.f(inv);
                           return Prepared{[=, &be] { be.rope(dx, ld, NH + KV, HD, dp, N, di); },
                                           [=, &d] { return d.get(dx, (size_t)N * ld); }};
                       }});
        int nseq = (int)S.seq_start.size() - 1;
        for (int variant = 0; variant < 3; variant++) {
            // 0: GQA causal; 1: GQA with a sliding window; 2: plain multi-head (kv_heads = heads) on the same rows
            int kvh = variant == 2 ? NH : KV;
            int window = variant == 1 ? 37 : 0;
            std::string nm = variant == 0 ? "attention/gqa" : variant == 1 ? "attention/gqa+window" : "attention/mha";
            // MHA reads k and v heads at offsets NH*HD and 2*NH*HD: it gets its own wider rows.
            int ldm = variant == 2 ? 3 * NH * HD : ld;
            auto xm = variant == 2 ? randn((size_t)N * ldm) : x;
            ops.push_back({nm, TH_ATTENTION, false, [=](Backend& be, Dev& d) {
                               float* out = d.zeros((size_t)N * NH * HD);
                               float* dx = d.f(xm);
                               int32_t* ds = d.i(S.seq_start);
                               AttentionShape s{NH, kvh, HD, ldm, ldm, ldm, 1.0f / sqrtf((float)HD), window};
                               const float* q = dx;
                               const float* k = dx + (size_t)NH * HD;
                               const float* v = dx + (size_t)(NH + kvh) * HD;
                               return Prepared{[=, &be] { be.attention(out, q, k, v, s, ds, nseq); },
                                               [=, &d] { return d.get(out, (size_t)N * NH * HD); }};
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
        ops.push_back({"add", EXACT, false, [=](Backend& be, Dev& d) {
                           float* dx = d.f(x);
                           float* dy = d.f(y);
                           return Prepared{[=, &be] { be.add(dx, dy, ne); }, [=, &d] { return d.get(dx, ne); }};
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

}  // namespace

int main(int argc, char** argv) {
    bool perf = false;
    int device = 0;
    int threads = (int)std::max(1u, std::thread::hardware_concurrency());
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--perf") perf = true;
        else if (a == "--device" && i + 1 < argc) device = std::atoi(argv[++i]);
        else if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
        else {
            std::fprintf(stderr, "usage: backend_ops [--perf] [--device N] [--threads N]\n");
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
    auto gpu = make_cuda_backend(device);
    setenv("SPILLWAY_CUBLAS", "0", 1);
    auto tiled = make_cuda_backend(device);
    unsetenv("SPILLWAY_CUBLAS");
    bool has_cublas = gpu->name().find("tiled") == std::string::npos;
    std::printf("backends: %s | %s | %s\n", cpu->name().c_str(), gpu->name().c_str(), tiled->name().c_str());

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
    std::printf("%-28s %-10s %12s %10s  %s\n", "op", "backend", "norm_err", "threshold", "result");
    for (const Op& op : make_ops(S)) {
        std::vector<float> ref = run_once(*cpu, op);
        std::vector<Backend*> targets{gpu.get()};
        if (op.gemm && has_cublas) targets.push_back(tiled.get());
        for (Backend* be : targets) {
            std::vector<float> out = run_once(*be, op);
            Compare c = compare(ref, out);
            bool ok = c.finite && out.size() == ref.size() && (op.threshold == EXACT ? c.identical : c.err <= op.threshold);
            (ok ? passed : failed)++;
            char th[32];
            if (op.threshold == EXACT) std::snprintf(th, sizeof th, "identical");
            else std::snprintf(th, sizeof th, "%.0e", op.threshold);
            std::printf("%-28s %-10s %12.3e %10s  %s%s\n", op.name.c_str(), be == tiled.get() ? "tiled" : (has_cublas && op.gemm ? "cublas" : "cuda"),
                        c.err, th, ok ? "PASS" : "FAIL", c.identical ? " (bit-identical)" : "");
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
        } catch (const std::runtime_error& e) {
            msg = e.what();
            ok = msg.find("1125899906842624 bytes") != std::string::npos && msg.find("free") != std::string::npos;
        }
        (ok ? passed : failed)++;
        std::printf("%-28s %-10s %12s %10s  %s: %s\n", "alloc/1PiB", "cuda", "-", "error", ok ? "PASS" : "FAIL", msg.c_str());

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
    std::printf("%d passed, %d failed\n", passed, failed);

    if (perf) {
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
        std::printf("%-28s %12s %12s %12s %9s\n", "op", "cpu", "cuda", "cuda tiled", "speedup");
        for (const Op& op : make_ops(P)) {
            double tc = time_ms(*cpu, op, 2);
            double tg = time_ms(*gpu, op, 10);
            double tt = op.gemm && has_cublas ? time_ms(*tiled, op, 5) : -1;
            char tts[32] = "-";
            if (tt >= 0) std::snprintf(tts, sizeof tts, "%.3f", tt);
            std::printf("%-28s %12.3f %12.3f %12s %8.1fx\n", op.name.c_str(), tc, tg, tts, tc / tg);
        }
    }
    return failed ? 1 : 0;
#else
    return 0;
#endif
}
