// The helper threads of a rank (core/worker_pool.hpp): every part of every job
// runs exactly once, on the right number of threads, whether the helpers are
// spinning or asleep when the job comes; and the split of a step into pieces.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "core/worker_pool.hpp"

namespace {

using tpcomm::detail::piece_begin;
using tpcomm::detail::WorkerPool;

TEST(WorkerPool, EveryPartRunsExactlyOncePerJob) {
  for (int threads : {1, 2, 3, 5}) {
    WorkerPool pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    std::vector<std::atomic<int>> runs(8);
    for (int job = 0; job < 3000; ++job) {
      const int parts = 1 + job % 7;  // also more parts than threads: capped
      for (auto& r : runs) r.store(0, std::memory_order_relaxed);
      pool.run(parts, [&](int i) { runs[static_cast<std::size_t>(i)].fetch_add(1, std::memory_order_relaxed); });
      const int expected = parts < threads ? parts : threads;
      for (int i = 0; i < 8; ++i) {
        ASSERT_EQ(runs[static_cast<std::size_t>(i)].load(), i < expected ? 1 : 0)
            << "threads " << threads << " parts " << parts << " job " << job << " part " << i;
      }
    }
  }
}

TEST(WorkerPool, PartsRunOnDistinctThreadsAndTheFirstOnTheCaller) {
  WorkerPool pool(4);
  std::mutex mutex;
  std::set<std::thread::id> ids;
  std::thread::id first;
  pool.run(4, [&](int i) {
    std::lock_guard lock(mutex);
    ids.insert(std::this_thread::get_id());
    if (i == 0) first = std::this_thread::get_id();
  });
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_EQ(first, std::this_thread::get_id());
}

TEST(WorkerPool, SleepingHelpersWakeForTheNextJobAndStopWhenDestroyed) {
  WorkerPool pool(3);
  std::atomic<int> total{0};
  for (int job = 0; job < 5; ++job) {
    // Longer than the helpers spin: they are asleep on the futex by now.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    pool.run(3, [&](int) { total.fetch_add(1); });
  }
  EXPECT_EQ(total.load(), 15);
}

TEST(WorkerPool, PiecesCoverTheRangeOnGranuleBoundaries) {
  for (std::size_t count : {0u, 1u, 255u, 256u, 257u, 1000u, 4096u, 1000003u}) {
    for (int parts = 1; parts <= 7; ++parts) {
      EXPECT_EQ(piece_begin(count, parts, 0, 256), 0u);
      EXPECT_EQ(piece_begin(count, parts, parts, 256), count);
      for (int i = 0; i < parts; ++i) {
        const std::size_t begin = piece_begin(count, parts, i, 256);
        const std::size_t end = piece_begin(count, parts, i + 1, 256);
        EXPECT_LE(begin, end);
        EXPECT_TRUE(begin % 256 == 0 || begin == count) << count << " " << parts << " " << i;
        // Balanced: no piece is more than one granule longer than count / parts.
        EXPECT_LE(end - begin, count / static_cast<std::size_t>(parts) + 256);
      }
    }
  }
}

}  // namespace
