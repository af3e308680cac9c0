// The C API: a thin layer over the C++ API. Every entry point catches every
// exception, turns it into a status code and stores the message in a
// thread-local buffer for tpcomm_last_error(). No exception crosses extern "C".
#include <cmath>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tpcomm/tpcomm.h"
#include "tpcomm/tpcomm.hpp"
#ifdef TPCOMM_HAVE_MPI
#include "tpcomm/mpi.hpp"  // tpcomm_comm_create_from_mpi (tpcomm_mpi.h)
#endif

// A handle stays allocated after tpcomm_comm_destroy, marked destroyed, so that
// use after destroy is reported instead of touching freed memory. The
// tombstones are owned by a process-wide list (a few bytes per destroyed
// communicator), so leak checkers see them as reachable.
struct tpcomm_comm {
  static constexpr std::uint64_t kLive = 0x7470636f6d6d4c56ull;       // "tpcommLV"
  static constexpr std::uint64_t kDestroyed = 0x7470636f6d6d4445ull;  // "tpcommDE"
  std::uint64_t state = kLive;
  std::optional<tpcomm::Communicator> communicator;
  std::vector<tpcomm::SharedBuffer> shared;  // from tpcomm_alloc_shared, released before the communicator
};

namespace {

thread_local std::string t_last_error;

tpcomm_status_t set_error(tpcomm_status_t status, std::string message) {
  t_last_error = std::move(message);
  return status;
}

// Runs body; maps exceptions to status codes.
template <class Body>
tpcomm_status_t guarded(Body body) noexcept {
  try {
    body();
    return TPCOMM_SUCCESS;
  } catch (const tpcomm::Error& error) {
    return set_error(static_cast<tpcomm_status_t>(error.code()), error.what());
  } catch (const std::bad_alloc&) {
    return set_error(TPCOMM_ERROR_SYSTEM, "out of memory");
  } catch (const std::exception& error) {
    return set_error(TPCOMM_ERROR_INTERNAL, error.what());
  } catch (...) {
    return set_error(TPCOMM_ERROR_INTERNAL, "unknown exception");
  }
}

void require(bool condition, const char* message) {
  if (!condition) throw tpcomm::Error(tpcomm::ErrorCode::invalid_argument, message);
}

tpcomm::Communicator& comm_of(tpcomm_comm_t comm, const char* function) {
  if (comm == nullptr) {
    throw tpcomm::Error(tpcomm::ErrorCode::invalid_argument, std::string(function) + ": communicator is NULL");
  }
  if (comm->state != tpcomm_comm::kLive || !comm->communicator) {
    throw tpcomm::Error(tpcomm::ErrorCode::invalid_argument,
                        std::string(function) + ": communicator was destroyed (use after tpcomm_comm_destroy)");
  }
  return *comm->communicator;
}

tpcomm_comm_t new_handle(tpcomm::Communicator communicator) {
  auto handle = std::make_unique<tpcomm_comm>();
  handle->communicator.emplace(std::move(communicator));
  return handle.release();
}

// Destroyed handles, kept so that a stale pointer still reads "destroyed".
std::mutex g_tombstones_mutex;
std::vector<std::unique_ptr<tpcomm_comm>> g_tombstones;

tpcomm::CommOptions to_options(const tpcomm_options_t* options) {
  tpcomm::CommOptions result;
  if (options != nullptr) {
    require(std::isfinite(options->timeout_seconds) && options->timeout_seconds >= 0,
            "options.timeout_seconds must be a finite number >= 0 (0: default)");
    result.timeout = std::chrono::duration<double>(options->timeout_seconds);
    result.chunk_bytes = options->chunk_bytes;
  }
  return result;
}

}  // namespace

