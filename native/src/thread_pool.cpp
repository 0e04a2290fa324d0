#include "thread_pool.h"

#include <algorithm>
#include <atomic>

namespace spw {

ThreadPool::ThreadPool(int threads) {
    int extra = std::max(1, threads) - 1;
    for (int i = 0; i < extra; i++) workers_.emplace_back([this, i] { worker_loop(i + 1); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
    uint64_t seen = 0;
    for (;;) {
        const std::function<void(size_t, size_t)>* job;
        size_t begin, end;
        {
            std::unique_lock<std::mutex> lock(mu_);
            wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
            job = job_;
            begin = std::min(job_n_, (size_t)index * job_chunk_);
            end = std::min(job_n_, begin + job_chunk_);
        }
        if (begin < end) (*job)(begin, end);
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (--pending_ == 0) done_.notify_one();
        }
    }
}

void ThreadPool::parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
    if (n == 0) return;
    grain = std::max<size_t>(1, grain);
    size_t parts = (size_t)size();
    size_t chunk = (n + parts - 1) / parts;
    chunk = (chunk + grain - 1) / grain * grain;
    if (workers_.empty() || chunk >= n) {
        fn(0, n);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        job_ = &fn;
        job_n_ = n;
        job_chunk_ = chunk;
        pending_ = (int)workers_.size();
        generation_++;
    }
    wake_.notify_all();
    fn(0, std::min(n, chunk));
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return pending_ == 0; });
}

void ThreadPool::parallel_tasks(size_t n, const std::function<void(size_t)>& fn) {
    std::atomic<size_t> next{0};
    parallel_for((size_t)size(), 1, [&](size_t, size_t) {
        for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) fn(i);
    });
}

}  // namespace spw
