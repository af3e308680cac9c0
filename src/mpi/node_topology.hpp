// Which ranks of an MPI communicator share a node, and how they are numbered
// there.
//
// A node is a set of ranks that can share memory. By default MPI decides
// (MPI_Comm_split_type with MPI_COMM_TYPE_SHARED); TPCOMM_NODE_ID overrides
// it: ranks whose TPCOMM_NODE_ID values are equal form one node, so tests and
// benchmarks can emulate several nodes on one machine.
//
// Nodes are numbered in the order of their lowest rank; inside a node, local
// ranks follow the ranks of the MPI communicator in ascending order. The
// reductions fold in exactly this order (docs/multi-node.md).
#pragma once

#include <mpi.h>

#include <vector>

namespace tpcomm::detail {

struct NodeTopology {
  int rank = 0;
  int world_size = 0;
  int node = 0;         // this rank's node
  int local_rank = 0;   // this rank's index on its node
  int local_size = 0;   // ranks on this node
  std::vector<int> node_of;                 // per rank: its node
  std::vector<int> local_rank_of;           // per rank: its index on its node
  std::vector<std::vector<int>> members;    // per node: its ranks, ascending

  int node_count() const { return static_cast<int>(members.size()); }
  bool is_leader() const { return local_rank == 0; }
  // Every node has the same number of ranks.
  bool uniform() const;
};

// Collective over comm (which must return errors, not abort).
NodeTopology discover_node_topology(MPI_Comm comm);

}  // namespace tpcomm::detail
