#include "dist/nccl_api.h"

#include <mutex>
#include <stdexcept>

#include "dist/dl.h"

namespace spw::nccl {
namespace {

struct Loaded {
    Api api;
    std::string error;
};

const Loaded& load() {
    static Loaded l;
    static std::once_flag once;
    std::call_once(once, [] {
        dist::Library lib("SPILLWAY_NCCL", "libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
        if (!lib.handle) {
            l.error = "NCCL not found (" + lib.file + ": " + lib.error +
                      "); it ships with PyTorch's CUDA wheels (nvidia/nccl/lib): add that folder to LD_LIBRARY_PATH or "
                      "set SPILLWAY_NCCL to the file";
            return;
        }
        Api& a = l.api;
        a.library = lib.file;
        lib.need("ncclGetVersion", a.get_version);
        lib.need("ncclGetUniqueId", a.get_unique_id);
        lib.need("ncclCommInitRank", a.comm_init_rank);
        lib.need("ncclAllGather", a.all_gather);
        lib.need("ncclCommGetAsyncError", a.comm_get_async_error);
        lib.need("ncclCommDestroy", a.comm_destroy);
        lib.need("ncclGetErrorString", a.get_error_string);
        if (lib.missing) {
            l.error = lib.file + " lacks " + lib.missing + " (NCCL 2.4 or newer is needed)";
            l.api = Api{};
            return;
        }
        a.get_version(&a.version);
    });
    return l;
}

}  // namespace

std::string Api::error(const char* call, int code) const {
    const char* s = get_error_string ? get_error_string(code) : nullptr;
    return std::string(call) + ": " + (s ? s : "NCCL error " + std::to_string(code));
}

const Api& api() {
    const Loaded& l = load();
    if (!l.error.empty()) throw std::runtime_error(l.error);
    return l.api;
}

bool available(std::string* why) {
    const Loaded& l = load();
    if (why) *why = l.error.empty() ? l.api.library + " (NCCL " + std::to_string(l.api.version) + ")" : l.error;
    return l.error.empty();
}

}  // namespace spw::nccl
