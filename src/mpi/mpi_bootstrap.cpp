#include "mpi/mpi_bootstrap.hpp"

#include <mpi.h>

#include <cstdlib>
#include <string>

#include "tpcomm/mpi.hpp"

namespace tpcomm::detail {
namespace {

const char* env(const char* name) {
  const char* value = std::getenv(name);
  return (value != nullptr && *value != '\0') ? value : nullptr;
}

bool started_by_mpirun_across_nodes() {
  const char* size = env("OMPI_COMM_WORLD_SIZE");
  if (size == nullptr) return false;
  if (env("TPCOMM_NODE_ID") != nullptr) return true;
  const char* local_size = env("OMPI_COMM_WORLD_LOCAL_SIZE");
  return local_size != nullptr && std::string(local_size) != size;
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

// The program did not initialise MPI: tpcomm does, and finalises it at exit
// (mpirun expects every process to). MPI_THREAD_MULTIPLE lets distinct
// communicators be used from distinct threads, as on one node.
void initialize_mpi() {
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
  std::atexit(finalize_at_exit);
}

}  // namespace

std::optional<Communicator> communicator_from_mpi_launch(const CommOptions& options) {
  if (env("TPCOMM_RANK") != nullptr || env("TPCOMM_WORLD_SIZE") != nullptr) return std::nullopt;
  if (env("RANK") != nullptr && env("WORLD_SIZE") != nullptr) return std::nullopt;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return std::nullopt;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    if (!started_by_mpirun_across_nodes()) return std::nullopt;
    initialize_mpi();
  }
  return from_mpi(MPI_COMM_WORLD, options);
}

}  // namespace tpcomm::detail
