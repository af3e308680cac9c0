// Point-to-point transfers over per-pair channels, progressed as a batch.
//
// Each directed pair (s -> d) has its own two slots and counters, so
// point-to-point traffic never touches the collectives' slots. Messages of one
// pair are matched in order: the k-th message s sends to d is the k-th message
// d receives from s. A message is cut into chunks of pair_bytes (an empty
// message is one empty chunk, so matching stays exact); every chunk carries the
// message's byte length and dtype, and a receiver that expects another length
// fails with a mismatch on every rank.
//
// A batch progresses all of its transfers together, never blocking on one
// while another could move, so a ring in which every rank sends and receives
// at once cannot deadlock.
#pragma once

#include <cstddef>
#include <span>

#include "shm/channel.hpp"
#include "tpcomm/tpcomm.hpp"

namespace tpcomm::detail {

struct Transfer {
  bool is_send = true;
  std::byte* buffer = nullptr;  // read for a send, written for a receive
  std::size_t bytes = 0;
  DataType dtype = DataType::f32;
  int peer = 0;
};

void run_transfers(ShmChannel& channel, std::span<const Transfer> transfers, const CallDescriptor& call);

}  // namespace tpcomm::detail
