// all_reduce algorithms over the shared-memory channel, and the registry that
// picks one by message size.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

#include "shm/channel.hpp"
#include "tpcomm/tpcomm.hpp"

namespace tpcomm::detail {

// Validated arguments of one all_reduce (buffers may be equal: in-place).
struct AllReduceArgs {
  const std::byte* send = nullptr;
  std::byte* recv = nullptr;
  std::size_t count = 0;
  DataType dtype = DataType::f32;
  ReduceOp op = ReduceOp::sum;
};

using AllReduceFunction = void (*)(ShmChannel& channel, const AllReduceArgs& args, const CallDescriptor& call);

struct AllReduceAlgorithm {
  std::uint8_t id;               // carried in the call descriptor: ranks must agree
  std::string_view name;
  std::string_view description;
  AllReduceFunction run;
};

// One-shot: every rank copies its chunk into its slot, then every rank folds
// all slots in rank order into its output. Moves n x bytes per rank; lowest
// latency (one synchronisation per chunk).
void one_shot_all_reduce(ShmChannel& channel, const AllReduceArgs& args, const CallDescriptor& call);

// Two-shot: copy in, rank r folds block r of the chunk from every slot into its
// own slot (reduce-scatter), then every rank copies all reduced blocks out
// (all-gather). Moves ~3 x bytes per rank whatever n: wins for many ranks and
// large messages.
void two_shot_all_reduce(ShmChannel& channel, const AllReduceArgs& args, const CallDescriptor& call);

std::span<const AllReduceAlgorithm> all_reduce_algorithms();
const AllReduceAlgorithm* find_all_reduce_algorithm(std::string_view name);

// The algorithm for a message of `bytes` bytes of `dtype`: `forced` if not
// "auto", else one_shot up to `one_shot_max_bytes` and two_shot above, or, if
// that is 0, the measured default for this world size and dtype.
const AllReduceAlgorithm& select_all_reduce_algorithm(std::string_view forced, std::size_t bytes, DataType dtype,
                                                      int world_size, std::size_t one_shot_max_bytes);

}  // namespace tpcomm::detail
