#include "probe.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

extern "C" char* openblas_get_config(void);

namespace spw {

ProbeResult probe_library(const char* name) {
    void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char* e = dlerror();
        return {false, e ? e : "not found"};
    }
    dlclose(h);
    return {true, name};
}

ProbeResult probe_io_uring() {
#ifdef __NR_io_uring_setup
    struct io_uring_params params;
    std::memset(&params, 0, sizeof params);
    long fd = syscall(__NR_io_uring_setup, 8, &params);
    if (fd < 0) return {false, std::string("io_uring_setup: ") + std::strerror(errno)};
    close((int)fd);
    return {true, "io_uring_setup works"};
#else
    return {false, "this kernel headers have no io_uring"};
#endif
}

ProbeResult probe_direct_io(const std::string& dir) {
    std::string path = dir + "/.spillway-odirect-XXXXXX";
    std::string tmpl = path;
    int fd = mkstemp(&tmpl[0]);
    if (fd < 0) return {false, "cannot create a file in " + dir + ": " + std::strerror(errno)};
    close(fd);
    ProbeResult r;
    fd = open(tmpl.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
    if (fd < 0) {
        r = {false, std::string("open with O_DIRECT: ") + std::strerror(errno)};
        unlink(tmpl.c_str());
        return r;
    }
    const size_t n = 4096;
    void* buf = nullptr;
    void* back = nullptr;
    if (posix_memalign(&buf, 4096, n) != 0 || posix_memalign(&back, 4096, n) != 0) {
        close(fd);
        unlink(tmpl.c_str());
        std::free(buf);
        return {false, "out of memory"};
    }
    for (size_t i = 0; i < n; i++) static_cast<unsigned char*>(buf)[i] = (unsigned char)(i * 31 + 7);
    ssize_t w = pwrite(fd, buf, n, 0);
    if (w != (ssize_t)n) {
        r = {false, std::string("O_DIRECT write: ") + (w < 0 ? std::strerror(errno) : "short write")};
    } else {
        ssize_t rd = pread(fd, back, n, 0);
        if (rd != (ssize_t)n) r = {false, std::string("O_DIRECT read: ") + (rd < 0 ? std::strerror(errno) : "short read")};
        else if (std::memcmp(buf, back, n) != 0) r = {false, "O_DIRECT read back different bytes"};
        else r = {true, "4 KiB aligned O_DIRECT write and read work in " + dir};
    }
    close(fd);
    unlink(tmpl.c_str());
    std::free(buf);
    std::free(back);
    return r;
}

std::string blas_config() {
    const char* c = openblas_get_config();
    return c ? c : "";
}

}  // namespace spw
