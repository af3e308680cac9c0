// The interface behind tpcomm::Communicator. The public class forwards every
// call to one of these implementations:
//   - ShmCommunicator (core/communicator.cpp): ranks of one machine through a
//     shared-memory segment;
//   - the hierarchical communicator (mpi/), when ranks span several machines:
//     shared memory inside each node, MPI between nodes.
// Implementations validate their arguments and keep a failed communicator failed.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "tpcomm/tpcomm.hpp"

namespace tpcomm {

class Communicator::Impl {
 public:
  virtual ~Impl() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::size_t chunk_bytes() const = 0;
  virtual std::chrono::duration<double> timeout() const = 0;
  virtual void set_timeout(std::chrono::duration<double> timeout) = 0;
  virtual std::string_view all_reduce_algorithm(std::size_t bytes, DataType dtype) const = 0;

  virtual void all_reduce(const void* send, void* recv, std::size_t count, DataType dtype, ReduceOp op) = 0;
  virtual void barrier() = 0;
  virtual void reduce_scatter(const void* send, void* recv, std::size_t recv_count, DataType dtype, ReduceOp op) = 0;
  virtual void reduce_scatterv(const void* send, void* recv, std::span<const std::size_t> counts, DataType dtype,
                               ReduceOp op) = 0;
  virtual void all_gather(const void* send, void* recv, std::size_t send_count, DataType dtype) = 0;
  virtual void all_gatherv(const void* send, void* recv, std::span<const std::size_t> counts, DataType dtype) = 0;
  virtual void broadcast(const void* send, void* recv, std::size_t count, DataType dtype, int root) = 0;
  virtual void reduce(const void* send, void* recv, std::size_t count, DataType dtype, ReduceOp op, int root) = 0;
  virtual void gather(const void* send, void* recv, std::size_t send_count, DataType dtype, int root) = 0;
  virtual void scatter(const void* send, void* recv, std::size_t recv_count, DataType dtype, int root) = 0;
  virtual void all_to_all(const void* send, void* recv, std::size_t count, DataType dtype) = 0;
  virtual void all_to_allv(const void* send, std::span<const std::size_t> send_counts,
                           std::span<const std::size_t> send_displs, void* recv,
                           std::span<const std::size_t> recv_counts, std::span<const std::size_t> recv_displs,
                           DataType dtype) = 0;
  virtual void batch(std::span<const Communicator::PointToPoint> operations) = 0;
  virtual std::optional<Communicator> split(int color, int key) = 0;
  virtual std::optional<Communicator> new_group(std::span<const int> ranks) = 0;
  // Default: ordinary private memory (collectives then take their usual path).
  virtual SharedBuffer alloc_shared(std::size_t bytes);
};

// What a SharedBuffer owns: this rank's region, kept alive with whatever maps it.
class SharedBuffer::State {
 public:
  virtual ~State() = default;
  virtual std::byte* data() const = 0;
  virtual std::size_t size() const = 0;
};

namespace detail {
// Wraps an implementation in the public handle (whose constructor is private).
class CommunicatorImplementation {
 public:
  static Communicator wrap(std::unique_ptr<Communicator::Impl> impl) { return Communicator(std::move(impl)); }
  static Communicator::Impl& impl_of(Communicator& communicator) { return *communicator.impl_; }
};
}  // namespace detail

}  // namespace tpcomm
