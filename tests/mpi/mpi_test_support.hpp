// Shared by the MPI test programs: the emulated node layout as the tests see
// it (independently of the library), the communicator under test and the
// reporting of failures across ranks.
#pragma once

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tpcomm/mpi.hpp"

namespace tpcomm::testing {

// The ranks of each node, nodes in order of their lowest rank, from every
// rank's TPCOMM_NODE_ID (unset: one node).
inline std::vector<std::vector<int>> node_layout(MPI_Comm comm) {
  int rank = 0, size = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const char* id = std::getenv("TPCOMM_NODE_ID");
  char mine[64] = {};
  std::snprintf(mine, sizeof(mine), "%s", id != nullptr ? id : "");
  std::vector<char> all(64 * static_cast<std::size_t>(size));
  MPI_Allgather(mine, 64, MPI_CHAR, all.data(), 64, MPI_CHAR, comm);
  std::map<std::string, std::size_t> index;
  std::vector<std::vector<int>> nodes;
  for (int r = 0; r < size; ++r) {
    const std::string name(all.data() + 64 * static_cast<std::size_t>(r));
    const auto [entry, added] = index.try_emplace(name, nodes.size());
    if (added) nodes.emplace_back();
    nodes[entry->second].push_back(r);
  }
  return nodes;
}

// How a test obtains its communicator: "from_mpi" (free function),
// "member" (Communicator::from_mpi) or "from_env".
inline Communicator make_communicator(std::string_view via, const CommOptions& options) {
  if (via == "from_env") return Communicator::from_env(options);
  if (via == "member") return Communicator::from_mpi(MPI_COMM_WORLD, options);
  return from_mpi(MPI_COMM_WORLD, options);
}

// Throws std::runtime_error(message) when condition is false.
inline void check(bool condition, const std::string& message) {
  if (!condition) throw std::runtime_error(message);
}

// Sum of failures over all ranks; rank 0 prints the verdict. Returns the exit code.
inline int report(const char* what, long long checks, long long failures) {
  long long all_failures = 0, all_checks = 0;
  MPI_Allreduce(&failures, &all_failures, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(&checks, &all_checks, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    std::printf("%s: %lld checks on all ranks, %lld failed\n", what, all_checks, all_failures);
    std::fflush(stdout);
  }
  return all_failures == 0 ? 0 : 1;
}

}  // namespace tpcomm::testing
