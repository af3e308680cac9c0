// A rank killed with SIGKILL at any moment: every survivor's current or next
// call fails within 5 s with an error naming the dead rank, later calls fail
// fast, and the job leaves nothing in /dev/shm. World sizes 2, 4 and 8 (8 is
// oversubscribed on a small machine). Detection times are printed per phase.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <string>
#include <tuple>

#include "kill_scenarios.hpp"

namespace {

using namespace tpcomm::robustness;
using tpcomm::ErrorCode;

constexpr double kDetectionBound = 5.0;  // the product's promise

std::uint64_t fresh_seed() {
  std::random_device device;
  return (static_cast<std::uint64_t>(device()) << 32) | device();
}

// The message names the dead rank the way the library reports a death (or,
// for a rank that never attached, an absence).
bool names_dead_rank(const std::string& message, int victim, KillPhase phase) {
  const std::string rank = "rank " + std::to_string(victim) + " (pid ";
  if (message.find(rank) != std::string::npos && message.find("died") != std::string::npos) return true;
  if (is_rendezvous(phase)) {
    const std::size_t at = message.find("never arrived: ");
    if (at != std::string::npos) {
      // "ranks that never arrived: 1, 3"
      std::string list = message.substr(at + 15) + ",";
      return (", " + list).find(", " + std::to_string(victim) + ",") != std::string::npos;
    }
  }
  return false;
}

bool acceptable_code(ErrorCode code, KillPhase phase) {
  if (code == ErrorCode::peer_dead) return true;
  return is_rendezvous(phase) && (code == ErrorCode::timeout || code == ErrorCode::comm_failed);
}

void expect_survivors_detect(const KillScenario& scenario, const KillResult& result) {
  const std::string context = std::string(phase_name(scenario.phase)) + " world " + std::to_string(scenario.world) +
                              " victim " + std::to_string(result.victim) + " seed " +
                              std::to_string(scenario.seed) + ": ";
  ASSERT_TRUE(result.setup_problem.empty()) << context << result.setup_problem;
  EXPECT_TRUE(result.ranks_ended_in_time) << context << "a survivor hung: " << result.processes;
  std::string times;
  for (const SurvivorView& s : result.survivors) {
    const std::string who = context + "survivor rank " + std::to_string(s.rank) + ": ";
    ASSERT_EQ(s.outcome, tpcomm::robustness::RankReport::failed)
        << who << (s.outcome == RankReport::succeeded ? "no error at all" : "never returned") << "; "
        << result.processes;
    EXPECT_TRUE(acceptable_code(s.code, scenario.phase)) << who << code_name(s.code) << ": " << s.message;
    EXPECT_TRUE(names_dead_rank(s.message, result.victim, scenario.phase)) << who << s.message;
    EXPECT_LT(s.detection_seconds, kDetectionBound) << who << s.message;
    // A failed communicator stays failed, fast, and still says why.
    if (s.later_call_seconds >= 0) {
      EXPECT_EQ(s.later_code, ErrorCode::comm_failed) << who << s.later_message;
      EXPECT_TRUE(names_dead_rank(s.later_message, result.victim, scenario.phase)) << who << s.later_message;
      EXPECT_LT(s.later_call_seconds, 1.0) << who << "the call after the failure waited";
    }
    char text[64];
    std::snprintf(text, sizeof(text), " r%d=%.3f", s.rank, s.detection_seconds);
    times += text;
  }
  std::printf("[detection] phase=%s world=%d victim=%d kill_after=%.3fs max=%.3fs per-rank:%s\n",
              phase_name(scenario.phase), scenario.world, result.victim, result.kill_delay_seconds,
              result.max_detection(), times.c_str());
  std::fflush(stdout);
}

class DeadRank : public ::testing::TestWithParam<std::tuple<KillPhase, int>> {};

TEST_P(DeadRank, EverySurvivorFailsWithinFiveSecondsNamingIt) {
  const auto [phase, world] = GetParam();
  const KillScenario scenario{phase, world, false, fresh_seed()};
  const KillResult result = run_kill_scenario(scenario);
  expect_survivors_detect(scenario, result);
}

std::string param_name(const ::testing::TestParamInfo<std::tuple<KillPhase, int>>& info) {
  return std::string(phase_name(std::get<0>(info.param))) + "_world" + std::to_string(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(Phases, DeadRank,
                         ::testing::Combine(::testing::Values(KillPhase::rendezvous_creator_alone,
                                                              KillPhase::rendezvous_joiner,
                                                              KillPhase::rendezvous_unattached,
                                                              KillPhase::in_collective, KillPhase::between),
                                            ::testing::Values(2, 4, 8)),
                         param_name);
// With two ranks the creator cannot have company in the rendezvous.
INSTANTIATE_TEST_SUITE_P(PhasesWithCompany, DeadRank,
                         ::testing::Combine(::testing::Values(KillPhase::rendezvous_creator), ::testing::Values(4, 8)),
                         param_name);

// The same with another job starting on the machine between the creator's
// death and the arrival of the others: the start-up sweep of stale segments
// must not take this job's segment away (the others would then make a new one
// and wait for the dead rank until their deadline).
class DeadRankWhileAnotherJobStarts : public ::testing::TestWithParam<int> {};

TEST_P(DeadRankWhileAnotherJobStarts, EverySurvivorFailsWithinFiveSecondsNamingIt) {
  KillScenario scenario{KillPhase::rendezvous_creator_alone, GetParam(), false, fresh_seed()};
  scenario.another_job_starts = true;
  const KillResult result = run_kill_scenario(scenario);
  expect_survivors_detect(scenario, result);
}

INSTANTIATE_TEST_SUITE_P(CreatorAlone, DeadRankWhileAnotherJobStarts, ::testing::Values(2, 4),
                         [](const auto& p) { return "world" + std::to_string(p.param); });

// After SIGKILL of one rank at any phase, the survivors' failure path leaves
// no segment of the job in /dev/shm (without any launcher to clean up).
class SegmentAfterKill : public ::testing::TestWithParam<KillPhase> {};

TEST_P(SegmentAfterKill, NoSegmentRemainsWhenOneRankIsKilled) {
  const KillScenario scenario{GetParam(), 3, false, fresh_seed()};
  const KillResult result = run_kill_scenario(scenario);
  ASSERT_TRUE(result.setup_problem.empty()) << result.setup_problem;
  EXPECT_TRUE(result.ranks_ended_in_time) << result.processes;
  EXPECT_TRUE(result.leftover_segments.empty())
      << phase_name(scenario.phase) << ", victim " << result.victim << " (seed " << scenario.seed
      << "): left in /dev/shm: " << join(result.leftover_segments);
  for (const auto& name : result.leftover_segments) ::unlink(("/dev/shm/" + name).c_str());
}

INSTANTIATE_TEST_SUITE_P(Phases, SegmentAfterKill,
                         ::testing::Values(KillPhase::rendezvous_creator, KillPhase::rendezvous_creator_alone,
                                           KillPhase::rendezvous_joiner, KillPhase::rendezvous_unattached,
                                           KillPhase::in_collective, KillPhase::between),
                         [](const auto& p) { return std::string(phase_name(p.param)); });

// When every rank dies after the rendezvous, the name was already unlinked:
// nothing remains. (All ranks dying during the rendezvous leaves the segment
// to the launcher: see launcher_crash_test.)
class SegmentAfterKillingAll : public ::testing::TestWithParam<KillPhase> {};

TEST_P(SegmentAfterKillingAll, NoSegmentRemainsWhenEveryRankIsKilled) {
  const KillScenario scenario{GetParam(), 3, true, fresh_seed()};
  const KillResult result = run_kill_scenario(scenario);
  ASSERT_TRUE(result.setup_problem.empty()) << result.setup_problem;
  EXPECT_TRUE(result.leftover_segments.empty())
      << phase_name(scenario.phase) << ": left in /dev/shm: " << join(result.leftover_segments);
  for (const auto& name : result.leftover_segments) ::unlink(("/dev/shm/" + name).c_str());
}

INSTANTIATE_TEST_SUITE_P(Phases, SegmentAfterKillingAll,
                         ::testing::Values(KillPhase::in_collective, KillPhase::between),
                         [](const auto& p) { return std::string(phase_name(p.param)); });

}  // namespace
