/*
 * tpcomm C API.
 *
 * Every function returns a tpcomm_status_t. On failure, tpcomm_last_error()
 * returns a message (thread-local, valid until the next tpcomm call on the same
 * thread) naming the problem: the rank, the collective and the values involved.
 * No C++ exception ever crosses this interface.
 *
 * Aliasing contract for collectives (see also README "Aliasing"):
 *   - in-place:     send == recv. The result overwrites the input.
 *   - out-of-place: [send, send + bytes) and [recv, recv + bytes) are disjoint.
 *                   The send buffer is never written. The result is written
 *                   straight into recv: no extra copy compared with in-place.
 *   - any other overlap is rejected with TPCOMM_ERROR_INVALID_ARGUMENT before
 *     any rank moves, and the communicator stays usable.
 *   - count == 0 is a no-op (buffers may then be NULL).
 *
 * Thread safety: a communicator may be used by one thread at a time. Distinct
 * communicators are independent.
 */
#ifndef TPCOMM_TPCOMM_H
#define TPCOMM_TPCOMM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TPCOMM_API __attribute__((visibility("default")))
#else
#define TPCOMM_API
#endif

#define TPCOMM_VERSION_MAJOR 0
#define TPCOMM_VERSION_MINOR 1
#define TPCOMM_VERSION_PATCH 0

/* The color that leaves a rank out of every group made by tpcomm_comm_split. */
#define TPCOMM_COLOR_UNDEFINED (-1)

/* Largest supported world size on one machine. */
#define TPCOMM_MAX_WORLD_SIZE 64

typedef enum tpcomm_status {
  TPCOMM_SUCCESS = 0,
  TPCOMM_ERROR_INVALID_ARGUMENT = 1, /* caught before any rank moved */
  TPCOMM_ERROR_TIMEOUT = 2,          /* a peer did not arrive in time */
  TPCOMM_ERROR_PEER_DEAD = 3,        /* a peer process exited or was killed */
  TPCOMM_ERROR_MISMATCH = 4,         /* ranks called different collectives */
  TPCOMM_ERROR_SYSTEM = 5,           /* an OS call failed (shm, mmap, ...) */
  TPCOMM_ERROR_COMM_FAILED = 6,      /* an earlier error failed this comm */
  TPCOMM_ERROR_INTERNAL = 7,
  /* Not statuses: like TPCOMM_DTYPE_MAX_ENUM/MIN_ENUM they keep the enum
     int-sized and make every int a valid value of the type, so
     tpcomm_status_string of any int is defined (and names it unknown). */
  TPCOMM_STATUS_MAX_ENUM = 0x7fffffff,
  TPCOMM_STATUS_MIN_ENUM = -0x7fffffff - 1
} tpcomm_status_t;

typedef enum tpcomm_dtype {
  TPCOMM_F32 = 0,
  TPCOMM_F64 = 1,
  TPCOMM_F16 = 2,
  TPCOMM_BF16 = 3,
  TPCOMM_I8 = 4,
  TPCOMM_U8 = 5,
  TPCOMM_I32 = 6,
  TPCOMM_I64 = 7,
  /* MAX/MIN make every int a valid value of the type, so a bad value passed
     from C (or Python) is reported as "unknown dtype" instead of being undefined. */
  TPCOMM_DTYPE_MAX_ENUM = 0x7fffffff,
  TPCOMM_DTYPE_MIN_ENUM = -0x7fffffff - 1
} tpcomm_dtype_t;

/*
 * Reduction operators. Results follow a fixed order on every rank:
 *   r = x[0] op x[1] op ... op x[n-1], folded left to right in rank order,
 *   element by element. f16 and bf16 accumulate in f32 and round once to
 *   nearest-even at the end. Integer sum and prod wrap (two's complement).
 *   avg = (sum in the accumulation type) / n, floating-point types only.
 *   min and max propagate NaN: if any contribution is NaN, the result is NaN.
 * Every rank receives a bitwise-identical result.
 */
typedef enum tpcomm_redop {
  TPCOMM_SUM = 0,
  TPCOMM_PROD = 1,
  TPCOMM_MIN = 2,
  TPCOMM_MAX = 3,
  TPCOMM_AVG = 4,
  TPCOMM_REDOP_MAX_ENUM = 0x7fffffff, /* see TPCOMM_DTYPE_MAX_ENUM */
  TPCOMM_REDOP_MIN_ENUM = -0x7fffffff - 1
} tpcomm_redop_t;

typedef struct tpcomm_comm* tpcomm_comm_t;

/* Message of the last failed call on this thread ("" if none). */
TPCOMM_API const char* tpcomm_last_error(void);
/* Static name of a status code, e.g. "TPCOMM_ERROR_TIMEOUT". */
TPCOMM_API const char* tpcomm_status_string(tpcomm_status_t status);
/* "major.minor.patch" of the loaded library. */
TPCOMM_API const char* tpcomm_version(void);

