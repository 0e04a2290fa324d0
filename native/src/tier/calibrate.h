// Calibration for the planner: the bandwidths and rates of this machine,
// measured through the engine's own paths (Backend::upload/download from
// alloc_host memory, SpillFile with O_DIRECT, Backend::linear, zo_update on
// the host backend). Never throws: a tier that cannot be measured is reported
// unavailable with the reason.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace spw {

class Backend;

struct CalibrateOptions {
    std::string spill_dir;       // empty: the SSD tier is not measured
    uint64_t bytes = 256ull << 20;  // spill test file size (capped by free space)
    int threads = 0;             // host threads (0: all cores)
    int cuda_device = -1;        // -1: the CPU backend is the compute device
};

struct SsdRequestRate {
    uint64_t request_bytes = 0;
    double read_bytes_per_s = 0;
    double write_bytes_per_s = 0;
};

struct CalibrateResult {
    std::string backend;                // backend name of the compute device
    bool pinned = false;                // copies from alloc_host memory that is pinned (CUDA)
    uint64_t copy_bytes = 0;            // size of each timed copy
    double h2d_bytes_per_s = 0;
    double d2h_bytes_per_s = 0;
    double gemm_flops_per_s = 0;        // Backend::linear on the compute device
    double cpu_update_elems_per_s = 0;  // zo_update on the host backend (one term)
    int host_threads = 0;
    // SSD: available only when the spill folder could hold a test file.
    bool ssd_available = false;
    std::string ssd_reason;             // why not, when unavailable
    bool ssd_direct = false;            // O_DIRECT was granted
    uint64_t ssd_file_bytes = 0;
    double ssd_read_bytes_per_s = 0;    // best over request sizes
    double ssd_write_bytes_per_s = 0;
    std::vector<SsdRequestRate> ssd_by_request;
    double seconds = 0;                 // wall time of the calibration
};

CalibrateResult calibrate(const CalibrateOptions& o);

}  // namespace spw
