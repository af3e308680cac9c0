/*
 * tpcomm C API for MPI programs: a communicator over the ranks of an MPI
 * communicator, on one machine or on several (docs/multi-node.md).
 *
 * Needs a libtpcomm built with MPI (TPCOMM_WITH_MPI) against the MPI the
 * program uses; link the program with that MPI as well.
 */
#ifndef TPCOMM_TPCOMM_MPI_H
#define TPCOMM_TPCOMM_MPI_H

#include <mpi.h>

#include "tpcomm/tpcomm.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Collective over comm; MPI must be initialised. Every rank keeps its rank in
 * comm. Ranks are grouped into nodes by MPI_COMM_TYPE_SHARED, or by equal
 * values of TPCOMM_NODE_ID when it is set. All ranks on one node: the result
 * is the plain shared-memory communicator and MPI is not used after this call.
 * Several nodes: shared memory inside each node, MPI between nodes.
 * comm is duplicated, so the caller may free it afterwards. options may be NULL.
 */
TPCOMM_API tpcomm_status_t tpcomm_comm_create_from_mpi(MPI_Comm comm, const tpcomm_options_t* options,
                                                       tpcomm_comm_t* out);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TPCOMM_TPCOMM_MPI_H */
