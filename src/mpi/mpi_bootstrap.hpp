// The MPI part of Communicator::from_env (core/bootstrap.cpp), compiled when
// tpcomm is built with MPI. No MPI header here: bootstrap.cpp stays plain.
#pragma once

#include <optional>

#include "tpcomm/tpcomm.hpp"

namespace tpcomm::detail {

// A communicator over MPI_COMM_WORLD when the program was started by an MPI
// launcher and MPI should carry it:
//   - tpcomm-run's or torchrun's variables are set: std::nullopt (they win);
//   - MPI is initialised: from_mpi(MPI_COMM_WORLD) (plain shared memory when
//     all ranks share one node);
//   - MPI is not initialised, Open MPI's mpirun started the job and its ranks
//     span several nodes (OMPI_COMM_WORLD_LOCAL_SIZE < OMPI_COMM_WORLD_SIZE,
//     or TPCOMM_NODE_ID is set): MPI is initialised here (and finalised at
//     exit), then as above;
//   - otherwise std::nullopt.
std::optional<Communicator> communicator_from_mpi_launch(const CommOptions& options);

}  // namespace tpcomm::detail
