#include "mpi/argument_checks.hpp"

#include <algorithm>
#include <cstdint>

#include "core/error.hpp"

namespace tpcomm::detail {

std::string ArgumentChecks::prefix(std::string_view collective) const {
  return "rank " + std::to_string(rank_) + ": " + std::string(collective) + ": ";
}

std::size_t ArgumentChecks::byte_count(std::string_view name, std::size_t count, DataType dtype) const {
  const std::size_t element = dtype_size(dtype);
  if (count > SIZE_MAX / element) {
    fail(ErrorCode::invalid_argument, prefix(name) + "count " + std::to_string(count) + " x " +
                                          std::to_string(element) + " bytes overflows size_t");
  }
  return count * element;
}

std::size_t ArgumentChecks::total_bytes(std::string_view name, std::size_t block_bytes) const {
  if (block_bytes > SIZE_MAX / static_cast<std::size_t>(world_size_)) {
    fail(ErrorCode::invalid_argument, prefix(name) + "world_size x block of " + std::to_string(block_bytes) +
                                          " bytes overflows size_t");
  }
  return block_bytes * static_cast<std::size_t>(world_size_);
}

ArgumentChecks::Layout ArgumentChecks::layout(std::string_view name, std::span<const std::size_t> counts,
                                              std::size_t element) const {
  Layout result;
  for (std::size_t r = 0; r < counts.size(); ++r) {
    if (r == static_cast<std::size_t>(rank_)) result.before_me = result.total;
    if (counts[r] > SIZE_MAX / element - result.total) {
      fail(ErrorCode::invalid_argument, prefix(name) + "counts overflow size_t");
    }
    result.total += counts[r];
  }
  return result;
}

std::size_t ArgumentChecks::extent(std::string_view name, std::span<const std::size_t> counts,
                                   std::span<const std::size_t> displs, std::size_t element,
                                   const char* which) const {
  std::size_t end = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == 0) continue;
    if (displs[i] > SIZE_MAX - counts[i] || displs[i] + counts[i] > SIZE_MAX / element) {
      fail(ErrorCode::invalid_argument, prefix(name) + which + " block " + std::to_string(i) + " overflows size_t");
    }
    end = std::max(end, (displs[i] + counts[i]) * element);
  }
  return end;
}

void ArgumentChecks::check_op(std::string_view name, DataType dtype, ReduceOp op) const {
  (void)redop_name(op);  // throws for an unknown op
  if (op == ReduceOp::avg && !is_floating(dtype)) {
    fail(ErrorCode::invalid_argument, prefix(name) + "op avg is not defined for integer dtype " +
                                          std::string(dtype_name(dtype)) + " (use sum and divide)");
  }
}

void ArgumentChecks::check_root(std::string_view name, int root) const {
  if (root < 0 || root >= world_size_) {
    fail(ErrorCode::invalid_argument, prefix(name) + "root " + std::to_string(root) + " is out of range (0.." +
                                          std::to_string(world_size_ - 1) + ")");
  }
}

void ArgumentChecks::check_peer(std::string_view name, int peer) const {
  if (peer < 0 || peer >= world_size_ || peer == rank_) {
    fail(ErrorCode::invalid_argument, prefix(name) + "peer " + std::to_string(peer) + " is out of range (0.." +
                                          std::to_string(world_size_ - 1) + ", not this rank)");
  }
}

void ArgumentChecks::require_buffer(std::string_view name, const void* p, const char* which) const {
  if (p == nullptr) fail(ErrorCode::invalid_argument, prefix(name) + which + " buffer is null with a non-zero count");
}

void ArgumentChecks::require_rank_array(std::string_view name, std::span<const std::size_t> array,
                                        const char* label) const {
  if (array.size() != static_cast<std::size_t>(world_size_) || array.data() == nullptr) {
    fail(ErrorCode::invalid_argument, prefix(name) + label + " must have world_size (" +
                                          std::to_string(world_size_) + ") entries, got " +
                                          std::to_string(array.size()));
  }
}

void ArgumentChecks::require_same_or_disjoint(std::string_view name, const void* a, std::size_t a_bytes,
                                              const void* b, std::size_t b_bytes) const {
  if (a != b && overlap(a, a_bytes, b, b_bytes)) {
    fail(ErrorCode::invalid_argument, prefix(name) + "send and recv buffers partially overlap (in-place needs "
                                                     "send == recv; out-of-place needs disjoint buffers)");
  }
}

void ArgumentChecks::require_placed_or_disjoint(std::string_view name, const void* part, std::size_t part_bytes,
                                                const void* whole, std::size_t whole_bytes, std::size_t offset,
                                                const char* rule) const {
  if (static_cast<const std::byte*>(part) == static_cast<const std::byte*>(whole) + offset) return;
  if (overlap(part, part_bytes, whole, whole_bytes)) {
    fail(ErrorCode::invalid_argument, prefix(name) + "send and recv buffers overlap but not as the in-place rule (" +
                                          rule + ") requires");
  }
}

bool ArgumentChecks::is_floating(DataType dtype) {
  return dtype == DataType::f32 || dtype == DataType::f64 || dtype == DataType::f16 || dtype == DataType::bf16;
}

bool ArgumentChecks::overlap(const void* a, std::size_t a_bytes, const void* b, std::size_t b_bytes) {
  const auto a0 = reinterpret_cast<std::uintptr_t>(a);
  const auto b0 = reinterpret_cast<std::uintptr_t>(b);
  return a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

}  // namespace tpcomm::detail
