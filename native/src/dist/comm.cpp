#include "dist/comm.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace spw::dist {
namespace {

// Messages are cut to what MPI's int counts can say.
constexpr size_t kMaxMessage = (size_t)INT_MAX / 2;

std::string seconds(double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, s < 10 ? "%.1f s" : "%.0f s", s);
    return buf;
}

std::string list_ranks(const std::vector<int>& ranks) {
    std::string s;
    for (size_t i = 0; i < ranks.size(); i++) s += (i ? ", " : "") + std::to_string(ranks[i]);
    return s;
}

// What a rank tells the others at the rendezvous.
struct Hello {
    int32_t pid;
    char host[124];
};

std::unique_ptr<Comm>& world_slot() {
    static std::unique_ptr<Comm> c;
    return c;
}

std::mutex& world_mutex() {
    static std::mutex m;
    return m;
}

}  // namespace

bool launched_as_rank() {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"})
        if (std::getenv(v)) return true;
    return false;
}

std::string Comm::describe(int r) const {
    if (r < 0 || r >= size()) return "rank " + std::to_string(r);
    const RankInfo& i = ranks_[(size_t)r];
    return "rank " + std::to_string(r) + " (pid " + std::to_string(i.pid) + " on " + i.host + ")";
}

Comm* Comm::current() { return world_slot().get(); }

Comm& Comm::world(double timeout_s) {
    std::lock_guard<std::mutex> lock(world_mutex());
    std::unique_ptr<Comm>& slot = world_slot();
    if (slot) return *slot;
    if (!launched_as_rank())
        throw std::runtime_error("this process was not started by an MPI launcher (mpirun or srun); "
                                 "spillway train --ranks N starts the ranks itself");
    const mpi::Api& a = mpi::api();
    int inited = 0;
    a.initialized(&inited);
    if (!inited) {
        int provided = 0;
        int rc = a.init_thread(nullptr, nullptr, mpi::THREAD_SERIALIZED, &provided);
        if (rc != mpi::SUCCESS) throw std::runtime_error(a.error("MPI_Init_thread", rc));
        if (provided < mpi::THREAD_SERIALIZED)
            throw std::runtime_error("MPI provides thread level " + std::to_string(provided) +
                                     "; Spillway calls it from its engine threads and needs MPI_THREAD_SERIALIZED");
    }
    // Errors come back as codes (named in DistError) rather than ending the process.
    a.comm_set_errhandler(a.world, a.errors_return);
    std::unique_ptr<Comm> c(new Comm());
    int size = 1;
    a.comm_rank(a.world, &c->rank_);
    a.comm_size(a.world, &size);
    char version[4096] = {0};
    int vlen = 0;
    if (a.get_library_version(version, &vlen) == mpi::SUCCESS) {
        std::string v(version, (size_t)std::max(0, vlen));
        c->library_ = v.substr(0, v.find_first_of(",\n"));
    }
    c->ranks_.assign((size_t)size, RankInfo{});
    c->ranks_[(size_t)c->rank_].rank = c->rank_;

    Hello mine{};
    mine.pid = (int32_t)getpid();
    char name[mpi::MAX_STRING + 1] = {0};
    int len = 0;
    a.get_processor_name(name, &len);
    std::memcpy(mine.host, name, std::min(sizeof mine.host - 1, strnlen(name, sizeof name)));
    std::vector<Hello> all((size_t)size);
    c->exchange(&mine, sizeof mine, all.data(), timeout_s, "the start-up rendezvous");
    for (int r = 0; r < size; r++) {
        RankInfo& i = c->ranks_[(size_t)r];
        i.rank = r;
        i.pid = all[(size_t)r].pid;
        i.host = std::string(all[(size_t)r].host, strnlen(all[(size_t)r].host, sizeof all[(size_t)r].host));
    }
    // Local ranks from the hosts, so that any launcher works (not only Open MPI's variables).
    for (RankInfo& i : c->ranks_) {
        i.local_rank = 0;
        i.local_size = 0;
        for (const RankInfo& j : c->ranks_) {
            if (j.host != i.host) continue;
            if (j.rank < i.rank) i.local_rank++;
            i.local_size++;
        }
    }
    slot = std::move(c);
    return *slot;
}

int Comm::next_tag() {
    // All ranks make the same exchanges in the same order, so their counters agree; tags stay
    // below 16000 (all-gathers among a group take 16001..32000, below 32767, the least
    // MPI_TAG_UB the standard allows).
    tag_ = tag_ % 16000 + 1;
    return tag_;
}

int Comm::next_group_tag() {
    // Only the members of a group take these (in the same order), so they count apart from
    // the exchanges of the whole world.
    group_tag_ = group_tag_ % 16000 + 1;
    return 16000 + group_tag_;
}

char* Comm::inbox(size_t bytes) {
    if (!inbox_) inbox_ = std::make_unique<std::vector<char>>();
    if (inbox_->size() < bytes) inbox_->resize(bytes);
    return inbox_->data();
}

