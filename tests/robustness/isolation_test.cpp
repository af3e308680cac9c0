// Isolation between jobs: segments are owner-only whatever the umask, another
// user cannot open them, a process of another job cannot join, and a second
// process claiming a rank that is taken cannot join either. (Unguessable job
// ids and two launched jobs side by side: launcher_crash_test.)
#include <gtest/gtest.h>

#include <fcntl.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "kill_scenarios.hpp"
#include "robustness.hpp"

namespace {

using namespace tpcomm::robustness;
using tpcomm::Communicator;
using tpcomm::DataType;
using tpcomm::ErrorCode;
using tpcomm::ReduceOp;

// Rank 0 of a two-rank job waits alone in the rendezvous; the segment exists.
class WaitingRank {
 public:
  explicit WaitingRank(const std::string& job, double timeout = 5.0)
      : ranks_(1, [job, timeout](int) {
          ::umask(0);  // the mode must come from the library, not from the umask
          tpcomm::CommOptions options;
          options.timeout = std::chrono::duration<double>(timeout);
          expect_error([&] { (void)Communicator::create(0, 2, job, options); }, ErrorCode::timeout,
                       {"never arrived: 1"}, "rank 0 alone");
        }),
        path_(first_segment_path(job, 2)) {
    attached_ = wait_until([&] { return has_attached(path_, 0); }, 30);
  }
  bool attached() const { return attached_; }
  const std::string& path() const { return path_; }
  // True if rank 0 saw its rendezvous time out as expected.
  bool finish() {
    ranks_.wait_all(30);
    return ranks_.end(0).exited && ranks_.end(0).exit_code == 0;
  }

 private:
  RankProcesses ranks_;
  std::string path_;
  bool attached_ = false;
};

TEST(Isolation, SegmentIsOwnerOnlyEvenWithUmaskZero) {
  const std::string job = job_id("mode");
  WaitingRank waiting(job, 2.0);
  ASSERT_TRUE(waiting.attached());
  struct stat info {};
  ASSERT_EQ(::stat(waiting.path().c_str(), &info), 0) << std::strerror(errno);
  EXPECT_EQ(info.st_mode & 07777, 0600u) << std::oct << (info.st_mode & 07777);
  EXPECT_EQ(info.st_uid, ::getuid());
  EXPECT_TRUE(waiting.finish());
  EXPECT_TRUE(segments_of(job).empty()) << join(segments_of(job));
}

TEST(Isolation, AnotherUserCannotOpenTheSegment) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as another user";
  const std::string job = job_id("other_user");
  WaitingRank waiting(job, 2.0);
  ASSERT_TRUE(waiting.attached());
  RankProcesses intruder(1, [&](int) {
    // nobody:nogroup, with no supplementary groups.
    check(::setgroups(0, nullptr) == 0 && ::setgid(65534) == 0 && ::setuid(65534) == 0, "cannot drop privileges");
    for (const int flags : {O_RDWR, O_RDONLY}) {
      const int fd = ::open(waiting.path().c_str(), flags);
      const int error = errno;
      check(fd < 0 && error == EACCES,
            std::string("another user opened the segment (") + (flags == O_RDWR ? "read-write" : "read-only") +
                "): " + (fd < 0 ? std::strerror(error) : "success"));
    }
  });
  EXPECT_TRUE(intruder.wait_all(30));
  EXPECT_EQ(intruder.end(0).exit_code, 0) << intruder.describe();
  EXPECT_TRUE(waiting.finish());
}

// A process of job B asks for the rank job A is missing: it never meets A.
TEST(Isolation, ProcessOfAnotherJobCannotJoin) {
  const std::string job_a = job_id("job_a");
  const std::string job_b = job_id("job_b");
  WaitingRank waiting(job_a, 2.0);
  ASSERT_TRUE(waiting.attached());
  RankProcesses other(1, [&](int) {
    tpcomm::CommOptions options;
    options.timeout = std::chrono::milliseconds(1500);
    expect_error([&] { (void)Communicator::create(1, 2, job_b, options); }, ErrorCode::timeout, {"never arrived: 0"},
                 "rank 1 of job B");
  });
  bool joined = false;
  for (int i = 0; i < 100 && !joined; ++i) {
    joined = has_attached(waiting.path(), 1);
    sleep_seconds(0.01);
  }
  EXPECT_FALSE(joined) << "a rank of job B attached to job A's segment";
  EXPECT_TRUE(other.wait_all(30));
  EXPECT_EQ(other.end(0).exit_code, 0) << other.describe();
  EXPECT_TRUE(waiting.finish());
  EXPECT_TRUE(segments_of(job_a).empty() && segments_of(job_b).empty());
}

