// The reductions of HierarchicalCommunicator.
//
// Order (docs/multi-node.md): every element is folded within each node in
// local rank order, then the node partials are folded in node order, then avg
// divides once by the world size; f16/bf16 are widened to f32 before the first
// fold and rounded once at the end. Every rank receives bitwise the same value.
//
// Two schemes implement that order:
//   - shards (every node has the same number of ranks L): a reduce-scatter
//     inside the node leaves local rank l with the node partial of shard l;
//     the ranks with local index l (one per node) fold shard l across nodes;
//     an all-gather inside the node completes the result. Every rank carries
//     1/L of the inter-node traffic.
//   - leaders (nodes of different sizes, whose shards would not line up): a
//     reduce to local rank 0, the fold across nodes among the leaders, a
//     broadcast inside the node.
// Across nodes, either every member receives all the others' data and folds
// it all in node order (one round: two nodes, or little data), or member j
// folds block j of everyone's data and everyone then gathers the folded
// blocks (two rounds). Either way every element is folded from the same
// inputs, in the same order, by the same kernels (bitwise identical at every
// instruction-set level). MPI's own reductions are not used: their order may
// differ between ranks, and MPI has no f16/bf16 types.
#include <algorithm>
#include <cstring>

#include "algorithms/partition.hpp"
#include "core/error.hpp"
#include "kernels/reduce.hpp"
#include "mpi/hierarchical_communicator.hpp"
#include "mpi/precision.hpp"

