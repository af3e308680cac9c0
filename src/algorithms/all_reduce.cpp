#include "algorithms/all_reduce.hpp"

#include <array>
#include <cstring>

#include "algorithms/partition.hpp"
#include "core/error.hpp"
#include "kernels/reduce.hpp"

namespace tpcomm::detail {
namespace {

// How the call writes its result: an in-place or an out-of-place kind of call.
ShmChannel::ResultStores choose_result_stores(ShmChannel& channel, const AllReduceArgs& args, std::size_t element) {
  return channel.choose_result_stores(
      args.count * element,
      args.recv == args.send ? ShmChannel::ResultKind::in_place : ShmChannel::ResultKind::out_of_place);
}

}  // namespace

void one_shot_all_reduce(ShmChannel& channel, const AllReduceArgs& args, const CallDescriptor& call) {
  const int n = channel.world_size();
  const int me = channel.rank();
  const std::size_t element = dtype_size(args.dtype);
  const std::size_t per_chunk = elements_per_chunk(channel.chunk_bytes(), element);
  const FoldFunction fold = fold_function(args.dtype, args.op);
  std::array<const void*, kMaxWorldSize> sources{};
  const std::size_t chunks = chunk_count(args.count, per_chunk);
  ShmChannel::ResultStores result = choose_result_stores(channel, args, element);
  const bool own_from_input = args.count * element <= channel.copy_policy().own_from_input_max_bytes;
  for (std::size_t c = 0; c < chunks; ++c) {
    const Range range = chunk_range(args.count, per_chunk, c);
    const std::size_t offset = range.begin * element;
    const std::uint64_t round = channel.next_round();
    channel.acquire_slot(round, call);
    channel.copy_in(channel.slot(me, round), args.send + offset, range.count * element);
    channel.publish(round, call);
    channel.wait_all_published(round, call, result);
    for (int r = 0; r < n; ++r) sources[static_cast<std::size_t>(r)] = channel.slot(r, round);
    if (own_from_input) sources[static_cast<std::size_t>(me)] = args.send + offset;
    channel.fold(fold, args.recv + offset, sources.data(), n, range.count, element, &result);
    channel.release(round);
  }
  channel.record_result_stores(result);
  // Only after a one-chunk call: after several, claiming 1 MiB at the end
  // measured no faster (2 MiB) or slower (4 MiB: 0.83-0.99x).
  if (chunks == 1) channel.claim_next_slot(args.count * element);
}

void two_shot_all_reduce(ShmChannel& channel, const AllReduceArgs& args, const CallDescriptor& call) {
  const int n = channel.world_size();
  const int me = channel.rank();
  const std::size_t element = dtype_size(args.dtype);
  const std::size_t per_chunk = elements_per_chunk(channel.chunk_bytes(), element);
  const FoldFunction fold = fold_function(args.dtype, args.op);
  std::array<const void*, kMaxWorldSize> sources{};
  const std::size_t chunks = chunk_count(args.count, per_chunk);
  ShmChannel::ResultStores result = choose_result_stores(channel, args, element);
  const bool own_from_input = args.count * element <= channel.copy_policy().own_from_input_max_bytes;
  for (std::size_t c = 0; c < chunks; ++c) {
    const Range range = chunk_range(args.count, per_chunk, c);
    const std::size_t offset = range.begin * element;
    const Range mine = block_range(range.count, static_cast<std::size_t>(n), static_cast<std::size_t>(me));

    // Round 1: everyone's input chunk into its slot (but the block only this
    // rank reads, when it folds its own contribution from its input).
    const std::size_t my_offset = mine.begin * element;
    const std::uint64_t input_round = channel.next_round();
    channel.acquire_slot(input_round, call);
    channel.copy_in(channel.slot(me, input_round), args.send + offset, range.count * element,
                    own_from_input ? my_offset : 0, own_from_input ? my_offset + mine.count * element : 0);
    channel.publish(input_round, call);
    channel.wait_all_published(input_round, call, result);
    // Every rank has released the previous call's rounds: the block of the
    // next slot that this rank folds into is free. Claiming it before the
    // fold overlaps taking its lines back with the fold's reads (bf16 2 KiB:
    // 2-16 % faster; 4-64 KiB within a few %). Several chunks: see
    // one_shot_all_reduce.
    if (chunks == 1) channel.claim_next_slot_range(my_offset, mine.count * element);

    // Round 2: fold my block from every input slot into my next slot...
    const std::uint64_t reduced_round = channel.next_round();
    channel.acquire_slot(reduced_round, call);
    for (int r = 0; r < n; ++r) sources[static_cast<std::size_t>(r)] = channel.slot(r, input_round) + my_offset;
    if (own_from_input) sources[static_cast<std::size_t>(me)] = args.send + offset + my_offset;
    channel.fold(fold, channel.slot(me, reduced_round) + my_offset, sources.data(), n, mine.count, element);
    channel.release(input_round);
    channel.publish(reduced_round, call);
    channel.wait_all_published(reduced_round, call);
    // ...and gather every rank's reduced block into the output.
    for (int r = 0; r < n; ++r) {
      const Range block = block_range(range.count, static_cast<std::size_t>(n), static_cast<std::size_t>(r));
      channel.copy_out(args.recv + offset + block.begin * element,
                       channel.slot(r, reduced_round) + block.begin * element, block.count * element, &result);
    }
    channel.release(reduced_round);
  }
  channel.record_result_stores(result);
  if (chunks == 1) channel.claim_next_slot(args.count * element);  // as in one_shot_all_reduce
}

namespace {

constexpr std::array<AllReduceAlgorithm, 2> kAlgorithms{{
    {1, "one_shot", "copy in, every rank folds all contributions; lowest latency", &one_shot_all_reduce},
    {2, "two_shot", "copy in, reduce-scatter by block, all-gather; least traffic for many ranks",
     &two_shot_all_reduce},
}};

// Default choice. One-shot reads n slots per rank and every rank folds all n
// contributions; two-shot reads about 3 and folds its own block only, but
// takes two rounds per chunk. Two-shot wins once one-shot's n-fold redundant
// fold costs more than two-shot's extra round: sooner for f16/bf16, whose fold
// converts every element. Measured A/B (default and alternative interleaved in
// the same processes, 2 CPUs, docs/performance.md):
//   2 ranks: one-shot at every size and dtype. f32: two-shot 1.1-1.3x slower
//            at 4-128 KiB. bf16: two-shot was 1.1-1.5x faster from 2 to 64 KiB
//            (item 19) until one-shot read its own contribution from the input
//            (item 24) and the bf16 fold got faster (item 28); now one-shot is
//            0.77-0.97x two-shot's time from 2 to 64 KiB in the fast latency
//            state, 0.55x in the slow one (two-shot's extra round costs more
//            there), and even from 128 KiB. With the AVX2 fold two-shot still
//            wins 4 KiB by 3-10 % in the fast state, and loses 2 and 8 KiB.
//   3 ranks: f32 one-shot at every size measured (4 KiB .. 4 MiB) but 64 KiB;
//            bf16 one-shot up to 32 KiB, two-shot 1.3-1.4x faster from 64 KiB.
//   4 ranks: f32 one-shot up to 8 KiB, two-shot 1.1-1.3x faster from 16 KiB to
//            512 KiB, one-shot 1.2-1.4x faster again from 1 MiB (two-shot's
//            extra rounds cost more than its saved reads once chunks are
//            copied in with non-temporal stores); bf16 one-shot up to 8 KiB
//            (0.53-0.89x two-shot's time with the item 28 fold), even at 16
//            KiB, two-shot 1.1-1.4x faster from 32 KiB.
//   8 ranks (and 5-7): one-shot up to 16 KiB, two-shot from 32-64 KiB, for
//            f32 and, with the item 28 fold, bf16 (one-shot 0.61-0.78x at
//            8-16 KiB, even at 32 KiB, two-shot 1.3-1.4x faster at 64 KiB).
bool default_prefers_one_shot(std::size_t bytes, DataType dtype, int world_size) {
  const bool converted = dtype == DataType::f16 || dtype == DataType::bf16;
  constexpr std::size_t KiB = 1024;
  if (world_size <= 2) return true;
  if (world_size == 3) return !converted || bytes <= 32 * KiB;
  if (world_size == 4) return converted ? bytes <= 8 * KiB : (bytes <= 8 * KiB || bytes >= 1024 * KiB);
  return bytes <= 16 * KiB;
}

}  // namespace

std::span<const AllReduceAlgorithm> all_reduce_algorithms() { return kAlgorithms; }

const AllReduceAlgorithm* find_all_reduce_algorithm(std::string_view name) {
  for (const auto& algorithm : kAlgorithms) {
    if (algorithm.name == name) return &algorithm;
  }
  return nullptr;
}

const AllReduceAlgorithm& select_all_reduce_algorithm(std::string_view forced, std::size_t bytes, DataType dtype,
                                                      int world_size, std::size_t one_shot_max_bytes) {
  if (forced != "auto") {
    if (const AllReduceAlgorithm* algorithm = find_all_reduce_algorithm(forced)) return *algorithm;
    fail(ErrorCode::invalid_argument,
         "TPCOMM_ALGO: unknown all_reduce algorithm '" + std::string(forced) + "' (expected auto, one_shot, two_shot)");
  }
  const bool one_shot = one_shot_max_bytes != 0 ? bytes <= one_shot_max_bytes
                                                : default_prefers_one_shot(bytes, dtype, world_size);
  return one_shot ? kAlgorithms[0] : kAlgorithms[1];
}

}  // namespace tpcomm::detail
