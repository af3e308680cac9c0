// /dev/shm hygiene: nothing of a job remains after a normal exit or an
// exception; a crashed job's leftover does not block a new job with the same
// id; and a segment that does not fit in /dev/shm fails at creation with a
// clear error, never with SIGBUS later. (Segments after SIGKILL at each phase:
// dead_rank_test; all ranks killed during the rendezvous: launcher_crash_test.)
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "kill_scenarios.hpp"
#include "robustness.hpp"

namespace {

using namespace tpcomm::robustness;

// A new job with the id `job` starts although /dev/shm holds a leftover of
// that id: each of its `world` ranks creates its communicator and completes
// `call` on it. `leftover` names the leftover in failure messages.
void expect_new_job_starts(const std::string& job, int world, const tpcomm::CommOptions& options,
                           const std::function<void(Communicator& comm, int rank)>& call, const std::string& leftover) {
  SharedArray<RankReport> board(static_cast<std::size_t>(world));
  RankProcesses ranks(world, [&](int rank) {
    board[static_cast<std::size_t>(rank)].observe([&] {
      auto comm = Communicator::create(rank, world, job, options);
      call(comm, rank);
    });
  });
  ASSERT_TRUE(ranks.wait_all(60)) << ranks.describe();
  for (int r = 0; r < world; ++r) {
    const RankReport& report = board[static_cast<std::size_t>(r)];
    EXPECT_EQ(report.outcome.load(), RankReport::succeeded)
        << leftover << " leftover, rank " << r << ": " << code_name(static_cast<ErrorCode>(report.code)) << ": "
        << report.message;
  }
}

TEST(Hygiene, NothingRemainsAfterANormalExit) {
  const std::string job = job_id("normal");
  RankProcesses ranks(3, [&](int rank) {
    auto comm = Communicator::create(rank, 3, job);
    // After a barrier every rank, the creator included, is past the rendezvous.
    comm.barrier();
    check(segments_of(job).empty(), "the name must be gone once every rank has attached");
    auto half = comm.split(rank % 2, rank);
    std::vector<float> x(10000, 1.0f);
    comm.all_reduce(x.data(), x.data(), x.size(), DataType::f32, ReduceOp::sum);
    half->barrier();
    check(x[0] == 3.0f, "wrong sum");
  });
  expect_all_exited_zero(ranks, 60);
  EXPECT_TRUE(segments_of(job).empty()) << join(segments_of(job));
}

// One rank throws between collectives and exits; the others learn of it in
// their next call (the rank is dead) and unwind through their own exception.
TEST(Hygiene, NothingRemainsAfterAnException) {
  const std::string job = job_id("exception");
  RankProcesses ranks(3, [&](int rank) {
    tpcomm::CommOptions options;
    options.timeout = std::chrono::seconds(30);
    auto comm = Communicator::create(rank, 3, job, options);
    comm.barrier();
    if (rank == 1) throw std::runtime_error("deliberate failure of rank 1");
    expect_error([&] { comm.barrier(); }, ErrorCode::peer_dead, {"rank 1 (pid"}, "barrier after rank 1 threw");
  });
  ASSERT_TRUE(ranks.wait_all(60)) << ranks.describe();
  EXPECT_EQ(ranks.end(0).exit_code, 0) << ranks.describe();
  EXPECT_EQ(ranks.end(1).exit_code, 1) << ranks.describe();
  EXPECT_EQ(ranks.end(2).exit_code, 0) << ranks.describe();
  EXPECT_TRUE(segments_of(job).empty()) << join(segments_of(job));
}

// A rank that throws before it joins: the others fail at the rendezvous
// deadline, and that failure path removes the segment.
TEST(Hygiene, NothingRemainsWhenARankNeverJoins) {
  const std::string job = job_id("never_joins");
  RankProcesses ranks(3, [&](int rank) {
    if (rank == 0) throw std::runtime_error("deliberate failure before joining");
    tpcomm::CommOptions options;
    options.timeout = std::chrono::milliseconds(800);
    expect_error([&] { (void)Communicator::create(rank, 3, job, options); }, ErrorCode::timeout,
                 {"never arrived: 0"}, "rendezvous without rank 0");
  });
  ASSERT_TRUE(ranks.wait_all(30)) << ranks.describe();
  EXPECT_EQ(ranks.end(1).exit_code, 0) << ranks.describe();
  EXPECT_EQ(ranks.end(2).exit_code, 0) << ranks.describe();
  EXPECT_TRUE(segments_of(job).empty()) << join(segments_of(job));
}

// Job ids are often fixed by the user (a run name, a config entry). When a
// job with such an id died in its rendezvous without a launcher to clean up,
// its segment stays; the next job with the same id must start anyway.
TEST(Hygiene, LeftoverOfACrashedJobDoesNotBlockANewJobWithTheSameId) {
  const std::string job = job_id("same_id");
  constexpr int kWorld = 2;
  {
    // The crashed job: rank 0 attaches, rank 1 never comes, rank 0 is killed.
    RankProcesses crashed(1, [&](int) {
      tpcomm::CommOptions options;
      options.timeout = std::chrono::seconds(60);
      (void)Communicator::create(0, kWorld, job, options);
    });
    ASSERT_TRUE(wait_until([&] { return has_attached(first_segment_path(job, kWorld), 0); }, 30));
    crashed.kill(0);
    crashed.reap(0);
  }
  const std::vector<std::string> leftover = segments_of(job);
  ASSERT_EQ(leftover.size(), 1u) << "the crashed job should have left its segment: " << join(leftover);

  tpcomm::CommOptions options;
  options.timeout = std::chrono::seconds(5);
  ASSERT_NO_FATAL_FAILURE(expect_new_job_starts(
      job, kWorld, options,
      [](Communicator& comm, int rank) {
        std::int64_t value = rank + 1, sum = 0;
        comm.all_reduce(&value, &sum, 1, DataType::i64, ReduceOp::sum);
        check(sum == 3, "wrong sum " + std::to_string(sum));
      },
      "the crashed job's"));
  EXPECT_TRUE(segments_of(job).empty()) << join(segments_of(job));
  remove_segments_of(job);
}

// A job whose every rank died in the rendezvous leaves its segment behind
// (no survivor is left to remove it); the next tpcomm job of the user, with
// any id, clears it out once no rank of it can still be on its way: every rank
// recorded in it is dead and the segment is 10 s old (here: made to look so).
// A younger one stays (DeadRankWhileAnotherJobStarts: its late ranks must
// still find it).
TEST(Hygiene, LeftoverOfAJobKilledInItsRendezvousIsRemovedByTheNextJob) {
  const std::string crashed_job = job_id("all_killed");
  {
    RankProcesses crashed(2, [&](int rank) {
      tpcomm::CommOptions options;
      options.timeout = std::chrono::seconds(60);
      (void)Communicator::create(rank, 3, crashed_job, options);  // rank 2 never comes
    });
    const std::string path = first_segment_path(crashed_job, 3);
    ASSERT_TRUE(wait_until([&] { return has_attached(path, 0) && has_attached(path, 1); }, 30));
    crashed.kill_all();
  }
  ASSERT_EQ(segments_of(crashed_job).size(), 1u) << "the killed job should have left its segment";
  const std::string leftover = "/dev/shm/" + segments_of(crashed_job)[0];
  {
    RankProcesses young(1, [&](int) { (void)Communicator::create(0, 1, job_id("young")); });
    ASSERT_TRUE(young.wait_all(30)) << young.describe();
  }
  EXPECT_EQ(segments_of(crashed_job).size(), 1u) << "a fresh leftover was removed while late ranks may still come";
  const timespec old_times[2] = {{::time(nullptr) - 60, 0}, {::time(nullptr) - 60, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, leftover.c_str(), old_times, 0), 0) << std::strerror(errno);
  const std::string next_job = job_id("next");
  RankProcesses next(1, [&](int) { (void)Communicator::create(0, 1, next_job); });
  ASSERT_TRUE(next.wait_all(30)) << next.describe();
  EXPECT_EQ(next.end(0).exit_code, 0) << next.describe();
  EXPECT_TRUE(segments_of(crashed_job).empty()) << "still in /dev/shm: " << join(segments_of(crashed_job));
  remove_segments_of(crashed_job);
}

// A creator killed between creating its segment and initialising it leaves a
// file with no valid header: empty (killed before reserving the memory) or
// full size but unmarked. A new job with the same id must still start.
TEST(Hygiene, UninitialisedLeftoverDoesNotBlockANewJobWithTheSameId) {
  constexpr int kWorld = 2;
  for (const bool sized : {false, true}) {
    const std::string job = job_id(sized ? "unmarked" : "empty");
    const std::string path = first_segment_path(job, kWorld);
    {
      // The size the library gives a two-rank segment with 64 KiB chunks.
      const std::size_t bytes = tpcomm::detail::SegmentLayout::compute(kWorld, 64 * 1024).total_bytes;
      const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
      ASSERT_GE(fd, 0) << std::strerror(errno);
      if (sized) {
        ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(bytes)), 0);
      }
      ::close(fd);
    }
    tpcomm::CommOptions options;
    options.timeout = std::chrono::seconds(3);
    options.chunk_bytes = 64 * 1024;
    ASSERT_NO_FATAL_FAILURE(expect_new_job_starts(
        job, kWorld, options, [](Communicator& comm, int) { comm.barrier(); },
        sized ? "full-size unmarked" : "empty"));
    remove_segments_of(job);
  }
}

