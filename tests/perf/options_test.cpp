// Unit tests of tpcomm-perf's parts that need no second process: size and
// option parsing, the sweep, the collective table and its serial expectations,
// and the checker (with negative controls that show it does report damage).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "aligned_buffer.hpp"
#include "checker.hpp"
#include "collectives.hpp"
#include "options.hpp"
#include "reference.hpp"

namespace tpcomm::perf {
namespace {

PerfOptions parse(std::initializer_list<std::string_view> args) {
  const std::vector<std::string_view> list(args);
  return parse_options(list);
}

// ---- parse_size ------------------------------------------------------------------
TEST(ParseSize, PlainNumbers) {
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("8"), 8u);
  EXPECT_EQ(parse_size("12345"), 12345u);
}

TEST(ParseSize, SuffixesArePowersOf1024) {
  EXPECT_EQ(parse_size("1K"), 1024u);
  EXPECT_EQ(parse_size("64M"), 64u << 20);
  EXPECT_EQ(parse_size("1G"), std::size_t{1} << 30);
  EXPECT_EQ(parse_size("3k"), 3u * 1024);
  EXPECT_EQ(parse_size("2m"), 2u << 20);
  EXPECT_EQ(parse_size("4g"), std::size_t{4} << 30);
}

TEST(ParseSize, RejectsMalformed) {
  for (const char* bad : {"", "K", "M", "1X", "1KK", "1KB", "-1", "+1", " 1", "1 ", "1.5M", "0x10", "K1"})
    EXPECT_THROW(parse_size(bad), OptionError) << "'" << bad << "'";
}

TEST(ParseSize, RejectsOverflow) {
  const std::string max = std::to_string(std::numeric_limits<std::size_t>::max());
  EXPECT_EQ(parse_size(max), std::numeric_limits<std::size_t>::max());
  EXPECT_THROW(parse_size(max + "0"), OptionError);
  EXPECT_THROW(parse_size(std::to_string(std::numeric_limits<std::size_t>::max() / 1024 + 1) + "K"),
               OptionError);
  EXPECT_THROW(parse_size("17179869184G"), OptionError);  // 2^34 GiB = 2^64 bytes
}

// ---- parse_options ---------------------------------------------------------------
TEST(ParseOptions, Defaults) {
  const PerfOptions o = parse({});
  EXPECT_EQ(o.op, "all_reduce");
  EXPECT_EQ(o.dtype, DataType::f32);
  EXPECT_EQ(o.redop, ReduceOp::sum);
  EXPECT_EQ(o.min_bytes, 8u);
  EXPECT_EQ(o.max_bytes, 64u << 20);
  EXPECT_EQ(o.step_factor, 2u);
  EXPECT_FALSE(o.iters.has_value());
  EXPECT_EQ(o.warmup, 5u);
  EXPECT_TRUE(o.check);
  EXPECT_TRUE(o.json_path.empty());
  EXPECT_TRUE(o.algo.empty());
  EXPECT_EQ(o.root, 0);
  EXPECT_FALSE(o.help);
}

TEST(ParseOptions, EveryOptionSeparateValue) {
  const PerfOptions o = parse({"--op", "barrier", "--dtype", "bf16", "--redop", "max", "-b", "1K", "-e",
                               "2M", "-f", "4", "-n", "7", "-w", "0", "--no-check", "--json", "out.json",
                               "--algo", "two_shot", "-r", "3"});
  EXPECT_EQ(o.op, "barrier");
  EXPECT_EQ(o.dtype, DataType::bf16);
  EXPECT_EQ(o.redop, ReduceOp::max);
  EXPECT_EQ(o.min_bytes, 1024u);
  EXPECT_EQ(o.max_bytes, 2u << 20);
  EXPECT_EQ(o.step_factor, 4u);
  ASSERT_TRUE(o.iters.has_value());
  EXPECT_EQ(*o.iters, 7u);
  EXPECT_EQ(o.warmup, 0u);
  EXPECT_FALSE(o.check);
  EXPECT_EQ(o.json_path, "out.json");
  EXPECT_EQ(o.algo, "two_shot");
  EXPECT_EQ(o.root, 3);
}

TEST(ParseOptions, AttachedValuesAndLongNames) {
  const PerfOptions o = parse({"--min-bytes=16", "--max-bytes=1k", "--step-factor=8", "--iters=auto",
                               "--warmup=3", "--dtype=i64", "--redop=prod", "-n9", "-b32", "--root=63"});
  EXPECT_EQ(o.min_bytes, 32u);  // later options win
  EXPECT_EQ(o.max_bytes, 1024u);
  EXPECT_EQ(o.step_factor, 8u);
  ASSERT_TRUE(o.iters.has_value());
  EXPECT_EQ(*o.iters, 9u);
  EXPECT_EQ(o.warmup, 3u);
  EXPECT_EQ(o.dtype, DataType::i64);
  EXPECT_EQ(o.redop, ReduceOp::prod);
  EXPECT_EQ(o.root, 63);
}

TEST(ParseOptions, CheckToggles) {
  EXPECT_FALSE(parse({"--check", "--no-check"}).check);
  EXPECT_TRUE(parse({"--no-check", "--check"}).check);
}

TEST(ParseOptions, EveryDtypeRedopAndAlgoName) {
  for (const char* name : {"f32", "f64", "f16", "bf16", "i8", "u8", "i32", "i64"})
    EXPECT_EQ(dtype_name(parse({"--dtype", name}).dtype), name);
  for (const char* name : {"sum", "prod", "min", "max", "avg"})
    EXPECT_EQ(redop_name(parse({"--redop", name}).redop), name);
  for (const char* name : {"one_shot", "two_shot", "auto"}) EXPECT_EQ(parse({"--algo", name}).algo, name);
}

TEST(ParseOptions, HelpSkipsValidation) {
  EXPECT_TRUE(parse({"-h"}).help);
  EXPECT_TRUE(parse({"--help", "-b", "2M", "-e", "1M"}).help);
}

TEST(ParseOptions, RejectsBadValues) {
  const std::vector<std::vector<std::string_view>> bad = {
      {"--op", "all_gatherv"},
      {"--root", "64"},
      {"-r", "-1"},
      {"-r", "x"},
      {"--dtype", "f8"},
      {"--redop", "xor"},
      {"--algo", "ring"},
      {"-b", "1Q"},
      {"-e", ""},
      {"-f", "1"},
      {"-f", "0"},
      {"-f", "two"},
      {"-n", "0"},
      {"-n", "-3"},
      {"-w", "x"},
      {"--json", ""},
      {"--json=", "x"},
      {"-b", "0"},
      {"-b", "2M", "-e", "1M"},
      {"--dtype", "i32", "--redop", "avg"},
      {"--dtype", "f64", "-b", "1", "-e", "4"},  // no size reaches one element
      {"--bogus"},
      {"-x"},
      {"positional"},
      {"-b"},
      {"--dtype"},
      {"--no-check=1"},
      {"--help=yes"},
  };
  for (const auto& args : bad) {
    std::string joined;
    for (const auto a : args) joined += std::string(a) + " ";
    EXPECT_THROW(parse_options(args), OptionError) << joined;
  }
}

TEST(ParseOptions, ErrorNamesTheOptionAndChoices) {
  try {
    parse({"--dtype", "f8"});
    FAIL() << "no exception";
  } catch (const OptionError& e) {
    EXPECT_NE(std::string(e.what()).find("--dtype"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bf16"), std::string::npos) << e.what();
  }
}

TEST(ParseOptions, AvgOnIntegersIsFineForBarrier) {
  EXPECT_NO_THROW(parse({"--op", "barrier", "--dtype", "i32", "--redop", "avg"}));
}

// ---- sweep -------------------------------------------------------------------------
TEST(AutoIterations, ClampsToTwentyAndOneThousand) {
  EXPECT_EQ(auto_iterations(0), 1000u);
  EXPECT_EQ(auto_iterations(8), 1000u);
  EXPECT_EQ(auto_iterations(64 * 1024), 1000u);
  EXPECT_EQ(auto_iterations(128 * 1024), 512u);
  EXPECT_EQ(auto_iterations(1 << 20), 64u);
  EXPECT_EQ(auto_iterations(4 << 20), 20u);
  EXPECT_EQ(auto_iterations(std::size_t{1} << 30), 20u);
}

TEST(MessageCounts, DefaultSweep) {
  const auto counts = message_counts(PerfOptions{}, 4);
  ASSERT_EQ(counts.size(), 24u);  // 8 B .. 64 MiB
  EXPECT_EQ(counts.front(), 2u);
  EXPECT_EQ(counts.back(), (64u << 20) / 4);
}

TEST(MessageCounts, RoundsDownAndSkipsSubElementSizes) {
  PerfOptions o;
  o.min_bytes = 1;
  o.max_bytes = 40;
  o.step_factor = 3;  // 1, 3, 9, 27
  EXPECT_EQ(message_counts(o, 8), (std::vector<std::size_t>{1, 3}));
  EXPECT_EQ(message_counts(o, 1), (std::vector<std::size_t>{1, 3, 9, 27}));
}

TEST(MessageCounts, SingleSizeAndNoOverflowNearTheTop) {
  PerfOptions o;
  o.min_bytes = o.max_bytes = 1000;
  EXPECT_EQ(message_counts(o, 2), (std::vector<std::size_t>{500}));
  o.min_bytes = std::numeric_limits<std::size_t>::max() / 2 + 1;
  o.max_bytes = std::numeric_limits<std::size_t>::max();
  EXPECT_EQ(message_counts(o, 1).size(), 1u);
}

// ---- collective table ------------------------------------------------------------
const Collective& collective(std::string_view name) {
  const Collective* found = find_collective(name);
  if (found == nullptr) throw std::invalid_argument("no collective " + std::string(name));
  return *found;
}

void expect_shape(std::string_view name, int rank, const Shape& want) {
  const Shape got = collective(name).shape(100, {.rank = rank, .world_size = 4, .root = 2});
  EXPECT_EQ(got.send_count, want.send_count) << name << " rank " << rank;
  EXPECT_EQ(got.recv_count, want.recv_count) << name << " rank " << rank;
  EXPECT_EQ(got.in_place_send_offset, want.in_place_send_offset) << name << " rank " << rank;
  EXPECT_EQ(got.in_place_recv_offset, want.in_place_recv_offset) << name << " rank " << rank;
}

TEST(Collectives, ShapesFollowNcclTests) {
  // 4 ranks, root 2, 100 elements (blocks of 25); {send, recv, in-place send offset, recv offset}.
  expect_shape("all_reduce", 1, {100, 100, 0, 0});
  expect_shape("reduce_scatter", 1, {100, 25, 0, 25});
  expect_shape("all_gather", 3, {25, 100, 75, 0});
  expect_shape("broadcast", 1, {0, 100, 0, 0});
  expect_shape("broadcast", 2, {100, 100, 0, 0});
  expect_shape("reduce", 1, {100, 0, 0, 0});
  expect_shape("reduce", 2, {100, 100, 0, 0});
  expect_shape("gather", 1, {25, 0, 0, 0});
  expect_shape("gather", 2, {25, 100, 50, 0});
  expect_shape("scatter", 1, {0, 25, 0, 0});
  expect_shape("scatter", 2, {100, 25, 0, 50});
  expect_shape("all_to_all", 1, {100, 100, 0, 0});
  expect_shape("barrier", 0, {0, 0, 0, 0});
  EXPECT_EQ(Shape(25, 100, 75, 0).in_place_extent(), 100u);
  EXPECT_EQ(Shape(100, 25, 0, 50).in_place_extent(), 100u);
}

TEST(Collectives, UsableCountsAndBusFactors) {
  for (const char* name : {"reduce_scatter", "all_gather", "gather", "scatter", "all_to_all"}) {
    EXPECT_EQ(collective(name).usable_count(10, 4), 8u) << name;
    EXPECT_EQ(collective(name).usable_count(3, 4), 0u) << name;
    EXPECT_DOUBLE_EQ(collective(name).bus_factor(4), 0.75) << name;
  }
  for (const char* name : {"all_reduce", "broadcast", "reduce"})
    EXPECT_EQ(collective(name).usable_count(10, 4), 10u) << name;
  EXPECT_DOUBLE_EQ(collective("all_reduce").bus_factor(1), 0.0);
  EXPECT_DOUBLE_EQ(collective("all_reduce").bus_factor(2), 1.0);
  EXPECT_DOUBLE_EQ(collective("all_reduce").bus_factor(8), 1.75);
  EXPECT_DOUBLE_EQ(collective("broadcast").bus_factor(8), 1.0);
  EXPECT_DOUBLE_EQ(collective("reduce").bus_factor(8), 1.0);
  EXPECT_FALSE(collective("barrier").has_payload);
  EXPECT_EQ(find_collective("nope"), nullptr);
  for (const Collective& c : collectives()) EXPECT_EQ(find_collective(c.name), &c);
}

// Expected outputs on hand-made inputs: 2 ranks, 4 elements (blocks of 2), root 0,
// i32 sum. Rank 0 holds 1 2 3 4 and rank 1 holds 10 20 30 40 (the first
// send_count elements of those, for the collectives that send a block).
std::vector<std::int32_t> expected_by_hand(std::string_view name, int rank) {
  const Participant me{.rank = rank, .world_size = 2, .root = 0};
  const std::vector<std::int32_t> rank0{1, 2, 3, 4};
  const std::vector<std::int32_t> rank1{10, 20, 30, 40};
  const Shape shape = collective(name).shape(4, me);
  std::vector<std::int32_t> out(shape.recv_count, -1);
  collective(name).expect(DataType::i32, ReduceOp::sum, {rank0.data(), rank1.data()}, out.data(), shape, me);
  return out;
}

TEST(Collectives, ExpectationsOnHandMadeInputs) {
  using V = std::vector<std::int32_t>;
  EXPECT_EQ(expected_by_hand("all_reduce", 1), (V{11, 22, 33, 44}));
  EXPECT_EQ(expected_by_hand("reduce_scatter", 0), (V{11, 22}));
  EXPECT_EQ(expected_by_hand("reduce_scatter", 1), (V{33, 44}));
  EXPECT_EQ(expected_by_hand("all_gather", 1), (V{1, 2, 10, 20}));
  EXPECT_EQ(expected_by_hand("broadcast", 1), (V{1, 2, 3, 4}));
  EXPECT_EQ(expected_by_hand("reduce", 0), (V{11, 22, 33, 44}));
  EXPECT_EQ(expected_by_hand("reduce", 1), V{});
  EXPECT_EQ(expected_by_hand("gather", 0), (V{1, 2, 10, 20}));
  EXPECT_EQ(expected_by_hand("gather", 1), V{});
  EXPECT_EQ(expected_by_hand("scatter", 0), (V{1, 2}));
  EXPECT_EQ(expected_by_hand("scatter", 1), (V{3, 4}));
  EXPECT_EQ(expected_by_hand("all_to_all", 0), (V{1, 2, 10, 20}));
  EXPECT_EQ(expected_by_hand("all_to_all", 1), (V{3, 4, 30, 40}));
}

// ---- checker -----------------------------------------------------------------------
// A call of `name` whose result is exactly what the serial reference expects;
// each test damages it to see that the checker notices.
struct CheckedCall {
  static constexpr int world_size = 3;
  static constexpr std::uint64_t seed = 42;
  static constexpr std::size_t count = 999;  // a multiple of world_size
  const Collective& coll;
  DataType dtype;
  ReduceOp op;
  bool in_place;
  Participant me;
  Shape shape = coll.shape(count, me);
  std::size_t element = dtype_size(dtype);
  AlignedBuffer send{shape.send_count * element};
  AlignedBuffer recv{std::max(shape.recv_count, shape.in_place_extent()) * element + guard_bytes};

  CheckedCall(std::string_view name, DataType dt, ReduceOp o, bool inplace = false, int rank = 1)
      : coll(collective(name)), dtype(dt), op(o), in_place(inplace), me{rank, world_size, 0} {
    std::vector<AlignedBuffer> inputs;
    std::vector<const void*> pointers;
    for (int r = 0; r < world_size; ++r) {
      inputs.emplace_back(coll.shape(count, {r, world_size, 0}).send_count * element);
      reference::fill_pattern(dtype, inputs.back().data(), inputs.back().size() / element, r, seed);
      pointers.push_back(inputs.back().data());
    }
    std::memcpy(send_pointer(), inputs[static_cast<std::size_t>(rank)].data(), shape.send_count * element);
    coll.expect(dtype, op, pointers, recv_pointer(), shape, me);
    write_guard(guard());
  }

  std::byte* send_pointer() {
    return in_place ? recv.data() + shape.in_place_send_offset * element : send.data();
  }
  std::byte* recv_pointer() { return recv.data() + (in_place ? shape.in_place_recv_offset * element : 0); }
  std::byte* guard() {
    return recv.data() + (in_place ? shape.in_place_extent() : shape.recv_count) * element;
  }

  std::int64_t wrong() {
    const std::vector<std::size_t> counts{count};
    Checker checker(coll, dtype, op, me, counts);
    return checker.count_wrong(count, seed,
                               {.send = send_pointer(), .recv = recv_pointer(), .guard = guard(), .in_place = in_place});
  }
};

TEST(Checker, AcceptsCorrectResultForEveryDtypeAndOp) {
  for (const DataType dt : {DataType::f32, DataType::f64, DataType::f16, DataType::bf16, DataType::i8,
                            DataType::u8, DataType::i32, DataType::i64})
    for (const ReduceOp op : {ReduceOp::sum, ReduceOp::prod, ReduceOp::min, ReduceOp::max, ReduceOp::avg}) {
      if (op == ReduceOp::avg && !reference::is_float(dt)) continue;
      CheckedCall call("all_reduce", dt, op);
      EXPECT_EQ(call.wrong(), 0) << dtype_name(dt) << " " << redop_name(op);
    }
}

TEST(Checker, AcceptsCorrectResultForEveryCollectiveRankAndMode) {
  for (const Collective& c : collectives()) {
    if (!c.has_payload) continue;
    for (int rank = 0; rank < CheckedCall::world_size; ++rank)
      for (const bool in_place : {false, true}) {
        CheckedCall call(c.name, DataType::bf16, ReduceOp::sum, in_place, rank);
        EXPECT_EQ(call.wrong(), 0) << c.name << " rank " << rank << (in_place ? " in place" : "");
      }
  }
}

TEST(Checker, CountsWrongElements) {
  CheckedCall call("all_reduce", DataType::f32, ReduceOp::sum);
  auto* out = reinterpret_cast<float*>(call.recv_pointer());
  out[0] += 1;
  out[998] += 0.5f;
  EXPECT_EQ(call.wrong(), 2);
}

TEST(Checker, CountsWrongElementsOfABlockInPlace) {
  CheckedCall call("reduce_scatter", DataType::i64, ReduceOp::max, /*in_place=*/true);
  auto* out = reinterpret_cast<std::int64_t*>(call.recv_pointer());
  out[0] = 1 << 30;
  EXPECT_EQ(call.wrong(), 1);
}

TEST(Checker, CountsAResultFromTheWrongSeed) {
  CheckedCall call("all_reduce", DataType::i32, ReduceOp::sum);
  reference::fill_pattern(DataType::i32, call.recv_pointer(), CheckedCall::count, 0, CheckedCall::seed + 1);
  EXPECT_GT(call.wrong(), 900);
}

TEST(Checker, CountsModifiedSendOnlyOutOfPlace) {
  CheckedCall out_of_place("all_gather", DataType::bf16, ReduceOp::sum);
  std::memset(out_of_place.send_pointer() + 10, 0x7f, 4);  // two bf16 elements
  EXPECT_EQ(out_of_place.wrong(), 2);

  // In place the input may be overwritten (all_reduce) and is not checked.
  CheckedCall in_place("all_reduce", DataType::bf16, ReduceOp::sum, /*in_place=*/true);
  EXPECT_EQ(in_place.wrong(), 0);
}

TEST(Checker, CountsDamagedGuardBytes) {
  for (const bool in_place : {false, true}) {
    CheckedCall call("scatter", DataType::u8, ReduceOp::max, in_place, /*rank=*/0);
    std::byte* guard = call.guard();
    guard[0] = std::byte{0};
    guard[guard_bytes - 1] = std::byte{1};
    EXPECT_EQ(call.wrong(), 2);
    EXPECT_EQ(damaged_guard_bytes(guard), 2u);
    write_guard(guard);
    EXPECT_EQ(damaged_guard_bytes(guard), 0u);
  }
}

TEST(AlignedBuffer, PageAlignedAndZeroed) {
  const AlignedBuffer buffer(5000);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(buffer.data()) % AlignedBuffer::alignment, 0u);
  EXPECT_EQ(buffer.size(), 5000u);
  for (std::size_t i = 0; i < buffer.size(); ++i) ASSERT_EQ(buffer.data()[i], std::byte{0});
}

}  // namespace
}  // namespace tpcomm::perf
