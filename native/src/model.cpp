#include "spillway/model.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <unordered_map>

namespace spw {

namespace {

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t man = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  // subnormal: renormalise
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
        }
    } else if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

size_t dtype_size(Dtype d) { return d == Dtype::F32 ? 4 : 2; }

struct MappedFile {
    int fd = -1;
    void* base = nullptr;
    uint64_t size = 0;
    ~MappedFile() {
        if (base && base != MAP_FAILED) munmap(base, size);
        if (fd >= 0) close(fd);
    }
};

}  // namespace

bool tensor_is_no_decay(const std::string& name) {
    std::string lower(name);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return (char)std::tolower(c); });
    auto ends_with = [&](const char* s) {
        size_t n = std::strlen(s);
        return lower.size() >= n && lower.compare(lower.size() - n, n, s) == 0;
    };
    return ends_with(".bias") || lower.find("norm") != std::string::npos || lower.find("ln_") != std::string::npos;
}

Model::~Model() {
    for (auto& t : tensors) std::free(t.master);
}

const Tensor* Model::tensor(const std::string& name) const {
    for (auto& t : tensors)
        if (t.name == name) return &t;
    return nullptr;
}

namespace {

// Shape, byte count and bounds of a tensor against its file; sets t.numel.
void check_tensor(Tensor& t, uint64_t file_size) {
    const TensorSource& src = t.source;
    size_t numel = 1;
    for (int64_t d : t.shape) {
        if (d < 0) throw std::runtime_error("tensor " + t.name + " has a negative dimension");
        numel *= (size_t)d;
    }
    t.numel = numel;
    if ((uint64_t)numel * dtype_size(src.dtype) != src.nbytes)
        throw std::runtime_error("tensor " + t.name + " in " + src.file + ": " + std::to_string(src.nbytes) +
                                 " bytes do not match its shape (" + std::to_string(numel) + " elements)");
    if (src.offset > file_size || src.nbytes > file_size - src.offset)
        throw std::runtime_error("tensor " + t.name + " lies outside " + src.file + " (bytes " +
                                 std::to_string(src.offset) + ".." + std::to_string(src.offset + src.nbytes) +
                                 " of a " + std::to_string(file_size) + "-byte file)");
}

void convert(float* dst, const uint8_t* p, size_t numel, Dtype dtype) {
    switch (dtype) {
        case Dtype::F32:
            std::memcpy(dst, p, numel * 4);
            break;
        case Dtype::F16:
            for (size_t i = 0; i < numel; i++) {
                uint16_t h;
                std::memcpy(&h, p + 2 * i, 2);
                dst[i] = f16_to_f32(h);
            }
            break;
        case Dtype::BF16:
            for (size_t i = 0; i < numel; i++) {
                uint16_t h;
                std::memcpy(&h, p + 2 * i, 2);
                uint32_t bits = (uint32_t)h << 16;
                std::memcpy(&dst[i], &bits, 4);
            }
            break;
    }
}

std::unique_ptr<MappedFile> map_file(const std::string& file) {
    auto mf = std::make_unique<MappedFile>();
    mf->fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (mf->fd < 0) throw std::runtime_error("cannot open " + file + ": " + std::strerror(errno));
    struct stat st;
    if (fstat(mf->fd, &st) != 0) throw std::runtime_error("cannot stat " + file + ": " + std::strerror(errno));
    mf->size = (uint64_t)st.st_size;
    if (mf->size > 0) {
        mf->base = mmap(nullptr, mf->size, PROT_READ, MAP_PRIVATE, mf->fd, 0);
        if (mf->base == MAP_FAILED) throw std::runtime_error("cannot map " + file + ": " + std::strerror(errno));
    }
    return mf;
}

// Drops a converted tensor's file pages from this process's resident set, so
// loading a model does not hold the file and the masters at once.
void release_pages(const MappedFile& mf, uint64_t offset, uint64_t bytes) {
    long page = sysconf(_SC_PAGESIZE);
    uint64_t begin = (offset + (uint64_t)page - 1) / (uint64_t)page * (uint64_t)page;
    uint64_t end = (offset + bytes) / (uint64_t)page * (uint64_t)page;
    if (end > begin) madvise(static_cast<char*>(mf.base) + begin, end - begin, MADV_DONTNEED);
}

}  // namespace

void model_load_masters(Model& model, const std::function<void(uint64_t, uint64_t)>& progress,
                        const std::vector<bool>* skip) {
    std::unordered_map<std::string, std::unique_ptr<MappedFile>> files;
    uint64_t total = 0, done = 0;
    for (auto& t : model.tensors) total += t.source.nbytes;

    for (size_t ti = 0; ti < model.tensors.size(); ti++) {
        Tensor& t = model.tensors[ti];
        const TensorSource& src = t.source;
        auto& mf = files[src.file];
        if (!mf) mf = map_file(src.file);
        check_tensor(t, mf->size);
        if (!(skip && ti < skip->size() && (*skip)[ti])) {
            size_t bytes = (std::max<size_t>(t.numel, 1) * sizeof(float) + 63) / 64 * 64;
            t.master = static_cast<float*>(std::aligned_alloc(64, bytes));
            if (!t.master)
                throw std::runtime_error("out of memory allocating " + std::to_string(bytes) + " bytes for " + t.name);
            convert(t.master, static_cast<const uint8_t*>(mf->base) + src.offset, t.numel, src.dtype);
            release_pages(*mf, src.offset, src.nbytes);
        }
        done += src.nbytes;
        if (progress) progress(done, total);
    }
}

void model_read_tensor(const Tensor& t, float* dst) {
    auto mf = map_file(t.source.file);
    Tensor probe = t;
    probe.master = nullptr;
    check_tensor(probe, mf->size);
    convert(dst, static_cast<const uint8_t*>(mf->base) + t.source.offset, probe.numel, t.source.dtype);
}

}  // namespace spw