// ---- /dev/shm too small ------------------------------------------------------

// A segment larger than all of /dev/shm: creation fails at once (the kernel
// refuses a reservation beyond the file system's size without allocating).
TEST(Hygiene, SegmentLargerThanDevShmFailsAtCreationWithASystemError) {
  struct statvfs info {};
  ASSERT_EQ(::statvfs("/dev/shm", &info), 0);
  const double total = static_cast<double>(info.f_blocks) * static_cast<double>(info.f_frsize);
  constexpr std::size_t kChunk = std::size_t{1} << 30;  // the largest chunk allowed
  // world x 2 slots x chunk: at least twice the size of /dev/shm.
  const int world = static_cast<int>(2 * total / (2.0 * static_cast<double>(kChunk))) + 2;
  if (info.f_blocks == 0 || world > TPCOMM_MAX_WORLD_SIZE) {
    GTEST_SKIP() << "/dev/shm (" << total / 1e9 << " GB) is too large to overflow with " << TPCOMM_MAX_WORLD_SIZE
                 << " ranks of 1 GiB chunks";
  }
  const std::string job = job_id("too_big");
  RankProcesses ranks(1, [&](int) {
    tpcomm::CommOptions options;
    options.chunk_bytes = kChunk;
    options.timeout = std::chrono::seconds(5);
    const std::int64_t start = now_ns();
    expect_error([&] { (void)Communicator::create(0, world, job, options); }, ErrorCode::system, {"/dev/shm"},
                 "a segment of " + std::to_string(world) + " x 2 GiB");
    check(seconds_between(start, now_ns()) < 2.0, "the failure was not immediate");
  });
  expect_all_exited_zero(ranks, 30);
  EXPECT_TRUE(segments_of(job).empty()) << join(segments_of(job));
}

