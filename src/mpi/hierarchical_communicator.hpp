// HierarchicalCommunicator: ranks on several nodes. Inside a node the ranks
// share an ordinary shared-memory Communicator; between nodes they talk MPI.
// Ranks are the ranks of the MPI communicator it was made from.
//
// MPI communicators it owns (all return errors rather than abort):
//   world_  a duplicate of the user's communicator: node discovery, split,
//           the counts check of all_to_allv and its inter-node messages;
//   inter_  the ranks with this rank's local index, one per node, ordered by
//           node (for local index 0: the node leaders, rank = node index);
//   p2p_    point-to-point traffic of send/recv batches, apart from the rest.
//
// Reduction order (every rank receives bitwise the same result): fold within
// each node in local rank order, then fold the node partials in node order,
// then divide once for avg; f16/bf16 accumulate in f32 throughout and round
// once. See docs/multi-node.md.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/communicator_impl.hpp"
#include "mpi/argument_checks.hpp"
#include "mpi/mpi_error.hpp"
#include "mpi/mpi_handles.hpp"
#include "mpi/node_topology.hpp"
#include "tpcomm/tpcomm.hpp"

namespace tpcomm::detail {

class HierarchicalCommunicator final : public Communicator::Impl {
 public:
  // Collective over world (creates the inter-node and point-to-point
  // communicators). node is this rank's node group, already created.
  HierarchicalCommunicator(MpiComm world, NodeTopology topology, Communicator node, const CommOptions& options);

  int rank() const override { return topology_.rank; }
  int world_size() const override { return topology_.world_size; }
  std::size_t chunk_bytes() const override { return node_.chunk_bytes(); }
  std::chrono::duration<double> timeout() const override { return node_.timeout(); }
  void set_timeout(std::chrono::duration<double> timeout) override;
  std::string_view all_reduce_algorithm(std::size_t bytes, DataType dtype) const override;

  void all_reduce(const void* send, void* recv, std::size_t count, DataType dtype, ReduceOp op) override;
  void barrier() override;
  void reduce_scatter(const void* send, void* recv, std::size_t recv_count, DataType dtype, ReduceOp op) override;
  void reduce_scatterv(const void* send, void* recv, std::span<const std::size_t> counts, DataType dtype,
                       ReduceOp op) override;
  void all_gather(const void* send, void* recv, std::size_t send_count, DataType dtype) override;
  void all_gatherv(const void* send, void* recv, std::span<const std::size_t> counts, DataType dtype) override;
  void broadcast(const void* send, void* recv, std::size_t count, DataType dtype, int root) override;
  void reduce(const void* send, void* recv, std::size_t count, DataType dtype, ReduceOp op, int root) override;
  void gather(const void* send, void* recv, std::size_t send_count, DataType dtype, int root) override;
  void scatter(const void* send, void* recv, std::size_t recv_count, DataType dtype, int root) override;
  void all_to_all(const void* send, void* recv, std::size_t count, DataType dtype) override;
  void all_to_allv(const void* send, std::span<const std::size_t> send_counts,
                   std::span<const std::size_t> send_displs, void* recv, std::span<const std::size_t> recv_counts,
                   std::span<const std::size_t> recv_displs, DataType dtype) override;
  void batch(std::span<const Communicator::PointToPoint> operations) override;
  std::optional<Communicator> split(int color, int key) override;
  std::optional<Communicator> new_group(std::span<const int> ranks) override;

 private:
  // ---- reductions (hierarchical_reductions.cpp) ----
  // On entry `data` holds this rank's contribution (count elements of the
  // accumulation type); on return every rank's `data` holds the fold over all
  // ranks in the documented order (op already mapped by fold_op).
  void fold_everywhere(std::byte* data, std::size_t count, DataType acc, ReduceOp op);
  void fold_by_shards(std::byte* data, std::size_t count, DataType acc, ReduceOp op);
  void fold_through_leaders(std::byte* data, std::size_t count, DataType acc, ReduceOp op);
  // Folds `data` across the members of inter_ in member (= node) order.
  void fold_across_nodes(std::byte* data, std::size_t count, DataType acc, ReduceOp op);
  // Elements per piece of a reduction: bounds scratch memory and MPI counts.
  std::size_t piece_elements(std::size_t element_bytes) const;
  // Runs the fold piece by piece over `count` elements of every rank's send.
  // For each piece, `deliver(begin, n, folded)` receives the folded elements
  // [begin, begin + n) in the accumulation type. `work(begin)` is where the
  // piece may be folded (accumulation type, n elements) or null for scratch.
  template <class Work, class Deliver>
  void fold_pieces(const std::byte* send, std::size_t count, DataType dtype, ReduceOp op, Work work,
                   Deliver deliver);
  void reduce_scatter_common(std::string_view name, const void* send, void* recv,
                             std::span<const std::size_t> counts, DataType dtype, ReduceOp op);

  // ---- data movement helpers ----
  void all_gather_common(std::string_view name, const void* send, void* recv, std::span<const std::size_t> counts,
                         DataType dtype);
  void all_to_all_common(const std::byte* send, std::span<const std::size_t> send_counts,
                         std::span<const std::size_t> send_displs, std::byte* recv,
                         std::span<const std::size_t> recv_counts, std::span<const std::size_t> recv_displs,
                         DataType dtype, bool check_counts);
  // Every rank compares the counts its senders will send with the counts it
  // expects; all ranks fail together with Error(mismatch) if any differ.
  void check_all_to_allv_counts(std::span<const std::size_t> send_counts, std::span<const std::size_t> recv_counts);
  void run_point_to_point(std::span<const Communicator::PointToPoint> remote,
                          std::span<const Communicator::PointToPoint> local);

  // ---- state and errors ----
  const std::vector<int>& my_node_members() const {
    return topology_.members[static_cast<std::size_t>(topology_.node)];
  }
  // Fails fast if an earlier error failed this communicator.
  void check_usable(std::string_view collective) const;
  // Runs a collective; an error that may have left ranks mid-protocol fails
  // the communicator for good.
  template <class Body>
  auto run_guarded(std::string_view collective, Body body) -> decltype(body()) {
    running_ = "rank " + std::to_string(topology_.rank) + ": " + std::string(collective);
    try {
      return body();
    } catch (const Error& error) {
      failure_.emplace(error);
      throw;
    }
  }
  // Runs a step on the node's shared-memory communicator; its errors name
  // local ranks, so they are re-thrown naming this rank and node as well.
  template <class Body>
  void on_node(Body body) {
    try {
      body();
    } catch (const Error& error) {
      throw Error(error.code(), running_ + ": shared-memory step on node " + std::to_string(topology_.node) +
                                    " (local rank " + std::to_string(topology_.local_rank) + "): " + error.what());
    }
  }
  // Throws Error(system) naming the rank, the running collective and `call`.
  void mpi(int code, const char* call) const {
    if (code != MPI_SUCCESS) fail_mpi(code, running_ + ": " + call);
  }

  MpiComm world_;
  MpiComm inter_;
  MpiComm p2p_;
  NodeTopology topology_;
  Communicator node_;
  CommOptions options_;
  ArgumentChecks checks_;
  int inter_rank_ = 0;
  int inter_size_ = 1;
  std::string running_;               // "rank R: collective", for error messages
  std::optional<Error> failure_;
  MpiRequests requests_;
  std::vector<std::byte> scratch_;   // the accumulation buffer of a reduction piece
  std::vector<std::byte> exchange_;  // blocks received from other nodes
};

}  // namespace tpcomm::detail
