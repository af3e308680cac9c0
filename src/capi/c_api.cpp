// The C API: a thin layer over the C++ API. Every entry point catches every
// exception, turns it into a status code and stores the message in a
// thread-local buffer for tpcomm_last_error(). No exception crosses extern "C".
#include <cmath>
#include <new>
#include <string>

#include "tpcomm/tpcomm.h"
#include "tpcomm/tpcomm.hpp"

struct tpcomm_comm {
  tpcomm::Communicator communicator;
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
  return comm->communicator;
}

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
    *out = new tpcomm_comm{std::move(communicator)};
  });
}

tpcomm_status_t tpcomm_comm_create_from_env(const tpcomm_options_t* options, tpcomm_comm_t* out) {
  return guarded([&] {
    require(out != nullptr, "tpcomm_comm_create_from_env: out must not be NULL");
    *out = nullptr;
    auto communicator = tpcomm::Communicator::from_env(to_options(options));
    *out = new tpcomm_comm{std::move(communicator)};
  });
}

tpcomm_status_t tpcomm_comm_destroy(tpcomm_comm_t comm) {
  return guarded([&] { delete comm; });
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

tpcomm_status_t tpcomm_barrier(tpcomm_comm_t comm) {
  return guarded([&] { comm_of(comm, "tpcomm_barrier").barrier(); });
}

const char* tpcomm_all_reduce_algorithm(tpcomm_comm_t comm, size_t bytes) {
  if (comm == nullptr) return nullptr;
  try {
    return comm->communicator.all_reduce_algorithm(bytes).data();
  } catch (...) {
    return nullptr;
  }
}

}  // extern "C"