// A second process claiming rank 0 of a job whose rank 0 is already waiting
// is refused, and its refusal must not break the job: the real rank 1,
// arriving afterwards, still meets rank 0.
TEST(Isolation, SecondProcessWithATakenRankIsRefusedAndTheJobStillStarts) {
  const std::string job = job_id("taken");
  const std::string path = first_segment_path(job, 2);
  SharedArray<RankReport> board(2);
  RankProcesses job_ranks(2, [&](int rank) {
    RankReport& me = board[static_cast<std::size_t>(rank)];
    if (rank == 1) me.await_go();
    tpcomm::CommOptions options;
    options.timeout = std::chrono::seconds(4);
    try {
      auto comm = Communicator::create(rank, 2, job, options);
      std::int32_t value = rank + 1, sum = 0;
      comm.all_reduce(&value, &sum, 1, DataType::i32, ReduceOp::sum);
      check(sum == 3, "wrong sum");
      me.outcome = RankReport::succeeded;
    } catch (const tpcomm::Error& error) {
      me.record(error);
    }
  });
  ASSERT_TRUE(wait_until([&] { return has_attached(path, 0); }, 30));
  RankProcesses twin(1, [&](int) {
    tpcomm::CommOptions options;
    options.timeout = std::chrono::seconds(2);
    expect_error([&] { (void)Communicator::create(0, 2, job, options); }, ErrorCode::invalid_argument,
                 {"joined job", "twice"}, "a second rank 0");
  });
  EXPECT_TRUE(twin.wait_all(30));
  EXPECT_EQ(twin.end(0).exit_code, 0) << twin.describe();
  EXPECT_EQ(::access(path.c_str(), F_OK), 0) << "the refused process removed the job's segment " << path;
  board[1].go = 1;
  ASSERT_TRUE(job_ranks.wait_all(30)) << job_ranks.describe();
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(board[static_cast<std::size_t>(r)].outcome.load(), RankReport::succeeded)
        << "rank " << r << " of the job: " << board[static_cast<std::size_t>(r)].message;
  }
  remove_segments_of(job);
}

// A process using a running job's id after the rendezvous finds no segment
// (the name is gone) and cannot disturb the job: the job's results stay right.
TEST(Isolation, LateProcessWithARunningJobsIdCannotDisturbIt) {
  const std::string job = job_id("running");
  SharedArray<RankReport> board(2);
  RankProcesses job_ranks(2, [&](int rank) {
    auto comm = Communicator::create(rank, 2, job);
    comm.barrier();
    board[static_cast<std::size_t>(rank)].stage = 1;
    for (std::int64_t i = 0; i < 20000; ++i) {
      std::int64_t value = (rank + 1) * 1000 + i, sum = 0;
      comm.all_reduce(&value, &sum, 1, DataType::i64, ReduceOp::sum);
      check(sum == 3000 + 2 * i, "wrong sum " + std::to_string(sum) + " in call " + std::to_string(i));
    }
  });
  ASSERT_TRUE(wait_until([&] { return board[0].stage.load() == 1 && board[1].stage.load() == 1; }, 30));
  RankProcesses late(1, [&](int) {
    tpcomm::CommOptions options;
    options.timeout = std::chrono::milliseconds(800);
    expect_error([&] { (void)Communicator::create(1, 2, job, options); }, ErrorCode::timeout, {"never arrived: 0"},
                 "late rank 1");
  });
  EXPECT_TRUE(late.wait_all(30));
  EXPECT_EQ(late.end(0).exit_code, 0) << late.describe();
  EXPECT_TRUE(job_ranks.wait_all(120));
  EXPECT_EQ(job_ranks.end(0).exit_code, 0) << job_ranks.describe();
  EXPECT_EQ(job_ranks.end(1).exit_code, 0) << job_ranks.describe();
  EXPECT_TRUE(segments_of(job).empty()) << join(segments_of(job));
}

}  // namespace
