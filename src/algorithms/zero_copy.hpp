// Zero-copy all_reduce: inputs already live in a shared buffer (one region per
// rank, at `stride` bytes from each other in every rank's mapping), so no rank
// copies its input into a staging slot. Because the caller may overwrite its
// input as soon as the call returns, both end with a trailing acknowledgement:
// a rank returns only once every rank has finished reading its region.
#pragma once

#include <cstddef>

#include "shm/channel.hpp"
#include "tpcomm/tpcomm.hpp"

namespace tpcomm::detail {

struct ZeroCopyArgs {
  std::byte* regions = nullptr;  // rank 0's region in this rank's mapping
  std::size_t stride = 0;        // bytes from one rank's region to the next
  std::size_t offset = 0;        // where the input starts inside each region
  std::byte* recv = nullptr;     // out-of-place: any private buffer; in-place: the input itself
  std::size_t count = 0;
  DataType dtype = DataType::f32;
  ReduceOp op = ReduceOp::sum;
};

// Out-of-place: one round; every rank folds all regions straight into recv.
void zero_copy_one_shot_all_reduce(ShmChannel& channel, const ZeroCopyArgs& args, const CallDescriptor& call);

// In-place: rank r folds block r of every region into block r of its own
// region (only rank r reads block r of any region, so this is safe), then every
// rank copies the other reduced blocks from their owners' regions.
void zero_copy_two_shot_all_reduce(ShmChannel& channel, const ZeroCopyArgs& args, const CallDescriptor& call);

}  // namespace tpcomm::detail
