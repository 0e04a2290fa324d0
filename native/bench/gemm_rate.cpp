// gemm_rate: the float32 GEMM rate of this machine at given shapes, for the floor of
// `npm run bench` (bench/zo-step.ts) and the library comparison of `npm run bench:gemm`.
//
// usage: gemm_rate [--threads T] [--reps R] [--blas LIB | --dnnl LIB] SHAPE ...
//        gemm_rate [--threads T] [--reps R] --peak
//        gemm_rate [--threads T] [--reps R] --pair copies|masters SHAPE ...
//        gemm_rate [--reps R] --kernel KCxTILESxPANELS
//   SHAPE is MxKxN: out[M, N] = inp[M, K] W^T, W stored [N, K] (the engine's linear layout).
//   Default: the CPU backend's own linear(), i.e. the GEMM the engine runs (OpenBLAS, threaded
//   the way the backend threads it).
//   --blas LIB: cblas_sgemm of that shared library (dlopen'ed with its own symbols first), on
//   the library's own threads (openblas_set_num_threads or bli_thread_set_num_threads when it
//   has them; OMP_NUM_THREADS otherwise).
//   --dnnl LIB: oneDNN's dnnl_sgemm (row-major) from LIB; threads: OMP_NUM_THREADS.
//   --pair: a +eps/-eps pair's two products (engine_pair below); the rate counts both.
//   --peak: instead of shapes, the machine's float32 FMA peak on T threads (independent fused
//   multiply-adds in registers, AVX-512 where the CPU has it, else AVX2; best of R): the rate no
//   GEMM can pass. One JSON line {"peak","isa","threads","reps","gflops"}.
//   --kernel: the own AVX-512 kernel alone on one thread (gemm_avx512_kernel_sweep): TILES packed
//   A panels (KC x 12) against PANELS packed B panels (KC x 32), every pair, panels outermost as
//   the GEMM's loop runs them. The counts place the operands: 20 tiles and 8 panels (720 KiB and
//   768 KiB at KC 768) stay in a 2 MiB L2, 64 panels (6 MiB, a pair's block at NC 1024) stream
//   from L3. Best of R repetitions of at least 20 ms each (on a shared host, the best of many
//   short ones is the kernel's own rate). One JSON line {"kernel","kc","tiles","panels","aKiB",
//   "bKiB","reps","gflops","gflopsMedian"}.
// Prints one JSON line per shape: {"shape","m","k","n","via","threads","reps","callsPerRep",
// "bestMs","medianMs","gflops","gflopsMedian","bestCpuMs","gflopsPerCpuSecond"}; gflops from the
// best repetition (wall time), gflopsPerCpuSecond from the repetition that took the least CPU
// time (user + system, all threads: the rate of one busy core, which other processes on the
// machine slow much less than the wall time), after two untimed calls. A repetition is a batch of
// callsPerRep calls lasting at least 50 ms; times are per call.
#include <dlfcn.h>
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../src/cpu/gemm_cpu.h"
#include "bench_common.h"
#include "spillway/backend.h"

using namespace spw;
using spw::bench::Clock;
using spw::bench::cpu_ms;

