// Sub-communicators: 2-D tensor x pipeline layouts made by split, groups
// running at once and alternating, reversed keys, nested splits, the undefined
// color, destroying a group while its siblings work, and new_group.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "multiprocess.hpp"
#include "reference.hpp"
#include "tpcomm/tpcomm.hpp"

namespace {

using tpcomm::DataType;
using tpcomm::ReduceOp;
using tpcomm::testing::check;
namespace ref = tpcomm::reference;

// all_reduce on `group` of f32 patterns keyed by parent rank, checked against
// the serial fold over the members' inputs in group order.
void check_all_reduce(tpcomm::Communicator& group, const std::vector<int>& members_by_group_rank,
                      std::uint64_t seed, std::size_t count, const std::string& what) {
  const int parent_rank = members_by_group_rank[static_cast<std::size_t>(group.rank())];
  std::vector<float> x(count), y(count), expected(count);
  ref::fill_pattern(DataType::f32, x.data(), count, parent_rank, seed);
  group.all_reduce(x.data(), y.data(), count, DataType::f32, ReduceOp::sum);
  std::vector<std::vector<float>> inputs;
  std::vector<const void*> pointers;
  for (int member : members_by_group_rank) {
    inputs.emplace_back(count);
    ref::fill_pattern(DataType::f32, inputs.back().data(), count, member, seed);
  }
  for (auto& in : inputs) pointers.push_back(in.data());
  ref::reduce(DataType::f32, ReduceOp::sum, pointers, expected.data(), count);
  check(ref::count_mismatches(DataType::f32, y.data(), expected.data(), count) == 0, what + ": wrong all_reduce");
}

// all_gather and broadcast inside a group, checked against patterns keyed by
// parent rank (the group's members in group order).
void check_gather_and_broadcast(tpcomm::Communicator& group, const std::vector<int>& members, std::uint64_t seed,
                                std::size_t count, const std::string& what) {
  const auto n = static_cast<std::size_t>(group.world_size());
  const int parent_rank = members[static_cast<std::size_t>(group.rank())];
  std::vector<std::int32_t> mine(count), all(n * count), expected(count);
  ref::fill_pattern(DataType::i32, mine.data(), count, parent_rank, seed);
  group.all_gather(mine.data(), all.data(), count, DataType::i32);
  for (std::size_t r = 0; r < n; ++r) {
    ref::fill_pattern(DataType::i32, expected.data(), count, members[r], seed);
    check(std::equal(expected.begin(), expected.end(), all.begin() + static_cast<long>(r * count)),
          what + ": all_gather block " + std::to_string(r));
  }
  const int root = static_cast<int>(n) - 1;
  std::vector<std::int32_t> value(count);
  if (group.rank() == root) value = mine;
  group.broadcast(value.data(), value.data(), count, DataType::i32, root);
  ref::fill_pattern(DataType::i32, expected.data(), count, members[static_cast<std::size_t>(root)], seed);
  check(value == expected, what + ": broadcast");
}

// TP x PP layout of `world` ranks: tensor groups of `tp` consecutive ranks,
// pipeline groups of ranks with the same position in their tensor group.
void layout_test(int world, int tp) {
  const std::string job = tpcomm::testing::unique_job_id("split");
  const auto outcomes = tpcomm::testing::run_ranks(world, [&](int rank) {
    tpcomm::CommOptions options;
    options.chunk_bytes = 4096;
    auto world_comm = tpcomm::Communicator::create(rank, world, job, options);
    auto tp_group = world_comm.split(rank / tp, rank);
    auto pp_group = world_comm.split(rank % tp, rank);
    check(tp_group && pp_group, "both groups must exist");
    check(tp_group->world_size() == tp && tp_group->rank() == rank % tp, "tensor group placement");
    check(pp_group->world_size() == world / tp && pp_group->rank() == rank / tp, "pipeline group placement");
    std::vector<int> tp_members(static_cast<std::size_t>(tp)), pp_members(static_cast<std::size_t>(world / tp));
    for (int i = 0; i < tp; ++i) tp_members[static_cast<std::size_t>(i)] = (rank / tp) * tp + i;
    for (int i = 0; i < world / tp; ++i) pp_members[static_cast<std::size_t>(i)] = i * tp + rank % tp;
    // All tensor groups at once (they are disjoint), then all pipeline groups,
    // then alternating, with sizes that cross the staging chunk.
    for (int i = 0; i < 20; ++i) check_all_reduce(*tp_group, tp_members, 100 + i, 3000, "tensor group");
    for (int i = 0; i < 20; ++i) check_all_reduce(*pp_group, pp_members, 200 + i, 3000, "pipeline group");
    for (int i = 0; i < 5; ++i) {
      check_gather_and_broadcast(*tp_group, tp_members, 600 + i, 1500, "tensor group");
      check_gather_and_broadcast(*pp_group, pp_members, 700 + i, 1500, "pipeline group");
    }
    for (int i = 0; i < 50; ++i) {
      check_all_reduce(*tp_group, tp_members, 300 + i, 1 + static_cast<std::size_t>(i) * 41, "alternating tp");
      check_all_reduce(*pp_group, pp_members, 400 + i, 1 + static_cast<std::size_t>(i) * 29, "alternating pp");
      if (i % 10 == 0) check_all_reduce(world_comm, [&] {
          std::vector<int> all(static_cast<std::size_t>(world));
          std::iota(all.begin(), all.end(), 0);
          return all;
        }(), 500 + i, 100, "parent between groups");
    }
  });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

TEST(Split, TensorByPipelineLayouts) {
  layout_test(4, 2);  // TP 2 x PP 2
  layout_test(6, 3);  // TP 3 x PP 2
  layout_test(6, 2);  // TP 2 x PP 3
  layout_test(8, 4);  // TP 4 x PP 2
  layout_test(8, 2);  // TP 2 x PP 4
}

TEST(Split, KeysOrderRanksUndefinedColorNestingAndDestroy) {
  const std::string job = tpcomm::testing::unique_job_id("split2");
  constexpr int kWorld = 6;
  const auto outcomes = tpcomm::testing::run_ranks(kWorld, [&](int rank) {
    auto world_comm = tpcomm::Communicator::create(rank, kWorld, job);
    // Reversed keys: new rank = world - 1 - rank.
    auto reversed = world_comm.split(0, -rank);
    check(reversed && reversed->rank() == kWorld - 1 - rank, "keys must order ranks");
    std::vector<int> reversed_members{5, 4, 3, 2, 1, 0};
    check_all_reduce(*reversed, reversed_members, 1, 777, "reversed group");
    // Equal keys fall back to parent order.
    auto tied = world_comm.split(rank % 2, 7);
    check(tied && tied->rank() == rank / 2, "equal keys keep parent order");
    // Undefined color: rank 5 opts out.
    auto most = world_comm.split(rank == 5 ? tpcomm::kUndefinedColor : 0, 0);
    check(rank == 5 ? !most.has_value() : (most && most->world_size() == 5), "undefined color");
    if (most) {
      // Nested: split the 5-rank group into {0,2,4} and {1,3}.
      auto nested = most->split(most->rank() % 2, 0);
      check(nested && nested->world_size() == (most->rank() % 2 == 0 ? 3 : 2), "nested split size");
      std::vector<int> members = most->rank() % 2 == 0 ? std::vector<int>{0, 2, 4} : std::vector<int>{1, 3};
      check_all_reduce(*nested, members, 2, 5000, "nested group");
    }
    // Destroy one sibling group (odd ranks) while the even group keeps working.
    {
      auto doomed = world_comm.split(rank % 2, 0);
      if (rank % 2 == 1) {
        doomed.reset();
      } else {
        for (int i = 0; i < 10; ++i) check_all_reduce(*doomed, {0, 2, 4}, 30 + i, 999, "sibling of destroyed");
      }
    }
    check_all_reduce(world_comm, {0, 1, 2, 3, 4, 5}, 3, 4321, "parent after destroy");
    // new_group with a non-contiguous list, in the list's order.
    const int listed[] = {4, 1, 3};
    auto group = world_comm.new_group(listed);
    if (rank == 4 || rank == 1 || rank == 3) {
      check(group && group->world_size() == 3, "new_group membership");
      check(group->rank() == (rank == 4 ? 0 : rank == 1 ? 1 : 2), "new_group order");
      check_all_reduce(*group, {4, 1, 3}, 4, 2048, "new_group");
    } else {
      check(!group.has_value(), "unlisted ranks get no group");
    }
    // A group inherits the parent's current timeout (set_timeout included).
    world_comm.set_timeout(std::chrono::seconds(42));
    auto inherits = world_comm.split(0, 0);
    check(inherits && inherits->timeout() == std::chrono::duration<double>(42), "child timeout");
    // A bad color is a clear error, caught before any rank moves.
    try {
      world_comm.split(-7, 0);
      check(false, "negative color must be rejected");
    } catch (const tpcomm::Error& error) {
      check(error.code() == tpcomm::ErrorCode::invalid_argument, "bad color code");
    }
    world_comm.barrier();
  });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

TEST(Split, NewGroupWithDifferentListsIsAMismatchOnEveryRank) {
  const std::string job = tpcomm::testing::unique_job_id("split3");
  const auto outcomes = tpcomm::testing::run_ranks(3, [&](int rank) {
    auto comm = tpcomm::Communicator::create(rank, 3, job);
    const std::vector<int> list = rank == 0 ? std::vector<int>{0, 1} : std::vector<int>{0, 2};
    try {
      comm.new_group(list);
    } catch (const tpcomm::Error& error) {
      check(error.code() == tpcomm::ErrorCode::mismatch, std::string("expected mismatch: ") + error.what());
      return;
    }
    check(false, "different lists must be detected");
  });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

TEST(Split, CApiSplitAndNewGroup) {
  const std::string job = tpcomm::testing::unique_job_id("split4");
  const auto outcomes = tpcomm::testing::run_ranks(4, [&](int rank) {
    tpcomm_comm_t comm = nullptr, half = nullptr, group = nullptr;
    check(tpcomm_comm_create(rank, 4, job.c_str(), nullptr, &comm) == TPCOMM_SUCCESS, tpcomm_last_error());
    check(tpcomm_comm_split(comm, rank / 2, 0, &half) == TPCOMM_SUCCESS && half != nullptr, tpcomm_last_error());
    int value = rank, sum = 0;
    check(tpcomm_all_reduce(half, &value, &sum, 1, TPCOMM_I32, TPCOMM_SUM) == TPCOMM_SUCCESS, tpcomm_last_error());
    check(sum == (rank < 2 ? 1 : 5), "C split sum");
    const int listed[] = {3, 0};
    check(tpcomm_comm_new_group(comm, listed, 2, &group) == TPCOMM_SUCCESS, tpcomm_last_error());
    check((group != nullptr) == (rank == 0 || rank == 3), "C new_group membership");
    check(tpcomm_comm_split(comm, 0, 0, nullptr) == TPCOMM_ERROR_INVALID_ARGUMENT, "NULL out must be rejected");
    tpcomm_comm_destroy(group);
    tpcomm_comm_destroy(half);
    tpcomm_comm_destroy(comm);
  });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

}  // namespace
