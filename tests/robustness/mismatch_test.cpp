// Mismatched calls: ranks calling different collectives, or the same one with
// different counts, dtypes, ops or roots. Every rank must get ErrorCode::mismatch
// with a message showing both sides of the disagreement: never a result, never
// a hang (each row runs on a fresh communicator with a 5 s deadline, and a
// mismatch must be reported well before it).
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "robustness.hpp"

namespace {

using namespace tpcomm::robustness;

constexpr int kWorld = 3;
constexpr double kDeadline = 5.0;
constexpr std::size_t kBufferBytes = 64 * 1024;
constexpr unsigned char kSentinel = 0xa5;

struct Buffers {
  std::vector<unsigned char> send = std::vector<unsigned char>(kBufferBytes);
  std::vector<unsigned char> recv = std::vector<unsigned char>(kBufferBytes, kSentinel);
  explicit Buffers(int rank) {
    for (std::size_t i = 0; i < send.size(); ++i) send[i] = static_cast<unsigned char>((i * 7 + static_cast<std::size_t>(rank)) % 64);
  }
  // Untouched, or holding only this rank's own input at the same place (the
  // root of a broadcast copies its data to its recv first: that is its result
  // whatever the other ranks do, not a partial one).
  bool recv_untouched() const {
    for (std::size_t i = 0; i < recv.size(); ++i) {
      if (recv[i] != kSentinel && recv[i] != send[i]) return false;
    }
    return true;
  }
};

using Call = std::function<void(int rank, Communicator& comm, Buffers& b)>;

struct Row {
  std::string name;
  Call call;
  // Every one of these must appear in each rank's message: both sides.
  std::vector<std::string> tokens;
  // Point-to-point: a send completes once its message is staged, so the
  // sender (and a rank not involved) may only learn of the mismatch in its
  // next call. Collectives must fail in the call itself.
  bool point_to_point = false;
  // Per-rank environment for the communicator of this row (e.g. TPCOMM_ALGO).
  std::function<void(int rank)> environment = {};
};

// Rank 2 disagrees with ranks 0 and 1, which agree with each other.
Call odd_one(Call agreeing, Call disagreeing) {
  return [agreeing, disagreeing](int rank, Communicator& comm, Buffers& b) {
    if (rank == 2) {
      disagreeing(rank, comm, b);
    } else {
      agreeing(rank, comm, b);
    }
  };
}

Call all_reduce(std::size_t count, DataType dtype, ReduceOp op) {
  return [=](int, Communicator& comm, Buffers& b) { comm.all_reduce(b.send.data(), b.recv.data(), count, dtype, op); };
}
Call broadcast(std::size_t count, int root) {
  return [=](int, Communicator& comm, Buffers& b) {
    comm.broadcast(b.send.data(), b.recv.data(), count, DataType::f32, root);
  };
}
Call reduce(std::size_t count, ReduceOp op, int root) {
  return [=](int, Communicator& comm, Buffers& b) {
    comm.reduce(b.send.data(), b.recv.data(), count, DataType::f32, op, root);
  };
}
Call gather(std::size_t count, int root) {
  return [=](int, Communicator& comm, Buffers& b) { comm.gather(b.send.data(), b.recv.data(), count, DataType::i32, root); };
}
Call scatter(std::size_t count, int root) {
  return [=](int, Communicator& comm, Buffers& b) {
    comm.scatter(b.send.data(), b.recv.data(), count, DataType::i32, root);
  };
}
Call all_gather(std::size_t count, DataType dtype) {
  return [=](int, Communicator& comm, Buffers& b) { comm.all_gather(b.send.data(), b.recv.data(), count, dtype); };
}
Call reduce_scatter(std::size_t count, DataType dtype) {
  return [=](int, Communicator& comm, Buffers& b) {
    comm.reduce_scatter(b.send.data(), b.recv.data(), count, dtype, ReduceOp::sum);
  };
}
Call all_to_all(std::size_t count) {
  return [=](int, Communicator& comm, Buffers& b) { comm.all_to_all(b.send.data(), b.recv.data(), count, DataType::u8); };
}
Call all_gatherv(std::vector<std::size_t> counts) {
  return [=](int, Communicator& comm, Buffers& b) { comm.all_gatherv(b.send.data(), b.recv.data(), counts, DataType::f32); };
}
Call reduce_scatterv(std::vector<std::size_t> counts) {
  return [=](int, Communicator& comm, Buffers& b) {
    comm.reduce_scatterv(b.send.data(), b.recv.data(), counts, DataType::f32, ReduceOp::sum);
  };
}
Call barrier() {
  return [](int, Communicator& comm, Buffers&) { comm.barrier(); };
}

// all_to_allv where rank 2 expects `expected_from_0` elements from rank 0,
// which sends it 2.
Call all_to_allv(std::size_t expected_from_0) {
  return [=](int rank, Communicator& comm, Buffers& b) {
    const std::vector<std::size_t> send_counts{2, 2, 2}, displs{0, 4, 8};
    std::vector<std::size_t> recv_counts{2, 2, 2};
    if (rank == 2) recv_counts[0] = expected_from_0;
    comm.all_to_allv(b.send.data(), send_counts, displs, b.recv.data(), recv_counts, displs, DataType::f32);
  };
}

// Rank 0 sends `sent` x dtype_sent to rank 1, which expects `expected` x dtype_expected.
Call send_recv(std::size_t sent, DataType dtype_sent, std::size_t expected, DataType dtype_expected) {
  return [=](int rank, Communicator& comm, Buffers& b) {
    if (rank == 0) comm.send(b.send.data(), sent, dtype_sent, 1);
    if (rank == 1) comm.recv(b.recv.data(), expected, dtype_expected, 0);
  };
}

std::vector<Row> mismatch_table() {
  using D = DataType;
  using O = ReduceOp;
  return {
      {"different collectives", odd_one(all_reduce(16, D::f32, O::sum), broadcast(16, 0)),
       {"all_reduce(", "broadcast("}},
      {"barrier and all_reduce", odd_one(all_reduce(16, D::f32, O::sum), barrier()), {"all_reduce(", "barrier()"}},
      {"all_reduce counts", odd_one(all_reduce(16, D::f32, O::sum), all_reduce(17, D::f32, O::sum)),
       {"count=16", "count=17"}},
      {"all_reduce dtypes of one size", odd_one(all_reduce(16, D::f32, O::sum), all_reduce(16, D::i32, O::sum)),
       {"dtype=f32", "dtype=i32"}},
      {"all_reduce ops", odd_one(all_reduce(16, D::f32, O::sum), all_reduce(16, D::f32, O::max)),
       {"op=sum", "op=max"}},
      {"large all_reduce counts", odd_one(all_reduce(8192, D::u8, O::sum), all_reduce(8000, D::u8, O::sum)),
       {"count=8192", "count=8000"}},
      {"broadcast roots", odd_one(broadcast(32, 0), broadcast(32, 1)), {"root=0", "root=1"}},
      {"broadcast counts", odd_one(broadcast(32, 1), broadcast(31, 1)), {"count=32", "count=31"}},
      {"reduce roots", odd_one(reduce(8, O::sum, 1), reduce(8, O::sum, 2)), {"root=1", "root=2"}},
      {"reduce ops", odd_one(reduce(8, O::sum, 0), reduce(8, O::min, 0)), {"op=sum", "op=min"}},
      {"gather roots", odd_one(gather(8, 0), gather(8, 2)), {"root=0", "root=2"}},
      {"scatter counts", odd_one(scatter(8, 1), scatter(9, 1)), {"count=8", "count=9"}},
      {"all_gather counts", odd_one(all_gather(8, D::f64), all_gather(4, D::f64)), {"count=8", "count=4"}},
      {"all_gather dtypes", odd_one(all_gather(8, D::bf16), all_gather(8, D::f16)), {"dtype=bf16", "dtype=f16"}},
      {"reduce_scatter dtypes", odd_one(reduce_scatter(8, D::f64), reduce_scatter(8, D::i64)),
       {"dtype=f64", "dtype=i64"}},
      {"all_to_all counts", odd_one(all_to_all(4), all_to_all(5)), {"count=4", "count=5"}},
      {"all_gatherv counts", odd_one(all_gatherv({1, 2, 3}), all_gatherv({1, 2, 4})), {"all_gatherv(counts hash="}},
      {"reduce_scatterv counts", odd_one(reduce_scatterv({4, 0, 4}), reduce_scatterv({4, 4, 0})),
       {"reduce_scatterv(counts hash="}},
      {"all_to_allv counts", all_to_allv(3), {"sends 2 elements to rank 2", "recv_counts[0] = 3"}},
      {"all_reduce algorithms (TPCOMM_ALGO)", all_reduce(64, D::f32, O::sum),
       {"algorithm=one_shot", "algorithm=two_shot"}, false,
       [](int rank) { ::setenv("TPCOMM_ALGO", rank == 2 ? "two_shot" : "one_shot", 1); }},
      {"send/recv counts", send_recv(8, D::f32, 9, D::f32), {"expects 9 x f32", "sent 8 x f32"}, true},
      {"send/recv dtypes of one size", send_recv(8, D::f32, 8, D::i32), {"expects 8 x i32", "sent 8 x f32"}, true},
  };
}

struct RowOutcome {
  std::atomic<int> failed_in_call{0};
  std::atomic<int> failed_in_next_call{0};
  std::atomic<int> code{0};
  std::atomic<int> recv_untouched{1};
  double seconds = 0;
  char message[2048] = {};
};

// Every rank runs every row on a fresh communicator of the same job (the
// communicators of one job get the same instance numbers on every rank).
void run_table(const std::vector<Row>& table, SharedArray<RowOutcome>& outcomes) {
  const std::string job = job_id("mismatch");
  const std::size_t rows = table.size();
  RankProcesses ranks(kWorld, [&](int rank) {
    for (std::size_t i = 0; i < rows; ++i) {
      const Row& row = table[i];
      RowOutcome& out = outcomes[i * kWorld + static_cast<std::size_t>(rank)];
      if (row.environment) row.environment(rank);
      auto comm = create_with_timeout(rank, kWorld, job, kDeadline);
      ::unsetenv("TPCOMM_ALGO");
      comm.barrier();
      Buffers buffers(rank);
      const std::int64_t start = now_ns();
      auto note = [&](const tpcomm::Error& error) {
        out.seconds = seconds_between(start, now_ns());
        out.code = static_cast<int>(error.code());
        std::snprintf(out.message, sizeof(out.message), "%s", error.what());
      };
      try {
        row.call(rank, comm, buffers);
        try {
          comm.barrier();
        } catch (const tpcomm::Error& error) {
          out.failed_in_next_call = 1;
          note(error);
        }
      } catch (const tpcomm::Error& error) {
        out.failed_in_call = 1;
        note(error);
      }
      out.recv_untouched = buffers.recv_untouched() ? 1 : 0;
    }
  });
  expect_all_exited_zero(ranks, static_cast<double>(rows) * (kDeadline + 2) + 30);
}

TEST(Mismatch, EveryRankGetsAnErrorShowingBothSides) {
  const std::vector<Row> table = mismatch_table();
  SharedArray<RowOutcome> outcomes(table.size() * kWorld);
  run_table(table, outcomes);
  for (std::size_t i = 0; i < table.size(); ++i) {
    const Row& row = table[i];
    for (int r = 0; r < kWorld; ++r) {
      const RowOutcome& out = outcomes[i * kWorld + static_cast<std::size_t>(r)];
      const std::string who = row.name + ", rank " + std::to_string(r) + ": ";
      const std::string message = out.message;
      const bool failed = out.failed_in_call != 0 || (row.point_to_point && out.failed_in_next_call != 0);
      EXPECT_TRUE(failed) << who << (out.failed_in_next_call != 0 ? "the call returned; only the next failed: "
                                                                  : "no error at all")
                          << message;
      if (!failed) continue;
      expect_reported_error(static_cast<ErrorCode>(out.code.load()), message, ErrorCode::mismatch, row.tokens, who);
      EXPECT_LT(out.seconds, kDeadline * 0.8) << who << "reported only at the deadline: " << message;
    }
  }
}

// A collective that fails on a mismatch returns no partial result: the
// receive buffer of an out-of-place call holds nothing from other ranks.
TEST(Mismatch, NoRankGetsAPartialResult) {
  const std::vector<Row> table = mismatch_table();
  SharedArray<RowOutcome> outcomes(table.size() * kWorld);
  run_table(table, outcomes);
  for (std::size_t i = 0; i < table.size(); ++i) {
    if (table[i].point_to_point) continue;
    for (int r = 0; r < kWorld; ++r) {
      const RowOutcome& out = outcomes[i * kWorld + static_cast<std::size_t>(r)];
      if (out.failed_in_call == 0) continue;
      EXPECT_EQ(out.recv_untouched.load(), 1)
          << table[i].name << ", rank " << r << ": recv was written although the call failed with: " << out.message;
    }
  }
}

// count == 0 is a local no-op, so a rank passing 0 where the others pass a
// real count never meets them: the others wait. The disagreement must still
// be reported as a mismatch on every rank, not as a deadline.
TEST(Mismatch, ZeroCountAgainstANonZeroCountIsReportedOnEveryRank) {
  const std::vector<Row> table{
      {"all_reduce count 0 against 16", odd_one(all_reduce(16, DataType::f32, ReduceOp::sum),
                                                all_reduce(0, DataType::f32, ReduceOp::sum)),
       {"count=16", "count=0"}},
  };
  SharedArray<RowOutcome> outcomes(kWorld);
  run_table(table, outcomes);
  for (int r = 0; r < kWorld; ++r) {
    const RowOutcome& out = outcomes[static_cast<std::size_t>(r)];
    const std::string message = out.message;
    EXPECT_EQ(out.failed_in_call.load(), 1)
        << "rank " << r << ": " << (out.failed_in_next_call ? "only the next call failed: " : "no error: ") << message;
    expect_reported_error(static_cast<ErrorCode>(out.code.load()), message, ErrorCode::mismatch, {"count=0", "count=16"},
                          "rank " + std::to_string(r) + ": ");
  }
}

// A point-to-point call against a collective: both sides must learn of it.
TEST(Mismatch, SendAgainstACollectiveIsReportedOnEveryRank) {
  const std::vector<Row> table{
      {"send against barrier",
       [](int rank, Communicator& comm, Buffers& b) {
         if (rank == 0) {
           comm.send(b.send.data(), 8, DataType::f32, 1);
           comm.recv(b.recv.data(), 8, DataType::f32, 1);
         } else {
           comm.barrier();
         }
       },
       {}},
  };
  SharedArray<RowOutcome> outcomes(kWorld);
  run_table(table, outcomes);
  for (int r = 0; r < kWorld; ++r) {
    const RowOutcome& out = outcomes[static_cast<std::size_t>(r)];
    EXPECT_EQ(out.failed_in_call.load(), 1) << "rank " << r << ": " << out.message;
    EXPECT_EQ(static_cast<ErrorCode>(out.code.load()), ErrorCode::mismatch) << "rank " << r << ": " << out.message;
  }
}

// Ranks created with different chunk sizes cannot share a segment. Every
// rank must be told so (mismatch), not only those that arrive after the
// creator: the creator must not be left waiting for its deadline.
TEST(Mismatch, DifferentChunkSizesAreReportedOnEveryRank) {
  const std::string job = job_id("chunks");
  SharedArray<RankReport> board(kWorld);
  RankProcesses ranks(kWorld, [&](int rank) {
    RankReport& me = board[static_cast<std::size_t>(rank)];
    // Rank 0 creates the segment first, with its own chunk size.
    if (rank != 0) {
      check(wait_until([&] { return ::access(first_segment_path(job, kWorld).c_str(), F_OK) == 0; }, 30),
            "rank 0 never created the segment");
    }
    tpcomm::CommOptions options;
    options.timeout = std::chrono::duration<double>(kDeadline);
    options.chunk_bytes = rank == 0 ? 64 * 1024 : 128 * 1024;
    me.call_started_ns = now_ns();
    me.observe([&] {
      auto comm = Communicator::create(rank, kWorld, job, options);
      comm.barrier();
    });
  });
  ASSERT_TRUE(ranks.wait_all(60)) << ranks.describe();
  for (int r = 0; r < kWorld; ++r) {
    const RankReport& report = board[static_cast<std::size_t>(r)];
    ASSERT_EQ(report.outcome.load(), RankReport::failed) << "rank " << r;
    EXPECT_EQ(static_cast<ErrorCode>(report.code), ErrorCode::mismatch) << "rank " << r << ": " << report.message;
    EXPECT_LT(seconds_between(report.call_started_ns.load(), report.failed_ns), kDeadline * 0.8)
        << "rank " << r << " learnt of the disagreement only at its deadline: " << report.message;
  }
  remove_segments_of(job);
}

}  // namespace
