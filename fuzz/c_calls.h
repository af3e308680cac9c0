/* C API entry points with dtype, op and status as plain ints (see c_calls.c). */
#ifndef TPCOMM_FUZZ_C_CALLS_H
#define TPCOMM_FUZZ_C_CALLS_H

#include <stddef.h>

#include "tpcomm/tpcomm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FZ_MAX_P2P 8

typedef struct fz_p2p {
  int is_send;
  void* buffer;
  size_t count;
  int dtype;
  int peer;
} fz_p2p_t;

tpcomm_status_t fz_all_reduce(tpcomm_comm_t c, const void* s, void* r, size_t n, int dtype, int op);
tpcomm_status_t fz_reduce_scatter(tpcomm_comm_t c, const void* s, void* r, size_t n, int dtype, int op);
tpcomm_status_t fz_reduce_scatterv(tpcomm_comm_t c, const void* s, void* r, const size_t* counts, int dtype, int op);
tpcomm_status_t fz_all_gather(tpcomm_comm_t c, const void* s, void* r, size_t n, int dtype);
tpcomm_status_t fz_all_gatherv(tpcomm_comm_t c, const void* s, void* r, const size_t* counts, int dtype);
tpcomm_status_t fz_broadcast(tpcomm_comm_t c, const void* s, void* r, size_t n, int dtype, int root);
tpcomm_status_t fz_reduce(tpcomm_comm_t c, const void* s, void* r, size_t n, int dtype, int op, int root);
tpcomm_status_t fz_gather(tpcomm_comm_t c, const void* s, void* r, size_t n, int dtype, int root);
tpcomm_status_t fz_scatter(tpcomm_comm_t c, const void* s, void* r, size_t n, int dtype, int root);
tpcomm_status_t fz_all_to_all(tpcomm_comm_t c, const void* s, void* r, size_t n, int dtype);
tpcomm_status_t fz_all_to_allv(tpcomm_comm_t c, const void* s, const size_t* send_counts, const size_t* send_displs,
                               void* r, const size_t* recv_counts, const size_t* recv_displs, int dtype);
tpcomm_status_t fz_send(tpcomm_comm_t c, const void* b, size_t n, int dtype, int peer);
tpcomm_status_t fz_recv(tpcomm_comm_t c, void* b, size_t n, int dtype, int peer);
tpcomm_status_t fz_p2p_batch(tpcomm_comm_t c, const fz_p2p_t* ops, size_t num_ops, int null_ops);
size_t fz_dtype_size(int dtype);
const char* fz_dtype_name(int dtype);
const char* fz_redop_name(int op);
const char* fz_status_string(int status);

#ifdef __cplusplus
}
#endif

#endif
