// What the native benches (gemm_rate, noise_rate) share: clocks and command-line values.
#pragma once

#include <sys/resource.h>

#include <chrono>
#include <stdexcept>
#include <string>

namespace spw::bench {

using Clock = std::chrono::steady_clock;

// CPU time of this process so far (user + system, all threads), milliseconds.
inline double cpu_ms() {
    rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e3 + (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e3;
}

// The value after the flag argv[i] (i moves onto it); an error names the flag that lacks one.
inline std::string flag_value(int argc, char** argv, int& i) {
    if (i + 1 >= argc) throw std::runtime_error(std::string(argv[i]) + " needs a value");
    return argv[++i];
}

}  // namespace spw::bench
