// tpcomm C++ API.
//
// A Communicator connects world_size processes on one machine through a
// shared-memory segment. It is move-only; destroying it releases everything.
// All collectives are blocking and must be called by every rank in the same
// order with matching arguments.
//
// Aliasing contract (all collectives):
//   - in-place:     send == recv; the result overwrites the input.
//   - out-of-place: the send and recv byte ranges are disjoint; send is never
//                   written and the result goes straight into recv, with no
//                   extra copy compared with in-place.
//   - any other overlap throws Error(ErrorCode::invalid_argument) before any
//     rank moves; the communicator stays usable.
//   - count == 0 is a no-op (pointers may then be null).
//
// Reduction order (bitwise-identical on every rank):
//   r[i] = x_0[i] op x_1[i] op ... op x_{n-1}[i], folded left to right in rank
//   order. f16/bf16 accumulate in f32 and round once (nearest-even). Integer
//   sum/prod wrap. avg = sum / n in the accumulation type, floating types only.
//   min/max propagate NaN.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include "tpcomm/tpcomm.h"

namespace tpcomm {

enum class DataType : int {
  f32 = TPCOMM_F32,
  f64 = TPCOMM_F64,
  f16 = TPCOMM_F16,
  bf16 = TPCOMM_BF16,
  i8 = TPCOMM_I8,
  u8 = TPCOMM_U8,
  i32 = TPCOMM_I32,
  i64 = TPCOMM_I64,
};

enum class ReduceOp : int {
  sum = TPCOMM_SUM,
  prod = TPCOMM_PROD,
  min = TPCOMM_MIN,
  max = TPCOMM_MAX,
  avg = TPCOMM_AVG,
};

enum class ErrorCode : int {
  invalid_argument = TPCOMM_ERROR_INVALID_ARGUMENT,
  timeout = TPCOMM_ERROR_TIMEOUT,
  peer_dead = TPCOMM_ERROR_PEER_DEAD,
  mismatch = TPCOMM_ERROR_MISMATCH,
  system = TPCOMM_ERROR_SYSTEM,
  comm_failed = TPCOMM_ERROR_COMM_FAILED,
  internal = TPCOMM_ERROR_INTERNAL,
};

// The one error type tpcomm throws. what() names the rank, the collective and
// the values involved.
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

// Size in bytes of one element; throws for an unknown value.
std::size_t dtype_size(DataType dtype);
std::string_view dtype_name(DataType dtype);
std::string_view redop_name(ReduceOp op);
// Parse "f32", "bf16", ... and "sum", "avg", ...; throws invalid_argument.
DataType parse_dtype(std::string_view name);
ReduceOp parse_redop(std::string_view name);

// Maps a C++ element type to its DataType (f16/bf16 have no standard type:
// use the pointer overload of the collectives with DataType::f16/bf16).
template <class T>
constexpr DataType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return DataType::f32;
  else if constexpr (std::is_same_v<T, double>) return DataType::f64;
  else if constexpr (std::is_same_v<T, std::int8_t>) return DataType::i8;
  else if constexpr (std::is_same_v<T, std::uint8_t>) return DataType::u8;
  else if constexpr (std::is_same_v<T, std::int32_t>) return DataType::i32;
  else if constexpr (std::is_same_v<T, std::int64_t>) return DataType::i64;
  else static_assert(sizeof(T) == 0, "no tpcomm DataType for this element type");
}

// The color that leaves a rank out of every group created by split().
inline constexpr int kUndefinedColor = TPCOMM_COLOR_UNDEFINED;

struct CommOptions {
  // Bound on every wait. Zero: TPCOMM_TIMEOUT from the environment, else 300 s.
  std::chrono::duration<double> timeout{0.0};
  // Bytes of one staging slot per rank (each rank has two). Zero: TPCOMM_CHUNK_BYTES
  // from the environment, else the default (see docs/configuration.md).
  std::size_t chunk_bytes = 0;
};

class Communicator;

