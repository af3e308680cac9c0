/* A C program built with pkg-config against an installed tpcomm. */
#include <stdio.h>
#include <tpcomm/tpcomm.h>

int main(void) {
  tpcomm_comm_t comm;
  if (tpcomm_comm_create_from_env(NULL, &comm) != TPCOMM_SUCCESS) {
    fprintf(stderr, "consumer_c: %s\n", tpcomm_last_error());
    return 1;
  }
  int rank = 0, size = 0;
  tpcomm_comm_rank(comm, &rank);
  tpcomm_comm_world_size(comm, &size);
  long long value = rank + 1, sum = 0;
  if (tpcomm_all_reduce(comm, &value, &sum, 1, TPCOMM_I64, TPCOMM_SUM) != TPCOMM_SUCCESS) {
    fprintf(stderr, "consumer_c: %s\n", tpcomm_last_error());
    return 1;
  }
  tpcomm_comm_destroy(comm);
  return sum == (long long)size * (size + 1) / 2 ? 0 : 1;
}
