// Open MPI reached through dlopen (libmpi.so.40, the Open MPI 4 and 5 ABI): our own
// prototypes of the few calls Spillway makes, so the addon builds without mpi.h and
// loads where no MPI is installed. Only Open MPI: MPICH's libmpi.so.12 has another ABI
// (integer handles), and its handles could not be read through these prototypes.
#pragma once

#include <cstddef>
#include <string>

namespace spw::mpi {

// Open MPI's handles are pointers to its predefined objects (ompi_mpi_comm_world, ...).
using Comm = void*;
using Datatype = void*;
using Request = void*;
using Errhandler = void*;

// ompi_status_public_t; checked against mpi.h by native/tests/dist_abi.cpp where mpi.h exists.
struct Status {
    int source;
    int tag;
    int error;
    int cancelled_;
    size_t ucount_;
};

constexpr int SUCCESS = 0;
constexpr int THREAD_SERIALIZED = 2;
constexpr int MAX_STRING = 256;  // MPI_MAX_ERROR_STRING and MPI_MAX_PROCESSOR_NAME in Open MPI
inline void* const IN_PLACE = reinterpret_cast<void*>(1);

struct Api {
    int (*initialized)(int*) = nullptr;
    int (*finalized)(int*) = nullptr;
    int (*init_thread)(int*, char***, int, int*) = nullptr;
    int (*finalize)() = nullptr;
    int (*abort)(Comm, int) = nullptr;
    int (*comm_rank)(Comm, int*) = nullptr;
    int (*comm_size)(Comm, int*) = nullptr;
    int (*comm_set_errhandler)(Comm, Errhandler) = nullptr;
    int (*isend)(const void*, int, Datatype, int, int, Comm, Request*) = nullptr;
    int (*irecv)(void*, int, Datatype, int, int, Comm, Request*) = nullptr;
    int (*ibcast)(void*, int, Datatype, int, Comm, Request*) = nullptr;
    int (*test)(Request*, int*, Status*) = nullptr;
    int (*error_string)(int, char*, int*) = nullptr;
    int (*get_processor_name)(char*, int*) = nullptr;
    int (*get_library_version)(char*, int*) = nullptr;
    Comm world = nullptr;
    Datatype byte = nullptr;
    Errhandler errors_return = nullptr;
    std::string library;  // the file dlopen found

    // "MPI_Isend: <Open MPI's message>"; "error N" when it has none.
    std::string error(const char* call, int code) const;
};

// Loaded once ($SPILLWAY_MPI names another library file). Throws std::runtime_error naming
// the library and the missing entry point, and how to install Open MPI.
const Api& api();

// Whether libmpi.so.40 (or $SPILLWAY_MPI) can be loaded, and why not; never throws.
bool available(std::string* why);

}  // namespace spw::mpi
