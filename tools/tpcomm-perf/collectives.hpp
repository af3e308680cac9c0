// The table of collectives tpcomm-perf can measure. Adding a collective means
// adding one row: how many elements of a message it can move, how its buffers
// are laid out, how to call it, how to compute its expected output serially,
// and its nccl-tests bus-bandwidth factor.
//
// Sizes follow nccl-tests: a row's bytes are the larger of the send and recv
// buffers (the whole world_size x block buffer for the block collectives), and
// algbw = bytes / time, busbw = algbw x bus_factor(world_size).
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include "tpcomm/tpcomm.hpp"

namespace tpcomm::perf {

// The calling rank, as far as a buffer layout depends on it.
struct Participant {
  int rank = 0;
  int world_size = 1;
  int root = 0;  // for the rooted collectives
};

// Buffer layout of one call, in elements.
struct Shape {
  std::size_t send_count = 0;
  std::size_t recv_count = 0;
  // In place, one buffer holds both: the input starts in_place_send_offset and
  // the output in_place_recv_offset elements from its start (nccl-tests'
  // in-place offsets: all_gather's input is this rank's block of the output,
  // reduce_scatter's output is this rank's block of the input).
  std::size_t in_place_send_offset = 0;
  std::size_t in_place_recv_offset = 0;

  std::size_t in_place_extent() const {
    return std::max(in_place_send_offset + send_count, in_place_recv_offset + recv_count);
  }
};

struct Collective {
  std::string_view name;
  // False for collectives without data (barrier): only time is reported.
  bool has_payload;
  // Whether --redop applies.
  bool reduces;
  // Whether --root applies.
  bool rooted;
  // Whether an in-place form exists (sendrecv has none: it sends and receives
  // at once, so its buffers must be distinct).
  bool in_place = true;
  double (*bus_factor)(int world_size);
  // Largest message of at most `count` elements the collective can move (a
  // multiple of world_size for the block collectives); 0 if none.
  std::size_t (*usable_count)(std::size_t count, int world_size);
  // Layout for a message of `count` (usable) elements as seen by `me`.
  Shape (*shape)(std::size_t count, const Participant& me);
  void (*run)(Communicator& comm, const void* send, void* recv, const Shape& shape, DataType dtype,
              ReduceOp op, const Participant& me);
  // Serial expected recv buffer of `me`, given every rank's input (inputs[r]
  // holds the send_count elements of rank r's shape).
  void (*expect)(DataType dtype, ReduceOp op, const std::vector<const void*>& inputs, void* out,
                 const Shape& shape, const Participant& me);
  // Algorithm the library picks for a message of this many bytes ("-" if none).
  std::string_view (*algorithm)(const Communicator& comm, std::size_t bytes, DataType dtype);
};

std::span<const Collective> collectives();

// nullptr if no collective has this name.
const Collective* find_collective(std::string_view name);

}  // namespace tpcomm::perf
