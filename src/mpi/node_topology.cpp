#include "mpi/node_topology.hpp"

#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

#include "mpi/mpi_error.hpp"

namespace tpcomm::detail {

bool NodeTopology::uniform() const {
  for (const auto& ranks : members) {
    if (ranks.size() != members.front().size()) return false;
  }
  return true;
}

namespace {

// This rank's node name: "id:" + TPCOMM_NODE_ID, else "shm:" + the lowest rank
// it shares memory with. The two forms never collide. Every rank calls
// MPI_Comm_split_type, whatever its environment, because it is collective.
std::string node_name(MPI_Comm comm, int rank) {
  MPI_Comm shared = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &shared),
            "node discovery: MPI_Comm_split_type");
  int lowest = rank;
  const int code = MPI_Allreduce(&rank, &lowest, 1, MPI_INT, MPI_MIN, shared);
  MPI_Comm_free(&shared);
  check_mpi(code, "node discovery: MPI_Allreduce");
  const char* id = std::getenv("TPCOMM_NODE_ID");
  if (id != nullptr && *id != '\0') return std::string("id:") + id;
  return "shm:" + std::to_string(lowest);
}

}  // namespace

NodeTopology discover_node_topology(MPI_Comm comm) {
  NodeTopology topology;
  check_mpi(MPI_Comm_rank(comm, &topology.rank), "node discovery: MPI_Comm_rank");
  check_mpi(MPI_Comm_size(comm, &topology.world_size), "node discovery: MPI_Comm_size");
  const auto n = static_cast<std::size_t>(topology.world_size);

  // Everybody learns every rank's node name (the names themselves, not hashes:
  // two nodes merged by a collision would wait forever for each other).
  const std::string mine = node_name(comm, topology.rank);
  const int length = static_cast<int>(mine.size());
  std::vector<int> lengths(n), displs(n);
  check_mpi(MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comm), "node discovery: MPI_Allgather");
  long long total = 0;
  for (std::size_t r = 0; r < n; ++r) {
    displs[r] = static_cast<int>(total);
    total += lengths[r];
  }
  std::string names(static_cast<std::size_t>(total), '\0');
  check_mpi(MPI_Allgatherv(mine.data(), length, MPI_CHAR, names.data(), lengths.data(), displs.data(), MPI_CHAR, comm),
            "node discovery: MPI_Allgatherv");

  std::map<std::string_view, int> node_by_name;
  topology.node_of.resize(n);
  topology.local_rank_of.resize(n);
  for (std::size_t r = 0; r < n; ++r) {
    const std::string_view name(names.data() + displs[r], static_cast<std::size_t>(lengths[r]));
    const auto [entry, added] = node_by_name.try_emplace(name, static_cast<int>(topology.members.size()));
    if (added) topology.members.emplace_back();
    auto& node = topology.members[static_cast<std::size_t>(entry->second)];
    topology.node_of[r] = entry->second;
    topology.local_rank_of[r] = static_cast<int>(node.size());
    node.push_back(static_cast<int>(r));
  }
  const auto me = static_cast<std::size_t>(topology.rank);
  topology.node = topology.node_of[me];
  topology.local_rank = topology.local_rank_of[me];
  topology.local_size = static_cast<int>(topology.members[static_cast<std::size_t>(topology.node)].size());
  return topology;
}

}  // namespace tpcomm::detail