// Memory that lives in a shared-memory segment of a communicator: one region
// per rank, all of the same size, readable by every rank. An all_reduce whose
// send buffer lies in such a buffer (at the same offset on every rank) reads
// the peers' data in place instead of copying it into staging slots first
// (zero-copy), like NCCL's registered/symmetric buffers. Move-only; releasing it
// is local. It must not outlive its communicator.
class SharedBuffer {
 public:
  class State;
  SharedBuffer() = default;
  explicit SharedBuffer(std::shared_ptr<State> state) : state_(std::move(state)) {}
  SharedBuffer(SharedBuffer&&) noexcept = default;
  SharedBuffer& operator=(SharedBuffer&&) noexcept = default;
  ~SharedBuffer() = default;

  // This rank's region (page-aligned), or null for an empty handle.
  void* data() const;
  std::size_t size() const;
  explicit operator bool() const { return data() != nullptr; }

 private:
  std::shared_ptr<State> state_;
};

namespace detail {
class CommunicatorImplementation;
}

class Communicator {
 public:
  // Explicit rendezvous: every rank 0..world_size-1 calls this with the same job_id.
  static Communicator create(int rank, int world_size, std::string_view job_id,
                             const CommOptions& options = {});
  // From tpcomm-run's, torchrun's or Open MPI's environment variables.
  static Communicator from_env(const CommOptions& options = {});
  // Over the ranks of an MPI_Comm, on one machine or several: include
  // tpcomm/mpi.hpp, which defines it (this header stays free of mpi.h).
  template <class MpiComm>
  static Communicator from_mpi(MpiComm comm, const CommOptions& options = {});

  Communicator(Communicator&&) noexcept;
  Communicator& operator=(Communicator&&) noexcept;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  ~Communicator();

  int rank() const;
  int world_size() const;
  std::chrono::duration<double> timeout() const;
  void set_timeout(std::chrono::duration<double> timeout);
  // Bytes of one staging slot (the chunk size of the copy-in algorithms).
  std::size_t chunk_bytes() const;

  // recv[i] = fold(op, send_0[i], ..., send_{n-1}[i]). See the aliasing contract above.
  void all_reduce(const void* send, void* recv, std::size_t count, DataType dtype, ReduceOp op);

  template <class T>
  void all_reduce(std::span<const T> send, std::span<T> recv, ReduceOp op) {
    if (send.size() != recv.size())
      throw Error(ErrorCode::invalid_argument, "all_reduce: send and recv spans differ in size (" +
                                                   std::to_string(send.size()) + " vs " +
                                                   std::to_string(recv.size()) + ")");
    all_reduce(send.data(), recv.data(), send.size(), dtype_of<T>(), op);
  }
  template <class T>
  void all_reduce(std::span<T> inout, ReduceOp op) {
    all_reduce(inout.data(), inout.data(), inout.size(), dtype_of<T>(), op);
  }