extern "C" {

const char* tpcomm_last_error(void) { return t_last_error.c_str(); }

const char* tpcomm_status_string(tpcomm_status_t status) {
  switch (status) {
    case TPCOMM_SUCCESS: return "TPCOMM_SUCCESS";
    case TPCOMM_ERROR_INVALID_ARGUMENT: return "TPCOMM_ERROR_INVALID_ARGUMENT";
    case TPCOMM_ERROR_TIMEOUT: return "TPCOMM_ERROR_TIMEOUT";
    case TPCOMM_ERROR_PEER_DEAD: return "TPCOMM_ERROR_PEER_DEAD";
    case TPCOMM_ERROR_MISMATCH: return "TPCOMM_ERROR_MISMATCH";
    case TPCOMM_ERROR_SYSTEM: return "TPCOMM_ERROR_SYSTEM";
    case TPCOMM_ERROR_COMM_FAILED: return "TPCOMM_ERROR_COMM_FAILED";
    case TPCOMM_ERROR_INTERNAL: return "TPCOMM_ERROR_INTERNAL";
    case TPCOMM_STATUS_MAX_ENUM:
    case TPCOMM_STATUS_MIN_ENUM: break;
  }
  return "TPCOMM_UNKNOWN_STATUS";
}

const char* tpcomm_version(void) { return "0.1.0"; }

size_t tpcomm_dtype_size(tpcomm_dtype_t dtype) {
  try {
    return tpcomm::dtype_size(static_cast<tpcomm::DataType>(dtype));
  } catch (...) {
    return 0;
  }
}

const char* tpcomm_dtype_name(tpcomm_dtype_t dtype) {
  try {
    return tpcomm::dtype_name(static_cast<tpcomm::DataType>(dtype)).data();
  } catch (...) {
    return "unknown";
  }
}

const char* tpcomm_redop_name(tpcomm_redop_t op) {
  try {
    return tpcomm::redop_name(static_cast<tpcomm::ReduceOp>(op)).data();
  } catch (...) {
    return "unknown";
  }
}

tpcomm_status_t tpcomm_dtype_from_string(const char* name, tpcomm_dtype_t* out) {
  return guarded([&] {
    require(name != nullptr && out != nullptr, "tpcomm_dtype_from_string: name and out must not be NULL");
    *out = static_cast<tpcomm_dtype_t>(tpcomm::parse_dtype(name));
  });
}

tpcomm_status_t tpcomm_redop_from_string(const char* name, tpcomm_redop_t* out) {
  return guarded([&] {
    require(name != nullptr && out != nullptr, "tpcomm_redop_from_string: name and out must not be NULL");
    *out = static_cast<tpcomm_redop_t>(tpcomm::parse_redop(name));
  });
}

void tpcomm_options_init(tpcomm_options_t* options) {
  if (options != nullptr) *options = tpcomm_options_t{0.0, 0};
}

tpcomm_status_t tpcomm_comm_create(int rank, int world_size, const char* job_id, const tpcomm_options_t* options,
                                   tpcomm_comm_t* out) {
  return guarded([&] {
    require(out != nullptr, "tpcomm_comm_create: out must not be NULL");
    *out = nullptr;
    require(job_id != nullptr, "tpcomm_comm_create: job_id must not be NULL");
    auto communicator = tpcomm::Communicator::create(rank, world_size, job_id, to_options(options));
    *out = new_handle(std::move(communicator));
  });
}

tpcomm_status_t tpcomm_comm_create_from_env(const tpcomm_options_t* options, tpcomm_comm_t* out) {
  return guarded([&] {
    require(out != nullptr, "tpcomm_comm_create_from_env: out must not be NULL");
    *out = nullptr;
    auto communicator = tpcomm::Communicator::from_env(to_options(options));
    *out = new_handle(std::move(communicator));
  });
}

#ifdef TPCOMM_HAVE_MPI
tpcomm_status_t tpcomm_comm_create_from_mpi(MPI_Comm comm, const tpcomm_options_t* options, tpcomm_comm_t* out) {
  return guarded([&] {
    require(out != nullptr, "tpcomm_comm_create_from_mpi: out must not be NULL");
    *out = nullptr;
    auto communicator = tpcomm::from_mpi(comm, to_options(options));
    *out = new_handle(std::move(communicator));
  });
}
#endif

tpcomm_status_t tpcomm_comm_destroy(tpcomm_comm_t comm) {
  return guarded([&] {
    if (comm == nullptr) return;
    comm_of(comm, "tpcomm_comm_destroy");  // rejects a second destroy
    comm->shared.clear();
    comm->communicator.reset();
    comm->state = tpcomm_comm::kDestroyed;
    std::lock_guard lock(g_tombstones_mutex);
    g_tombstones.emplace_back(comm);
  });
}

tpcomm_status_t tpcomm_comm_rank(tpcomm_comm_t comm, int* rank) {
  return guarded([&] {
    require(rank != nullptr, "tpcomm_comm_rank: rank must not be NULL");
    *rank = comm_of(comm, "tpcomm_comm_rank").rank();
  });
}

tpcomm_status_t tpcomm_comm_world_size(tpcomm_comm_t comm, int* world_size) {
  return guarded([&] {
    require(world_size != nullptr, "tpcomm_comm_world_size: world_size must not be NULL");
    *world_size = comm_of(comm, "tpcomm_comm_world_size").world_size();
  });
}

namespace {
void store_optional(std::optional<tpcomm::Communicator> result, tpcomm_comm_t* out) {
  *out = result ? new_handle(std::move(*result)) : nullptr;
}
}  // namespace

tpcomm_status_t tpcomm_comm_split(tpcomm_comm_t comm, int color, int key, tpcomm_comm_t* out) {
  return guarded([&] {
    require(out != nullptr, "tpcomm_comm_split: out must not be NULL");
    *out = nullptr;
    store_optional(comm_of(comm, "tpcomm_comm_split").split(color, key), out);
  });
}

tpcomm_status_t tpcomm_comm_new_group(tpcomm_comm_t comm, const int* ranks, size_t num_ranks, tpcomm_comm_t* out) {
  return guarded([&] {
    require(out != nullptr, "tpcomm_comm_new_group: out must not be NULL");
    *out = nullptr;
    require(ranks != nullptr || num_ranks == 0, "tpcomm_comm_new_group: ranks is NULL with num_ranks > 0");
    store_optional(comm_of(comm, "tpcomm_comm_new_group").new_group({ranks, num_ranks}), out);
  });
}

tpcomm_status_t tpcomm_comm_set_timeout(tpcomm_comm_t comm, double seconds) {
  return guarded([&] {
    require(std::isfinite(seconds) && seconds > 0, "tpcomm_comm_set_timeout: seconds must be finite and > 0");
    comm_of(comm, "tpcomm_comm_set_timeout").set_timeout(std::chrono::duration<double>(seconds));
  });
}

tpcomm_status_t tpcomm_all_reduce(tpcomm_comm_t comm, const void* send, void* recv, size_t count,
                                  tpcomm_dtype_t dtype, tpcomm_redop_t op) {
  return guarded([&] {
    comm_of(comm, "tpcomm_all_reduce")
        .all_reduce(send, recv, count, static_cast<tpcomm::DataType>(dtype), static_cast<tpcomm::ReduceOp>(op));
  });
}

namespace {
tpcomm::DataType dt(tpcomm_dtype_t dtype) { return static_cast<tpcomm::DataType>(dtype); }
tpcomm::ReduceOp rop(tpcomm_redop_t op) { return static_cast<tpcomm::ReduceOp>(op); }

// A per-rank array of the C API: world_size entries, which must not be NULL.
std::span<const std::size_t> rank_array(tpcomm::Communicator& c, const size_t* array, const char* what) {
  if (array == nullptr) {
    throw tpcomm::Error(tpcomm::ErrorCode::invalid_argument, std::string(what) + " must not be NULL");
  }
  return {array, static_cast<std::size_t>(c.world_size())};
}
}  // namespace

tpcomm_status_t tpcomm_reduce_scatter(tpcomm_comm_t comm, const void* send, void* recv, size_t recv_count,
                                      tpcomm_dtype_t dtype, tpcomm_redop_t op) {
  return guarded([&] { comm_of(comm, "tpcomm_reduce_scatter").reduce_scatter(send, recv, recv_count, dt(dtype), rop(op)); });
}

tpcomm_status_t tpcomm_reduce_scatterv(tpcomm_comm_t comm, const void* send, void* recv, const size_t* recv_counts,
                                       tpcomm_dtype_t dtype, tpcomm_redop_t op) {
  return guarded([&] {
    auto& c = comm_of(comm, "tpcomm_reduce_scatterv");
    c.reduce_scatterv(send, recv, rank_array(c, recv_counts, "tpcomm_reduce_scatterv: recv_counts"), dt(dtype), rop(op));
  });
}

tpcomm_status_t tpcomm_all_gather(tpcomm_comm_t comm, const void* send, void* recv, size_t send_count,
                                  tpcomm_dtype_t dtype) {
  return guarded([&] { comm_of(comm, "tpcomm_all_gather").all_gather(send, recv, send_count, dt(dtype)); });
}

tpcomm_status_t tpcomm_all_gatherv(tpcomm_comm_t comm, const void* send, void* recv, const size_t* counts,
                                   tpcomm_dtype_t dtype) {
  return guarded([&] {
    auto& c = comm_of(comm, "tpcomm_all_gatherv");
    c.all_gatherv(send, recv, rank_array(c, counts, "tpcomm_all_gatherv: counts"), dt(dtype));
  });
}

tpcomm_status_t tpcomm_broadcast(tpcomm_comm_t comm, const void* send, void* recv, size_t count,
                                 tpcomm_dtype_t dtype, int root) {
  return guarded([&] { comm_of(comm, "tpcomm_broadcast").broadcast(send, recv, count, dt(dtype), root); });
}

tpcomm_status_t tpcomm_reduce(tpcomm_comm_t comm, const void* send, void* recv, size_t count, tpcomm_dtype_t dtype,
                              tpcomm_redop_t op, int root) {
  return guarded([&] { comm_of(comm, "tpcomm_reduce").reduce(send, recv, count, dt(dtype), rop(op), root); });
}

tpcomm_status_t tpcomm_gather(tpcomm_comm_t comm, const void* send, void* recv, size_t send_count,
                              tpcomm_dtype_t dtype, int root) {
  return guarded([&] { comm_of(comm, "tpcomm_gather").gather(send, recv, send_count, dt(dtype), root); });
}

tpcomm_status_t tpcomm_scatter(tpcomm_comm_t comm, const void* send, void* recv, size_t recv_count,
                               tpcomm_dtype_t dtype, int root) {
  return guarded([&] { comm_of(comm, "tpcomm_scatter").scatter(send, recv, recv_count, dt(dtype), root); });
}

tpcomm_status_t tpcomm_all_to_all(tpcomm_comm_t comm, const void* send, void* recv, size_t count_per_rank,
                                  tpcomm_dtype_t dtype) {
  return guarded([&] { comm_of(comm, "tpcomm_all_to_all").all_to_all(send, recv, count_per_rank, dt(dtype)); });
}

tpcomm_status_t tpcomm_all_to_allv(tpcomm_comm_t comm, const void* send, const size_t* send_counts,
                                   const size_t* send_displs, void* recv, const size_t* recv_counts,
                                   const size_t* recv_displs, tpcomm_dtype_t dtype) {
  return guarded([&] {
    auto& c = comm_of(comm, "tpcomm_all_to_allv");
    c.all_to_allv(send, rank_array(c, send_counts, "tpcomm_all_to_allv: send_counts"),
                  rank_array(c, send_displs, "tpcomm_all_to_allv: send_displs"), recv,
                  rank_array(c, recv_counts, "tpcomm_all_to_allv: recv_counts"),
                  rank_array(c, recv_displs, "tpcomm_all_to_allv: recv_displs"), dt(dtype));
  });
}

tpcomm_status_t tpcomm_send(tpcomm_comm_t comm, const void* buffer, size_t count, tpcomm_dtype_t dtype, int peer) {
  return guarded([&] { comm_of(comm, "tpcomm_send").send(buffer, count, dt(dtype), peer); });
}

tpcomm_status_t tpcomm_recv(tpcomm_comm_t comm, void* buffer, size_t count, tpcomm_dtype_t dtype, int peer) {
  return guarded([&] { comm_of(comm, "tpcomm_recv").recv(buffer, count, dt(dtype), peer); });
}

tpcomm_status_t tpcomm_p2p_batch(tpcomm_comm_t comm, const tpcomm_p2p_op_t* ops, size_t num_ops) {
  return guarded([&] {
    auto& c = comm_of(comm, "tpcomm_p2p_batch");
    if (num_ops > 0 && ops == nullptr) {
      throw tpcomm::Error(tpcomm::ErrorCode::invalid_argument, "tpcomm_p2p_batch: ops is NULL with num_ops > 0");
    }
    std::vector<tpcomm::Communicator::PointToPoint> operations;
    operations.reserve(num_ops);
    for (size_t i = 0; i < num_ops; ++i) {
      using Kind = tpcomm::Communicator::PointToPoint::Kind;
      operations.push_back({ops[i].is_send ? Kind::send : Kind::recv, ops[i].buffer, ops[i].count, dt(ops[i].dtype),
                            ops[i].peer});
    }
    c.batch(operations);
  });
}

tpcomm_status_t tpcomm_alloc_shared(tpcomm_comm_t comm, size_t bytes, void** out) {
  return guarded([&] {
    require(out != nullptr, "tpcomm_alloc_shared: out must not be NULL");
    *out = nullptr;
    tpcomm::SharedBuffer buffer = comm_of(comm, "tpcomm_alloc_shared").alloc_shared(bytes);
    *out = buffer.data();
    comm->shared.push_back(std::move(buffer));
  });
}

tpcomm_status_t tpcomm_free_shared(tpcomm_comm_t comm, void* buffer) {
  return guarded([&] {
    comm_of(comm, "tpcomm_free_shared");
    const auto erased = std::erase_if(comm->shared, [&](const tpcomm::SharedBuffer& b) { return b.data() == buffer; });
    require(erased == 1, "tpcomm_free_shared: pointer was not returned by tpcomm_alloc_shared on this communicator");
  });
}

tpcomm_status_t tpcomm_barrier(tpcomm_comm_t comm) {
  return guarded([&] { comm_of(comm, "tpcomm_barrier").barrier(); });
}

const char* tpcomm_all_reduce_algorithm(tpcomm_comm_t comm, size_t bytes, tpcomm_dtype_t dtype) {
  if (comm == nullptr) return nullptr;
  try {
    return comm_of(comm, "tpcomm_all_reduce_algorithm")
        .all_reduce_algorithm(bytes, static_cast<tpcomm::DataType>(dtype))
        .data();
  } catch (...) {
    return nullptr;
  }
}

}  // extern "C"
