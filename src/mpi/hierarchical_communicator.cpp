// HierarchicalCommunicator: lifetime, barrier, the data-moving collectives,
// point-to-point and sub-communicators. The reductions are in
// hierarchical_reductions.cpp.
#include "mpi/hierarchical_communicator.hpp"

#include <climits>
#include <cstdint>
#include <cstring>
#include <exception>
#include <thread>

#include "core/error.hpp"
#include "mpi/from_mpi.hpp"

namespace tpcomm::detail {
namespace {

// Tags of the inter-node messages. Every collective completes all of its
// messages before it returns, so tags only need to differ within one.
constexpr int kTagGather = 11;
constexpr int kTagScatter = 12;
constexpr int kTagAllGather = 13;
constexpr int kTagAllToAll = 14;
// Point-to-point messages carry their dtype in the tag so that a receiver can
// tell a dtype mismatch from a match.
constexpr int kTagPointToPoint = 100;

std::byte* as_bytes(const void* p) { return static_cast<std::byte*>(const_cast<void*>(p)); }

}  // namespace

HierarchicalCommunicator::HierarchicalCommunicator(MpiComm world, NodeTopology topology, Communicator node,
                                                   const CommOptions& options)
    : world_(std::move(world)),
      topology_(std::move(topology)),
      node_(std::move(node)),
      options_(options),
      checks_(topology_.rank, topology_.world_size) {
  inter_ = detail::split(world_.get(), topology_.local_rank, topology_.node, "from_mpi");
  p2p_ = duplicate(world_.get(), "from_mpi");
  inter_rank_ = inter_.rank();
  inter_size_ = inter_.size();
  // Sub-communicators inherit what this one uses now.
  options_.timeout = node_.timeout();
  options_.chunk_bytes = node_.chunk_bytes();
}

void HierarchicalCommunicator::set_timeout(std::chrono::duration<double> timeout) {
  if (!(timeout.count() > 0)) fail(ErrorCode::invalid_argument, "timeout must be positive");
  node_.set_timeout(timeout);
  options_.timeout = timeout;
}

std::string_view HierarchicalCommunicator::all_reduce_algorithm(std::size_t, DataType) const {
  return topology_.uniform() ? "hierarchical_shards" : "hierarchical_leaders";
}

void HierarchicalCommunicator::check_usable(std::string_view collective) const {
  if (failure_) {
    throw Error(ErrorCode::comm_failed, checks_.prefix(collective) +
                                            "communicator failed earlier and cannot be used: " + failure_->what());
  }
}

// ---- barrier -------------------------------------------------------------------

void HierarchicalCommunicator::barrier() {
  check_usable("barrier");
  run_guarded("barrier", [&] {
    // Everybody on the node has arrived, then every node, then leave together.
    on_node([&] { node_.barrier(); });
    if (topology_.is_leader()) mpi(MPI_Barrier(inter_.get()), "MPI_Barrier");
    on_node([&] { node_.barrier(); });
  });
}

// ---- broadcast, gather, scatter ------------------------------------------------

void HierarchicalCommunicator::broadcast(const void* send, void* recv, std::size_t count, DataType dtype, int root) {
  const std::string_view name = "broadcast";
  check_usable(name);
  const std::size_t bytes = checks_.byte_count(name, count, dtype);
  checks_.check_root(name, root);
  if (bytes == 0) return;
  const bool i_am_root = topology_.rank == root;
  checks_.require_buffer(name, recv, "recv");
  if (i_am_root) {
    checks_.require_buffer(name, send, "send");
    checks_.require_same_or_disjoint(name, send, bytes, recv, bytes);
  }
  run_guarded(name, [&] {
    const int root_node = topology_.node_of[static_cast<std::size_t>(root)];
    const int root_local = topology_.local_rank_of[static_cast<std::size_t>(root)];
    const bool on_root_node = topology_.node == root_node;
    const bool leader = topology_.is_leader();
    auto* out = static_cast<std::byte*>(recv);
    // The root's node first, so that its leader holds the data...
    if (on_root_node && root_local != 0) {
      on_node([&] { node_.broadcast(i_am_root ? send : nullptr, out, count, dtype, root_local); });
    }
    // ...then from leader to leader...
    if (leader) broadcast_bytes(i_am_root ? as_bytes(send) : out, bytes, root_node, inter_.get(), running_);
    // ...then inside every other node (and the root's, when the root leads it).
    if (!on_root_node || root_local == 0) {
      on_node([&] { node_.broadcast(i_am_root ? send : (leader ? out : nullptr), out, count, dtype, 0); });
    }
  });
}

void HierarchicalCommunicator::gather(const void* send, void* recv, std::size_t send_count, DataType dtype,
                                      int root) {
  const std::string_view name = "gather";
  check_usable(name);
  const std::size_t block = checks_.byte_count(name, send_count, dtype);
  const std::size_t total = checks_.total_bytes(name, block);
  checks_.check_root(name, root);
  if (block == 0) return;
  const bool i_am_root = topology_.rank == root;
  checks_.require_buffer(name, send, "send");
  if (i_am_root) {
    checks_.require_buffer(name, recv, "recv");
    checks_.require_placed_or_disjoint(name, send, block, recv, total, static_cast<std::size_t>(root) * block,
                                       "send == recv + root * send_count");
  }
  run_guarded(name, [&] {
    const int root_node = topology_.node_of[static_cast<std::size_t>(root)];
    const int root_local = topology_.local_rank_of[static_cast<std::size_t>(root)];
    const bool on_root_node = topology_.node == root_node;
    const bool leader = topology_.is_leader();
    const auto& mine = my_node_members();
    const std::size_t all_count = send_count * static_cast<std::size_t>(topology_.world_size);

    // 1. Each node's blocks to its leader, in local order.
    std::vector<std::byte> node_blocks(leader ? mine.size() * block : 0);
    on_node([&] { node_.gather(send, leader ? node_blocks.data() : nullptr, send_count, dtype, 0); });

    if (!on_root_node) {
      // 2. Every other leader sends its node's blocks to the root's node.
      if (leader) {
        requests_.send(node_blocks.data(), node_blocks.size(), root_node, kTagGather, inter_.get(), running_);
        mpi(requests_.wait_all(), "MPI_Waitall");
      }
      return;
    }
    if (!leader) {
      // 4. The root, when it does not lead its node, gets the result from the leader.
      if (i_am_root) on_node([&] { node_.recv(recv, all_count, dtype, 0); });
      return;
    }
    // 3. The root's leader puts every block in rank order.
    std::vector<std::byte> incoming(total - node_blocks.size());
    std::vector<const std::byte*> blocks_of(topology_.members.size());
    std::size_t offset = 0;
    for (int k = 0; k < topology_.node_count(); ++k) {
      const std::size_t bytes = topology_.members[static_cast<std::size_t>(k)].size() * block;
      if (k == topology_.node) {
        blocks_of[static_cast<std::size_t>(k)] = node_blocks.data();
        continue;
      }
      requests_.recv(incoming.data() + offset, bytes, k, kTagGather, inter_.get(), running_);
      blocks_of[static_cast<std::size_t>(k)] = incoming.data() + offset;
      offset += bytes;
    }
    mpi(requests_.wait_all(), "MPI_Waitall");
    std::vector<std::byte> relay(i_am_root ? 0 : total);
    std::byte* result = i_am_root ? static_cast<std::byte*>(recv) : relay.data();
    for (std::size_t k = 0; k < topology_.members.size(); ++k) {
      const auto& ranks = topology_.members[k];
      for (std::size_t i = 0; i < ranks.size(); ++i) {
        std::memcpy(result + static_cast<std::size_t>(ranks[i]) * block, blocks_of[k] + i * block, block);
      }
    }
    if (!i_am_root) on_node([&] { node_.send(result, all_count, dtype, root_local); });
  });
}

void HierarchicalCommunicator::scatter(const void* send, void* recv, std::size_t recv_count, DataType dtype,
                                       int root) {
  const std::string_view name = "scatter";
  check_usable(name);
  const std::size_t block = checks_.byte_count(name, recv_count, dtype);
  const std::size_t total = checks_.total_bytes(name, block);
  checks_.check_root(name, root);
  if (block == 0) return;
  const bool i_am_root = topology_.rank == root;
  checks_.require_buffer(name, recv, "recv");
  if (i_am_root) {
    checks_.require_buffer(name, send, "send");
    checks_.require_placed_or_disjoint(name, recv, block, send, total, static_cast<std::size_t>(root) * block,
                                       "recv == send + root * recv_count");
  }
  run_guarded(name, [&] {
    const int root_node = topology_.node_of[static_cast<std::size_t>(root)];
    const int root_local = topology_.local_rank_of[static_cast<std::size_t>(root)];
    const bool on_root_node = topology_.node == root_node;
    const bool leader = topology_.is_leader();
    const auto& mine = my_node_members();
    const std::size_t all_count = recv_count * static_cast<std::size_t>(topology_.world_size);

    // 1. The root's whole buffer to its node's leader, when the root does not lead.
    std::vector<std::byte> relayed;
    const std::byte* whole = i_am_root ? static_cast<const std::byte*>(send) : nullptr;
    if (on_root_node && root_local != 0) {
      if (i_am_root) on_node([&] { node_.send(send, all_count, dtype, 0); });
      if (leader) {
        relayed.resize(total);
        on_node([&] { node_.recv(relayed.data(), all_count, dtype, root_local); });
        whole = relayed.data();
      }
    }
    // 2. The root's leader sends every node its ranks' blocks, in local order.
    std::vector<std::byte> node_blocks(leader ? mine.size() * block : 0);
    if (leader && on_root_node) {
      std::vector<std::byte> packed(total - node_blocks.size());
      std::size_t offset = 0;
      for (int k = 0; k < topology_.node_count(); ++k) {
        const auto& ranks = topology_.members[static_cast<std::size_t>(k)];
        std::byte* target = k == topology_.node ? node_blocks.data() : packed.data() + offset;
        for (std::size_t i = 0; i < ranks.size(); ++i) {
          std::memcpy(target + i * block, whole + static_cast<std::size_t>(ranks[i]) * block, block);
        }
        if (k != topology_.node) {
          requests_.send(target, ranks.size() * block, k, kTagScatter, inter_.get(), running_);
          offset += ranks.size() * block;
        }
      }
      mpi(requests_.wait_all(), "MPI_Waitall");
    } else if (leader) {
      requests_.recv(node_blocks.data(), node_blocks.size(), root_node, kTagScatter, inter_.get(), running_);
      mpi(requests_.wait_all(), "MPI_Waitall");
    }
    // 3. Every leader scatters inside its node.
    on_node([&] { node_.scatter(leader ? node_blocks.data() : nullptr, recv, recv_count, dtype, 0); });
  });
}

// ---- all_gather(v) ---------------------------------------------------------------

void HierarchicalCommunicator::all_gather(const void* send, void* recv, std::size_t send_count, DataType dtype) {
  const std::vector<std::size_t> counts(static_cast<std::size_t>(topology_.world_size), send_count);
  all_gather_common("all_gather", send, recv, counts, dtype);
}

void HierarchicalCommunicator::all_gatherv(const void* send, void* recv, std::span<const std::size_t> counts,
                                           DataType dtype) {
  all_gather_common("all_gatherv", send, recv, counts, dtype);
}

void HierarchicalCommunicator::all_gather_common(std::string_view name, const void* send, void* recv,
                                                 std::span<const std::size_t> counts, DataType dtype) {
  check_usable(name);
  checks_.require_rank_array(name, counts, "counts");
  const std::size_t element = dtype_size(dtype);
  const ArgumentChecks::Layout layout = checks_.layout(name, counts, element);
  if (layout.total == 0) return;
  const std::size_t my_bytes = counts[static_cast<std::size_t>(topology_.rank)] * element;
  checks_.require_buffer(name, recv, "recv");
  if (my_bytes > 0) {
    checks_.require_buffer(name, send, "send");
    checks_.require_placed_or_disjoint(name, send, my_bytes, recv, layout.total * element,
                                       layout.before_me * element, "send == recv + offset of this rank's block");
  }
  run_guarded(name, [&] {
    auto* out = static_cast<std::byte*>(recv);
    std::vector<std::size_t> offsets(counts.size());
    for (std::size_t r = 1; r < counts.size(); ++r) offsets[r] = offsets[r - 1] + counts[r - 1];
    auto block_of = [&](int r) { return out + offsets[static_cast<std::size_t>(r)] * element; };
    auto bytes_of = [&](int r) { return counts[static_cast<std::size_t>(r)] * element; };
    const auto& mine = my_node_members();
    const bool leader = topology_.is_leader();

    // 1. The node's blocks to its leader, straight into their places.
    if (leader) {
      if (my_bytes > 0 && send != block_of(topology_.rank)) std::memcpy(block_of(topology_.rank), send, my_bytes);
      std::vector<Communicator::PointToPoint> receives;
      for (std::size_t l = 1; l < mine.size(); ++l) {
        receives.push_back({Communicator::PointToPoint::Kind::recv, block_of(mine[l]),
                            counts[static_cast<std::size_t>(mine[l])], dtype, static_cast<int>(l)});
      }
      if (!receives.empty()) on_node([&] { node_.batch(receives); });
    } else {
      on_node([&] { node_.send(send, counts[static_cast<std::size_t>(topology_.rank)], dtype, 0); });
    }
    // 2. Leaders swap their nodes' blocks.
    if (leader) {
      for (int k = 0; k < topology_.node_count(); ++k) {
        if (k == topology_.node) continue;
        for (const int r : mine) requests_.send(block_of(r), bytes_of(r), k, kTagAllGather, inter_.get(), running_);
        for (const int r : topology_.members[static_cast<std::size_t>(k)]) {
          requests_.recv(block_of(r), bytes_of(r), k, kTagAllGather, inter_.get(), running_);
        }
      }
      mpi(requests_.wait_all(), "MPI_Waitall");
    }
    // 3. Each leader hands the whole result to its node.
    on_node([&] { node_.broadcast(leader ? out : nullptr, out, layout.total, dtype, 0); });
  });
}

// ---- all_to_all(v) ---------------------------------------------------------------

void HierarchicalCommunicator::all_to_all(const void* send, void* recv, std::size_t count, DataType dtype) {
  const std::string_view name = "all_to_all";
  check_usable(name);
  const std::size_t total = checks_.total_bytes(name, checks_.byte_count(name, count, dtype));
  if (total == 0) return;
  checks_.require_buffer(name, send, "send");
  checks_.require_buffer(name, recv, "recv");
  checks_.require_same_or_disjoint(name, send, total, recv, total);
  const auto n = static_cast<std::size_t>(topology_.world_size);
  std::vector<std::size_t> counts(n, count), displs(n);
  for (std::size_t r = 0; r < n; ++r) displs[r] = r * count;
  run_guarded(name, [&] {
    // In place, blocks would be overwritten before they are sent: send from a copy.
    std::vector<std::byte> copy;
    const auto* source = static_cast<const std::byte*>(send);
    if (send == recv) {
      copy.assign(source, source + total);
      source = copy.data();
    }
    all_to_all_common(source, counts, displs, static_cast<std::byte*>(recv), counts, displs, dtype, false);
  });
}

void HierarchicalCommunicator::all_to_allv(const void* send, std::span<const std::size_t> send_counts,
                                           std::span<const std::size_t> send_displs, void* recv,
                                           std::span<const std::size_t> recv_counts,
                                           std::span<const std::size_t> recv_displs, DataType dtype) {
  const std::string_view name = "all_to_allv";
  check_usable(name);
  const std::size_t element = dtype_size(dtype);
  for (auto [array, label] : {std::pair{send_counts, "send_counts"}, std::pair{send_displs, "send_displs"},
                              std::pair{recv_counts, "recv_counts"}, std::pair{recv_displs, "recv_displs"}}) {
    checks_.require_rank_array(name, array, label);
  }
  const std::size_t send_extent = checks_.extent(name, send_counts, send_displs, element, "send");
  const std::size_t recv_extent = checks_.extent(name, recv_counts, recv_displs, element, "recv");
  if (send_extent > 0) checks_.require_buffer(name, send, "send");
  if (recv_extent > 0) checks_.require_buffer(name, recv, "recv");
  if (send_extent > 0 && recv_extent > 0 && ArgumentChecks::overlap(send, send_extent, recv, recv_extent)) {
    fail(ErrorCode::invalid_argument, checks_.prefix(name) + "send and recv buffers overlap (all_to_allv needs "
                                                             "disjoint buffers: displacements may differ between them)");
  }
  run_guarded(name, [&] {
    all_to_all_common(static_cast<const std::byte*>(send), send_counts, send_displs,
                      static_cast<std::byte*>(recv), recv_counts, recv_displs, dtype, true);
  });
}

void HierarchicalCommunicator::check_all_to_allv_counts(std::span<const std::size_t> send_counts,
                                                        std::span<const std::size_t> recv_counts) {
  const std::vector<std::uint64_t> sending(send_counts.begin(), send_counts.end());
  std::vector<std::uint64_t> arriving(sending.size());
  mpi(MPI_Alltoall(sending.data(), 1, MPI_UINT64_T, arriving.data(), 1, MPI_UINT64_T, world_.get()), "MPI_Alltoall");
  // {sender, what it sends, what this rank expects} of the first disagreement.
  std::uint64_t found[3] = {0, 0, 0};
  bool wrong = false;
  for (std::size_t s = 0; s < arriving.size() && !wrong; ++s) {
    if (arriving[s] != recv_counts[s]) {
      wrong = true;
      found[0] = s;
      found[1] = arriving[s];
      found[2] = recv_counts[s];
    }
  }
  const int reporter = wrong ? topology_.rank : INT_MAX;
  int first_reporter = INT_MAX;
  mpi(MPI_Allreduce(&reporter, &first_reporter, 1, MPI_INT, MPI_MIN, world_.get()), "MPI_Allreduce");
  if (first_reporter == INT_MAX) return;
  // Every rank fails with the first reporter's finding, before any data moves.
  mpi(MPI_Bcast(found, 3, MPI_UINT64_T, first_reporter, world_.get()), "MPI_Bcast");
  const std::string receiver = std::to_string(first_reporter);
  fail(ErrorCode::mismatch, running_ + ": rank " + std::to_string(found[0]) + " sends " + std::to_string(found[1]) +
                                " elements to rank " + receiver + " but rank " + receiver + " expects recv_counts[" +
                                std::to_string(found[0]) + "] = " + std::to_string(found[2]));
}

void HierarchicalCommunicator::all_to_all_common(const std::byte* send,
                                                 std::span<const std::size_t> send_counts,
                                                 std::span<const std::size_t> send_displs, std::byte* recv,
                                                 std::span<const std::size_t> recv_counts,
                                                 std::span<const std::size_t> recv_displs, DataType dtype,
                                                 bool check_counts) {
  if (check_counts) check_all_to_allv_counts(send_counts, recv_counts);
  const std::size_t element = dtype_size(dtype);
  // Messages to other nodes are posted first and completed last; the node's
  // own exchange runs over shared memory in between. It never waits for MPI,
  // so every rank reaches its MPI_Waitall.
  for (int r = 0; r < topology_.world_size; ++r) {
    const auto u = static_cast<std::size_t>(r);
    if (topology_.node_of[u] == topology_.node) continue;
    requests_.recv(recv + recv_displs[u] * element, recv_counts[u] * element, r, kTagAllToAll, world_.get(),
                   running_);
    requests_.send(send + send_displs[u] * element, send_counts[u] * element, r, kTagAllToAll, world_.get(),
                   running_);
  }
  const auto& mine = my_node_members();
  std::vector<std::size_t> local(4 * mine.size());
  const std::span<std::size_t> local_send_counts(local.data(), mine.size());
  const std::span<std::size_t> local_send_displs(local.data() + mine.size(), mine.size());
  const std::span<std::size_t> local_recv_counts(local.data() + 2 * mine.size(), mine.size());
  const std::span<std::size_t> local_recv_displs(local.data() + 3 * mine.size(), mine.size());
  for (std::size_t l = 0; l < mine.size(); ++l) {
    const auto r = static_cast<std::size_t>(mine[l]);
    local_send_counts[l] = send_counts[r];
    local_send_displs[l] = send_displs[r];
    local_recv_counts[l] = recv_counts[r];
    local_recv_displs[l] = recv_displs[r];
  }
  on_node([&] {
    node_.all_to_allv(send, local_send_counts, local_send_displs, recv, local_recv_counts, local_recv_displs, dtype);
  });
  mpi(requests_.wait_all(), "MPI_Waitall");
}

// ---- point-to-point --------------------------------------------------------------

void HierarchicalCommunicator::batch(std::span<const Communicator::PointToPoint> operations) {
  const std::string_view name = "send/recv";
  check_usable(name);
  std::vector<Communicator::PointToPoint> remote, local;
  for (const auto& op : operations) {
    const std::size_t bytes = checks_.byte_count(name, op.count, op.dtype);
    checks_.check_peer(name, op.peer);
    if (bytes > 0) {
      checks_.require_buffer(name, op.buffer, op.kind == Communicator::PointToPoint::Kind::send ? "send" : "recv");
    }
    const auto peer = static_cast<std::size_t>(op.peer);
    if (topology_.node_of[peer] == topology_.node) {
      Communicator::PointToPoint on_node_op = op;
      on_node_op.peer = topology_.local_rank_of[peer];
      local.push_back(on_node_op);
    } else {
      remote.push_back(op);
    }
  }
  if (remote.empty() && local.empty()) return;
  run_guarded(name, [&] { run_point_to_point(remote, local); });
}

void HierarchicalCommunicator::run_point_to_point(std::span<const Communicator::PointToPoint> remote,
                                                  std::span<const Communicator::PointToPoint> local) {
  if (remote.empty()) {
    on_node([&] { node_.batch(local); });
    return;
  }
  using Kind = Communicator::PointToPoint::Kind;
  // A message's route depends only on the pair of ranks, so messages of a pair
  // stay in order. Receives accept any tag: the tag then tells the sender's dtype.
  struct Receive {
    std::size_t first_request;
    const Communicator::PointToPoint* op;
  };
  std::vector<Receive> receives;
  for (const auto& op : remote) {
    const std::size_t bytes = op.count * dtype_size(op.dtype);
    if (op.kind == Kind::send) {
      requests_.send(op.buffer, bytes, op.peer, kTagPointToPoint + static_cast<int>(op.dtype), p2p_.get(), running_,
                     true);
    } else {
      receives.push_back({requests_.size(), &op});
      requests_.recv(op.buffer, bytes, op.peer, MPI_ANY_TAG, p2p_.get(), running_, true);
    }
  }
  // Both halves must progress together (a peer on this node may wait for a
  // message that this rank only sends over MPI, and the other way round):
  // the node's transfers move on their own thread while this one drives MPI.
  std::exception_ptr local_failure;
  std::thread local_transfers;
  if (!local.empty()) {
    local_transfers = std::thread([&] {
      try {
        node_.batch(local);
      } catch (...) {
        local_failure = std::current_exception();
      }
    });
  }
  const int code = requests_.wait_all();
  if (local_transfers.joinable()) local_transfers.join();
  if (local_failure) on_node([&] { std::rethrow_exception(local_failure); });

  const auto& statuses = requests_.statuses();
  for (const Receive& receive : receives) {
    const auto& op = *receive.op;
    const std::size_t expected = op.count * dtype_size(op.dtype);
    const std::size_t pieces = expected == 0 ? 1 : (expected + kMaxMessageBytes - 1) / kMaxMessageBytes;
    for (std::size_t p = 0; p < pieces; ++p) {
      const MPI_Status& status = statuses[receive.first_request + p];
      std::string sent;
      if (code != MPI_SUCCESS && status.MPI_ERROR != MPI_SUCCESS) {
        int error_class = MPI_SUCCESS;
        MPI_Error_class(status.MPI_ERROR, &error_class);
        if (error_class != MPI_ERR_TRUNCATE) continue;
        sent = "a longer message";
      } else {
        int received = 0;
        MPI_Get_count(&status, MPI_BYTE, &received);
        const std::size_t piece = expected == 0 ? 0 : std::min(kMaxMessageBytes, expected - p * kMaxMessageBytes);
        const int their_dtype = status.MPI_TAG - kTagPointToPoint;
        if (static_cast<std::size_t>(received) == piece && their_dtype == static_cast<int>(op.dtype)) continue;
        const bool known = their_dtype >= 0 && their_dtype <= static_cast<int>(DataType::i64);
        const auto their = static_cast<DataType>(their_dtype);
        sent = known ? std::to_string(static_cast<std::size_t>(received) / dtype_size(their)) + " x " +
                           std::string(dtype_name(their))
                     : std::to_string(received) + " bytes";
        if (pieces > 1) sent += " in piece " + std::to_string(p) + " of the message";
      }
      fail(ErrorCode::mismatch, running_ + ": recv from rank " + std::to_string(op.peer) + " expects " +
                                    std::to_string(op.count) + " x " + std::string(dtype_name(op.dtype)) +
                                    " but rank " + std::to_string(op.peer) + " sent " + sent);
    }
  }
  mpi(code, "MPI_Waitall");
}

// ---- sub-communicators ---------------------------------------------------------

std::optional<Communicator> HierarchicalCommunicator::split(int color, int key) {
  const std::string_view name = "split";
  check_usable(name);
  if (color < 0 && color != kUndefinedColor) {
    fail(ErrorCode::invalid_argument, checks_.prefix(name) + "color " + std::to_string(color) +
                                          " is negative (use a color >= 0, or kUndefinedColor to opt out)");
  }
  return run_guarded(name, [&]() -> std::optional<Communicator> {
    // MPI_Comm_split orders by key, then by rank: the documented order.
    MpiComm part = detail::split(world_.get(), color == kUndefinedColor ? MPI_UNDEFINED : color, key, running_);
    if (part.get() == MPI_COMM_NULL) return std::nullopt;
    return make_mpi_communicator(std::move(part), options_);
  });
}

std::optional<Communicator> HierarchicalCommunicator::new_group(std::span<const int> ranks) {
  const std::string_view name = "new_group";
  check_usable(name);
  std::vector<bool> seen(static_cast<std::size_t>(topology_.world_size), false);
  int my_index = -1;
  std::uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a of the list
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    const int r = ranks[i];
    if (r < 0 || r >= topology_.world_size || seen[static_cast<std::size_t>(r)]) {
      fail(ErrorCode::invalid_argument, checks_.prefix(name) + "rank list entry " + std::to_string(r) +
                                            " is out of range (0.." + std::to_string(topology_.world_size - 1) +
                                            ") or repeated");
    }
    seen[static_cast<std::size_t>(r)] = true;
    if (r == topology_.rank) my_index = static_cast<int>(i);
    hash = (hash ^ static_cast<std::uint64_t>(r)) * 0x100000001b3ull;
  }
  // Every rank must pass the same list: min(h) == max(h) across ranks.
  const auto h = static_cast<std::int64_t>(hash >> 1);
  const std::int64_t mine[2] = {h, -h};
  std::int64_t lowest[2] = {0, 0};
  run_guarded(name, [&] {
    mpi(MPI_Allreduce(mine, lowest, 2, MPI_INT64_T, MPI_MIN, world_.get()), "MPI_Allreduce");
  });
  if (lowest[0] != -lowest[1]) {
    fail(ErrorCode::mismatch, checks_.prefix(name) + "ranks passed different rank lists (this rank passed " +
                                  std::to_string(ranks.size()) + " ranks)");
  }
  return split(my_index >= 0 ? 0 : kUndefinedColor, my_index);
}

}  // namespace tpcomm::detail
