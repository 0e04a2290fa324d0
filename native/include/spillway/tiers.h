// Where units live and what moving them costs: the placement the engine is
// given (TierOptions) and what its residency reports (TierStats). See
// docs/TIERED-STORE.md and native/src/tier/residency.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "spillway/precision.h"
#include "spillway/slices.h"

namespace spw {

// Where a unit's master lives between its visits to the compute device.
enum class Home : int { Device = 0, Cpu = 1, Ssd = 2 };

struct TierOptions {
    std::vector<int> homes;     // Home per unit; empty: every unit stays on the device
    std::string spill_dir;      // one spill folder (required when any unit lives on the SSD) ...
    std::vector<std::string> spill_dirs;  // ... or several (drives): SSD units striped over them in unit order
    // Per unit, where a streamed unit's update is applied: 0 (or empty) at its home by
    // host threads after the step; 1 on the compute device when the unit is next staged,
    // then written back home by a device-to-host copy (ZO2's way). Same values either way.
    std::vector<int> device_update;
    int write_back_every = 1;   // K: an SSD unit is rewritten every K updates, replayed in between
    int prefetch = 2;           // SSD units read (and replayed) ahead of the one computing; 0: none
    // Device staging slots streamed units pass through; with 2 the upload of the next
    // unit overlaps the compute of this one. 0: 2 on a device with queues, 1 on the CPU.
    int stage_slots = 0;
    // Precision of every master: MASTER_F32, or MASTER_BF16 / MASTER_F16 with stochastic
    // rounding of updates. Streamed units are stored, moved and written in that format (half
    // the bytes); device-resident units hold its values in float32.
    MasterDtype master_dtype = MASTER_F32;
    // DistZO2's sliced transfer among the ranks of this machine (src/dist): every CPU-homed
    // block lives once in their shared memory, each rank uploads its 1/n of it into the slot
    // and the group fills in the rest; the block is updated on the device and each rank writes
    // back its slice. Null, or a group of one: every rank streams whole blocks of its own.
    std::shared_ptr<SliceGroup> slices;
};

struct TierStats {
    uint64_t device_weight_bytes = 0;  // masters resident on the compute device
    uint64_t device_stage_bytes = 0;   // the staging slot streamed units pass through
    uint64_t cpu_bytes = 0;            // masters of CPU-homed units + the I/O buffer
    uint64_t ssd_bytes = 0;            // the spill file
    uint64_t h2d_bytes = 0;            // streamed to the device so far
    uint64_t ssd_read_bytes = 0;
    uint64_t ssd_write_bytes = 0;
    uint64_t d2h_bytes = 0;            // written back from the device to CPU or SSD homes
    uint64_t scratch_bytes = 0;        // z and the perturbed working copy (largest group of tensors one kernel reads)
    uint64_t adapter_bytes = 0;        // LoRA / LoLDU adapters on the compute device, with their noise and working copies
    std::string spill_file;            // the first spill file
    std::vector<std::string> spill_files;
    std::string io_path;               // "io_uring" or "pread"
    int stage_slots = 0;
    std::string master_dtype;          // "fp32", "bf16" or "fp16"
    int slice_ranks = 0;               // sliced transfer: the ranks sharing each CPU-homed block (0: none)
    std::string slice_transport;       // "mpi" or "nccl"
};

}  // namespace spw
