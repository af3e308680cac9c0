/* tpcomm_mpi.h from C: a communicator over MPI_COMM_WORLD, one all_reduce. */
#include <mpi.h>
#include <stdio.h>

#include "tpcomm/tpcomm_mpi.h"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int failed = 0;
  tpcomm_comm_t comm = NULL;
  if (tpcomm_comm_create_from_mpi(MPI_COMM_WORLD, NULL, &comm) != TPCOMM_SUCCESS) {
    fprintf(stderr, "[rank %d] tpcomm_comm_create_from_mpi: %s\n", rank, tpcomm_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  float values[3] = {1.0f, (float)rank, -2.0f};
  if (tpcomm_all_reduce(comm, values, values, 3, TPCOMM_F32, TPCOMM_SUM) != TPCOMM_SUCCESS) {
    fprintf(stderr, "[rank %d] tpcomm_all_reduce: %s\n", rank, tpcomm_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (values[0] != (float)size || values[1] != (float)(size * (size - 1) / 2) || values[2] != -2.0f * (float)size) {
    fprintf(stderr, "[rank %d] wrong all_reduce result\n", rank);
    failed = 1;
  }
  tpcomm_comm_destroy(comm);
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0) printf("mpi C API: %s\n", any_failed ? "FAILED" : "ok");
  MPI_Finalize();
  return any_failed;
}