namespace {

struct Shape {
    int m = 0, k = 0, n = 0;
    std::string text;
};

Shape parse_shape(const std::string& s) {
    Shape sh;
    sh.text = s;
    char end = 0;
    if (std::sscanf(s.c_str(), "%dx%dx%d%c", &sh.m, &sh.k, &sh.n, &end) != 3 || sh.m <= 0 || sh.k <= 0 || sh.n <= 0)
        throw std::runtime_error("shape '" + s + "': expected MxKxN with positive integers");
    return sh;
}

// CBLAS enums as the reference cblas.h numbers them (every implementation keeps them).
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
using CblasSgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
using DnnlSgemm = int (*)(char, char, long, long, long, float, const float*, long, const float*, long, float, float*, long);

// One way of running out = inp W^T.
struct Gemm {
    std::string via;
    std::function<void(const Shape&, const float*, const float*, float*)> run;
    bool pair = false;  // two products a call
};

Gemm engine_gemm(int threads) {
    std::shared_ptr<Backend> be = make_cpu_backend(threads);
    return {"spillway cpu backend (" + std::to_string(be->threads()) + " threads)",
            [be](const Shape& s, const float* a, const float* w, float* c) { be->linear(c, a, w, nullptr, s.m, s.k, s.n, false); }};
}

// A +eps/-eps pair's two products on the engine's backend (twice the FLOPs of one): "copies",
// its two perturbed weights written by perturb_pair and then the products side by side
// (linear_streams), or "masters", both made from the master as the GEMM packs them
// (linear_pair_noisy; the same bits). The noise is drawn in both.
Gemm engine_pair(int threads, const std::string& how) {
    if (how != "copies" && how != "masters") throw std::runtime_error("--pair " + how + ": expected copies or masters");
    std::shared_ptr<Backend> be = make_cpu_backend(threads);
    auto copies = std::make_shared<std::vector<float>>();
    auto x2 = std::make_shared<std::vector<float>>(), c2 = std::make_shared<std::vector<float>>();
    return {"spillway cpu backend pair from " + how + " (" + std::to_string(be->threads()) + " threads)",
            [be, how, copies, x2, c2](const Shape& s, const float* a, const float* w, float* c) {
                const size_t nw = (size_t)s.n * s.k;
                // The second stream's input and output: the first's input, its own output.
                if (x2->size() != (size_t)s.m * s.k) x2->assign(a, a + (size_t)s.m * s.k);
                c2->resize((size_t)s.m * s.n);
                float* outs[2] = {c, c2->data()};
                const float* inps[2] = {a, x2->data()};
                if (how == "masters") {
                    const NoiseSpec ns{7, 1, 0, 1e-3f};
                    if (!be->linear_pair_noisy(outs, inps, w, nullptr, ns, 0, ns, 0, s.m, s.k, s.n, false, false))
                        throw std::runtime_error("linear_pair_noisy does not take " + s.text);
                    return;
                }
                copies->resize(2 * nw);
                be->perturb_pair(copies->data(), copies->data() + nw, w, nw, 7, 1, 0, 1e-3f);
                const float* ws[2] = {copies->data(), copies->data() + nw};
                const float* bs[2] = {nullptr, nullptr};
                be->linear_streams(2, outs, inps, ws, bs, s.m, s.k, s.n, false);
            }};
}

Gemm library_gemm(const std::string& path, bool dnnl, int threads) {
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) throw std::runtime_error("cannot load " + path + ": " + dlerror());
    if (auto set = reinterpret_cast<void (*)(int)>(dlsym(h, "openblas_set_num_threads"))) set(threads);
    if (auto set = reinterpret_cast<void (*)(long)>(dlsym(h, "bli_thread_set_num_threads"))) set(threads);
    if (dnnl) {
        auto f = reinterpret_cast<DnnlSgemm>(dlsym(h, "dnnl_sgemm"));
        if (!f) throw std::runtime_error(path + " has no dnnl_sgemm");
        return {"dnnl_sgemm " + path, [f](const Shape& s, const float* a, const float* w, float* c) {
                    f('N', 'T', s.m, s.n, s.k, 1.0f, a, s.k, w, s.k, 0.0f, c, s.n);
                }};
    }
    auto f = reinterpret_cast<CblasSgemm>(dlsym(h, "cblas_sgemm"));
    if (!f) throw std::runtime_error(path + " has no cblas_sgemm");
    return {"cblas_sgemm " + path, [f](const Shape& s, const float* a, const float* w, float* c) {
                f(kRowMajor, kNoTrans, kTrans, s.m, s.n, s.k, 1.0f, a, s.k, w, s.k, 0.0f, c, s.n);
            }};
}