namespace tpcomm::detail {
namespace {

constexpr int kTagFold = 1;
constexpr int kTagShare = 2;

}  // namespace

std::size_t HierarchicalCommunicator::piece_elements(std::size_t element_bytes) const {
  // Eight staging chunks: long enough messages to keep MPI busy, while the
  // scratch buffers stay bounded whatever the message size.
  return std::max<std::size_t>(1, 8 * node_.chunk_bytes() / element_bytes);
}

void HierarchicalCommunicator::fold_everywhere(std::byte* data, std::size_t count, DataType acc, ReduceOp op) {
  if (topology_.uniform()) {
    fold_by_shards(data, count, acc, op);
  } else {
    fold_through_leaders(data, count, acc, op);
  }
}

void HierarchicalCommunicator::fold_by_shards(std::byte* data, std::size_t count, DataType acc, ReduceOp op) {
  const auto local_size = static_cast<std::size_t>(topology_.local_size);
  const std::size_t element = dtype_size(acc);
  const Range shard = block_range(count, local_size, static_cast<std::size_t>(topology_.local_rank));
  std::byte* mine = data + shard.begin * element;
  if (local_size == 1) {
    fold_across_nodes(data, count, acc, op);
    return;
  }
  std::vector<std::size_t> counts(local_size);
  for (std::size_t l = 0; l < local_size; ++l) counts[l] = block_range(count, local_size, l).count;
  on_node([&] { node_.reduce_scatterv(data, mine, counts, acc, op); });
  fold_across_nodes(mine, shard.count, acc, op);
  on_node([&] { node_.all_gatherv(mine, data, counts, acc); });
}

void HierarchicalCommunicator::fold_through_leaders(std::byte* data, std::size_t count, DataType acc, ReduceOp op) {
  const bool leader = topology_.is_leader();
  const bool shared = topology_.local_size > 1;
  if (shared) on_node([&] { node_.reduce(data, leader ? data : nullptr, count, acc, op, 0); });
  if (leader) fold_across_nodes(data, count, acc, op);
  if (shared) on_node([&] { node_.broadcast(leader ? data : nullptr, data, count, acc, 0); });
}

void HierarchicalCommunicator::fold_across_nodes(std::byte* data, std::size_t count, DataType acc, ReduceOp op) {
  const int members = inter_size_;
  if (members == 1 || count == 0) return;
  const auto m = static_cast<std::size_t>(members);
  const auto me = static_cast<std::size_t>(inter_rank_);
  const std::size_t element = dtype_size(acc);
  const FoldFunction fold = fold_function(acc, op);
  std::vector<const void*> sources(m);

  // One round: everybody sends everything to everybody and folds it all.
  // With two nodes this moves as many bytes as the two rounds below, with one
  // round trip less; with more nodes, while a member sends at most a chunk.
  if (m == 2 || count * element * (m - 1) <= node_.chunk_bytes()) {
    const std::size_t bytes = count * element;
    if (exchange_.size() < m * bytes) exchange_.resize(m * bytes);
    for (std::size_t j = 0; j < m; ++j) {
      if (j == me) continue;
      const int peer = static_cast<int>(j);
      requests_.recv(exchange_.data() + j * bytes, bytes, peer, kTagFold, inter_.get(), running_);
      requests_.send(data, bytes, peer, kTagFold, inter_.get(), running_);
    }
    std::memcpy(exchange_.data() + me * bytes, data, bytes);
    mpi(requests_.wait_all(), "MPI_Waitall");
    for (std::size_t j = 0; j < m; ++j) sources[j] = exchange_.data() + j * bytes;
    fold(data, sources.data(), members, count);
    return;
  }

  // Two rounds: member j folds block j of everyone's data...
  const Range mine = block_range(count, m, me);
  const std::size_t block_bytes = mine.count * element;
  if (exchange_.size() < m * block_bytes) exchange_.resize(m * block_bytes);
  for (std::size_t j = 0; j < m; ++j) {
    if (j == me) continue;
    const Range theirs = block_range(count, m, j);
    const int peer = static_cast<int>(j);
    requests_.recv(exchange_.data() + j * block_bytes, block_bytes, peer, kTagFold, inter_.get(), running_);
    requests_.send(data + theirs.begin * element, theirs.count * element, peer, kTagFold, inter_.get(), running_);
  }
  std::memcpy(exchange_.data() + me * block_bytes, data + mine.begin * element, block_bytes);
  mpi(requests_.wait_all(), "MPI_Waitall");
  if (mine.count > 0) {
    for (std::size_t j = 0; j < m; ++j) sources[j] = exchange_.data() + j * block_bytes;
    fold(data + mine.begin * element, sources.data(), members, mine.count);
  }
  // ...then everybody gets every folded block.
  for (std::size_t j = 0; j < m; ++j) {
    if (j == me) continue;
    const Range theirs = block_range(count, m, j);
    const int peer = static_cast<int>(j);
    requests_.recv(data + theirs.begin * element, theirs.count * element, peer, kTagShare, inter_.get(), running_);
    requests_.send(data + mine.begin * element, block_bytes, peer, kTagShare, inter_.get(), running_);
  }
  mpi(requests_.wait_all(), "MPI_Waitall");
}

template <class Work, class Deliver>
void HierarchicalCommunicator::fold_pieces(const std::byte* send, std::size_t count, DataType dtype, ReduceOp op,
                                           Work work, Deliver deliver) {
  const DataType acc = accumulation_type(dtype);
  const std::size_t element = dtype_size(dtype);
  const std::size_t acc_element = dtype_size(acc);
  const std::size_t per_piece = piece_elements(acc_element);
  for (std::size_t begin = 0; begin < count; begin += per_piece) {
    const std::size_t n = std::min(per_piece, count - begin);
    std::byte* data = work(begin);
    if (data == nullptr) {
      if (scratch_.size() < n * acc_element) scratch_.resize(n * acc_element);
      data = scratch_.data();
    }
    if (data != send + begin * element) widen(send + begin * element, dtype, data, n);
    fold_everywhere(data, n, acc, fold_op(op));
    deliver(begin, n, data);
  }
}

void HierarchicalCommunicator::all_reduce(const void* send, void* recv, std::size_t count, DataType dtype,
                                          ReduceOp op) {
  const std::string_view name = "all_reduce";
  check_usable(name);
  const std::size_t bytes = checks_.byte_count(name, count, dtype);
  checks_.check_op(name, dtype, op);
  if (count == 0) return;
  checks_.require_buffer(name, send, "send");
  checks_.require_buffer(name, recv, "recv");
  checks_.require_same_or_disjoint(name, send, bytes, recv, bytes);
  run_guarded(name, [&] {
    const auto* in = static_cast<const std::byte*>(send);
    auto* out = static_cast<std::byte*>(recv);
    const std::size_t element = dtype_size(dtype);
    // Types that accumulate in themselves are folded right in recv.
    const bool in_recv = accumulation_type(dtype) == dtype;
    const int divisor = op == ReduceOp::avg ? topology_.world_size : 0;
    fold_pieces(
        in, count, dtype, op, [&](std::size_t begin) { return in_recv ? out + begin * element : nullptr; },
        [&](std::size_t begin, std::size_t n, const std::byte* folded) {
          finish(folded, dtype, out + begin * element, n, divisor);
        });
  });
}

void HierarchicalCommunicator::reduce(const void* send, void* recv, std::size_t count, DataType dtype, ReduceOp op,
                                      int root) {
  const std::string_view name = "reduce";
  check_usable(name);
  const std::size_t bytes = checks_.byte_count(name, count, dtype);
  checks_.check_op(name, dtype, op);
  checks_.check_root(name, root);
  if (bytes == 0) return;
  const bool i_am_root = topology_.rank == root;
  checks_.require_buffer(name, send, "send");
  if (i_am_root) {
    checks_.require_buffer(name, recv, "recv");
    checks_.require_same_or_disjoint(name, send, bytes, recv, bytes);
  }
  run_guarded(name, [&] {
    // The fold of an all_reduce, kept by the root only: the same order, and
    // the same cost as an all_reduce.
    const auto* in = static_cast<const std::byte*>(send);
    auto* out = static_cast<std::byte*>(recv);
    const std::size_t element = dtype_size(dtype);
    const bool in_recv = i_am_root && accumulation_type(dtype) == dtype;
    const int divisor = op == ReduceOp::avg ? topology_.world_size : 0;
    fold_pieces(
        in, count, dtype, op, [&](std::size_t begin) { return in_recv ? out + begin * element : nullptr; },
        [&](std::size_t begin, std::size_t n, const std::byte* folded) {
          if (i_am_root) finish(folded, dtype, out + begin * element, n, divisor);
        });
  });
}

void HierarchicalCommunicator::reduce_scatter(const void* send, void* recv, std::size_t recv_count, DataType dtype,
                                              ReduceOp op) {
  const std::vector<std::size_t> counts(static_cast<std::size_t>(topology_.world_size), recv_count);
  reduce_scatter_common("reduce_scatter", send, recv, counts, dtype, op);
}

void HierarchicalCommunicator::reduce_scatterv(const void* send, void* recv, std::span<const std::size_t> counts,
                                               DataType dtype, ReduceOp op) {
  reduce_scatter_common("reduce_scatterv", send, recv, counts, dtype, op);
}

void HierarchicalCommunicator::reduce_scatter_common(std::string_view name, const void* send, void* recv,
                                                     std::span<const std::size_t> counts, DataType dtype,
                                                     ReduceOp op) {
  check_usable(name);
  checks_.require_rank_array(name, counts, "recv_counts");
  const std::size_t element = dtype_size(dtype);
  checks_.check_op(name, dtype, op);
  const ArgumentChecks::Layout layout = checks_.layout(name, counts, element);
  if (layout.total == 0) return;
  const std::size_t mine = counts[static_cast<std::size_t>(topology_.rank)];
  checks_.require_buffer(name, send, "send");
  if (mine > 0) {
    checks_.require_buffer(name, recv, "recv");
    checks_.require_placed_or_disjoint(name, recv, mine * element, send, layout.total * element,
                                       layout.before_me * element, "recv == send + offset of this rank's block");
  }
  run_guarded(name, [&] {
    // The whole vector is folded (as by all_reduce) and each rank keeps its
    // block. In place, recv lies inside send: a piece's part of it is written
    // only after that piece has been read.
    auto* out = static_cast<std::byte*>(recv);
    const std::size_t acc_element = dtype_size(accumulation_type(dtype));
    const int divisor = op == ReduceOp::avg ? topology_.world_size : 0;
    const std::size_t my_begin = layout.before_me;
    const std::size_t my_end = my_begin + mine;
    fold_pieces(
        static_cast<const std::byte*>(send), layout.total, dtype, op, [](std::size_t) -> std::byte* { return nullptr; },
        [&](std::size_t begin, std::size_t n, const std::byte* folded) {
          const std::size_t from = std::max(begin, my_begin);
          const std::size_t to = std::min(begin + n, my_end);
          if (from < to) {
            finish(folded + (from - begin) * acc_element, dtype, out + (from - my_begin) * element, to - from,
                   divisor);
          }
        });
  });
}

}  // namespace tpcomm::detail
