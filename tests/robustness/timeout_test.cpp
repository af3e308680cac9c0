// A rank that stops calling: the others fail at the deadline (CommOptions::
// timeout, TPCOMM_TIMEOUT or set_timeout) with an error naming the late rank,
// later calls fail fast with the same error, and destroying the communicator
// gives back every descriptor, mapping and /dev/shm entry.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "robustness.hpp"
#include "tpcomm/tpcomm.h"

namespace {

using namespace tpcomm::robustness;

constexpr int kWorld = 3;
constexpr int kLate = 2;
constexpr double kTimeout = 1.5;

// What a process holds that a communicator could leak.
struct Holdings {
  int fds = 0;
  int mappings = 0;
  std::size_t segments = 0;
  static Holdings now(const std::string& job) {
    return {open_fd_count(), segment_mapping_count(), segments_of(job).size()};
  }
  std::string describe() const {
    return std::to_string(fds) + " fds, " + std::to_string(mappings) + " segment mappings, " +
           std::to_string(segments) + " /dev/shm segments";
  }
  // Throws unless the process holds again what it held at `before` and no
  // segment of the job is left; `what` starts the message.
  static void check_released(const Holdings& before, const std::string& job, const std::string& what) {
    const Holdings after = now(job);
    check(after.fds == before.fds && after.mappings == before.mappings && after.segments == 0,
          what + ": before " + before.describe() + ", after " + after.describe());
  }
};

enum class TimeoutSource { options, environment, set_timeout };

// Ranks 0 and 1 call an all_reduce that rank 2 never joins in time: it sleeps
// past the deadline, then makes the same call. Each rank then calls once more.
// Every rank checks that destroying its communicator gave everything back.
struct LateRankJob {
  std::string job = job_id("late");
  SharedArray<RankReport> board{kWorld};
  std::string processes;
  bool in_time = false;
  bool all_exited_cleanly = true;
};

void run_late_rank_job(TimeoutSource source, LateRankJob& run) {
  const std::string& job = run.job;
  RankProcesses ranks(kWorld, [&](int rank) {
    RankReport& me = run.board[static_cast<std::size_t>(rank)];
    const Holdings before = Holdings::now(job);
    {
      tpcomm::CommOptions options;
      if (source == TimeoutSource::options) options.timeout = std::chrono::duration<double>(kTimeout);
      if (source == TimeoutSource::environment) ::setenv("TPCOMM_TIMEOUT", "1.5", 1);
      auto comm = Communicator::create(rank, kWorld, job, options);
      if (source == TimeoutSource::set_timeout) comm.set_timeout(std::chrono::duration<double>(kTimeout));
      check(std::abs(comm.timeout().count() - kTimeout) < 1e-9,
            "timeout is " + std::to_string(comm.timeout().count()) + " s");
      comm.barrier();
      std::vector<float> x(1000, 1.0f);
      if (rank == kLate) sleep_seconds(kTimeout + 1.5);
      me.call_started_ns = now_ns();
      me.observe([&] { comm.all_reduce(x.data(), x.data(), x.size(), DataType::f32, ReduceOp::sum); });
      const std::int64_t start = now_ns();
      try {
        comm.barrier();
      } catch (const tpcomm::Error& error) {
        me.record_later(error, seconds_between(start, now_ns()));
      }
    }
    Holdings::check_released(before, job, "destroying a failed communicator leaks");
  });
  run.in_time = ranks.wait_all(kTimeout + 30);
  for (int r = 0; r < kWorld; ++r) {
    run.all_exited_cleanly = run.all_exited_cleanly && ranks.end(r).exited && ranks.end(r).exit_code == 0;
  }
  run.processes = ranks.describe();
}

void expect_punctual_ranks_fail_at_the_deadline(TimeoutSource source) {
  LateRankJob run;
  run_late_rank_job(source, run);
  ASSERT_TRUE(run.in_time) << "a rank hung: " << run.processes;
  EXPECT_TRUE(run.all_exited_cleanly) << run.processes;
  for (int r = 0; r < kWorld; ++r) {
    if (r == kLate) continue;
    const RankReport& report = run.board[static_cast<std::size_t>(r)];
    const std::string who = "rank " + std::to_string(r) + ": ";
    ASSERT_EQ(report.outcome.load(), RankReport::failed) << who << "the call did not fail";
    const std::string message = report.message;
    const std::string later = report.later_message;
    const double waited = seconds_between(report.call_started_ns.load(), report.failed_ns);
    expect_reported_error(static_cast<ErrorCode>(report.code), message, ErrorCode::timeout,
                          {"waiting for rank " + std::to_string(kLate)}, who);
    // At the deadline: not before it, and not much after it.
    EXPECT_GE(waited, kTimeout * 0.9) << who << message;
    EXPECT_LT(waited, kTimeout + 5.0) << who << message;
    // Later calls fail at once, repeating the first error.
    expect_reported_error(static_cast<ErrorCode>(report.later_code), later, ErrorCode::comm_failed, {"failed earlier"},
                          who);
    EXPECT_NE(later.find(message), std::string::npos) << who << "later error does not repeat the first:\n"
                                                      << later << "\nvs\n"
                                                      << message;
    EXPECT_LT(report.later_call_seconds, 0.5) << who << later;
  }
  EXPECT_TRUE(segments_of(run.job).empty()) << join(segments_of(run.job));
}

TEST(Timeout, LateRankIsNamedAtTheDeadlineOfCommOptions) {
  expect_punctual_ranks_fail_at_the_deadline(TimeoutSource::options);
}
TEST(Timeout, LateRankIsNamedAtTheDeadlineOfTheEnvironment) {
  expect_punctual_ranks_fail_at_the_deadline(TimeoutSource::environment);
}
TEST(Timeout, LateRankIsNamedAtTheDeadlineOfSetTimeout) {
  expect_punctual_ranks_fail_at_the_deadline(TimeoutSource::set_timeout);
}

// The late rank makes its call after the others have failed (and recorded
// the failure in the segment): it must not be told that the collective
// succeeded while every other rank was told it failed.
TEST(Timeout, LateRankCallingAfterTheDeadlineFailsLikeTheOthers) {
  LateRankJob run;
  run_late_rank_job(TimeoutSource::options, run);
  ASSERT_TRUE(run.in_time) << "a rank hung: " << run.processes;
  const RankReport& report = run.board[kLate];
  const double waited = seconds_between(report.call_started_ns.load(), report.failed_ns);
  ASSERT_EQ(report.outcome.load(), RankReport::failed)
      << "rank " << kLate << "'s all_reduce succeeded although ranks 0 and 1 had already failed it with: "
      << run.board[0].message;
  expect_reported_error(static_cast<ErrorCode>(report.code), report.message, ErrorCode::timeout,
                        {"rank " + std::to_string(kLate)}, "");
  EXPECT_LT(waited, 1.0) << "the late rank waited a deadline of its own: " << report.message;
}

// The same through the C API: a status, and tpcomm_last_error naming the rank.
TEST(Timeout, CApiReportsTheDeadlineWithAStatusAndAMessage) {
  const std::string job = job_id("late_c");
  RankProcesses ranks(2, [&](int rank) {
    const Holdings before = Holdings::now(job);
    tpcomm_comm_t comm = create_c_with_timeout(rank, 2, job, 1.0);
    check(tpcomm_barrier(comm) == TPCOMM_SUCCESS, tpcomm_last_error());
    if (rank == 1) {
      sleep_seconds(2.5);
    } else {
      check(tpcomm_barrier(comm) == TPCOMM_ERROR_TIMEOUT, std::string("expected a timeout: ") + tpcomm_last_error());
      const std::string message = tpcomm_last_error();
      check(message.find("waiting for rank 1") != std::string::npos, "message: " + message);
      check(tpcomm_barrier(comm) == TPCOMM_ERROR_COMM_FAILED, std::string("later call: ") + tpcomm_last_error());
      check(std::string(tpcomm_last_error()).find(message) != std::string::npos,
            std::string("later call must repeat the first error: ") + tpcomm_last_error());
    }
    check(tpcomm_comm_destroy(comm) == TPCOMM_SUCCESS, tpcomm_last_error());
    Holdings::check_released(before, job, "leak");
  });
  expect_all_exited_zero(ranks, 30);
}

// Many healthy communicators created and destroyed: nothing accumulates.
TEST(Timeout, CreatingAndDestroyingCommunicatorsLeaksNothing) {
  const std::string job = job_id("cycle");
  RankProcesses ranks(2, [&](int rank) {
    {
      auto warm = Communicator::create(rank, 2, job);  // first-use allocations of the library
      warm.barrier();
    }
    const Holdings before = Holdings::now(job);
    const long rss_before = vm_rss_kib();
    for (int i = 0; i < 200; ++i) {
      auto comm = Communicator::create(rank, 2, job);
      float x = 1.0f;
      comm.all_reduce(&x, &x, 1, DataType::f32, ReduceOp::sum);
      check(x == 2.0f, "wrong sum");
    }
    Holdings::check_released(before, job, "leak");
    const long growth = vm_rss_kib() - rss_before;
    check(!kResidentMemoryIsMeaningful || growth < 4096,
          "resident memory grew by " + std::to_string(growth) + " KiB over 200 communicators");
  });
  expect_all_exited_zero(ranks, 120);
  EXPECT_TRUE(segments_of(job).empty()) << join(segments_of(job));
}

}  // namespace
