// from_mpi: a communicator over the ranks of an MPI communicator.
#include "mpi/from_mpi.hpp"

#include <climits>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "core/communicator_impl.hpp"
#include "core/error.hpp"
#include "mpi/hierarchical_communicator.hpp"
#include "mpi/mpi_error.hpp"
#include "mpi/node_topology.hpp"
#include "tpcomm/mpi.hpp"

namespace tpcomm {
namespace detail {
namespace {

// 128 random bits from rank 0, in hex: the job id of this communicator's node
// groups, so that no two communicators (of this job or another) share a
// segment name.
std::string agree_on_nonce(MPI_Comm comm, int rank) {
  char text[33] = {};
  if (rank == 0) {
    std::random_device device;
    for (int i = 0; i < 4; ++i) std::snprintf(text + 8 * i, 9, "%08x", static_cast<unsigned>(device()));
  }
  check_mpi(MPI_Bcast(text, 32, MPI_CHAR, 0, comm), "from_mpi: MPI_Bcast");
  return std::string(text, 32);
}

// A node group that failed to form must not leave the other nodes waiting in
// MPI: every rank learns the first failure and throws it.
void agree_on_failure(MPI_Comm comm, int rank, const std::optional<Error>& error) {
  const int mine = error ? rank : INT_MAX;
  int first = INT_MAX;
  check_mpi(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm), "from_mpi: MPI_Allreduce");
  if (first == INT_MAX) return;
  int code = error ? static_cast<int>(error->code()) : 0;
  std::string text = error ? error->what() : "";
  int length = static_cast<int>(text.size());
  check_mpi(MPI_Bcast(&code, 1, MPI_INT, first, comm), "from_mpi: MPI_Bcast");
  check_mpi(MPI_Bcast(&length, 1, MPI_INT, first, comm), "from_mpi: MPI_Bcast");
  text.resize(static_cast<std::size_t>(length));
  check_mpi(MPI_Bcast(text.data(), length, MPI_CHAR, first, comm), "from_mpi: MPI_Bcast");
  if (error) throw *error;
  throw Error(static_cast<ErrorCode>(code), "rank " + std::to_string(rank) + ": from_mpi: the node group of rank " +
                                                std::to_string(first) + " failed: " + text);
}

}  // namespace

Communicator make_mpi_communicator(MpiComm comm, const CommOptions& options) {
  NodeTopology topology = discover_node_topology(comm.get());
  const std::string job = "mpi." + agree_on_nonce(comm.get(), topology.rank) + ".n" + std::to_string(topology.node);
  std::optional<Communicator> node;
  std::optional<Error> error;
  try {
    node.emplace(Communicator::create(topology.local_rank, topology.local_size, job, options));
  } catch (const Error& e) {
    error.emplace(e);
  }
  agree_on_failure(comm.get(), topology.rank, error);
  // One node: the shared-memory communicator is the whole communicator, and
  // MPI has no part in its collectives.
  if (topology.node_count() == 1) return std::move(*node);
  return CommunicatorImplementation::wrap(
      std::make_unique<HierarchicalCommunicator>(std::move(comm), std::move(topology), std::move(*node), options));
}

}  // namespace detail

Communicator from_mpi(MPI_Comm comm, const CommOptions& options) {
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) {
    detail::fail(ErrorCode::invalid_argument, finalized ? "from_mpi: MPI has already been finalised"
                                                        : "from_mpi: MPI is not initialised (call MPI_Init first)");
  }
  if (comm == MPI_COMM_NULL) detail::fail(ErrorCode::invalid_argument, "from_mpi: comm is MPI_COMM_NULL");
  int is_inter = 0;
  detail::check_mpi(MPI_Comm_test_inter(comm, &is_inter), "from_mpi: MPI_Comm_test_inter");
  if (is_inter) {
    detail::fail(ErrorCode::invalid_argument, "from_mpi: comm is an intercommunicator (use an intracommunicator)");
  }
  return detail::make_mpi_communicator(detail::duplicate(comm, "from_mpi"), options);
}

}  // namespace tpcomm
