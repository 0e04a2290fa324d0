// The ranks of a distributed run and the few collectives they need, on MPI (Open MPI
// through dlopen, mpi_api.h). Every wait has a deadline: a rank that died or hung is
// named in a DistError within a stated time instead of blocking the others forever;
// the caller reports it and calls abort(), which ends every rank (MPI_Abort).
//
// Calls are serialised by the caller (one engine operation at a time), from whichever
// thread runs it: MPI is initialised with MPI_THREAD_SERIALIZED.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "dist/mpi_api.h"

namespace spw::dist {

// A peer that did not take part in time, or a transport failure; names the ranks concerned.
class DistError : public std::runtime_error {
public:
    DistError(const std::string& message, std::vector<int> ranks) : std::runtime_error(message), ranks_(std::move(ranks)) {}
    const std::vector<int>& ranks() const { return ranks_; }

private:
    std::vector<int> ranks_;
};

struct RankInfo {
    int rank = 0;
    int pid = 0;
    std::string host;
    int local_rank = 0;  // among the ranks on the same host, in rank order
    int local_size = 1;
};

// Whether this process was started by an MPI launcher (mpirun, srun): the environment
// names its rank. MPI is never initialised otherwise (Open MPI's singleton start would
// fork a daemon and give a world of one).
bool launched_as_rank();

class Comm {
public:
    // MPI_Init_thread once per process, then a rendezvous in which every rank learns each
    // rank's host and pid (waiting at most timeout_s for the others). Later calls return
    // the same world. Throws std::runtime_error when MPI cannot start, DistError when a
    // rank does not arrive.
    static Comm& world(double timeout_s);
    // The world when world() has succeeded, else nullptr.
    static Comm* current();

    int rank() const { return rank_; }
    int size() const { return (int)ranks_.size(); }
    const RankInfo& info(int r) const { return ranks_.at((size_t)r); }
    const RankInfo& self() const { return ranks_.at((size_t)rank_); }
    // "rank 1 (pid 4242 on node-b)"
    std::string describe(int r) const;
    const std::string& library() const { return library_; }

    // Every rank contributes `bytes` bytes (the same count on every rank) and receives all
    // contributions in rank order into `all` (size() * bytes). Rank 0 collects and sends
    // the whole back: it names the ranks whose part did not arrive within timeout_s; the
    // others wait timeout_s + grace() for rank 0 (so that rank 0, which knows who is
    // missing, speaks first).
    void exchange(const void* mine, size_t bytes, void* all, double timeout_s, const std::string& what);
    // Rank 0's bytes to every rank (any length; the others pass an empty vector, which is
    // filled). Same deadlines as exchange().
    void broadcast(std::vector<char>& data, double timeout_s, const std::string& what);
    // In-place all-gather of equal slices among `group` (world ranks, this one among them;
    // empty: every rank): buf holds group.size() slices of slice_bytes, slice i belongs to
    // group[i]; this rank's is filled, the others are received from their ranks.
    void all_gather(const std::vector<int>& group, void* buf, size_t slice_bytes, double timeout_s, const std::string& what);
    // The world ranks on this rank's machine, in rank order.
    std::vector<int> local_ranks() const;

    // Whether an exchange has failed (a DistError was thrown): the buffers it was receiving
    // into must stay allocated until abort().
    bool failed() const { return failed_; }

    // Ends every rank of the job (MPI_Abort); does not return.
    [[noreturn]] void abort(int code);
    // MPI_Finalize: every rank calls it once at the end.
    void finalize();

    // How much longer than rank 0 the other ranks wait (default 10 s).
    void set_grace(double s) { grace_s_ = s; }
    double grace() const { return grace_s_; }

private:
    Comm() = default;
    using Clock = std::chrono::steady_clock;
    // Waits for every request; peers[i] is the rank requests[i] exchanges with (-1: a
    // collective). Past the deadline throws a DistError naming the peers still pending;
    // via_root: everything comes through rank 0, which may itself be waiting for another.
    void wait(std::vector<mpi::Request>& requests, const std::vector<int>& peers, Clock::time_point deadline,
              double timeout_s, const std::string& what, bool via_root = false);
    int next_tag();
    int next_group_tag();
    void exchange_once(const void* mine, size_t bytes, void* all, double timeout_s, const std::string& what);
    void broadcast_once(std::vector<char>& data, double timeout_s, const std::string& what);
    void all_gather_once(const std::vector<int>& group, void* buf, size_t slice_bytes, double timeout_s, const std::string& what);
    // A receive buffer that outlives a timed-out exchange (a late message must land in
    // memory that is still ours; the process is aborted right after).
    char* inbox(size_t bytes);
    void retire_inbox();

    int rank_ = 0;
    std::vector<RankInfo> ranks_;
    std::string library_;
    std::mutex mu_;  // one exchange at a time, whichever thread calls
    int tag_ = 0;
    int group_tag_ = 0;
    bool failed_ = false;
    double grace_s_ = 10.0;
    std::unique_ptr<std::vector<char>> inbox_;
    std::vector<std::unique_ptr<std::vector<char>>> retired_;
};

}  // namespace spw::dist
