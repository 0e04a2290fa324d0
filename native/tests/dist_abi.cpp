// Our own Open MPI prototypes (src/dist/mpi_api.h) checked against the real mpi.h where
// it is installed (libopenmpi-dev): the build fails when a layout or constant differs.
// At run time, the predefined handles dlsym finds are the ones mpi.h names.
#include <mpi.h>

#include <cstddef>
#include <cstdio>

#include "dist/mpi_api.h"

static_assert(sizeof(MPI_Status) == sizeof(spw::mpi::Status), "MPI_Status size");
static_assert(offsetof(MPI_Status, MPI_SOURCE) == offsetof(spw::mpi::Status, source), "MPI_SOURCE");
static_assert(offsetof(MPI_Status, MPI_TAG) == offsetof(spw::mpi::Status, tag), "MPI_TAG");
static_assert(offsetof(MPI_Status, MPI_ERROR) == offsetof(spw::mpi::Status, error), "MPI_ERROR");
static_assert(MPI_SUCCESS == spw::mpi::SUCCESS, "MPI_SUCCESS");
static_assert(MPI_THREAD_SERIALIZED == spw::mpi::THREAD_SERIALIZED, "MPI_THREAD_SERIALIZED");
static_assert(MPI_MAX_ERROR_STRING == spw::mpi::MAX_STRING && MPI_MAX_PROCESSOR_NAME == spw::mpi::MAX_STRING, "string sizes");
static_assert(sizeof(MPI_Comm) == sizeof(spw::mpi::Comm) && sizeof(MPI_Request) == sizeof(spw::mpi::Request) &&
                  sizeof(MPI_Datatype) == sizeof(spw::mpi::Datatype),
              "handles are pointers");

int main() {
    const spw::mpi::Api& a = spw::mpi::api();
    bool ok = a.world == (void*)MPI_COMM_WORLD && a.byte == (void*)MPI_BYTE && a.errors_return == (void*)MPI_ERRORS_RETURN &&
              spw::mpi::IN_PLACE == MPI_IN_PLACE;
    std::printf("%s predefined handles of %s\n", ok ? "ok" : "FAIL", a.library.c_str());
    return ok ? 0 : 1;
}
