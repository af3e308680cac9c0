// The pattern maths, exhaustively: chunks and blocks tile the message exactly.
#include <gtest/gtest.h>

#include "algorithms/partition.hpp"

using tpcomm::detail::block_range;
using tpcomm::detail::chunk_count;
using tpcomm::detail::chunk_range;
using tpcomm::detail::Range;

TEST(Partition, ChunksTileTheMessage) {
  for (std::size_t per_chunk : {1u, 2u, 3u, 64u, 1000u}) {
    for (std::size_t count = 0; count < 3000; count += (count < 200 ? 1 : 97)) {
      const std::size_t chunks = chunk_count(count, per_chunk);
      std::size_t next = 0;
      for (std::size_t c = 0; c < chunks; ++c) {
        const Range r = chunk_range(count, per_chunk, c);
        ASSERT_EQ(r.begin, next);
        ASSERT_GT(r.count, 0u);
        ASSERT_LE(r.count, per_chunk);
        next += r.count;
      }
      ASSERT_EQ(next, count) << "count " << count << " per_chunk " << per_chunk;
    }
  }
}

TEST(Partition, BlocksTileTheChunkEvenly) {
  for (std::size_t parts = 1; parts <= 64; ++parts) {
    for (std::size_t count = 0; count < 300; ++count) {
      std::size_t next = 0;
      std::size_t smallest = SIZE_MAX, largest = 0;
      for (std::size_t b = 0; b < parts; ++b) {
        const Range r = block_range(count, parts, b);
        ASSERT_EQ(r.begin, next);
        next += r.count;
        smallest = std::min(smallest, r.count);
        largest = std::max(largest, r.count);
      }
      ASSERT_EQ(next, count);
      ASSERT_LE(largest - smallest, 1u) << "blocks must differ by at most one element";
    }
  }
}
