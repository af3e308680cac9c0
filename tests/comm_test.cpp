// Communicator life cycle: rendezvous in any order, timeouts naming the late
// rank, dead peers, mismatched calls, job isolation and /dev/shm hygiene.
#include <gtest/gtest.h>
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "multiprocess.hpp"
#include "tpcomm/tpcomm.hpp"

namespace {

using tpcomm::DataType;
using tpcomm::ErrorCode;
using tpcomm::ReduceOp;
using tpcomm::testing::check;
using tpcomm::testing::run_ranks;
using tpcomm::testing::unique_job_id;

std::vector<std::string> segments_of(const std::string& job) {
  std::vector<std::string> found;
  const std::string prefix = "tpcomm-" + std::to_string(::getuid()) + "-" + job;
  if (DIR* dir = ::opendir("/dev/shm")) {
    while (dirent* entry = ::readdir(dir)) {
      if (std::string(entry->d_name).rfind(prefix, 0) == 0) found.emplace_back(entry->d_name);
    }
    ::closedir(dir);
  }
  return found;
}

// Runs body, which must throw tpcomm::Error with `code` and a message containing `needle`.
template <class Body>
void expect_error(Body body, ErrorCode code, const std::string& needle, const std::string& what) {
  try {
    body();
  } catch (const tpcomm::Error& error) {
    check(error.code() == code, what + ": wrong error code " + std::to_string(static_cast<int>(error.code())) + ": " +
                                    error.what());
    check(std::string(error.what()).find(needle) != std::string::npos,
          what + ": message lacks '" + needle + "': " + error.what());
    return;
  }
  throw std::runtime_error(what + ": no error was raised");
}

TEST(Rendezvous, RanksMayStartInAnyOrderAndLate) {
  const std::string job = unique_job_id("late");
  const auto outcomes = run_ranks(4, [&](int rank) {
    // Reverse order with gaps: rank 3 first, rank 0 last, 0.3 s apart.
    std::this_thread::sleep_for(std::chrono::milliseconds(100 * (3 - rank)));
    auto comm = tpcomm::Communicator::create(rank, 4, job);
    int value = rank + 1, sum = 0;
    comm.all_reduce(&value, &sum, 1, DataType::i32, ReduceOp::sum);
    check(sum == 10, "sum over 4 late-starting ranks");
  });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
  EXPECT_TRUE(segments_of(job).empty()) << "segment left in /dev/shm";
}

TEST(Rendezvous, TimesOutNamingTheRanksThatNeverArrived) {
  const std::string job = unique_job_id("absent");
  tpcomm::CommOptions options;
  options.timeout = std::chrono::milliseconds(800);
  // Ranks 0 and 2 of 4 come; 1 and 3 never do.
  const auto outcomes = run_ranks(2, [&](int index) {
    const int rank = index * 2;
    expect_error([&] { tpcomm::Communicator::create(rank, 4, job, options); }, ErrorCode::timeout,
                 "ranks that never arrived: 1, 3", "rendezvous");
  });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
  EXPECT_TRUE(segments_of(job).empty()) << "a failed rendezvous left its segment in /dev/shm";
}

TEST(Collective, TimeoutNamesTheLateRankAndTheCommunicatorStaysFailed) {
  const std::string job = unique_job_id("late-call");
  const auto outcomes = run_ranks(3, [&](int rank) {
    tpcomm::CommOptions options;
    options.timeout = std::chrono::milliseconds(500);
    auto comm = tpcomm::Communicator::create(rank, 3, job, options);
    comm.barrier();
    if (rank == 2) {
      std::this_thread::sleep_for(std::chrono::seconds(3));  // never calls; others must not hang
      return;
    }
    float x = 1.0f;
    expect_error([&] { comm.all_reduce(&x, &x, 1, DataType::f32, ReduceOp::sum); }, ErrorCode::timeout,
                 "rank 2", "late rank");
    expect_error([&] { comm.barrier(); }, ErrorCode::comm_failed, "failed earlier", "failed communicator");
  });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

TEST(Collective, DeadPeerIsReportedWellBeforeTheTimeout) {
  const std::string job = unique_job_id("dead");
  const auto outcomes = run_ranks(3, [&](int rank) {
    tpcomm::CommOptions options;
    options.timeout = std::chrono::seconds(60);
    auto comm = tpcomm::Communicator::create(rank, 3, job, options);
    comm.barrier();
    if (rank == 1) ::_exit(0);  // vanishes without a word
    const auto start = std::chrono::steady_clock::now();
    float x = 1.0f;
    expect_error([&] { comm.all_reduce(&x, &x, 1, DataType::f32, ReduceOp::sum); }, ErrorCode::peer_dead, "rank 1",
                 "dead peer");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    check(seconds < 30, "dead peer detected only after " + std::to_string(seconds) + " s");
  });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

TEST(Collective, MismatchedCallsFailOnEveryRank) {
  const std::string job = unique_job_id("mismatch");
  const auto outcomes = run_ranks(2, [&](int rank) {
    auto comm = tpcomm::Communicator::create(rank, 2, job);
    std::vector<float> x(16, 1.0f);
    const std::size_t count = rank == 0 ? 10 : 11;
    try {
      comm.all_reduce(x.data(), x.data(), count, DataType::f32, ReduceOp::sum);
    } catch (const tpcomm::Error& error) {
      const std::string message = error.what();
      check(error.code() == ErrorCode::mismatch, std::string("expected a mismatch error: ") + message);
      check(message.find("count=10") != std::string::npos && message.find("count=11") != std::string::npos,
            "the message must show both calls: " + message);
      return;
    }
    throw std::runtime_error("mismatched counts were not detected");
  });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

TEST(Isolation, TwoJobsAtOnceWithTheSameWorldSizeAreBothCorrect) {
  const std::string job_a = unique_job_id("iso-a");
  const std::string job_b = unique_job_id("iso-b");
  const auto outcomes = run_ranks(4, [&](int index) {
    const bool in_a = index < 2;
    const int rank = index % 2;
    auto comm = tpcomm::Communicator::create(rank, 2, in_a ? job_a : job_b);
    for (int i = 0; i < 2000; ++i) {
      std::int64_t value = (in_a ? 1 : 1000) * (rank + 1) + i, sum = 0;
      comm.all_reduce(&value, &sum, 1, DataType::i64, ReduceOp::sum);
      check(sum == (in_a ? 3 : 3000) + 2 * i, "cross-talk between jobs");
    }
  });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

TEST(Hygiene, NoSegmentRemainsAfterNormalExitOrAnException) {
  const std::string job = unique_job_id("hygiene");
  const auto outcomes = run_ranks(2, [&](int rank) {
    auto comm = tpcomm::Communicator::create(rank, 2, job);
    comm.barrier();
    check(segments_of(job).empty(), "the name must be unlinked once every rank attached");
    if (rank == 1) throw std::runtime_error("deliberate exception after rendezvous");
  });
  EXPECT_FALSE(outcomes[1].ok());
  EXPECT_TRUE(segments_of(job).empty());
}

TEST(Arguments, BadArgumentsAreCaughtBeforeAnyRankMovesAndTheCommunicatorStaysUsable) {
  const std::string job = unique_job_id("args");
  const auto outcomes = run_ranks(2, [&](int rank) {
    auto comm = tpcomm::Communicator::create(rank, 2, job);
    std::vector<float> buffer(64, 1.0f);
    std::vector<std::int32_t> ints(4, 1);
    expect_error([&] { comm.all_reduce(nullptr, buffer.data(), 4, DataType::f32, ReduceOp::sum); },
                 ErrorCode::invalid_argument, "send buffer is null", "null send");
    expect_error([&] { comm.all_reduce(buffer.data(), buffer.data() + 2, 8, DataType::f32, ReduceOp::sum); },
                 ErrorCode::invalid_argument, "partially overlap", "overlap");
    expect_error([&] { comm.all_reduce(ints.data(), ints.data(), 4, DataType::i32, ReduceOp::avg); },
                 ErrorCode::invalid_argument, "avg is not defined", "avg on ints");
    expect_error([&] { comm.all_reduce(buffer.data(), buffer.data(), 4, static_cast<DataType>(42), ReduceOp::sum); },
                 ErrorCode::invalid_argument, "unknown dtype", "bad dtype");
    expect_error([&] { comm.all_reduce(buffer.data(), buffer.data(), SIZE_MAX / 2, DataType::f32, ReduceOp::sum); },
                 ErrorCode::invalid_argument, "overflows", "size overflow");
    comm.all_reduce(nullptr, nullptr, 0, DataType::f32, ReduceOp::sum);  // count 0: a no-op
    float x = static_cast<float>(rank + 1), y = 0;
    comm.all_reduce(&x, &y, 1, DataType::f32, ReduceOp::sum);
    check(y == 3.0f, "communicator must stay usable after rejected arguments");
  });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

TEST(Bootstrap, FromEnvironmentOfEachLauncher) {
  struct Case {
    const char* label;
    std::vector<std::pair<std::string, std::string>> variables;  // "{r}" becomes the rank
  };
  const std::string id = unique_job_id("env");
  const std::vector<Case> cases{
      {"tpcomm-run", {{"TPCOMM_RANK", "{r}"}, {"TPCOMM_WORLD_SIZE", "2"}, {"TPCOMM_JOB_ID", id + "t"}}},
      {"torchrun",
       {{"RANK", "{r}"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "{r}"}, {"LOCAL_WORLD_SIZE", "2"},
        {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29500"}, {"TORCHELASTIC_RUN_ID", id + "p"}}},
      {"mpirun",
       {{"OMPI_COMM_WORLD_RANK", "{r}"}, {"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "{r}"},
        {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}, {"PMIX_NAMESPACE", id + "m"}}},
  };
  for (const Case& c : cases) {
    const auto outcomes = run_ranks(2, [&](int rank) {
      for (const char* name : {"TPCOMM_RANK", "TPCOMM_WORLD_SIZE", "TPCOMM_JOB_ID", "RANK", "WORLD_SIZE",
                               "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"}) {
        ::unsetenv(name);
      }
      for (const auto& [name, value] : c.variables) {
        ::setenv(name.c_str(), value == "{r}" ? std::to_string(rank).c_str() : value.c_str(), 1);
      }
      auto comm = tpcomm::Communicator::from_env();
      check(comm.rank() == rank && comm.world_size() == 2, std::string(c.label) + ": wrong placement");
      int value = 1, sum = 0;
      comm.all_reduce(&value, &sum, 1, DataType::i32, ReduceOp::sum);
      check(sum == 2, std::string(c.label) + ": wrong sum");
    });
    EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << c.label << ": " << tpcomm::testing::describe(outcomes);
  }
  // Multi-node torchrun layouts are refused with a clear message.
  ::setenv("RANK", "0", 1);
  ::setenv("WORLD_SIZE", "4", 1);
  ::setenv("LOCAL_WORLD_SIZE", "2", 1);
  ::setenv("MASTER_PORT", "29500", 1);
  try {
    tpcomm::Communicator::from_env();
    ADD_FAILURE() << "a multi-node layout must be refused";
  } catch (const tpcomm::Error& error) {
    EXPECT_NE(std::string(error.what()).find("only 2 of them on this machine"), std::string::npos) << error.what();
  }
  for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_PORT"}) ::unsetenv(name);
}

TEST(Hygiene, ASegmentLeftByAJobKilledDuringStartUpDoesNotBlockTheSameJobId) {
  const std::string job = unique_job_id("stale");
  // Rank 0 of 2 starts alone and is killed while it waits for rank 1.
  const pid_t lonely = ::fork();
  ASSERT_GE(lonely, 0);
  if (lonely == 0) {
    try {
      tpcomm::Communicator::create(0, 2, job);
    } catch (...) {
    }
    ::_exit(0);
  }
  while (segments_of(job).empty()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ::kill(lonely, SIGKILL);
  ::waitpid(lonely, nullptr, 0);
  ASSERT_EQ(segments_of(job).size(), 1u) << "the killed start-up leaves its segment behind";
  // A new job with the same explicit id starts cleanly and removes the stale one.
  const auto outcomes = run_ranks(2, [&](int rank) {
    tpcomm::CommOptions options;
    options.timeout = std::chrono::seconds(20);
    auto comm = tpcomm::Communicator::create(rank, 2, job, options);
    int value = 1, sum = 0;
    comm.all_reduce(&value, &sum, 1, DataType::i32, ReduceOp::sum);
    check(sum == 2, "sum after stale segment");
  });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
  EXPECT_TRUE(segments_of(job).empty());
}

TEST(Fork, UseFromAForkedChildIsRefused) {
  const std::string job = unique_job_id("fork");
  auto comm = tpcomm::Communicator::create(0, 1, job);
  const auto outcomes = run_ranks(1, [&](int) {
    float x = 1.0f;
    expect_error([&] { comm.all_reduce(&x, &x, 1, DataType::f32, ReduceOp::sum); }, ErrorCode::invalid_argument,
                 "forked child", "use after fork");
  });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
  float x = 2.0f;
  comm.all_reduce(&x, &x, 1, DataType::f32, ReduceOp::sum);  // the parent keeps working
  EXPECT_EQ(x, 2.0f);
}

}  // namespace