void measure(const Gemm& g, const Shape& s, int threads, int reps) {
    size_t na = (size_t)s.m * s.k, nw = (size_t)s.n * s.k, nc = (size_t)s.m * s.n;
    std::vector<float> a(na), w(nw), c(nc);
    // Values of the order of activations and weights; the rate does not depend on them.
    for (size_t i = 0; i < na; i++) a[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < nw; i++) w[i] = (float)((i * 104729) % 1000) * 4e-5f - 0.02f;
    g.run(s, a.data(), w.data(), c.data());
    // A repetition is a batch of calls lasting at least kBatchMs: the CPU time of a thread still
    // running on another core is only counted at its next tick or switch, so a single call of a
    // few milliseconds can miss most of it (MKL's per-CPU-second rates above one core's peak).
    constexpr double kBatchMs = 50.0;
    auto t_probe = Clock::now();
    g.run(s, a.data(), w.data(), c.data());
    const double probe_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_probe).count();
    const int inner = std::max(1, (int)std::ceil(kBatchMs / std::max(probe_ms, 1e-3)));
    std::vector<double> ms;
    double best_cpu = 1e300;
    for (int r = 0; r < reps; r++) {
        double c0 = cpu_ms();
        auto t0 = Clock::now();
        for (int i = 0; i < inner; i++) g.run(s, a.data(), w.data(), c.data());
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / inner);
        best_cpu = std::min(best_cpu, (cpu_ms() - c0) / inner);
    }
    std::sort(ms.begin(), ms.end());
    double med = reps % 2 ? ms[(size_t)reps / 2] : (ms[(size_t)reps / 2 - 1] + ms[(size_t)reps / 2]) / 2;
    double flop = (g.pair ? 4.0 : 2.0) * s.m * s.k * s.n;
    std::printf(
        "{\"shape\":\"%s\",\"m\":%d,\"k\":%d,\"n\":%d,\"via\":\"%s\",\"threads\":%d,\"reps\":%d,\"callsPerRep\":%d,"
        "\"bestMs\":%.4f,\"medianMs\":%.4f,\"gflops\":%.2f,\"gflopsMedian\":%.2f,\"bestCpuMs\":%.4f,"
        "\"gflopsPerCpuSecond\":%.2f}\n",
        s.text.c_str(), s.m, s.k, s.n, g.via.c_str(), threads, reps, inner, ms.front(), med, flop / ms.front() / 1e6,
        flop / med / 1e6, best_cpu, flop / best_cpu / 1e6);
    std::fflush(stdout);
}

// kIters rounds of 12 independent FMA chains of one vector each: the FMA units kept full.
constexpr long kPeakIters = 100'000'000;

__attribute__((target("avx512f"))) float fma_chains_avx512() {
    __m512 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps(1.0f + (float)i * 1e-7f);
    const __m512 b = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
    for (long it = 0; it < kPeakIters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    }
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    float lanes[16];
    _mm512_storeu_ps(lanes, s);
    float t = 0.f;
    for (float v : lanes) t += v;
    return t;
}

__attribute__((target("avx2,fma"))) float fma_chains_avx2() {
    __m256 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(1.0f + (float)i * 1e-7f);
    const __m256 b = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
    for (long it = 0; it < kPeakIters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
    }
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    float t = 0.f;
    for (float v : lanes) t += v;
    return t;
}

void measure_peak(int threads, int reps) {
    const bool avx512 = __builtin_cpu_supports("avx512f");
    const int lanes = avx512 ? 16 : 8;
    double best = 0;
    for (int r = 0; r < reps; r++) {
        std::vector<float> sink((size_t)threads);
        std::vector<std::thread> pool;
        auto t0 = Clock::now();
        for (int t = 0; t < threads; t++)
            pool.emplace_back([&, t] { sink[(size_t)t] = avx512 ? fma_chains_avx512() : fma_chains_avx2(); });
        for (std::thread& th : pool) th.join();
        double s = std::chrono::duration<double>(Clock::now() - t0).count();
        double sum = 0;
        for (float v : sink) sum += v;
        if (!(sum == sum)) throw std::runtime_error("the FMA chains gave NaN");
        best = std::max(best, (double)threads * kPeakIters * 12.0 * lanes * 2.0 / s / 1e9);
    }
    std::printf("{\"peak\":true,\"isa\":\"%s\",\"threads\":%d,\"reps\":%d,\"gflops\":%.2f}\n", avx512 ? "avx512" : "avx2",
                threads, reps, best);
}

