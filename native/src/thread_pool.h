// A fixed pool of worker threads running parallel_for over index ranges.
// Workers sleep on a condition variable between jobs (no spinning), so they
// do not steal cores from BLAS threads running between our kernels.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace spw {

class ThreadPool {
public:
    explicit ThreadPool(int threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return (int)workers_.size() + 1; }

    // Calls fn(begin, end) over [0, n) split into contiguous chunks, aligned to `grain`.
    void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

    // Calls fn(i) for every i in [0, n), each thread taking the next task as it finishes one:
    // for tasks of uneven cost, or threads that other processes slow down. Every task must
    // write only its own outputs, so that the result does not depend on which thread ran it.
    void parallel_tasks(size_t n, const std::function<void(size_t)>& fn);

private:
    void worker_loop(int index);

    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable wake_;
    std::condition_variable done_;
    const std::function<void(size_t, size_t)>* job_ = nullptr;
    size_t job_n_ = 0;
    size_t job_chunk_ = 0;
    uint64_t generation_ = 0;
    int pending_ = 0;
    bool stop_ = false;
};

}  // namespace spw
