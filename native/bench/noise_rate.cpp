// noise_rate: what the CPU backend's noise costs per element, for bench/noise-rate.ts.
//
// usage: noise_rate [--threads T] [--reps R] [--elements N]
//   noise:        noise_fill, z for N elements (Gaussian)
//   perturb_pair: both working copies theta +/- eps z from one pass (the forwards' noise phase)
//   update:       theta -= coef z, z regenerated (the step's update, one perturbation, no decay)
// Only the Backend interface is used, so the same file builds against another checkout's
// libspillway_core.a (bench/README.md) and old and new engines are compared in one run.
// $SPILLWAY_NOISE_ISA picks the generator. Prints one JSON line per operation: {"op","elements",
// "calls","threads","reps","bestMs","bestCpuMs","cpuNsPerElement","wallNsPerElement"}, after one
// untimed call; a repetition is `calls` calls; CPU time is user + system of all threads, of the
// repetition that took the least.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "bench_common.h"
#include "spillway/backend.h"
#include "spillway/noise.h"

using namespace spw;
using spw::bench::Clock;
using spw::bench::cpu_ms;

namespace {

// A repetition calls `run` often enough to cover ~32M elements: tens of milliseconds, well above
// the resolution of the CPU-time counters.
void measure(const char* op, size_t n, int threads, int reps, const std::function<void()>& run) {
    run();
    const size_t calls = std::max<size_t>(1, ((size_t)32 << 20) / n);
    double best_ms = 1e300, best_cpu = 1e300;
    for (int r = 0; r < reps; r++) {
        double c0 = cpu_ms();
        auto t0 = Clock::now();
        for (size_t c = 0; c < calls; c++) run();
        best_ms = std::min(best_ms, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        best_cpu = std::min(best_cpu, cpu_ms() - c0);
    }
    const double per = 1e6 / ((double)n * (double)calls);
    std::printf(
        "{\"op\":\"%s\",\"elements\":%zu,\"calls\":%zu,\"threads\":%d,\"reps\":%d,\"bestMs\":%.4f,\"bestCpuMs\":%.4f,"
        "\"cpuNsPerElement\":%.4f,\"wallNsPerElement\":%.4f}\n",
        op, n, calls, threads, reps, best_ms, best_cpu, best_cpu * per, best_ms * per);
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    int threads = 1, reps = 5;
    size_t n = 768 * 3072;  // an OPT-125M fc1 weight: the size of the tensors a step streams
    try {
        for (int i = 1; i < argc; i++) {
            std::string a = argv[i];
            auto val = [&] { return spw::bench::flag_value(argc, argv, i); };
            if (a == "--threads") threads = std::max(1, std::atoi(val().c_str()));
            else if (a == "--reps") reps = std::max(1, std::atoi(val().c_str()));
            else if (a == "--elements") n = (size_t)std::max(1L, std::atol(val().c_str()));
            else throw std::runtime_error("unknown argument '" + a + "' (--threads T, --reps R, --elements N)");
        }
        auto be = make_cpu_backend(threads, false);
        // 64-byte aligned, as the engine's tensors and working copies are.
        auto buffer = [n] {
            size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
            return std::unique_ptr<float[], void (*)(void*)>(static_cast<float*>(std::aligned_alloc(64, bytes)), std::free);
        };
        auto theta = buffer(), z = buffer(), plus = buffer(), minus = buffer();
        if (!theta || !z || !plus || !minus) throw std::runtime_error("out of memory");
        for (size_t i = 0; i < n; i++) theta[i] = (float)((i * 7919) % 1000) * 4e-5f - 0.02f;
        const uint64_t seed = 0x5EEDull;
        const uint32_t id = 0x1234u;
        measure("noise", n, threads, reps, [&] { be->noise_fill(z.get(), n, seed, id, NOISE_GAUSSIAN, 0); });
        measure("perturb_pair", n, threads, reps,
                [&] { be->perturb_pair(plus.get(), minus.get(), theta.get(), n, seed, id, NOISE_GAUSSIAN, 1e-3f); });
        UpdateTerm term{seed, 1e-9f};
        measure("update", n, threads, reps, [&] { be->zo_update(theta.get(), n, id, NOISE_GAUSSIAN, &term, 1, 0.0f); });
    } catch (const std::exception& e) {
        std::fprintf(stderr, "noise_rate: %s\n", e.what());
        return 1;
    }
    return 0;
}
