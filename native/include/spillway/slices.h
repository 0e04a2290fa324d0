// DistZO2's sliced transfer (ALGORITHMS.md §7) as the tier residency sees it: the ranks on one
// machine keep a CPU-homed block once, in memory they share; each uploads its 1/n of the block
// and the slices are exchanged device to device (NCCL between GPUs; on the CPU backend, MPI
// between the staging slots in host memory). src/dist implements it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "spillway/backend.h"

namespace spw {

class SliceGroup {
public:
    virtual ~SliceGroup() = default;
    // This process's slice, and the processes on this machine.
    virtual int rank() const = 0;
    virtual int size() const = 0;
    // Host memory of `bytes` shared by the processes of the group, the same block for `key` in
    // each; made and zero-filled by rank 0 of the group, where `first` is set (it fills it
    // before barrier()). Every process of the group calls it with the same keys, in order.
    virtual void* shared(uint64_t key, size_t bytes, bool& first) = 0;
    // Returns once every process of the group has called it.
    virtual void barrier() = 0;
    // `buf` (backend memory) holds size() slices of slice_bytes, this process's at
    // rank() * slice_bytes, uploaded on be's copy queue; fills in the others, queued on the copy
    // queue after that upload (on the CPU backend: done when it returns).
    virtual void gather(Backend& be, void* buf, size_t slice_bytes) = 0;
    // What carries the slices, for the engine's report: "mpi" or "nccl".
    virtual const char* transport() const = 0;
};

}  // namespace spw
