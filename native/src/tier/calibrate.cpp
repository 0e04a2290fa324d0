#include "calibrate.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <thread>

#include "spill.h"
#include "spillway/backend.h"
#include "spillway/noise.h"

namespace spw {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Best (shortest) time of `reps` runs of fn, after one warm-up run.
template <typename Fn>
double best_of(int reps, Fn&& fn) {
    fn();
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        auto t0 = Clock::now();
        fn();
        best = std::min(best, seconds_since(t0));
    }
    return std::max(best, 1e-9);
}

std::string gb(uint64_t b) {
    char s[64];
    std::snprintf(s, sizeof s, "%.2f GB", (double)b / 1e9);
    return s;
}

void measure_copies(Backend& dev, CalibrateResult& r) {
    const size_t bytes = 64ull << 20;
    r.copy_bytes = bytes;
    void* host = dev.alloc_host(bytes);
    void* d = dev.alloc(bytes);
    try {
        std::memset(host, 1, bytes);
        double up = best_of(4, [&] {
            dev.upload_async(d, host, bytes);
            dev.synchronize();
        });
        double down = best_of(4, [&] {
            dev.download_async(host, d, bytes);
            dev.synchronize();
        });
        r.h2d_bytes_per_s = (double)bytes / up;
        r.d2h_bytes_per_s = (double)bytes / down;
    } catch (...) {
        dev.release(d);
        dev.release_host(host);
        throw;
    }
    dev.release(d);
    dev.release_host(host);
}

void measure_gemm(Backend& dev, CalibrateResult& r) {
    const int N = 512, I = 2048, O = 2048;
    std::vector<float> h((size_t)I * O, 0.01f);
    float* W = static_cast<float*>(dev.alloc((size_t)I * O * sizeof(float)));
    float* x = static_cast<float*>(dev.alloc((size_t)N * I * sizeof(float)));
    float* y = static_cast<float*>(dev.alloc((size_t)N * O * sizeof(float)));
    dev.upload(W, h.data(), (size_t)I * O * sizeof(float));
    dev.upload(x, h.data(), (size_t)N * I * sizeof(float));
    double t = best_of(3, [&] {
        dev.linear(y, x, W, nullptr, N, I, O, false);
        dev.synchronize();
    });
    r.gemm_flops_per_s = 2.0 * N * I * O / t;
    dev.release(W);
    dev.release(x);
    dev.release(y);
}

void measure_update(int threads, CalibrateResult& r) {
    auto host = make_cpu_backend(threads);
    r.host_threads = host->threads();
    const size_t n = 16ull << 20;  // 64 MiB of float32 masters
    std::vector<float> theta(n, 0.f);
    UpdateTerm term{12345, 1e-7f};
    double t = best_of(3, [&] { host->zo_update(theta.data(), n, 7, NOISE_GAUSSIAN, &term, 1, 0.f); });
    r.cpu_update_elems_per_s = (double)n / t;
}

void measure_ssd(const CalibrateOptions& o, CalibrateResult& r) {
    if (o.spill_dir.empty()) {
        r.ssd_reason = "no spill folder given";
        return;
    }
    struct statvfs vfs;
    if (statvfs(o.spill_dir.c_str(), &vfs) != 0) {
        r.ssd_reason = "spill folder " + o.spill_dir + " is not usable: " + std::strerror(errno);
        return;
    }
    const uint64_t mib = 1ull << 20;
    uint64_t free_bytes = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    uint64_t bytes = std::min<uint64_t>(std::max<uint64_t>(o.bytes, 4 * mib), free_bytes / 2) / mib * mib;
    if (bytes < 4 * mib) {
        r.ssd_reason = "spill folder " + o.spill_dir + " has only " + gb(free_bytes) + " free";
        return;
    }
    try {
        SpillFile file(o.spill_dir, bytes);
        r.ssd_direct = file.direct();
        r.ssd_file_bytes = bytes;
        uint64_t largest = std::min<uint64_t>(64 * mib, bytes);
        AlignedBuffer buf(largest);
        std::memset(buf.data(), 0x5a, buf.capacity());
        for (uint64_t req = mib; req <= largest; req *= 4) {
            SsdRequestRate rate;
            rate.request_bytes = req;
            uint64_t span = bytes / req * req;
            auto t0 = Clock::now();
            for (uint64_t off = 0; off < span; off += req) file.write(off, buf.data(), req);
            rate.write_bytes_per_s = (double)span / std::max(seconds_since(t0), 1e-9);
            t0 = Clock::now();
            for (uint64_t off = 0; off < span; off += req) file.read(off, buf.data(), req);
            rate.read_bytes_per_s = (double)span / std::max(seconds_since(t0), 1e-9);
            r.ssd_read_bytes_per_s = std::max(r.ssd_read_bytes_per_s, rate.read_bytes_per_s);
            r.ssd_write_bytes_per_s = std::max(r.ssd_write_bytes_per_s, rate.write_bytes_per_s);
            r.ssd_by_request.push_back(rate);
            if (req == largest) break;
            if (req * 4 > largest) req = largest / 4;  // the last size is the largest request
        }
        r.ssd_available = true;
    } catch (const std::exception& e) {
        r.ssd_available = false;
        r.ssd_reason = e.what();
        r.ssd_by_request.clear();
    }
}

}  // namespace

CalibrateResult calibrate(const CalibrateOptions& o) {
    auto t0 = Clock::now();
    CalibrateResult r;
    int threads = o.threads > 0 ? o.threads : std::max(1, (int)std::thread::hardware_concurrency());
    std::unique_ptr<Backend> dev;
#ifdef SPW_WITH_CUDA
    if (o.cuda_device >= 0) {
        dev = make_cuda_backend(o.cuda_device);
        r.pinned = true;
    }
#endif
    if (!dev) dev = make_cpu_backend(threads);
    r.backend = dev->name();
    measure_copies(*dev, r);
    measure_gemm(*dev, r);
    measure_update(threads, r);
    measure_ssd(o, r);
    r.seconds = seconds_since(t0);
    return r;
}

}  // namespace spw
