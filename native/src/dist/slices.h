// The engine's SliceGroup (spillway/slices.h) over the ranks of one machine: homes in POSIX
// shared memory made by the machine's first rank, and the slices exchanged by MPI between
// staging slots in host memory (the CPU backend) or by NCCL between GPUs.
#pragma once

#include <memory>

#include "dist/comm.h"
#include "spillway/slices.h"

namespace spw::dist {

// For `be`: NCCL when its queues are a GPU's (be.native_queue is not null), else MPI through
// comm. Throws when NCCL is needed and cannot be loaded, or a rank of the machine does not arrive.
std::shared_ptr<SliceGroup> make_slice_group(Comm& comm, Backend& be, double timeout_s);

}  // namespace spw::dist