void Comm::retire_inbox() {
    if (inbox_) retired_.push_back(std::move(inbox_));
}

void Comm::wait(std::vector<mpi::Request>& requests, const std::vector<int>& peers, Clock::time_point deadline,
                double timeout_s, const std::string& what, bool via_root) {
    const mpi::Api& a = mpi::api();
    std::vector<bool> done(requests.size(), false);
    size_t left = requests.size();
    auto start = Clock::now();
    while (left > 0) {
        bool progressed = false;
        for (size_t i = 0; i < requests.size(); i++) {
            if (done[i]) continue;
            int flag = 0;
            mpi::Status st{};
            int rc = a.test(&requests[i], &flag, &st);
            if (rc != mpi::SUCCESS) {
                std::string who = peers[i] >= 0 ? describe(peers[i]) : "the other ranks";
                retire_inbox();
                throw DistError("exchanging " + what + " with " + who + " failed (" + a.error("MPI_Test", rc) +
                                    "): that rank has probably died",
                                peers[i] >= 0 ? std::vector<int>{peers[i]} : std::vector<int>{});
            }
            if (flag) {
                done[i] = true;
                left--;
                progressed = true;
            }
        }
        if (left == 0) break;
        if (Clock::now() > deadline) {
            std::vector<int> missing;
            bool collective = false;
            for (size_t i = 0; i < requests.size(); i++)
                if (!done[i]) {
                    if (peers[i] >= 0) missing.push_back(peers[i]);
                    else collective = true;
                }
            std::sort(missing.begin(), missing.end());
            missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
            std::string msg;
            if (via_root) {
                msg = "rank " + std::to_string(rank_) + " waited " + seconds(timeout_s) + " for " + what +
                      " from rank 0: rank 0, or a rank it waits for, hung or died";
                missing = {0};
            } else if (!missing.empty()) {
                std::string who;
                for (size_t k = 0; k < missing.size(); k++) who += (k ? ", " : "") + describe(missing[k]);
                msg = (missing.size() == 1 ? who + " has" : "ranks " + list_ranks(missing) + " (" + who + ") have") +
                      " not taken part in " + what + " within " + seconds(timeout_s) + " of rank " + std::to_string(rank_) +
                      " arriving: hung or dead";
            } else if (collective) {
                msg = "the broadcast of " + what + " from rank 0 did not complete within " + seconds(timeout_s) +
                      ": a rank hung or died";
            }
            retire_inbox();
            throw DistError(msg, missing);
        }
        // Poll hard briefly (a balanced exchange completes within microseconds), then
        // sleep between polls: a waiting rank must not take the cores a rank still computing
        // needs, and 50 us keeps the added latency small against a step.
        double waited = std::chrono::duration<double>(Clock::now() - start).count();
        if (progressed || waited < 200e-6) continue;
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
}

void Comm::exchange(const void* mine, size_t bytes, void* all, double timeout_s, const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failed_) throw DistError("an earlier exchange failed; " + what + " is not attempted", {});
    try {
        exchange_once(mine, bytes, all, timeout_s, what);
    } catch (const DistError&) {
        failed_ = true;
        throw;
    }
}

std::vector<int> Comm::local_ranks() const {
    std::vector<int> out;
    for (const RankInfo& i : ranks_)
        if (i.host == self().host) out.push_back(i.rank);
    return out;
}

void Comm::all_gather(const std::vector<int>& group, void* buf, size_t slice_bytes, double timeout_s, const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failed_) throw DistError("an earlier exchange failed; " + what + " is not attempted", {});
    try {
        all_gather_once(group, buf, slice_bytes, timeout_s, what);
    } catch (const DistError&) {
        failed_ = true;
        throw;
    }
}

void Comm::broadcast(std::vector<char>& data, double timeout_s, const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failed_) throw DistError("an earlier exchange failed; " + what + " is not attempted", {});
    try {
        broadcast_once(data, timeout_s, what);
    } catch (const DistError&) {
        failed_ = true;
        throw;
    }
}

void Comm::broadcast_once(std::vector<char>& data, double timeout_s, const std::string& what) {
    // The length first (every rank learns it, and rank 0 learns that every rank is there), then the bytes.
    uint64_t mine = rank_ == 0 ? (uint64_t)data.size() : 0;
    std::vector<uint64_t> lengths((size_t)size());
    exchange_once(&mine, sizeof mine, lengths.data(), timeout_s, what);
    const mpi::Api& a = mpi::api();
    size_t n = (size_t)lengths[0];
    if (n > kMaxMessage) throw std::runtime_error(what + " is too large to broadcast (" + std::to_string(n) + " bytes)");
    if (rank_ != 0) data.assign(n, 0);
    if (n == 0) return;
    // Rank 0's buffer is not touched by a late receive; the others receive into an inbox.
    char* box = rank_ == 0 ? data.data() : inbox(n);
    mpi::Request q = nullptr;
    int rc = a.ibcast(box, (int)n, a.byte, 0, a.world, &q);
    if (rc != mpi::SUCCESS) throw DistError(what + ": " + a.error("MPI_Ibcast", rc), {0});
    std::vector<mpi::Request> req = {q};
    std::vector<int> peers = {rank_ == 0 ? -1 : 0};
    double limit = rank_ == 0 ? timeout_s : timeout_s + grace_s_;
    wait(req, peers, Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(limit)), limit, what,
         rank_ != 0);
    if (rank_ != 0) std::memcpy(data.data(), box, n);
}

