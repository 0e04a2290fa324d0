#include "dist/slices.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "dist/nccl_api.h"

namespace spw::dist {
namespace {

// The part every transport shares: the group (this machine's ranks), shared memory, the barrier.
class MachineGroup : public SliceGroup {
public:
    MachineGroup(Comm& comm, double timeout_s) : comm_(comm), timeout_s_(timeout_s), members_(comm.local_ranks()) {
        for (size_t i = 0; i < members_.size(); i++)
            if (members_[i] == comm.rank()) rank_ = (int)i;
        // Names that no other job on this machine uses: the pid of the machine's first rank.
        prefix_ = "/spillway-" + std::to_string(comm.info(members_.front()).pid) + "-";
    }
    ~MachineGroup() override {
        for (auto& [p, bytes] : maps_) munmap(p, bytes);
    }
    int rank() const override { return rank_; }
    int size() const override { return (int)members_.size(); }

    void* shared(uint64_t key, size_t bytes, bool& first) override {
        const std::string name = prefix_ + std::to_string(key);
        const size_t len = std::max<size_t>(bytes, 1);
        first = rank_ == 0;
        int fd = -1;
        if (first) {
            shm_unlink(name.c_str());  // left by a crashed job whose first rank had this pid
            fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
            if (fd < 0) throw std::runtime_error("shared memory " + name + ": " + std::strerror(errno));
            if (ftruncate(fd, (off_t)len) != 0) {
                int e = errno;
                close(fd);
                shm_unlink(name.c_str());
                throw std::runtime_error("shared memory " + name + " of " + std::to_string(len) + " bytes: " + std::strerror(e) +
                                         " (is /dev/shm large enough?)");
            }
        }
        barrier();
        if (!first) {
            fd = shm_open(name.c_str(), O_RDWR, 0600);
            if (fd < 0) throw std::runtime_error("shared memory " + name + " made by this machine's first rank: " + std::strerror(errno));
        }
        void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        int e = errno;
        close(fd);
        if (p == MAP_FAILED) throw std::runtime_error("mapping shared memory " + name + ": " + std::strerror(e));
        maps_.push_back({p, len});
        // Once every rank has it mapped the name can go: the memory lives while a mapping does,
        // and nothing is left in /dev/shm after a crash.
        barrier();
        if (first) shm_unlink(name.c_str());
        return p;
    }

    void barrier() override {
        std::vector<char> b(members_.size(), 1);
        comm_.all_gather(members_, b.data(), 1, timeout_s_, "a barrier of this machine's ranks");
    }

protected:
    Comm& comm_;
    double timeout_s_;
    std::vector<int> members_;
    int rank_ = 0;
    std::string prefix_;
    std::vector<std::pair<void*, size_t>> maps_;
};

// The CPU backend: staging slots are host memory, exchanged by MPI (shared memory within a machine).
class MpiSlices : public MachineGroup {
public:
    using MachineGroup::MachineGroup;
    void gather(Backend& be, void* buf, size_t slice_bytes) override {
        (void)be;  // its copies are done when they return
        comm_.all_gather(members_, buf, slice_bytes, timeout_s_, "the slices of a block");
    }
    const char* transport() const override { return "mpi"; }
};

// GPUs: an NCCL communicator among the machine's ranks; the all-gather runs on the backend's
// copy queue, in place, after the upload of this rank's slice.
class NcclSlices : public MachineGroup {
public:
    NcclSlices(Comm& comm, Backend& be, double timeout_s) : MachineGroup(comm, timeout_s) {
        const nccl::Api& n = nccl::api();
        // Each machine's first rank makes its group's id; every rank receives every one and
        // keeps its machine's.
        nccl::UniqueId mine{};
        if (rank_ == 0) {
            int rc = n.get_unique_id(&mine);
            if (rc != nccl::SUCCESS) throw std::runtime_error(n.error("ncclGetUniqueId", rc));
        }
        std::vector<nccl::UniqueId> all((size_t)comm.size());
        comm.exchange(&mine, sizeof mine, all.data(), timeout_s, "the NCCL ids of the machines");
        be.bind_thread();
        int rc = n.comm_init_rank(&comm_handle_, size(), all[(size_t)members_.front()], rank_);
        if (rc != nccl::SUCCESS) throw std::runtime_error(n.error("ncclCommInitRank", rc));
    }
    ~NcclSlices() override {
        if (comm_handle_) nccl::api().comm_destroy(comm_handle_);
    }
    void gather(Backend& be, void* buf, size_t slice_bytes) override {
        const nccl::Api& n = nccl::api();
        be.bind_thread();
        char* base = static_cast<char*>(buf);
        int rc = n.all_gather(base + (size_t)rank_ * slice_bytes, base, slice_bytes, nccl::UINT8, comm_handle_,
                              be.native_queue(Backend::Queue::Copy));
        if (rc != nccl::SUCCESS) throw std::runtime_error(n.error("ncclAllGather", rc));
        int async = nccl::SUCCESS;
        n.comm_get_async_error(comm_handle_, &async);
        if (async != nccl::SUCCESS) throw std::runtime_error(n.error("NCCL (asynchronous error)", async));
    }
    const char* transport() const override { return "nccl"; }

private:
    nccl::CommHandle comm_handle_ = nullptr;
};

}  // namespace

std::shared_ptr<SliceGroup> make_slice_group(Comm& comm, Backend& be, double timeout_s) {
    if (be.native_queue(Backend::Queue::Copy)) return std::make_shared<NcclSlices>(comm, be, timeout_s);
    return std::make_shared<MpiSlices>(comm, timeout_s);
}

}  // namespace spw::dist
