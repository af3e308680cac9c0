/*
 * The C API called the way a C program calls it: dtype, op and status values
 * arrive as plain ints and are converted to the enum types in C, where any
 * int value is a valid argument. (In C++ the fuzz target could not even form
 * an out-of-range enum value without undefined behaviour of its own.)
 */
#include "c_calls.h"

#include <stdlib.h>

tpcomm_status_t fz_all_reduce(tpcomm_comm_t c, const void* s, void* r, size_t n, int dtype, int op) {
  return tpcomm_all_reduce(c, s, r, n, (tpcomm_dtype_t)dtype, (tpcomm_redop_t)op);
}
tpcomm_status_t fz_reduce_scatter(tpcomm_comm_t c, const void* s, void* r, size_t n, int dtype, int op) {
  return tpcomm_reduce_scatter(c, s, r, n, (tpcomm_dtype_t)dtype, (tpcomm_redop_t)op);
}
tpcomm_status_t fz_reduce_scatterv(tpcomm_comm_t c, const void* s, void* r, const size_t* counts, int dtype, int op) {
  return tpcomm_reduce_scatterv(c, s, r, counts, (tpcomm_dtype_t)dtype, (tpcomm_redop_t)op);
}
tpcomm_status_t fz_all_gather(tpcomm_comm_t c, const void* s, void* r, size_t n, int dtype) {
  return tpcomm_all_gather(c, s, r, n, (tpcomm_dtype_t)dtype);
}
tpcomm_status_t fz_all_gatherv(tpcomm_comm_t c, const void* s, void* r, const size_t* counts, int dtype) {
  return tpcomm_all_gatherv(c, s, r, counts, (tpcomm_dtype_t)dtype);
}
tpcomm_status_t fz_broadcast(tpcomm_comm_t c, const void* s, void* r, size_t n, int dtype, int root) {
  return tpcomm_broadcast(c, s, r, n, (tpcomm_dtype_t)dtype, root);
}
tpcomm_status_t fz_reduce(tpcomm_comm_t c, const void* s, void* r, size_t n, int dtype, int op, int root) {
  return tpcomm_reduce(c, s, r, n, (tpcomm_dtype_t)dtype, (tpcomm_redop_t)op, root);
}
tpcomm_status_t fz_gather(tpcomm_comm_t c, const void* s, void* r, size_t n, int dtype, int root) {
  return tpcomm_gather(c, s, r, n, (tpcomm_dtype_t)dtype, root);
}
tpcomm_status_t fz_scatter(tpcomm_comm_t c, const void* s, void* r, size_t n, int dtype, int root) {
  return tpcomm_scatter(c, s, r, n, (tpcomm_dtype_t)dtype, root);
}
tpcomm_status_t fz_all_to_all(tpcomm_comm_t c, const void* s, void* r, size_t n, int dtype) {
  return tpcomm_all_to_all(c, s, r, n, (tpcomm_dtype_t)dtype);
}
tpcomm_status_t fz_all_to_allv(tpcomm_comm_t c, const void* s, const size_t* send_counts, const size_t* send_displs,
                               void* r, const size_t* recv_counts, const size_t* recv_displs, int dtype) {
  return tpcomm_all_to_allv(c, s, send_counts, send_displs, r, recv_counts, recv_displs, (tpcomm_dtype_t)dtype);
}
tpcomm_status_t fz_send(tpcomm_comm_t c, const void* b, size_t n, int dtype, int peer) {
  return tpcomm_send(c, b, n, (tpcomm_dtype_t)dtype, peer);
}
tpcomm_status_t fz_recv(tpcomm_comm_t c, void* b, size_t n, int dtype, int peer) {
  return tpcomm_recv(c, b, n, (tpcomm_dtype_t)dtype, peer);
}

tpcomm_status_t fz_p2p_batch(tpcomm_comm_t c, const fz_p2p_t* ops, size_t num_ops, int null_ops) {
  tpcomm_p2p_op_t converted[FZ_MAX_P2P];
  size_t i;
  if (num_ops > FZ_MAX_P2P) num_ops = FZ_MAX_P2P;
  for (i = 0; i < num_ops; ++i) {
    converted[i].is_send = ops[i].is_send;
    converted[i].buffer = ops[i].buffer;
    converted[i].count = ops[i].count;
    converted[i].dtype = (tpcomm_dtype_t)ops[i].dtype;
    converted[i].peer = ops[i].peer;
  }
  return tpcomm_p2p_batch(c, null_ops ? NULL : converted, num_ops);
}

size_t fz_dtype_size(int dtype) { return tpcomm_dtype_size((tpcomm_dtype_t)dtype); }
const char* fz_dtype_name(int dtype) { return tpcomm_dtype_name((tpcomm_dtype_t)dtype); }
const char* fz_redop_name(int op) { return tpcomm_redop_name((tpcomm_redop_t)op); }
const char* fz_status_string(int status) { return tpcomm_status_string((tpcomm_status_t)status); }
