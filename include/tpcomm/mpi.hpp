// tpcomm for MPI programs: a Communicator over the ranks of an MPI
// communicator, on one machine or on several (docs/multi-node.md).
//
// Needs a libtpcomm built with MPI (TPCOMM_WITH_MPI) against the MPI the
// program uses; link the program with that MPI as well.
#pragma once

#include <mpi.h>

#include <type_traits>

#include "tpcomm/tpcomm.hpp"
#include "tpcomm/tpcomm_mpi.h"

namespace tpcomm {

// Collective over comm; MPI must be initialised. Every rank keeps its rank in
// comm. Ranks are grouped into nodes by MPI_COMM_TYPE_SHARED, or by equal
// values of TPCOMM_NODE_ID when it is set.
//   - all ranks on one node: the plain shared-memory communicator; MPI is not
//     used after this call;
//   - several nodes: shared memory inside each node, MPI between nodes.
// comm is duplicated, so the caller may free it afterwards. Throws
// Error(invalid_argument) if MPI is not initialised or comm is null or an
// intercommunicator, Error(system) with MPI's message if an MPI call fails.
Communicator from_mpi(MPI_Comm comm, const CommOptions& options = {});

// Communicator::from_mpi, declared in tpcomm.hpp as a template so that
// tpcomm.hpp needs no MPI header; MPI_Comm is the only argument type it takes.
template <class MpiComm>
Communicator Communicator::from_mpi(MpiComm comm, const CommOptions& options) {
  static_assert(std::is_same_v<MpiComm, MPI_Comm>, "Communicator::from_mpi takes an MPI_Comm");
  return tpcomm::from_mpi(comm, options);
}

}  // namespace tpcomm
