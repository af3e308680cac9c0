// Checks one call of a collective against an independent serial reference.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "aligned_buffer.hpp"
#include "collectives.hpp"

namespace tpcomm::perf {

// Bytes after the recv buffer that a call must leave alone.
inline constexpr std::size_t guard_bytes = 64;

void write_guard(std::byte* guard);
// Number of guard bytes that no longer hold what write_guard() put there.
std::size_t damaged_guard_bytes(const std::byte* guard);

// One call as the caller made it. In place, send and recv point into one buffer.
struct CallView {
  const std::byte* send;
  const std::byte* recv;
  const std::byte* guard;  // written with write_guard() before the call
  bool in_place;
};

class Checker {
 public:
  // Scratch for every rank's input and the expected output, sized for the
  // largest of `counts`.
  Checker(const Collective& collective, DataType dtype, ReduceOp op, const Participant& me,
          std::span<const std::size_t> counts);

  // Wrong values after one call whose inputs were, on every rank r,
  // reference::fill_pattern(dtype, ..., r, seed): recv elements that differ
  // from the reference, send elements an out-of-place call modified, and
  // damaged guard bytes.
  std::int64_t count_wrong(std::size_t count, std::uint64_t seed, const CallView& call);

 private:
  Participant participant(int rank) const;

  const Collective& collective_;
  DataType dtype_;
  ReduceOp op_;
  Participant me_;
  std::vector<AlignedBuffer> inputs_;
  AlignedBuffer expected_;
};

}  // namespace tpcomm::perf
