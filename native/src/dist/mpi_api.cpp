#include "dist/mpi_api.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <stdexcept>

namespace spw::mpi {
namespace {

template <typename F>
bool sym(void* lib, const char* name, F& out) {
    out = reinterpret_cast<F>(dlsym(lib, name));
    return out != nullptr;
}

struct Loaded {
    Api api;
    std::string error;  // empty when loaded
};

const Loaded& load() {
    static Loaded l;
    static std::once_flag once;
    std::call_once(once, [] {
        const char* env = std::getenv("SPILLWAY_MPI");
        std::string file = env && *env ? env : "libmpi.so.40";
        // RTLD_GLOBAL: Open MPI's components are plugins that resolve libmpi's symbols
        // from the global scope; loaded locally they fail to open.
        void* lib = dlopen(file.c_str(), RTLD_NOW | RTLD_GLOBAL);
        if (!lib) {
            const char* e = dlerror();
            l.error = "Open MPI not found (" + file + ": " + (e ? e : "dlopen failed") +
                      "); install it (Debian: apt-get install openmpi-bin libopenmpi3) or set SPILLWAY_MPI to its libmpi.so.40";
            return;
        }
        Api& a = l.api;
        a.library = file;
        const char* missing = nullptr;
        auto need = [&](const char* name, auto& out) {
            if (!missing && !sym(lib, name, out)) missing = name;
        };
        need("MPI_Initialized", a.initialized);
        need("MPI_Finalized", a.finalized);
        need("MPI_Init_thread", a.init_thread);
        need("MPI_Finalize", a.finalize);
        need("MPI_Abort", a.abort);
        need("MPI_Comm_rank", a.comm_rank);
        need("MPI_Comm_size", a.comm_size);
        need("MPI_Comm_set_errhandler", a.comm_set_errhandler);
        need("MPI_Isend", a.isend);
        need("MPI_Irecv", a.irecv);
        need("MPI_Ibcast", a.ibcast);
        need("MPI_Test", a.test);
        need("MPI_Error_string", a.error_string);
        need("MPI_Get_processor_name", a.get_processor_name);
        need("MPI_Get_library_version", a.get_library_version);
        // The predefined handles are the addresses of these objects.
        a.world = dlsym(lib, "ompi_mpi_comm_world");
        a.byte = dlsym(lib, "ompi_mpi_byte");
        a.errors_return = dlsym(lib, "ompi_mpi_errors_return");
        if (!missing && !a.world) missing = "ompi_mpi_comm_world";
        if (!missing && !a.byte) missing = "ompi_mpi_byte";
        if (!missing && !a.errors_return) missing = "ompi_mpi_errors_return";
        if (missing) {
            l.error = file + " lacks " + missing + ": Spillway needs Open MPI 4 or 5 (MPICH and others have another ABI)";
            l.api = Api{};
        }
    });
    return l;
}

}  // namespace

std::string Api::error(const char* call, int code) const {
    char text[MAX_STRING + 1] = {0};
    int len = 0;
    if (error_string && error_string(code, text, &len) == SUCCESS && len > 0)
        return std::string(call) + ": " + std::string(text, (size_t)len);
    return std::string(call) + ": error " + std::to_string(code);
}

const Api& api() {
    const Loaded& l = load();
    if (!l.error.empty()) throw std::runtime_error(l.error);
    return l.api;
}

bool available(std::string* why) {
    const Loaded& l = load();
    if (why) *why = l.error.empty() ? l.api.library : l.error;
    return l.error.empty();
}

}  // namespace spw::mpi
