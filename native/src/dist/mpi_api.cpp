#include "dist/mpi_api.h"

#include "dist/dl.h"

#include <mutex>
#include <stdexcept>

namespace spw::mpi {
namespace {

struct Loaded {
    Api api;
    std::string error;  // empty when loaded
};

const Loaded& load() {
    static Loaded l;
    static std::once_flag once;
    std::call_once(once, [] {
        // RTLD_GLOBAL: Open MPI's components are plugins that resolve libmpi's symbols
        // from the global scope; loaded locally they fail to open.
        dist::Library lib("SPILLWAY_MPI", "libmpi.so.40", RTLD_NOW | RTLD_GLOBAL);
        if (!lib.handle) {
            l.error = "Open MPI not found (" + lib.file + ": " + lib.error +
                      "); install it (Debian: apt-get install openmpi-bin libopenmpi3) or set SPILLWAY_MPI to its libmpi.so.40";
            return;
        }
        Api& a = l.api;
        a.library = lib.file;
        lib.need("MPI_Initialized", a.initialized);
        lib.need("MPI_Finalized", a.finalized);
        lib.need("MPI_Init_thread", a.init_thread);
        lib.need("MPI_Finalize", a.finalize);
        lib.need("MPI_Abort", a.abort);
        lib.need("MPI_Comm_rank", a.comm_rank);
        lib.need("MPI_Comm_size", a.comm_size);
        lib.need("MPI_Comm_set_errhandler", a.comm_set_errhandler);
        lib.need("MPI_Isend", a.isend);
        lib.need("MPI_Irecv", a.irecv);
        lib.need("MPI_Ibcast", a.ibcast);
        lib.need("MPI_Test", a.test);
        lib.need("MPI_Error_string", a.error_string);
        lib.need("MPI_Get_processor_name", a.get_processor_name);
        lib.need("MPI_Get_library_version", a.get_library_version);
        a.world = lib.object("ompi_mpi_comm_world");
        a.byte = lib.object("ompi_mpi_byte");
        a.errors_return = lib.object("ompi_mpi_errors_return");
        if (lib.missing) {
            l.error = lib.file + " lacks " + lib.missing + ": Spillway needs Open MPI 4 or 5 (MPICH and others have another ABI)";
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