/* Size in bytes of one element of dtype, 0 for an unknown dtype. */
TPCOMM_API size_t tpcomm_dtype_size(tpcomm_dtype_t dtype);
/* Parse "f32", "bf16", ... / "sum", "avg", ...; INVALID_ARGUMENT if unknown. */
TPCOMM_API tpcomm_status_t tpcomm_dtype_from_string(const char* name, tpcomm_dtype_t* out);
TPCOMM_API tpcomm_status_t tpcomm_redop_from_string(const char* name, tpcomm_redop_t* out);
TPCOMM_API const char* tpcomm_dtype_name(tpcomm_dtype_t dtype);
TPCOMM_API const char* tpcomm_redop_name(tpcomm_redop_t op);

/*
 * Options for creating a communicator. Initialise with tpcomm_options_init(),
 * then change fields. Zero means "use the environment or the default".
 */
typedef struct tpcomm_options {
  double timeout_seconds;  /* every wait; default TPCOMM_TIMEOUT or 300 s */
  size_t chunk_bytes;      /* staging slot per rank; default TPCOMM_CHUNK_BYTES */
} tpcomm_options_t;

TPCOMM_API void tpcomm_options_init(tpcomm_options_t* options);

/*
 * Create a communicator between world_size processes on this machine.
 * Collective: every rank 0..world_size-1 must call it with the same job_id.
 * Ranks may start in any order; the call waits up to the timeout for all of
 * them and then fails naming the ranks that never arrived. job_id isolates
 * jobs: two jobs with different ids never see each other's segments.
 * options may be NULL.
 */
TPCOMM_API tpcomm_status_t tpcomm_comm_create(int rank, int world_size, const char* job_id,
                                              const tpcomm_options_t* options,
                                              tpcomm_comm_t* out);

/*
 * Create a communicator from the environment, trying in order:
 *   tpcomm-run:  TPCOMM_RANK, TPCOMM_WORLD_SIZE, TPCOMM_JOB_ID
 *   torchrun:    RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
 *                MASTER_PORT, TORCHELASTIC_RUN_ID
 *   Open MPI:    OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE,
 *                OMPI_COMM_WORLD_LOCAL_RANK, OMPI_COMM_WORLD_LOCAL_SIZE
 * In a build with MPI, ranks of an mpirun job on several nodes are connected
 * through MPI between nodes (docs/multi-node.md; tpcomm_mpi.h for MPI programs).
 * options may be NULL.
 */
TPCOMM_API tpcomm_status_t tpcomm_comm_create_from_env(const tpcomm_options_t* options,
                                                       tpcomm_comm_t* out);

/* Destroy a communicator (NULL is accepted). Not collective; never blocks. */
TPCOMM_API tpcomm_status_t tpcomm_comm_destroy(tpcomm_comm_t comm);

TPCOMM_API tpcomm_status_t tpcomm_comm_rank(tpcomm_comm_t comm, int* rank);
TPCOMM_API tpcomm_status_t tpcomm_comm_world_size(tpcomm_comm_t comm, int* world_size);
/*
 * Split (MPI_Comm_split semantics), collective over comm: ranks with the same
 * color >= 0 form a new communicator ordered by key, then by rank in comm.
 * TPCOMM_COLOR_UNDEFINED sets *out to NULL. The result is independent of comm
 * (destroy it with tpcomm_comm_destroy) and may be split again.
 */
TPCOMM_API tpcomm_status_t tpcomm_comm_split(tpcomm_comm_t comm, int color, int key, tpcomm_comm_t* out);
/*
 * Collective over comm: every rank passes the same list of num_ranks distinct
 * ranks; listed ranks get a communicator (ranks in list order), others NULL.
 */
TPCOMM_API tpcomm_status_t tpcomm_comm_new_group(tpcomm_comm_t comm, const int* ranks, size_t num_ranks,
                                                 tpcomm_comm_t* out);

/* Change the timeout of every later wait on this communicator. */
TPCOMM_API tpcomm_status_t tpcomm_comm_set_timeout(tpcomm_comm_t comm, double seconds);

/*
 * all_reduce: recv[i] = send_0[i] op send_1[i] op ... op send_{n-1}[i] on every
 * rank. In-place when send == recv; out-of-place when the buffers are
 * disjoint; partial overlap is an error. avg on integer dtypes is an error.
 */
TPCOMM_API tpcomm_status_t tpcomm_all_reduce(tpcomm_comm_t comm, const void* send, void* recv,
                                             size_t count, tpcomm_dtype_t dtype,
                                             tpcomm_redop_t op);

