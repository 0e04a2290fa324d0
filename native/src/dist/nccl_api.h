// NCCL reached through dlopen (libnccl.so.2; it ships inside PyTorch's CUDA wheels, not
// with the CUDA toolkit): our own prototypes of the calls the sliced transfer makes, so
// the addon builds without nccl.h and loads where NCCL is absent.
#pragma once

#include <cstddef>
#include <string>

namespace spw::nccl {

struct UniqueId {
    char internal[128];  // NCCL_UNIQUE_ID_BYTES
};
using CommHandle = void*;

constexpr int SUCCESS = 0;
constexpr int UINT8 = 1;  // ncclUint8

struct Api {
    int (*get_version)(int*) = nullptr;
    int (*get_unique_id)(UniqueId*) = nullptr;
    int (*comm_init_rank)(CommHandle*, int, UniqueId, int) = nullptr;
    int (*all_gather)(const void*, void*, size_t, int, CommHandle, void*) = nullptr;  // last: cudaStream_t
    int (*comm_get_async_error)(CommHandle, int*) = nullptr;
    int (*comm_destroy)(CommHandle) = nullptr;
    const char* (*get_error_string)(int) = nullptr;
    std::string library;
    int version = 0;  // e.g. 22703 for 2.27.3

    // "ncclAllGather: <NCCL's message>"
    std::string error(const char* call, int code) const;
};

// Loaded once ($SPILLWAY_NCCL names the file; else libnccl.so.2 on the loader's path).
// Throws std::runtime_error saying what is missing.
const Api& api();
bool available(std::string* why);

}  // namespace spw::nccl
