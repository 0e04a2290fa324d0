// Calibration for the planner: the bandwidths and rates of this machine,
// measured through the engine's own paths (Backend::upload/download from
// alloc_host memory, SpillFile with O_DIRECT, Backend::linear, zo_update on
// the host backend and on the compute device), and the time one transformer
// block of a given shape takes on the compute device, run with the backend's
// own kernels. Never throws for a tier that cannot be measured: it is reported
// unavailable with the reason.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace spw {

class Backend;

// One transformer block, run by its family's recipe as the engine runs it
// (arch/family.h): a gated block is the Llama family's (RoPE, gate/up/down), a
// plain one OPT's (learned positions, fc1/fc2), with causal attention over
// `sequences` packed sequences of `seq_len` tokens.
struct BlockShape {
    int hidden = 0;         // C
    int intermediate = 0;   // MLP width
    int heads = 0;          // NH
    int kv_heads = 0;       // grouped-query heads (0: heads)
    int head_dim = 0;       // 0: hidden / heads
    bool gated = false;     // gate/up/down (llama family) instead of fc1/fc2
    bool rmsnorm = false;   // RMSNorm instead of LayerNorm
    bool rope = false;      // rotary positions on q and k
    bool bias = true;       // biases on projections and norms (OPT, GPT-2)
    int activation = 0;     // Act of the plain MLP
    int sequences = 1;
    int seq_len = 1;
    int noise = 0;          // NoiseKind of the perturbation
};

struct CalibrateOptions {
    std::string spill_dir;       // empty: the SSD tier is not measured
    uint64_t bytes = 256ull << 20;  // spill test file size (capped by free space)
    int threads = 0;             // host threads (0: all cores)
    int cuda_device = -1;        // -1: the CPU backend is the compute device
    std::string gemm;            // a CUDA device's GEMM precision (empty: fp32; $SPILLWAY_GEMM overrides)
    // What to measure: the machine's copy, GEMM and update rates; the SSD tier of
    // spill_dir; one block of `block`'s shape.
    bool machine = true;
    bool ssd = true;
    bool has_block = false;
    BlockShape block;
};

struct SsdRequestRate {
    uint64_t request_bytes = 0;
    double read_bytes_per_s = 0;
    double write_bytes_per_s = 0;
};

// Both forwards of one block, as a ZO step runs them per perturbation: z for
// the block's parameters, the two perturbed working copies, two forwards.
struct BlockTiming {
    std::string source;          // "measured" (the block ran at this shape), "extrapolated", or "failed" (detail says why)
    uint64_t parameters = 0;     // of one block at this shape
    int tokens = 0;              // sequences * seq_len
    double forward_ms = 0;       // one forward of the block (one activation stream)
    double perturb_ms = 0;       // z of the block + the two perturbed copies
    double zo_ms = 0;            // perturb_ms + 2 * forward_ms
    int reps = 0;                // timed repetitions (median taken)
    double gemm_flops_per_s = 0; // the projections' rate: achieved (measured) or extrapolated with
    // extrapolated: the smaller block that ran, and how its times were scaled up
    BlockShape proxy;
    std::string detail;
};

struct CalibrateResult {
    std::string backend;                // backend name of the compute device
    bool pinned = false;                // copies from alloc_host memory that is pinned (CUDA)
    uint64_t copy_bytes = 0;            // size of each timed copy
    double h2d_bytes_per_s = 0;
    double d2h_bytes_per_s = 0;
    double gemm_flops_per_s = 0;        // Backend::linear on the compute device
    double cpu_update_elems_per_s = 0;  // zo_update on the host backend (one term), floats/s
    double device_update_elems_per_s = 0;  // zo_update on the compute device (the host on the CPU backend)
    uint64_t update_elems = 0;          // size of the buffer the updates were timed on
    int host_threads = 0;
    // SSD: available only when the spill folder could hold a test file.
    bool ssd_available = false;
    std::string ssd_reason;             // why not, when unavailable
    bool ssd_direct = false;            // O_DIRECT was granted
    uint64_t ssd_file_bytes = 0;
    double ssd_read_bytes_per_s = 0;    // best over request sizes
    double ssd_write_bytes_per_s = 0;
    std::vector<SsdRequestRate> ssd_by_request;
    // One block's forward (when asked for).
    bool has_block = false;
    BlockTiming block;
    double seconds = 0;                 // wall time of the calibration
};

// Parameters of one block of this shape (the engine's tensors, unpadded).
uint64_t block_parameters(const BlockShape& s);

CalibrateResult calibrate(const CalibrateOptions& o);

}  // namespace spw
