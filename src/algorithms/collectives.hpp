// The collective set beyond all_reduce, over the shared-memory channel.
//
// Every collective is a sequence of rounds (see shm/channel.hpp). Two slot
// layouts cover them all:
//   - "whole chunk": a rank puts a contiguous chunk of its contribution in its
//     slot (all_gather, gather, broadcast, reduce);
//   - "pieces": the slot holds one piece for each of the n ranks, piece b at
//     b * piece_bytes (reduce_scatter, scatter, all_to_all and their v forms);
//     rank r reads piece r of the slots it needs.
// Arguments arrive validated (core/communicator.cpp): buffers are non-null
// where used, sizes do not overflow, aliasing follows the documented rules.
#pragma once

#include <cstddef>
#include <span>

#include "shm/channel.hpp"
#include "tpcomm/tpcomm.hpp"

namespace tpcomm::detail {

struct CollectiveArgs {
  const std::byte* send = nullptr;
  std::byte* recv = nullptr;
  std::size_t count = 0;  // per-collective meaning, as in the public API
  DataType dtype = DataType::f32;
  ReduceOp op = ReduceOp::sum;
  int root = 0;
  std::span<const std::size_t> counts;         // v forms: per-rank counts
  std::span<const std::size_t> send_counts;    // all_to_allv
  std::span<const std::size_t> send_displs;
  std::span<const std::size_t> recv_counts;
  std::span<const std::size_t> recv_displs;
};

void barrier(ShmChannel& channel, const CallDescriptor& call);
void reduce_scatter(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call);
void reduce_scatterv(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call);
void all_gather(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call);
void all_gatherv(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call);
void broadcast(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call);
void reduce(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call);
void gather(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call);
void scatter(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call);
void all_to_all(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call);
void all_to_allv(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call);

}  // namespace tpcomm::detail