  // reduce_scatter: rank r receives block r of the reduced (world_size x recv_count)
  // send buffer. In-place when recv == send + r * recv_count elements (NCCL's rule).
  void reduce_scatter(const void* send, void* recv, std::size_t recv_count, DataType dtype, ReduceOp op);
  // reduce_scatterv: send holds sum(recv_counts) elements; rank r receives the
  // reduced block of recv_counts[r] elements starting at sum(recv_counts[0..r)).
  // Zero counts allowed. In-place when recv == send + that offset.
  void reduce_scatterv(const void* send, void* recv, std::span<const std::size_t> recv_counts, DataType dtype,
                       ReduceOp op);
  // all_gather: recv (world_size x send_count) = concatenation of every rank's
  // send, in rank order. In-place when send == recv + r * send_count elements.
  void all_gather(const void* send, void* recv, std::size_t send_count, DataType dtype);
  // all_gatherv: rank r contributes counts[r] elements (zero allowed); recv is the
  // concatenation in rank order. In-place when send == recv + sum(counts[0..r)).
  void all_gatherv(const void* send, void* recv, std::span<const std::size_t> counts, DataType dtype);
  // broadcast: every rank's recv = root's send. On the root, in-place when
  // send == recv; on other ranks send is ignored (may be null).
  void broadcast(const void* send, void* recv, std::size_t count, DataType dtype, int root);
  // reduce: root's recv = fold over ranks of send. In-place on the root when
  // send == recv; recv is ignored on other ranks (may be null).
  void reduce(const void* send, void* recv, std::size_t count, DataType dtype, ReduceOp op, int root);
  // gather: root's recv (world_size x send_count) = every rank's send in rank order.
  // In-place on the root when send == recv + root * send_count; recv ignored elsewhere.
  void gather(const void* send, void* recv, std::size_t send_count, DataType dtype, int root);
  // scatter: rank r's recv = block r of root's send (world_size x recv_count).
  // In-place on the root when recv == send + root * recv_count; send ignored elsewhere.
  void scatter(const void* send, void* recv, std::size_t recv_count, DataType dtype, int root);
  // all_to_all: block d of rank s's send (count elements each) lands as block s
  // of rank d's recv. In-place when send == recv; otherwise disjoint.
  void all_to_all(const void* send, void* recv, std::size_t count, DataType dtype);
  // all_to_allv: rank s sends send_counts[d] elements from send + send_displs[d]
  // to rank d, which stores them at recv + recv_displs[s] (recv_counts[s] must
  // equal the sender's send_counts[d]; checked on every rank). Send and receive
  // buffers must be disjoint. Counts and displacements are in elements.
  void all_to_allv(const void* send, std::span<const std::size_t> send_counts,
                   std::span<const std::size_t> send_displs, void* recv, std::span<const std::size_t> recv_counts,
                   std::span<const std::size_t> recv_displs, DataType dtype);

  // Point-to-point. Messages between a pair of ranks are matched in order; a
  // receive must name the same count and dtype as the matching send. send and
  // recv block until their message has moved. A zero-count message is still a
  // message (it matches a zero-count receive).
  void send(const void* buffer, std::size_t count, DataType dtype, int peer);
  void recv(void* buffer, std::size_t count, DataType dtype, int peer);

  struct PointToPoint {
    enum class Kind { send, recv } kind = Kind::send;
    void* buffer = nullptr;  // read for send, written for recv
    std::size_t count = 0;
    DataType dtype = DataType::f32;
    int peer = 0;
  };
  // Progresses all operations together (like batch_isend_irecv or an NCCL
  // group): a ring where every rank sends and receives at once cannot deadlock.
  // Operations on the same (peer, direction) complete in the order given.
  void batch(std::span<const PointToPoint> operations);

  void barrier();

  // Sub-communicators (MPI_Comm_split semantics). Collective over this
  // communicator: every rank calls it, in the same order as its other calls.
  // Ranks passing the same color (>= 0) form a new communicator, ordered by key,
  // then by rank in this communicator. kUndefinedColor returns no communicator.
  // The result has its own segment and counters: it runs at the same time as
  // its siblings and independently of this one, inherits its timeout and
  // chunk size, and may be split again. Destroying it leaves this one working.
  std::optional<Communicator> split(int color, int key = 0);
  // Collective over this communicator: every rank passes the same list of
  // distinct ranks (checked); listed ranks get a communicator in list order,
  // the others std::nullopt.
  std::optional<Communicator> new_group(std::span<const int> ranks);

  // Collective: every rank calls it with the same size. Returns this rank's
  // region of a new shared buffer (see SharedBuffer). all_reduce with send in
  // the buffer runs zero-copy: out-of-place reads every rank's region directly
  // (one-shot); in-place (send == recv in the buffer) reduces block by block
  // inside the regions (two-shot). Every rank must then use the same offset.
  SharedBuffer alloc_shared(std::size_t bytes);

  // Name of the all_reduce algorithm chosen for a message of this many bytes
  // of this dtype (the crossover depends on the fold's cost per byte).
  std::string_view all_reduce_algorithm(std::size_t bytes, DataType dtype = DataType::f32) const;

  class Impl;

 private:
  explicit Communicator(std::unique_ptr<Impl> impl);
  friend class detail::CommunicatorImplementation;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tpcomm
