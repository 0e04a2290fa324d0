// The SSD tier's storage: one preallocated spill file per engine in a spill
// folder, opened with O_DIRECT (page cache bypassed) and kept open; slots at
// 4 KiB-aligned offsets; reads and writes that survive short transfers and
// EINTR; a checksum per slot write, verified on every read. pread/pwrite at
// explicit offsets, so prefetch threads may read other slots concurrently.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace spw {

constexpr size_t kSpillAlign = 4096;

inline size_t spill_round_up(size_t n) { return (n + kSpillAlign - 1) / kSpillAlign * kSpillAlign; }

// 64-bit checksum of a buffer, 8 bytes at a time (corruption detection, not security).
uint64_t spill_checksum(const void* data, size_t bytes);

// An aligned host buffer for O_DIRECT transfers (page-aligned, size rounded up).
class AlignedBuffer {
public:
    AlignedBuffer() = default;
    explicit AlignedBuffer(size_t bytes);
    ~AlignedBuffer();
    AlignedBuffer(const AlignedBuffer&) = delete;
    AlignedBuffer& operator=(const AlignedBuffer&) = delete;
    void reserve(size_t bytes);
    void* data() const { return data_; }
    size_t capacity() const { return capacity_; }

private:
    void* data_ = nullptr;
    size_t capacity_ = 0;
};

class SpillFile {
public:
    // Creates and preallocates `bytes` in `dir`; throws std::runtime_error naming the
    // folder and the bytes needed and free when there is no room.
    SpillFile(const std::string& dir, uint64_t bytes);
    ~SpillFile();  // closes and removes the file
    SpillFile(const SpillFile&) = delete;
    SpillFile& operator=(const SpillFile&) = delete;

    const std::string& path() const { return path_; }
    bool direct() const { return direct_; }
    uint64_t size() const { return size_; }

    // offset and bytes multiples of kSpillAlign, buf aligned to kSpillAlign.
    void write(uint64_t offset, const void* buf, size_t bytes);
    void read(uint64_t offset, void* buf, size_t bytes);

    // "io_uring" (deep queue of 1 MiB requests) or "pread" (the thread-pool fallback);
    // SPILLWAY_IO=pread forces the fallback.
    const char* io_path() const;

    uint64_t bytes_read() const { return bytes_read_.load(); }
    uint64_t bytes_written() const { return bytes_written_.load(); }

private:
    struct Ring;
    bool ring_transfer(bool write, uint64_t offset, char* buf, size_t bytes);

    std::string path_;
    int fd_ = -1;
    std::unique_ptr<Ring> ring_;  // null when io_uring is unavailable
    std::mutex ring_mu_;          // prefetch threads share the ring
    bool direct_ = false;
    uint64_t size_ = 0;
    std::atomic<uint64_t> bytes_read_{0};  // prefetch threads read while the engine writes back
    std::atomic<uint64_t> bytes_written_{0};
};

}  // namespace spw