// In a private mount namespace with an 8 MiB tmpfs on /dev/shm (needs root):
// a segment that fits the file system but not its free space fails at
// creation; and a job created just before /dev/shm fills up keeps working
// (its memory was reserved: no SIGBUS when it is first touched).
TEST(Hygiene, FullDevShmFailsAtCreationAndNeverWithSigbusLater) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t child = ::fork();
  if (child == 0) {
    if (::unshare(CLONE_NEWNS) != 0) ::_exit(77);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(77);
    if (::mount("tpcomm-test", "/dev/shm", "tmpfs", 0, "size=8m,mode=1777") != 0) ::_exit(77);
    int code = 0;
    try {
      // Fill all but ~0.5 MiB: a segment of ~0.8 MiB cannot be reserved.
      const int filler = ::open("/dev/shm/filler", O_CREAT | O_RDWR, 0600);
      check(filler >= 0 && ::posix_fallocate(filler, 0, (std::size_t{15} << 19)) == 0, "cannot fill /dev/shm");
      tpcomm::CommOptions options;
      options.chunk_bytes = 64 * 1024;
      options.timeout = std::chrono::seconds(5);
      const std::string job = job_id("full");
      expect_error([&] { (void)Communicator::create(0, 2, job, options); }, ErrorCode::system, {"/dev/shm"},
                   "segment larger than the free space");
      check(segments_of(job).empty(), "a failed creation left " + join(segments_of(job)));
      // Free space again, then start a job and fill /dev/shm behind its back.
      check(::ftruncate(filler, 0) == 0, "cannot empty the filler");
      const std::string second = job_id("fill_later");
      RankProcesses ranks(2, [&](int rank) {
        auto comm = Communicator::create(rank, 2, second, options);
        comm.barrier();
        if (rank == 0) {
          // Everything that is left: writing stops at ENOSPC.
          const int more = ::open("/dev/shm/filler2", O_CREAT | O_RDWR, 0600);
          std::vector<char> block(64 * 1024, 'x');
          while (::write(more, block.data(), block.size()) > 0) {
          }
          ::close(more);
        }
        comm.barrier();
        // Touches every staging slot and every point-to-point slot.
        std::vector<float> x(1 << 20, 1.0f);
        comm.all_reduce(x.data(), x.data(), x.size(), DataType::f32, ReduceOp::sum);
        check(x[12345] == 2.0f, "wrong sum");
        std::vector<float> y(1 << 18, static_cast<float>(rank));
        const int peer = 1 - rank;
        using P2P = Communicator::PointToPoint;
        std::vector<float> got(y.size());
        const P2P ops[] = {{P2P::Kind::send, y.data(), y.size(), DataType::f32, peer},
                           {P2P::Kind::recv, got.data(), got.size(), DataType::f32, peer}};
        comm.batch(ops);
        check(got[777] == static_cast<float>(peer), "wrong message");
      });
      check(ranks.wait_all(60), "a rank hung");
      for (int r = 0; r < 2; ++r) {
        check(ranks.end(r).exited && ranks.end(r).exit_code == 0,
              "a rank of the job in the full /dev/shm failed: " + ranks.describe());
      }
      ::close(filler);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "%s\n", error.what());
      code = 1;
    }
    std::fflush(stderr);
    ::_exit(code);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) GTEST_SKIP() << "cannot mount a private tmpfs (not root?)";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << (WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status)) : "see the message above");
}

}  // namespace
