#include "dist/nccl_api.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <type_traits>

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
        const char* env = std::getenv("SPILLWAY_NCCL");
        std::string file = env && *env ? env : "libnccl.so.2";
        void* lib = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            const char* e = dlerror();
            l.error = "NCCL not found (" + file + ": " + (e ? e : "dlopen failed") +
                      "); it ships with PyTorch's CUDA wheels (nvidia/nccl/lib): add that folder to LD_LIBRARY_PATH or "
                      "set SPILLWAY_NCCL to the file";
            return;
        }
        Api& a = l.api;
        a.library = file;
        const char* missing = nullptr;
        auto need = [&](const char* name, auto& out) {
            using F = std::remove_reference_t<decltype(out)>;
            out = reinterpret_cast<F>(dlsym(lib, name));
            if (!out && !missing) missing = name;
        };
        need("ncclGetVersion", a.get_version);
        need("ncclGetUniqueId", a.get_unique_id);
        need("ncclCommInitRank", a.comm_init_rank);
        need("ncclAllGather", a.all_gather);
        need("ncclCommGetAsyncError", a.comm_get_async_error);
        need("ncclCommDestroy", a.comm_destroy);
        need("ncclCommAbort", a.comm_abort);
        need("ncclGetErrorString", a.get_error_string);
        if (missing) {
            l.error = file + " lacks " + missing + " (NCCL 2.4 or newer is needed)";
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