void Comm::exchange_once(const void* mine, size_t bytes, void* all, double timeout_s, const std::string& what) {
    const mpi::Api& a = mpi::api();
    const int n = size();
    const size_t total = bytes * (size_t)n;
    if (total > kMaxMessage) throw std::runtime_error("exchange of " + what + " is too large (" + std::to_string(total) + " bytes)");
    int tag = next_tag();
    char* box = inbox(std::max<size_t>(total, 1));
    std::vector<mpi::Request> req;
    std::vector<int> peers;
    auto arrive = Clock::now();
    auto check = [&](const char* call, int rc, int peer) {
        if (rc != mpi::SUCCESS)
            throw DistError(what + ": " + a.error(call, rc), peer >= 0 ? std::vector<int>{peer} : std::vector<int>{});
    };
    if (rank_ == 0) {
        std::memcpy(box, mine, bytes);
        for (int r = 1; r < n; r++) {
            mpi::Request q = nullptr;
            check("MPI_Irecv", a.irecv(box + (size_t)r * bytes, (int)bytes, a.byte, r, tag, a.world, &q), r);
            req.push_back(q);
            peers.push_back(r);
        }
        auto deadline = arrive + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
        wait(req, peers, deadline, timeout_s, what);
        req.clear();
        peers.clear();
        mpi::Request q = nullptr;
        check("MPI_Ibcast", a.ibcast(box, (int)total, a.byte, 0, a.world, &q), -1);
        req.push_back(q);
        peers.push_back(-1);
        wait(req, peers, Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s)),
             timeout_s, what);
    } else {
        mpi::Request s = nullptr, b = nullptr;
        check("MPI_Isend", a.isend(mine, (int)bytes, a.byte, 0, tag, a.world, &s), 0);
        check("MPI_Ibcast", a.ibcast(box, (int)total, a.byte, 0, a.world, &b), 0);
        req = {s, b};
        peers = {0, 0};
        double limit = timeout_s + grace_s_;
        wait(req, peers, arrive + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(limit)), limit,
             what, true);
    }
    std::memcpy(all, box, total);
}

void Comm::all_gather_once(const std::vector<int>& group, void* buf, size_t slice_bytes, double timeout_s, const std::string& what) {
    const mpi::Api& a = mpi::api();
    std::vector<int> members = group;
    if (members.empty())
        for (int r = 0; r < size(); r++) members.push_back(r);
    auto mine_at = std::find(members.begin(), members.end(), rank_);
    if (mine_at == members.end()) throw std::runtime_error("rank " + std::to_string(rank_) + " is not in the group of " + what);
    const size_t me = (size_t)(mine_at - members.begin());
    char* base = static_cast<char*>(buf);
    int tag = group.empty() ? next_tag() : next_group_tag();
    std::vector<mpi::Request> req;
    std::vector<int> peers;
    auto arrive = Clock::now();
    for (size_t i = 0; i < members.size(); i++) {
        const int r = members[i];
        if (r == rank_) continue;
        for (size_t off = 0; off < slice_bytes; off += kMaxMessage) {
            int count = (int)std::min(kMaxMessage, slice_bytes - off);
            mpi::Request rq = nullptr, sq = nullptr;
            int rc = a.irecv(base + i * slice_bytes + off, count, a.byte, r, tag, a.world, &rq);
            if (rc != mpi::SUCCESS) throw DistError(what + ": " + a.error("MPI_Irecv", rc), {r});
            rc = a.isend(base + me * slice_bytes + off, count, a.byte, r, tag, a.world, &sq);
            if (rc != mpi::SUCCESS) throw DistError(what + ": " + a.error("MPI_Isend", rc), {r});
            req.push_back(rq);
            peers.push_back(r);
            req.push_back(sq);
            peers.push_back(r);
        }
    }
    // The receives land in the caller's buffer, which the engine keeps until the process
    // is aborted after a timeout.
    wait(req, peers, arrive + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s)),
         timeout_s, what);
}

void Comm::abort(int code) {
    const mpi::Api& a = mpi::api();
    a.abort(a.world, code);
    std::_Exit(code);  // MPI_Abort returned (it should not): end this rank at least
}

void Comm::finalize() {
    const mpi::Api& a = mpi::api();
    int done = 0;
    a.finalized(&done);
    if (!done) a.finalize();
}

}  // namespace spw::dist