void measure_kernel(const std::string& spec, int reps) {
    int kc = 0, tiles = 0, panels = 0;
    char end = 0;
    if (std::sscanf(spec.c_str(), "%dx%dx%d%c", &kc, &tiles, &panels, &end) != 3 || kc <= 0 || kc > kOwnGemmDepthBlock || tiles <= 0 ||
        panels <= 0)
        throw std::runtime_error("--kernel '" + spec + "': expected KCxTILESxPANELS, KC from 1 to " + std::to_string(kOwnGemmDepthBlock));
    if (!__builtin_cpu_supports("avx512f")) throw std::runtime_error("--kernel: this CPU has no AVX-512F");
    const size_t a_floats = (size_t)tiles * kc * 12, b_floats = (size_t)panels * kc * 32;
    auto grab = [](size_t n) {
        float* p = static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64));
        if (!p) throw std::runtime_error("--kernel: out of memory");
        for (size_t i = 0; i < n; i++) p[i] = 1.0f + (float)(i % 97) * 1e-3f;
        return std::unique_ptr<float, decltype(&std::free)>(p, &std::free);
    };
    auto a = grab(a_floats), b = grab(b_floats), c = grab(12 * 32);
    const double flops = 2.0 * 12 * 32 * kc * (double)tiles * panels;
    gemm_avx512_kernel_sweep(kc, a.get(), tiles, b.get(), panels, c.get());  // untimed: pages touched, caches warm
    auto t0 = Clock::now();
    gemm_avx512_kernel_sweep(kc, a.get(), tiles, b.get(), panels, c.get());
    const double one = std::chrono::duration<double>(Clock::now() - t0).count();
    const long sweeps = std::max(1L, (long)std::ceil(0.02 / std::max(one, 1e-9)));
    std::vector<double> rates;
    for (int r = 0; r < reps; r++) {
        t0 = Clock::now();
        for (long i = 0; i < sweeps; i++) gemm_avx512_kernel_sweep(kc, a.get(), tiles, b.get(), panels, c.get());
        rates.push_back(flops * (double)sweeps / std::chrono::duration<double>(Clock::now() - t0).count() / 1e9);
    }
    if (!std::isfinite(c.get()[0])) throw std::runtime_error("--kernel: the tile is not finite");
    std::sort(rates.begin(), rates.end());
    std::printf("{\"kernel\":true,\"kc\":%d,\"tiles\":%d,\"panels\":%d,\"aKiB\":%.0f,\"bKiB\":%.0f,\"reps\":%d,\"gflops\":%.2f,\"gflopsMedian\":%.2f}\n",
                kc, tiles, panels, a_floats * 4.0 / 1024, b_floats * 4.0 / 1024, reps, rates.back(), rates[rates.size() / 2]);
}

}  // namespace

int main(int argc, char** argv) {
    int threads = 2, reps = 5;
    std::string lib, pair, kernel;
    bool dnnl = false, peak = false;
    std::vector<Shape> shapes;
    try {
        for (int i = 1; i < argc; i++) {
            std::string a = argv[i];
            auto val = [&] { return spw::bench::flag_value(argc, argv, i); };
            if (a == "--threads") threads = std::max(1, std::atoi(val().c_str()));
            else if (a == "--reps") reps = std::max(1, std::atoi(val().c_str()));
            else if (a == "--blas") lib = val();
            else if (a == "--dnnl") lib = val(), dnnl = true;
            else if (a == "--peak") peak = true;
            else if (a == "--pair") pair = val();
            else if (a == "--kernel") kernel = val();
            else if (!a.empty() && a[0] == '-') throw std::runtime_error("unknown option " + a);
            else shapes.push_back(parse_shape(a));
        }
        if (peak) {
            measure_peak(threads, reps);
            return 0;
        }
        if (!kernel.empty()) {
            measure_kernel(kernel, reps);
            return 0;
        }
        if (shapes.empty()) throw std::runtime_error("no shapes given");
        Gemm g = !pair.empty() ? engine_pair(threads, pair) : lib.empty() ? engine_gemm(threads) : library_gemm(lib, dnnl, threads);
        g.pair = !pair.empty();
        for (const Shape& s : shapes) measure(g, s, threads, reps);
    } catch (const std::exception& e) {
        std::fprintf(stderr,
                     "gemm_rate: %s\nusage: gemm_rate [--threads T] [--reps R] [--blas LIB | --dnnl LIB | --pair copies|masters] MxKxN ... | --peak | --kernel KCxTILESxPANELS\n",
                     e.what());
        return 2;
    }
    return 0;
}
