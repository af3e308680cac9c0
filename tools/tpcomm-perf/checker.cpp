#include "checker.hpp"

#include <algorithm>

#include "reference.hpp"

namespace tpcomm::perf {
namespace {

// Not a value the reference pattern or a zeroed buffer would produce by chance
// in all 64 bytes.
constexpr std::byte guard_value{0xA5};

}  // namespace

void write_guard(std::byte* guard) { std::fill_n(guard, guard_bytes, guard_value); }

std::size_t damaged_guard_bytes(const std::byte* guard) {
  return static_cast<std::size_t>(
      std::count_if(guard, guard + guard_bytes, [](std::byte b) { return b != guard_value; }));
}

Checker::Checker(const Collective& collective, DataType dtype, ReduceOp op, const Participant& me,
                 std::span<const std::size_t> counts)
    : collective_(collective), dtype_(dtype), op_(op), me_(me) {
  std::vector<std::size_t> input_counts(static_cast<std::size_t>(me.world_size), 0);
  std::size_t recv_count = 0;
  for (const std::size_t count : counts) {
    for (int r = 0; r < me.world_size; ++r) {
      std::size_t& largest = input_counts[static_cast<std::size_t>(r)];
      largest = std::max(largest, collective.shape(count, participant(r)).send_count);
    }
    recv_count = std::max(recv_count, collective.shape(count, me).recv_count);
  }
  const std::size_t element = dtype_size(dtype);
  inputs_.reserve(input_counts.size());
  for (const std::size_t input_count : input_counts) inputs_.emplace_back(input_count * element);
  expected_ = AlignedBuffer(recv_count * element);
}

Participant Checker::participant(int rank) const {
  Participant other = me_;
  other.rank = rank;
  return other;
}

std::int64_t Checker::count_wrong(std::size_t count, std::uint64_t seed, const CallView& call) {
  // Regenerate every rank's input rather than trusting any buffer the call touched.
  std::vector<const void*> inputs;
  inputs.reserve(inputs_.size());
  for (int r = 0; r < me_.world_size; ++r) {
    const Shape theirs = collective_.shape(count, participant(r));
    std::byte* input = inputs_[static_cast<std::size_t>(r)].data();
    reference::fill_pattern(dtype_, input, theirs.send_count, r, seed);
    inputs.push_back(input);
  }
  const Shape mine = collective_.shape(count, me_);
  collective_.expect(dtype_, op_, inputs, expected_.data(), mine, me_);

  std::size_t wrong = reference::count_mismatches(dtype_, call.recv, expected_.data(), mine.recv_count);
  if (!call.in_place) {
    const std::byte* own_input = inputs_[static_cast<std::size_t>(me_.rank)].data();
    wrong += reference::count_mismatches(dtype_, call.send, own_input, mine.send_count);
  }
  wrong += damaged_guard_bytes(call.guard);
  return static_cast<std::int64_t>(wrong);
}

}  // namespace tpcomm::perf
