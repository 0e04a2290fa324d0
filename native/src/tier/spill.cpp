#include "spill.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

namespace spw {

uint64_t spill_checksum(const void* data, size_t bytes) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)bytes;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t w;
        std::memcpy(&w, p + i, 8);
        h ^= w;
        h *= 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    for (; i < bytes; i++) {
        h ^= p[i];
        h *= 0x94D049BB133111EBull;
    }
    return h ^ (h >> 29);
}

AlignedBuffer::AlignedBuffer(size_t bytes) { reserve(bytes); }

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

void AlignedBuffer::reserve(size_t bytes) {
    bytes = spill_round_up(std::max<size_t>(bytes, 1));
    if (bytes <= capacity_) return;
    void* p = nullptr;
    if (posix_memalign(&p, kSpillAlign, bytes) != 0) throw std::bad_alloc();
    std::free(data_);
    data_ = p;
    capacity_ = bytes;
}

namespace {
std::atomic<int> g_spill_counter{0};

std::string human(uint64_t b) {
    char s[64];
    std::snprintf(s, sizeof s, "%.2f GB", (double)b / 1e9);
    return s;
}
}  // namespace

SpillFile::SpillFile(const std::string& dir, uint64_t bytes) : size_(bytes) {
    struct statvfs vfs;
    if (statvfs(dir.c_str(), &vfs) != 0)
        throw std::runtime_error("spill folder " + dir + " is not usable: " + std::strerror(errno));
    uint64_t free_bytes = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    if (free_bytes < bytes)
        throw std::runtime_error("spill folder " + dir + " has " + human(free_bytes) + " free; the SSD tier needs " +
                                 human(bytes));
    path_ = dir + "/spillway-" + std::to_string(getpid()) + "-" + std::to_string(g_spill_counter++) + ".spill";
    fd_ = open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_DIRECT, 0600);
    direct_ = fd_ >= 0;
    if (fd_ < 0 && errno == EINVAL) fd_ = open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd_ < 0) throw std::runtime_error("cannot create the spill file " + path_ + ": " + std::strerror(errno));
    int rc = bytes ? posix_fallocate(fd_, 0, (off_t)bytes) : 0;
    if (rc != 0) {
        close(fd_);
        unlink(path_.c_str());
        fd_ = -1;
        throw std::runtime_error("cannot reserve " + human(bytes) + " for the spill file in " + dir + ": " +
                                 std::strerror(rc));
    }
}

SpillFile::~SpillFile() {
    if (fd_ >= 0) close(fd_);
    if (!path_.empty()) unlink(path_.c_str());
}

void SpillFile::write(uint64_t offset, const void* buf, size_t bytes) {
    const char* p = static_cast<const char*>(buf);
    size_t done = 0;
    while (done < bytes) {
        ssize_t n = pwrite(fd_, p + done, bytes - done, (off_t)(offset + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error("writing the spill file " + path_ + " failed: " + std::strerror(errno));
        }
        if (n == 0) throw std::runtime_error("writing the spill file " + path_ + " made no progress (disk full?)");
        done += (size_t)n;
    }
    bytes_written_ += bytes;
}

void SpillFile::read(uint64_t offset, void* buf, size_t bytes) {
    char* p = static_cast<char*>(buf);
    size_t done = 0;
    while (done < bytes) {
        ssize_t n = pread(fd_, p + done, bytes - done, (off_t)(offset + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error("reading the spill file " + path_ + " failed: " + std::strerror(errno));
        }
        if (n == 0) throw std::runtime_error("the spill file " + path_ + " ended early (truncated?)");
        done += (size_t)n;
    }
    bytes_read_ += bytes;
}

}  // namespace spw