/*
 * The collective set. Counts are in elements. Same guarantees as all_reduce.
 * See tpcomm.hpp (or README "Collectives") for each in-place rule.
 */
TPCOMM_API tpcomm_status_t tpcomm_reduce_scatter(tpcomm_comm_t comm, const void* send, void* recv,
                                                 size_t recv_count, tpcomm_dtype_t dtype, tpcomm_redop_t op);
/* recv_counts: world_size entries. */
TPCOMM_API tpcomm_status_t tpcomm_reduce_scatterv(tpcomm_comm_t comm, const void* send, void* recv,
                                                  const size_t* recv_counts, tpcomm_dtype_t dtype,
                                                  tpcomm_redop_t op);
TPCOMM_API tpcomm_status_t tpcomm_all_gather(tpcomm_comm_t comm, const void* send, void* recv,
                                             size_t send_count, tpcomm_dtype_t dtype);
/* counts: world_size entries; rank r contributes counts[r] elements. */
TPCOMM_API tpcomm_status_t tpcomm_all_gatherv(tpcomm_comm_t comm, const void* send, void* recv,
                                              const size_t* counts, tpcomm_dtype_t dtype);
TPCOMM_API tpcomm_status_t tpcomm_broadcast(tpcomm_comm_t comm, const void* send, void* recv, size_t count,
                                            tpcomm_dtype_t dtype, int root);
TPCOMM_API tpcomm_status_t tpcomm_reduce(tpcomm_comm_t comm, const void* send, void* recv, size_t count,
                                         tpcomm_dtype_t dtype, tpcomm_redop_t op, int root);
TPCOMM_API tpcomm_status_t tpcomm_gather(tpcomm_comm_t comm, const void* send, void* recv, size_t send_count,
                                         tpcomm_dtype_t dtype, int root);
TPCOMM_API tpcomm_status_t tpcomm_scatter(tpcomm_comm_t comm, const void* send, void* recv, size_t recv_count,
                                          tpcomm_dtype_t dtype, int root);
TPCOMM_API tpcomm_status_t tpcomm_all_to_all(tpcomm_comm_t comm, const void* send, void* recv,
                                             size_t count_per_rank, tpcomm_dtype_t dtype);
/* All four arrays have world_size entries, in elements. */
TPCOMM_API tpcomm_status_t tpcomm_all_to_allv(tpcomm_comm_t comm, const void* send, const size_t* send_counts,
                                              const size_t* send_displs, void* recv, const size_t* recv_counts,
                                              const size_t* recv_displs, tpcomm_dtype_t dtype);

/* Point-to-point; messages of one pair match in order. */
TPCOMM_API tpcomm_status_t tpcomm_send(tpcomm_comm_t comm, const void* buffer, size_t count,
                                       tpcomm_dtype_t dtype, int peer);
TPCOMM_API tpcomm_status_t tpcomm_recv(tpcomm_comm_t comm, void* buffer, size_t count, tpcomm_dtype_t dtype,
                                       int peer);

typedef struct tpcomm_p2p_op {
  int is_send;    /* 1: send buffer to peer; 0: receive into buffer from peer */
  void* buffer;
  size_t count;
  tpcomm_dtype_t dtype;
  int peer;
} tpcomm_p2p_op_t;

/* Progresses all operations together; a ring exchange cannot deadlock. */
TPCOMM_API tpcomm_status_t tpcomm_p2p_batch(tpcomm_comm_t comm, const tpcomm_p2p_op_t* ops, size_t num_ops);

/*
 * Zero-copy buffers. Collective: every rank calls it with the same size and
 * gets its region (page-aligned) of a new shared buffer. tpcomm_all_reduce with
 * send inside such a region (same offset on every rank) reads the peers' data
 * in place instead of copying it into staging first. Free with
 * tpcomm_free_shared (local) before destroying the communicator.
 */
TPCOMM_API tpcomm_status_t tpcomm_alloc_shared(tpcomm_comm_t comm, size_t bytes, void** out);
TPCOMM_API tpcomm_status_t tpcomm_free_shared(tpcomm_comm_t comm, void* buffer);

/* Wait until every rank has entered the barrier. */
TPCOMM_API tpcomm_status_t tpcomm_barrier(tpcomm_comm_t comm);

/*
 * Name of the all_reduce algorithm tpcomm would use for this many bytes of
 * this dtype ("one_shot", "two_shot"), honouring TPCOMM_ALGO. Returns NULL
 * for a NULL comm or an unknown dtype.
 */
TPCOMM_API const char* tpcomm_all_reduce_algorithm(tpcomm_comm_t comm, size_t bytes, tpcomm_dtype_t dtype);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TPCOMM_TPCOMM_H */
