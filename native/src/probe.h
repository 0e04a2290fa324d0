// What this machine can do, for `spillway doctor`: each probe returns a state,
// never throws.
#pragma once

#include <string>

namespace spw {

struct ProbeResult {
    bool ok = false;
    std::string detail;
};

// dlopen(name) and close it again: whether a runtime library is present.
ProbeResult probe_library(const char* name);
// io_uring_setup(2): whether the kernel allows io_uring here (no seccomp filter, not disabled).
ProbeResult probe_io_uring();
// A 4 KiB O_DIRECT write and read-back in `dir` (a temporary file, removed).
ProbeResult probe_direct_io(const std::string& dir);
// OpenBLAS's build configuration string.
std::string blas_config();

}  // namespace spw
