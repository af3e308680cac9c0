#include "algorithms/zero_copy.hpp"

#include <array>
#include <cstring>

#include "algorithms/partition.hpp"
#include "kernels/reduce.hpp"

namespace tpcomm::detail {
namespace {

std::byte* input_of(const ZeroCopyArgs& args, int rank, std::size_t element_offset, std::size_t element) {
  return args.regions + static_cast<std::size_t>(rank) * args.stride + args.offset + element_offset * element;
}

}  // namespace

void zero_copy_one_shot_all_reduce(ShmChannel& channel, const ZeroCopyArgs& args, const CallDescriptor& call) {
  const int n = channel.world_size();
  const std::size_t element = dtype_size(args.dtype);
  std::array<const void*, kMaxWorldSize> sources{};
  for (int r = 0; r < n; ++r) sources[static_cast<std::size_t>(r)] = input_of(args, r, 0, element);
  ShmChannel::ResultStores result =
      channel.choose_result_stores(args.count * element, args.recv == input_of(args, channel.rank(), 0, element)
                                                             ? ShmChannel::ResultKind::zero_copy_in_place
                                                             : ShmChannel::ResultKind::zero_copy_out_of_place);
  const std::uint64_t round = channel.next_round();
  channel.publish(round, call);
  channel.wait_all_published(round, call, result);
  channel.fold(fold_function(args.dtype, args.op), args.recv, sources.data(), n, args.count, element, &result);
  channel.record_result_stores(result);
  channel.release(round);
  channel.wait_all_released(round, call);
}

void zero_copy_two_shot_all_reduce(ShmChannel& channel, const ZeroCopyArgs& args, const CallDescriptor& call) {
  const int n = channel.world_size();
  const int me = channel.rank();
  const std::size_t element = dtype_size(args.dtype);
  const auto parts = static_cast<std::size_t>(n);
  const Range mine = block_range(args.count, parts, static_cast<std::size_t>(me));
  std::array<const void*, kMaxWorldSize> sources{};

  // The result is written into this rank's own region, in place.
  ShmChannel::ResultStores result = channel.choose_result_stores(args.count * element, ShmChannel::ResultKind::zero_copy_in_place);
  const std::uint64_t reduce_round = channel.next_round();
  channel.publish(reduce_round, call);
  channel.wait_all_published(reduce_round, call, result);
  for (int r = 0; r < n; ++r) sources[static_cast<std::size_t>(r)] = input_of(args, r, mine.begin, element);
  // The destination is one of the sources (this rank's own block): the fold
  // loads a whole tile from every source before it stores that tile.
  channel.fold(fold_function(args.dtype, args.op), input_of(args, me, mine.begin, element), sources.data(), n,
               mine.count, element, &result);
  channel.release(reduce_round);

  const std::uint64_t gather_round = channel.next_round();
  channel.publish(gather_round, call);
  channel.wait_all_published(gather_round, call);
  for (int r = 0; r < n; ++r) {
    if (r == me) continue;
    const Range block = block_range(args.count, parts, static_cast<std::size_t>(r));
    channel.copy_out(input_of(args, me, block.begin, element), input_of(args, r, block.begin, element),
                     block.count * element, &result);
  }
  channel.release(gather_round);
  channel.wait_all_released(gather_round, call);
  channel.record_result_stores(result);
}

}  // namespace tpcomm::detail
