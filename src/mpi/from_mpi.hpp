// Building a communicator over an MPI communicator (from_mpi, split of a
// multi-node communicator).
#pragma once

#include "mpi/mpi_handles.hpp"
#include "tpcomm/tpcomm.hpp"

namespace tpcomm::detail {

// Collective over comm, which it takes over (errors must return, not abort).
// Discovers the nodes, agrees on a job id over MPI and creates each node's
// shared-memory group; returns that group itself when there is only one node,
// else a HierarchicalCommunicator. If any rank fails, every rank throws the
// first failing rank's error.
Communicator make_mpi_communicator(MpiComm comm, const CommOptions& options);

}  // namespace tpcomm::detail
