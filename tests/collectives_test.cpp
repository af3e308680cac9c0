// Differential tests for every collective against serial references built
// from regenerated inputs: dtypes, ops, roots other than 0, uneven v counts
// with zeros, in-place and out-of-place, non-power-of-two world sizes, chunking
// past the staging area; plus a randomised sequence of mixed collectives.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "collective_cases.hpp"
#include "multiprocess.hpp"
#include "tpcomm/tpcomm.hpp"

namespace {

using namespace tpcomm::collective_cases;

void run_matrix(int rank, int world, const std::string& job) {
  tpcomm::CommOptions options;
  options.chunk_bytes = kChunkBytes;
  options.timeout = std::chrono::seconds(60);
  auto comm = tpcomm::Communicator::create(rank, world, job, options);
  MatrixScope scope;
  scope.every_root_for_every_kind = true;
  for (Kind kind : kKinds) {
    if (kind == Kind::all_reduce || kind == Kind::barrier) continue;  // covered by all_reduce_test
    scope.kinds.push_back(kind);
  }
  for_each_matrix_spec(world, scope, [&](const Spec& spec) { run_case(comm, spec); });
}

class CollectiveMatrix : public ::testing::TestWithParam<int> {};

TEST_P(CollectiveMatrix, EveryCollectiveMatchesTheSerialReference) {
  const int world = GetParam();
  const std::string job = tpcomm::testing::unique_job_id("coll");
  const auto outcomes = tpcomm::testing::run_ranks(world, [&](int rank) { run_matrix(rank, world, job); }, 900);
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

INSTANTIATE_TEST_SUITE_P(WorldSizes, CollectiveMatrix, ::testing::Values(1, 2, 3, 4, 5, 8),
                         [](const auto& test_info) { return "world" + std::to_string(test_info.param); });

// A few thousand mixed collectives in random order (kind, dtype, size including
// 0, root, in-place or not), agreed through a shared seed, every result checked:
// collectives of different kinds must never disturb one another.
TEST(CollectiveSequence, RandomMixOfThousandsOfCallsOnFourRanks) {
  const std::string job = tpcomm::testing::unique_job_id("mix");
  constexpr int kWorld = 4;
  const auto outcomes = tpcomm::testing::run_ranks(kWorld, [&](int rank) {
    tpcomm::CommOptions options;
    options.chunk_bytes = kChunkBytes;
    auto comm = tpcomm::Communicator::create(rank, kWorld, job, options);
    std::mt19937_64 shared(20261128);  // identical on every rank
    for (int i = 0; i < 3000; ++i) run_case(comm, random_spec(shared, kWorld));
  }, 900);
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

}  // namespace
