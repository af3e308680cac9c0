// Pure pattern arithmetic: how a message is cut into chunks (one per staging
// round) and how a chunk is cut into per-rank blocks. No shared memory here, so
// it is tested exhaustively on its own (tests/partition_test.cpp).
#pragma once

#include <algorithm>
#include <cstddef>

namespace tpcomm::detail {

struct Range {
  std::size_t begin = 0;  // first element
  std::size_t count = 0;  // number of elements
};

// Elements per chunk: as many whole elements as fit in one staging slot.
constexpr std::size_t elements_per_chunk(std::size_t slot_bytes, std::size_t element_size) {
  return slot_bytes / element_size;
}

constexpr std::size_t chunk_count(std::size_t count, std::size_t per_chunk) {
  return count == 0 ? 0 : (count + per_chunk - 1) / per_chunk;
}

// Chunk c of a message of `count` elements.
constexpr Range chunk_range(std::size_t count, std::size_t per_chunk, std::size_t c) {
  const std::size_t begin = c * per_chunk;
  return {begin, std::min(per_chunk, count - begin)};
}

// Block b of `count` elements split over `parts` owners as evenly as possible:
// the first (count % parts) blocks get one element more. Blocks tile [0, count).
constexpr Range block_range(std::size_t count, std::size_t parts, std::size_t b) {
  const std::size_t base = count / parts;
  const std::size_t extra = count % parts;
  const std::size_t begin = b * base + std::min(b, extra);
  return {begin, base + (b < extra ? 1 : 0)};
}

}  // namespace tpcomm::detail
