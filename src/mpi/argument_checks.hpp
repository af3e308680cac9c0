// Argument validation of the multi-node communicator, with the rules and the
// messages of the shared-memory one: every check runs before any rank moves
// and throws Error(invalid_argument) naming the rank, the collective and the
// values, leaving the communicator usable.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "tpcomm/tpcomm.hpp"

namespace tpcomm::detail {

class ArgumentChecks {
 public:
  ArgumentChecks(int rank, int world_size) : rank_(rank), world_size_(world_size) {}

  // "rank R: collective: "
  std::string prefix(std::string_view collective) const;

  // count x element size, overflow-checked; throws for an unknown dtype.
  std::size_t byte_count(std::string_view name, std::size_t count, DataType dtype) const;
  // world_size x block_bytes, overflow-checked.
  std::size_t total_bytes(std::string_view name, std::size_t block_bytes) const;
  // Sum of per-rank counts and this rank's offset in elements, overflow-checked.
  struct Layout {
    std::size_t total = 0;
    std::size_t before_me = 0;
  };
  Layout layout(std::string_view name, std::span<const std::size_t> counts, std::size_t element) const;
  // Bytes spanned by blocks (counts[i] elements at displs[i]), overflow-checked.
  std::size_t extent(std::string_view name, std::span<const std::size_t> counts, std::span<const std::size_t> displs,
                     std::size_t element, const char* which) const;

  void check_op(std::string_view name, DataType dtype, ReduceOp op) const;
  void check_root(std::string_view name, int root) const;
  void check_peer(std::string_view name, int peer) const;
  void require_buffer(std::string_view name, const void* p, const char* which) const;
  void require_rank_array(std::string_view name, std::span<const std::size_t> array, const char* label) const;
  // In-place (a == b) or disjoint.
  void require_same_or_disjoint(std::string_view name, const void* a, std::size_t a_bytes, const void* b,
                                std::size_t b_bytes) const;
  // `part` sits exactly at whole + offset (in place) or is disjoint from whole.
  void require_placed_or_disjoint(std::string_view name, const void* part, std::size_t part_bytes,
                                  const void* whole, std::size_t whole_bytes, std::size_t offset,
                                  const char* rule) const;

  static bool is_floating(DataType dtype);
  static bool overlap(const void* a, std::size_t a_bytes, const void* b, std::size_t b_bytes);

 private:
  int rank_;
  int world_size_;
};

}  // namespace tpcomm::detail
