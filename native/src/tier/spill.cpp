#include "spill.h"

#include <fcntl.h>
#ifdef SPW_HAVE_URING
#include <liburing.h>
#endif
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

#ifdef SPW_HAVE_URING
struct SpillFile::Ring {
    struct io_uring ring;
    ~Ring() { io_uring_queue_exit(&ring); }
};
#else
struct SpillFile::Ring {};
#endif

namespace {
constexpr unsigned kQueueDepth = 32;
constexpr size_t kRequestBytes = 1 << 20;
std::atomic<int> g_spill_counter{0};

// 1536 -> "1.5 KiB": binary units, one decimal (small spill files of tiny models stay readable).
std::string human(uint64_t b) {
    static const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    char s[64];
    if (b < 1024) {
        std::snprintf(s, sizeof s, "%llu B", (unsigned long long)b);
        return s;
    }
    double v = (double)b / 1024.0;
    int i = 0;
    while (v >= 1024.0 && i < 4) {
        v /= 1024.0;
        i++;
    }
    std::snprintf(s, sizeof s, "%.1f %s", v, units[i]);
    return s;
}
}  // namespace

SpillFile::SpillFile(const std::string& dir, uint64_t bytes) : size_(bytes) {
    struct statvfs vfs;
    if (statvfs(dir.c_str(), &vfs) != 0)
        throw std::runtime_error("spill folder " + dir + " is not usable: " + std::strerror(errno));
    uint64_t free_bytes = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    if (free_bytes < bytes)
        throw std::runtime_error("not enough space for the spill file in " + dir + ": the SSD tier needs " +
                                 human(bytes) + ", " + human(free_bytes) + " free");
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
        uint64_t now_free = statvfs(dir.c_str(), &vfs) == 0 ? (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize : free_bytes;
        throw std::runtime_error("cannot reserve " + human(bytes) + " for the spill file in " + dir + " (" +
                                 human(now_free) + " free): " + std::strerror(rc));
    }
#ifdef SPW_HAVE_URING
    const char* io = std::getenv("SPILLWAY_IO");
    if (!(io && std::strcmp(io, "pread") == 0)) {
        auto r = std::make_unique<Ring>();
        if (io_uring_queue_init(kQueueDepth, &r->ring, 0) == 0) ring_ = std::move(r);
    }
#endif
}

// Splits a transfer into 1 MiB requests kept up to kQueueDepth deep. Returns false
// when the ring cannot be used (the caller falls back to pread/pwrite); short
// completions are finished with pread/pwrite at the right offset.
bool SpillFile::ring_transfer(bool write, uint64_t offset, char* buf, size_t bytes) {
#ifdef SPW_HAVE_URING
    if (!ring_) return false;
    std::lock_guard<std::mutex> lock(ring_mu_);
    struct io_uring* ring = &ring_->ring;
    size_t next = 0, inflight = 0;
    while (next < bytes || inflight > 0) {
        while (next < bytes && inflight < kQueueDepth) {
            struct io_uring_sqe* sqe = io_uring_get_sqe(ring);
            if (!sqe) break;
            size_t n = std::min(kRequestBytes, bytes - next);
            if (write) io_uring_prep_write(sqe, fd_, buf + next, (unsigned)n, offset + next);
            else io_uring_prep_read(sqe, fd_, buf + next, (unsigned)n, offset + next);
            sqe->user_data = next;
            next += n;
            inflight++;
        }
        int sr = io_uring_submit(ring);
        if (sr < 0 && sr != -EINTR && sr != -EAGAIN && sr != -EBUSY)
            throw std::runtime_error(std::string(write ? "writing" : "reading") + " the spill file " + path_ +
                                     " failed: " + std::strerror(-sr));
        struct io_uring_cqe* cqe = nullptr;
        int wr = io_uring_wait_cqe(ring, &cqe);
        if (wr == -EINTR) continue;
        if (wr < 0)
            throw std::runtime_error(std::string(write ? "writing" : "reading") + " the spill file " + path_ +
                                     " failed: " + std::strerror(-wr));
        size_t at = (size_t)cqe->user_data;
        size_t want = std::min(kRequestBytes, bytes - at);
        int res = cqe->res;
        io_uring_cqe_seen(ring, cqe);
        inflight--;
        if (res < 0 && res != -EINTR && res != -EAGAIN)
            throw std::runtime_error(std::string(write ? "writing" : "reading") + " the spill file " + path_ +
                                     " failed: " + std::strerror(-res));
        size_t done = res > 0 ? (size_t)res : 0;
        if (done < want) {
            // Short or interrupted: finish the rest of this request synchronously.
            uint64_t o = offset + at + done;
            char* p = buf + at + done;
            size_t left = want - done;
            while (left > 0) {
                ssize_t k = write ? pwrite(fd_, p, left, (off_t)o) : pread(fd_, p, left, (off_t)o);
                if (k < 0 && errno == EINTR) continue;
                if (k <= 0)
                    throw std::runtime_error(std::string(write ? "writing" : "reading") + " the spill file " + path_ +
                                             " failed: " + (k < 0 ? std::strerror(errno) : "no progress"));
                p += k;
                o += (uint64_t)k;
                left -= (size_t)k;
            }
        }
    }
    return true;
#else
    (void)write;
    (void)offset;
    (void)buf;
    (void)bytes;
    return false;
#endif
}

const char* SpillFile::io_path() const { return ring_ ? "io_uring" : "pread"; }

SpillFile::~SpillFile() {
    ring_.reset();
    if (fd_ >= 0) close(fd_);
    if (!path_.empty()) unlink(path_.c_str());
}

void SpillFile::write(uint64_t offset, const void* buf, size_t bytes) {
    if (ring_transfer(true, offset, const_cast<char*>(static_cast<const char*>(buf)), bytes)) {
        bytes_written_ += bytes;
        return;
    }
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
    if (ring_transfer(false, offset, static_cast<char*>(buf), bytes)) {
        bytes_read_ += bytes;
        return;
    }
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
