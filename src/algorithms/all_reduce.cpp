#include "algorithms/all_reduce.hpp"

#include <array>
#include <cstring>

#include "algorithms/partition.hpp"
#include "core/error.hpp"
#include "kernels/reduce.hpp"

namespace tpcomm::detail {

void one_shot_all_reduce(ShmChannel& channel, const AllReduceArgs& args, const CallDescriptor& call) {
  const int n = channel.world_size();
  const int me = channel.rank();
  const std::size_t element = dtype_size(args.dtype);
  const std::size_t per_chunk = elements_per_chunk(channel.chunk_bytes(), element);
  const FoldFunction fold = fold_function(args.dtype, args.op);
  std::array<const void*, kMaxWorldSize> sources{};
  const std::size_t chunks = chunk_count(args.count, per_chunk);
  for (std::size_t c = 0; c < chunks; ++c) {
    const Range range = chunk_range(args.count, per_chunk, c);
    const std::size_t offset = range.begin * element;
    const std::uint64_t round = channel.next_round();
    channel.acquire_slot(round, call);
    channel.copy_in(channel.slot(me, round), args.send + offset, range.count * element);
    channel.publish(round, call);
    channel.wait_all_published(round, call);
    for (int r = 0; r < n; ++r) sources[static_cast<std::size_t>(r)] = channel.slot(r, round);
    fold(args.recv + offset, sources.data(), n, range.count);
    channel.release(round);
  }
}

void two_shot_all_reduce(ShmChannel& channel, const AllReduceArgs& args, const CallDescriptor& call) {
  const int n = channel.world_size();
  const int me = channel.rank();
  const std::size_t element = dtype_size(args.dtype);
  const std::size_t per_chunk = elements_per_chunk(channel.chunk_bytes(), element);
  const FoldFunction fold = fold_function(args.dtype, args.op);
  std::array<const void*, kMaxWorldSize> sources{};
  const std::size_t chunks = chunk_count(args.count, per_chunk);
  for (std::size_t c = 0; c < chunks; ++c) {
    const Range range = chunk_range(args.count, per_chunk, c);
    const std::size_t offset = range.begin * element;
    const Range mine = block_range(range.count, static_cast<std::size_t>(n), static_cast<std::size_t>(me));

    // Round 1: everyone's input chunk into its slot.
    const std::uint64_t input_round = channel.next_round();
    channel.acquire_slot(input_round, call);
    channel.copy_in(channel.slot(me, input_round), args.send + offset, range.count * element);
    channel.publish(input_round, call);
    channel.wait_all_published(input_round, call);

    // Round 2: fold my block from every input slot into my next slot...
    const std::uint64_t reduced_round = channel.next_round();
    channel.acquire_slot(reduced_round, call);
    const std::size_t my_offset = mine.begin * element;
    for (int r = 0; r < n; ++r) sources[static_cast<std::size_t>(r)] = channel.slot(r, input_round) + my_offset;
    fold(channel.slot(me, reduced_round) + my_offset, sources.data(), n, mine.count);
    channel.release(input_round);
    channel.publish(reduced_round, call);
    channel.wait_all_published(reduced_round, call);
    // ...and gather every rank's reduced block into the output.
    for (int r = 0; r < n; ++r) {
      const Range block = block_range(range.count, static_cast<std::size_t>(n), static_cast<std::size_t>(r));
      std::memcpy(args.recv + offset + block.begin * element, channel.slot(r, reduced_round) + block.begin * element,
                  block.count * element);
    }
    channel.release(reduced_round);
  }
}

namespace {

constexpr std::array<AllReduceAlgorithm, 2> kAlgorithms{{
    {1, "one_shot", "copy in, every rank folds all contributions; lowest latency", &one_shot_all_reduce},
    {2, "two_shot", "copy in, reduce-scatter by block, all-gather; least traffic for many ranks",
     &two_shot_all_reduce},
}};

// Default crossover: one-shot reads n slots per rank, two-shot about 3 whatever
// n. With 2 ranks one-shot wins at every size on the measured machine
// (docs/performance.md); with more ranks two-shot wins once the message no
// longer fits in cache.
std::size_t default_one_shot_max_bytes(int world_size) {
  if (world_size <= 2) return SIZE_MAX;
  if (world_size <= 4) return std::size_t{256} << 10;
  return std::size_t{64} << 10;
}

}  // namespace

std::span<const AllReduceAlgorithm> all_reduce_algorithms() { return kAlgorithms; }

const AllReduceAlgorithm* find_all_reduce_algorithm(std::string_view name) {
  for (const auto& algorithm : kAlgorithms) {
    if (algorithm.name == name) return &algorithm;
  }
  return nullptr;
}

const AllReduceAlgorithm& select_all_reduce_algorithm(std::string_view forced, std::size_t bytes, int world_size,
                                                      std::size_t one_shot_max_bytes) {
  if (forced != "auto") {
    if (const AllReduceAlgorithm* algorithm = find_all_reduce_algorithm(forced)) return *algorithm;
    fail(ErrorCode::invalid_argument,
         "TPCOMM_ALGO: unknown all_reduce algorithm '" + std::string(forced) + "' (expected auto, one_shot, two_shot)");
  }
  const std::size_t limit = one_shot_max_bytes != 0 ? one_shot_max_bytes : default_one_shot_max_bytes(world_size);
  return bytes <= limit ? kAlgorithms[0] : kAlgorithms[1];
}

}  // namespace tpcomm::detail
