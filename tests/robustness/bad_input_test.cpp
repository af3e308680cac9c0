// Bad input through the C++ and the C API: null buffers with a non-zero
// count, partial overlaps, count x size overflows, unknown dtype and op
// values, avg on integers, roots and peers out of range, wrong array lengths,
// use from a forked child. Every rank makes the same bad call and must get
// invalid_argument with a message naming the problem; then a valid all_reduce
// must work on every rank (the error was caught before any rank moved).
#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "robustness.hpp"
#include "tpcomm/tpcomm.h"

namespace {

using namespace tpcomm::robustness;

constexpr int kWorld = 3;
constexpr double kDeadline = 5.0;
constexpr std::size_t kMax = std::numeric_limits<std::size_t>::max();
constexpr double kInfinity = std::numeric_limits<double>::infinity();
const double kNaN = std::nan("");

struct Scratch {
  std::vector<float> f = std::vector<float>(4096, 1.0f);
  std::vector<float> g = std::vector<float>(4096, 2.0f);
  std::vector<std::int32_t> i = std::vector<std::int32_t>(4096, 3);
  const std::vector<std::size_t> ones{1, 1, 1};
  const std::vector<std::size_t> twos{2, 2, 2};
  const std::vector<std::size_t> displs{0, 4, 8};
};

DataType bad_dtype(int value) { return static_cast<DataType>(value); }
ReduceOp bad_op(int value) { return static_cast<ReduceOp>(value); }
tpcomm_dtype_t c_dtype(int value) { return static_cast<tpcomm_dtype_t>(value); }
tpcomm_redop_t c_op(int value) { return static_cast<tpcomm_redop_t>(value); }

struct RowResult {
  char problem[2048] = {};  // empty: the row behaved
};

void note_problem(RowResult& result, const std::string& text) {
  if (result.problem[0] == '\0') std::snprintf(result.problem, sizeof(result.problem), "%s", text.c_str());
}

// ---- C++ -------------------------------------------------------------------

struct CppRow {
  std::string name;
  std::function<void(int rank, Communicator& comm, Scratch& s)> call;
  std::string needle;  // part of the expected message
  ErrorCode code = ErrorCode::invalid_argument;
};

std::vector<CppRow> cpp_table() {
  using D = DataType;
  using O = ReduceOp;
  using P2P = Communicator::PointToPoint;
  auto next = [](int rank) { return (rank + 1) % kWorld; };
  auto prev = [](int rank) { return (rank + kWorld - 1) % kWorld; };
  return {
      // null buffers with a non-zero count
      {"all_reduce null send", [](int, auto& c, auto& s) { c.all_reduce(nullptr, s.f.data(), 4, D::f32, O::sum); },
       "send buffer is null"},
      {"all_reduce null recv", [](int, auto& c, auto& s) { c.all_reduce(s.f.data(), nullptr, 4, D::f32, O::sum); },
       "recv buffer is null"},
      {"reduce_scatter null send",
       [](int, auto& c, auto& s) { c.reduce_scatter(nullptr, s.f.data(), 4, D::f32, O::sum); }, "send buffer is null"},
      {"reduce_scatter null recv",
       [](int, auto& c, auto& s) { c.reduce_scatter(s.f.data(), nullptr, 4, D::f32, O::sum); }, "recv buffer is null"},
      {"reduce_scatterv null send",
       [](int, auto& c, auto& s) { c.reduce_scatterv(nullptr, s.f.data(), s.ones, D::f32, O::sum); },
       "send buffer is null"},
      {"all_gather null send", [](int, auto& c, auto& s) { c.all_gather(nullptr, s.f.data(), 4, D::f32); },
       "send buffer is null"},
      {"all_gather null recv", [](int, auto& c, auto& s) { c.all_gather(s.f.data(), nullptr, 4, D::f32); },
       "recv buffer is null"},
      {"all_gatherv null send", [](int, auto& c, auto& s) { c.all_gatherv(nullptr, s.f.data(), s.twos, D::f32); },
       "send buffer is null"},
      {"broadcast null recv", [](int, auto& c, auto& s) { c.broadcast(s.f.data(), nullptr, 4, D::f32, 1); },
       "recv buffer is null"},
      {"reduce null send", [](int, auto& c, auto& s) { c.reduce(nullptr, s.f.data(), 4, D::f32, O::sum, 0); },
       "send buffer is null"},
      {"gather null send", [](int, auto& c, auto& s) { c.gather(nullptr, s.f.data(), 4, D::f32, 2); },
       "send buffer is null"},
      {"scatter null recv", [](int, auto& c, auto& s) { c.scatter(s.f.data(), nullptr, 4, D::f32, 0); },
       "recv buffer is null"},
      {"all_to_all null send", [](int, auto& c, auto& s) { c.all_to_all(nullptr, s.f.data(), 4, D::f32); },
       "send buffer is null"},
      {"all_to_all null recv", [](int, auto& c, auto& s) { c.all_to_all(s.f.data(), nullptr, 4, D::f32); },
       "recv buffer is null"},
      {"all_to_allv null recv",
       [](int, auto& c, auto& s) { c.all_to_allv(s.f.data(), s.ones, s.displs, nullptr, s.ones, s.displs, D::f32); },
       "recv buffer is null"},
      {"send null buffer", [=](int r, auto& c, auto&) { c.send(nullptr, 4, D::f32, next(r)); }, "send buffer is null"},
      {"recv null buffer", [=](int r, auto& c, auto&) { c.recv(nullptr, 4, D::f32, prev(r)); }, "recv buffer is null"},
      {"batch with a null buffer",
       [=](int r, auto& c, auto& s) {
         const P2P ops[] = {{P2P::Kind::send, s.f.data(), 4, D::f32, next(r)},
                            {P2P::Kind::recv, nullptr, 4, D::f32, prev(r)}};
         c.batch(ops);
       },
       "recv buffer is null"},
      // partial overlap
      {"all_reduce partial overlap",
       [](int, auto& c, auto& s) { c.all_reduce(s.f.data(), s.f.data() + 2, 8, D::f32, O::sum); }, "partially overlap"},
      {"all_to_all partial overlap", [](int, auto& c, auto& s) { c.all_to_all(s.f.data(), s.f.data() + 1, 4, D::f32); },
       "partially overlap"},
      {"reduce_scatter recv inside send but not at its block",
       [](int, auto& c, auto& s) { c.reduce_scatter(s.f.data(), s.f.data() + 1, 4, D::f32, O::sum); },
       "in-place rule"},
      {"all_gather send inside recv but not at its block",
       [](int, auto& c, auto& s) { c.all_gather(s.f.data() + 1, s.f.data(), 4, D::f32); }, "in-place rule"},
      {"all_gatherv send inside recv but not at its block",
       [](int, auto& c, auto& s) { c.all_gatherv(s.f.data() + 1, s.f.data(), s.twos, D::f32); }, "in-place rule"},
      {"reduce_scatterv recv inside send but not at its block",
       [](int, auto& c, auto& s) { c.reduce_scatterv(s.f.data(), s.f.data() + 5, s.twos, D::f32, O::sum); },
       "in-place rule"},
      {"all_to_allv overlap",
       [](int, auto& c, auto& s) {
         c.all_to_allv(s.f.data(), s.ones, s.displs, s.f.data() + 4, s.ones, s.displs, D::f32);
       },
       "overlap"},
      // count x size overflow
      {"all_reduce count x size overflows",
       [](int, auto& c, auto& s) { c.all_reduce(s.f.data(), s.g.data(), kMax / 2, D::f32, O::sum); }, "overflows"},
      {"broadcast count x size overflows",
       [](int, auto& c, auto& s) { c.broadcast(s.f.data(), s.g.data(), kMax / 4 + 1, D::i64, 0); }, "overflows"},
      {"reduce count x size overflows",
       [](int, auto& c, auto& s) { c.reduce(s.f.data(), s.g.data(), kMax / 2 + 1, D::f16, O::max, 0); }, "overflows"},
      {"all_gather world x block overflows",
       [](int, auto& c, auto& s) { c.all_gather(s.f.data(), s.g.data(), kMax / 12 + 1, D::f32); }, "overflow"},
      {"gather world x block overflows",
       [](int, auto& c, auto& s) { c.gather(s.f.data(), s.g.data(), kMax / 12 + 1, D::f32, 0); }, "overflow"},
      {"scatter world x block overflows",
       [](int, auto& c, auto& s) { c.scatter(s.f.data(), s.g.data(), kMax / 12 + 1, D::f32, 0); }, "overflow"},
      {"all_to_all world x block overflows",
       [](int, auto& c, auto& s) { c.all_to_all(s.f.data(), s.g.data(), kMax / 12 + 1, D::f32); }, "overflow"},
      {"reduce_scatterv counts overflow",
       [](int, auto& c, auto& s) {
         const std::vector<std::size_t> counts{kMax / 4, kMax / 4, 1};
         c.reduce_scatterv(s.f.data(), s.g.data(), counts, D::f32, O::sum);
       },
       "overflow"},
      {"all_gatherv counts overflow",
       [](int, auto& c, auto& s) {
         const std::vector<std::size_t> counts{1, kMax / 8, kMax / 8};
         c.all_gatherv(s.f.data(), s.g.data(), counts, D::f64);
       },
       "overflow"},
      {"all_to_allv displacement overflows",
       [](int, auto& c, auto& s) {
         const std::vector<std::size_t> displs{0, kMax - 1, 8};
         c.all_to_allv(s.f.data(), s.twos, displs, s.g.data(), s.twos, s.displs, D::f32);
       },
       "overflow"},
      {"send count x size overflows", [=](int r, auto& c, auto& s) { c.send(s.f.data(), kMax / 2, D::f32, next(r)); },
       "overflows"},
      // unknown dtype and op values
      {"all_reduce dtype 42", [](int, auto& c, auto& s) { c.all_reduce(s.f.data(), s.g.data(), 4, bad_dtype(42), O::sum); },
       "unknown dtype value 42"},
      {"all_reduce dtype -1", [](int, auto& c, auto& s) { c.all_reduce(s.f.data(), s.g.data(), 4, bad_dtype(-1), O::sum); },
       "unknown dtype value -1"},
      {"all_reduce op 17", [](int, auto& c, auto& s) { c.all_reduce(s.f.data(), s.g.data(), 4, D::f32, bad_op(17)); },
       "unknown reduce op value 17"},
      {"all_reduce op -1", [](int, auto& c, auto& s) { c.all_reduce(s.f.data(), s.g.data(), 4, D::f32, bad_op(-1)); },
       "unknown reduce op value -1"},
      {"reduce op 5", [](int, auto& c, auto& s) { c.reduce(s.f.data(), s.g.data(), 4, D::f32, bad_op(5), 0); },
       "unknown reduce op value 5"},
      {"reduce_scatter op 99",
       [](int, auto& c, auto& s) { c.reduce_scatter(s.f.data(), s.g.data(), 4, D::f32, bad_op(99)); },
       "unknown reduce op value 99"},
      {"broadcast dtype 8", [](int, auto& c, auto& s) { c.broadcast(s.f.data(), s.g.data(), 4, bad_dtype(8), 0); },
       "unknown dtype value 8"},
      {"all_gather dtype 200", [](int, auto& c, auto& s) { c.all_gather(s.f.data(), s.g.data(), 4, bad_dtype(200)); },
       "unknown dtype value 200"},
      {"all_to_all dtype -7", [](int, auto& c, auto& s) { c.all_to_all(s.f.data(), s.g.data(), 4, bad_dtype(-7)); },
       "unknown dtype value -7"},
      {"all_to_allv dtype 100",
       [](int, auto& c, auto& s) {
         c.all_to_allv(s.f.data(), s.ones, s.displs, s.g.data(), s.ones, s.displs, bad_dtype(100));
       },
       "unknown dtype value 100"},
      {"reduce_scatterv dtype 12",
       [](int, auto& c, auto& s) { c.reduce_scatterv(s.f.data(), s.g.data(), s.ones, bad_dtype(12), O::sum); },
       "unknown dtype value 12"},
      {"send dtype 9", [=](int r, auto& c, auto& s) { c.send(s.f.data(), 4, bad_dtype(9), next(r)); },
       "unknown dtype value 9"},
      // avg on integer dtypes
      {"all_reduce avg on i32",
       [](int, auto& c, auto& s) { c.all_reduce(s.i.data(), s.i.data(), 4, D::i32, O::avg); }, "avg is not defined"},
      {"reduce avg on i8", [](int, auto& c, auto& s) { c.reduce(s.i.data(), s.f.data(), 4, D::i8, O::avg, 1); },
       "avg is not defined"},
      {"reduce_scatter avg on u8",
       [](int, auto& c, auto& s) { c.reduce_scatter(s.i.data(), s.f.data(), 4, D::u8, O::avg); }, "avg is not defined"},
      {"reduce_scatterv avg on i64",
       [](int, auto& c, auto& s) { c.reduce_scatterv(s.i.data(), s.f.data(), s.ones, D::i64, O::avg); },
       "avg is not defined"},
      // roots and peers out of range
      {"broadcast root -1", [](int, auto& c, auto& s) { c.broadcast(s.f.data(), s.g.data(), 4, D::f32, -1); },
       "root -1 is out of range"},
      {"broadcast root = world size", [](int, auto& c, auto& s) { c.broadcast(s.f.data(), s.g.data(), 4, D::f32, 3); },
       "root 3 is out of range"},
      {"broadcast root INT_MAX",
       [](int, auto& c, auto& s) { c.broadcast(s.f.data(), s.g.data(), 4, D::f32, INT_MAX); }, "is out of range"},
      {"reduce root 3", [](int, auto& c, auto& s) { c.reduce(s.f.data(), s.g.data(), 4, D::f32, O::sum, 3); },
       "root 3 is out of range"},
      {"gather root -2", [](int, auto& c, auto& s) { c.gather(s.f.data(), s.g.data(), 4, D::f32, -2); },
       "root -2 is out of range"},
      {"scatter root 100", [](int, auto& c, auto& s) { c.scatter(s.f.data(), s.g.data(), 4, D::f32, 100); },
       "root 100 is out of range"},
      {"send peer -1", [](int, auto& c, auto& s) { c.send(s.f.data(), 4, D::f32, -1); }, "peer -1 is out of range"},
      {"recv peer = world size", [](int, auto& c, auto& s) { c.recv(s.f.data(), 4, D::f32, 3); },
       "peer 3 is out of range"},
      {"send to itself", [](int r, auto& c, auto& s) { c.send(s.f.data(), 4, D::f32, r); }, "is out of range"},
      {"batch with one bad peer among good ones",
       [=](int r, auto& c, auto& s) {
         const P2P ops[] = {{P2P::Kind::send, s.f.data(), 4, D::f32, next(r)},
                            {P2P::Kind::recv, s.g.data(), 4, D::f32, prev(r)},
                            {P2P::Kind::send, s.f.data(), 4, D::f32, 7}};
         c.batch(ops);
       },
       "peer 7 is out of range"},
      // per-rank arrays of the wrong length
      {"all_gatherv with 2 counts for 3 ranks",
       [](int, auto& c, auto& s) {
         const std::vector<std::size_t> counts{1, 1};
         c.all_gatherv(s.f.data(), s.g.data(), counts, D::f32);
       },
       "must have world_size (3) entries, got 2"},
      {"reduce_scatterv with 4 counts for 3 ranks",
       [](int, auto& c, auto& s) {
         const std::vector<std::size_t> counts{1, 1, 1, 1};
         c.reduce_scatterv(s.f.data(), s.g.data(), counts, D::f32, O::sum);
       },
       "must have world_size (3) entries, got 4"},
      {"all_to_allv with short arrays",
       [](int, auto& c, auto& s) {
         const std::vector<std::size_t> two{1, 1};
         c.all_to_allv(s.f.data(), two, two, s.g.data(), two, two, D::f32);
       },
       "must have world_size (3) entries"},
      // groups and settings
      {"split with a negative color", [](int, auto& c, auto&) { (void)c.split(-5, 0); }, "color -5 is negative"},
      {"new_group with a repeated rank",
       [](int, auto& c, auto&) {
         const int ranks[] = {0, 0};
         (void)c.new_group(ranks);
       },
       "repeated"},
      {"new_group with a rank out of range",
       [](int, auto& c, auto&) {
         const int ranks[] = {0, 5};
         (void)c.new_group(ranks);
       },
       "out of range"},
      {"set_timeout 0", [](int, auto& c, auto&) { c.set_timeout(std::chrono::duration<double>(0)); },
       "timeout must be positive"},
      {"set_timeout -1", [](int, auto& c, auto&) { c.set_timeout(std::chrono::duration<double>(-1)); },
       "timeout must be positive"},
      {"set_timeout NaN", [](int, auto& c, auto&) { c.set_timeout(std::chrono::duration<double>(kNaN)); },
       "timeout must be positive"},
      {"span overload with sizes that differ",
       [](int, auto& c, auto& s) {
         c.all_reduce(std::span<const float>(s.f.data(), 4), std::span<float>(s.g.data(), 5), O::sum);
       },
       "differ in size"},
  };
}

// The valid call after each bad one: rank + 1 summed over the ranks.
void expect_valid_all_reduce(Communicator& comm, int rank) {
  std::int32_t value = rank + 1, sum = 0;
  comm.all_reduce(&value, &sum, 1, DataType::i32, ReduceOp::sum);
  check(sum == kWorld * (kWorld + 1) / 2, "valid all_reduce after the rejected call gave " + std::to_string(sum));
}

// Each row runs on a fresh communicator, so one row's failure cannot hide or
// cause another's.
template <class Row, class RunRow>
void run_rows(const std::vector<Row>& table, const std::string& label, RunRow run_row) {
  SharedArray<RowResult> results(table.size() * kWorld);
  const std::string job = job_id(label);
  RankProcesses ranks(kWorld, [&](int rank) {
    for (std::size_t i = 0; i < table.size(); ++i) {
      RowResult& result = results[i * kWorld + static_cast<std::size_t>(rank)];
      try {
        run_row(table[i], rank, job, result);
      } catch (const std::exception& error) {
        note_problem(result, error.what());
      }
    }
  });
  ASSERT_TRUE(ranks.wait_all(static_cast<double>(table.size()) * 2 * kDeadline + 30)) << ranks.describe();
  for (std::size_t i = 0; i < table.size(); ++i) {
    for (int r = 0; r < kWorld; ++r) {
      const std::string problem = results[i * kWorld + static_cast<std::size_t>(r)].problem;
      EXPECT_TRUE(problem.empty()) << table[i].name << ", rank " << r << ": " << problem;
    }
  }
}

void run_cpp_row(const CppRow& row, int rank, const std::string& job, RowResult& result) {
  auto comm = create_with_timeout(rank, kWorld, job, kDeadline);
  Scratch scratch;
  try {
    expect_error([&] { row.call(rank, comm, scratch); }, row.code, {row.needle}, "the call");
  } catch (const std::exception& error) {
    note_problem(result, error.what());
  }
  try {
    expect_valid_all_reduce(comm, rank);
  } catch (const std::exception& error) {
    note_problem(result, std::string("the communicator is no longer usable: ") + error.what());
  }
}

TEST(BadInput, CppApiRejectsEveryBadCallAndStaysUsable) {
  run_rows(cpp_table(), "bad_cpp", run_cpp_row);
}

// ---- C ---------------------------------------------------------------------

struct CRow {
  std::string name;
  std::function<tpcomm_status_t(int rank, tpcomm_comm_t comm, Scratch& s)> call;
  std::string needle;
};

std::vector<CRow> c_table() {
  auto next = [](int rank) { return (rank + 1) % kWorld; };
  return {
      {"NULL communicator", [](int, auto, auto& s) { return tpcomm_all_reduce(nullptr, s.f.data(), s.f.data(), 4, TPCOMM_F32, TPCOMM_SUM); },
       "communicator is NULL"},
      {"all_reduce null send",
       [](int, auto c, auto& s) { return tpcomm_all_reduce(c, nullptr, s.f.data(), 4, TPCOMM_F32, TPCOMM_SUM); },
       "send buffer is null"},
      {"broadcast null recv",
       [](int, auto c, auto& s) { return tpcomm_broadcast(c, s.f.data(), nullptr, 4, TPCOMM_F32, 0); },
       "recv buffer is null"},
      {"all_to_all null recv",
       [](int, auto c, auto& s) { return tpcomm_all_to_all(c, s.f.data(), nullptr, 4, TPCOMM_F32); },
       "recv buffer is null"},
      {"reduce_scatterv NULL recv_counts",
       [](int, auto c, auto& s) { return tpcomm_reduce_scatterv(c, s.f.data(), s.g.data(), nullptr, TPCOMM_F32, TPCOMM_SUM); },
       "recv_counts must not be NULL"},
      {"all_gatherv NULL counts",
       [](int, auto c, auto& s) { return tpcomm_all_gatherv(c, s.f.data(), s.g.data(), nullptr, TPCOMM_F32); },
       "counts must not be NULL"},
      {"all_to_allv NULL send_displs",
       [](int, auto c, auto& s) {
         return tpcomm_all_to_allv(c, s.f.data(), s.ones.data(), nullptr, s.g.data(), s.ones.data(), s.displs.data(),
                                   TPCOMM_F32);
       },
       "send_displs must not be NULL"},
      {"p2p_batch NULL ops", [](int, auto c, auto&) { return tpcomm_p2p_batch(c, nullptr, 2); }, "ops is NULL"},
      {"p2p_batch null buffer",
       [=](int r, auto c, auto&) {
         const tpcomm_p2p_op_t op{1, nullptr, 4, TPCOMM_F32, next(r)};
         return tpcomm_p2p_batch(c, &op, 1);
       },
       "send buffer is null"},
      {"all_reduce partial overlap",
       [](int, auto c, auto& s) { return tpcomm_all_reduce(c, s.f.data(), s.f.data() + 1, 4, TPCOMM_F32, TPCOMM_SUM); },
       "partially overlap"},
      {"gather misplaced in-place on every rank",
       [](int, auto c, auto& s) { return tpcomm_all_gather(c, s.f.data() + 3, s.f.data(), 4, TPCOMM_F32); },
       "in-place rule"},
      {"all_reduce count x size overflows",
       [](int, auto c, auto& s) { return tpcomm_all_reduce(c, s.f.data(), s.g.data(), kMax / 4 + 1, TPCOMM_F32, TPCOMM_SUM); },
       "overflows"},
      {"scatter world x block overflows",
       [](int, auto c, auto& s) { return tpcomm_scatter(c, s.f.data(), s.g.data(), kMax / 24 + 1, TPCOMM_F64, 0); },
       "overflow"},
      {"all_reduce dtype 42",
       [](int, auto c, auto& s) { return tpcomm_all_reduce(c, s.f.data(), s.g.data(), 4, c_dtype(42), TPCOMM_SUM); },
       "unknown dtype value 42"},
      {"all_reduce op -3",
       [](int, auto c, auto& s) { return tpcomm_all_reduce(c, s.f.data(), s.g.data(), 4, TPCOMM_F32, c_op(-3)); },
       "unknown reduce op value -3"},
      {"reduce dtype 8",
       [](int, auto c, auto& s) { return tpcomm_reduce(c, s.f.data(), s.g.data(), 4, c_dtype(8), TPCOMM_SUM, 0); },
       "unknown dtype value 8"},
      {"p2p_batch dtype 77",
       [=](int r, auto c, auto& s) {
         const tpcomm_p2p_op_t op{1, s.f.data(), 4, c_dtype(77), next(r)};
         return tpcomm_p2p_batch(c, &op, 1);
       },
       "unknown dtype value 77"},
      {"all_reduce avg on i64",
       [](int, auto c, auto& s) { return tpcomm_all_reduce(c, s.i.data(), s.i.data(), 2, TPCOMM_I64, TPCOMM_AVG); },
       "avg is not defined"},
      {"reduce avg on i32",
       [](int, auto c, auto& s) { return tpcomm_reduce(c, s.i.data(), s.g.data(), 2, TPCOMM_I32, TPCOMM_AVG, 0); },
       "avg is not defined"},
      {"gather root 3", [](int, auto c, auto& s) { return tpcomm_gather(c, s.f.data(), s.g.data(), 1, TPCOMM_F32, 3); },
       "root 3 is out of range"},
      {"broadcast root INT_MIN",
       [](int, auto c, auto& s) { return tpcomm_broadcast(c, s.f.data(), s.g.data(), 1, TPCOMM_F32, INT_MIN); },
       "is out of range"},
      {"send peer 3", [](int, auto c, auto& s) { return tpcomm_send(c, s.f.data(), 1, TPCOMM_F32, 3); },
       "peer 3 is out of range"},
      {"recv peer -1", [](int, auto c, auto& s) { return tpcomm_recv(c, s.f.data(), 1, TPCOMM_F32, -1); },
       "peer -1 is out of range"},
      {"comm_rank NULL out", [](int, auto c, auto&) { return tpcomm_comm_rank(c, nullptr); }, "must not be NULL"},
      {"comm_world_size NULL out", [](int, auto c, auto&) { return tpcomm_comm_world_size(c, nullptr); },
       "must not be NULL"},
      {"set_timeout NaN", [](int, auto c, auto&) { return tpcomm_comm_set_timeout(c, kNaN); }, "finite and > 0"},
      {"set_timeout infinity", [](int, auto c, auto&) { return tpcomm_comm_set_timeout(c, kInfinity); },
       "finite and > 0"},
      {"set_timeout 0", [](int, auto c, auto&) { return tpcomm_comm_set_timeout(c, 0.0); }, "finite and > 0"},
      {"split NULL out", [](int, auto c, auto&) { return tpcomm_comm_split(c, 0, 0, nullptr); }, "must not be NULL"},
      {"split negative color",
       [](int, auto c, auto&) {
         tpcomm_comm_t out = nullptr;
         return tpcomm_comm_split(c, -2, 0, &out);
       },
       "color -2 is negative"},
      {"new_group NULL ranks",
       [](int, auto c, auto&) {
         tpcomm_comm_t out = nullptr;
         return tpcomm_comm_new_group(c, nullptr, 2, &out);
       },
       "ranks is NULL"},
  };
}

void run_c_row(const CRow& row, int rank, const std::string& job, RowResult& result) {
  tpcomm_comm_t comm = create_c_with_timeout(rank, kWorld, job, kDeadline);
  Scratch scratch;
  const tpcomm_status_t status = row.call(rank, comm, scratch);
  const std::string message = tpcomm_last_error();
  if (status != TPCOMM_ERROR_INVALID_ARGUMENT) {
    note_problem(result, std::string("expected TPCOMM_ERROR_INVALID_ARGUMENT, got ") + tpcomm_status_string(status) +
                             ": " + message);
  } else if (message.empty() || message.find(row.needle) == std::string::npos) {
    note_problem(result, "message lacks '" + row.needle + "': '" + message + "'");
  }
  std::int32_t value = rank + 1, sum = 0;
  const tpcomm_status_t valid = tpcomm_all_reduce(comm, &value, &sum, 1, TPCOMM_I32, TPCOMM_SUM);
  if (valid != TPCOMM_SUCCESS || sum != kWorld * (kWorld + 1) / 2) {
    note_problem(result, std::string("the communicator is no longer usable: ") + tpcomm_status_string(valid) + ": " +
                             tpcomm_last_error());
  }
  check(tpcomm_comm_destroy(comm) == TPCOMM_SUCCESS, tpcomm_last_error());
}

TEST(BadInput, CApiRejectsEveryBadCallAndStaysUsable) { run_rows(c_table(), "bad_c", run_c_row); }

// Creation with bad arguments: a status, a message, and nothing in /dev/shm.
TEST(BadInput, CApiRejectsBadCreationArguments) {
  const std::string job = job_id("bad_create");
  tpcomm_options_t options;
  tpcomm_options_init(&options);
  tpcomm_comm_t comm = nullptr;
  struct Case {
    const char* name;
    std::function<tpcomm_status_t()> create;
    const char* needle;
  };
  auto with = [&](double timeout, std::size_t chunk) {
    tpcomm_options_t o;
    tpcomm_options_init(&o);
    o.timeout_seconds = timeout;
    o.chunk_bytes = chunk;
    return o;
  };
  const tpcomm_options_t nan_timeout = with(kNaN, 0), negative_timeout = with(-1, 0), tiny_chunk = with(0, 100),
                         huge_chunk = with(0, std::size_t{1} << 40), infinite_timeout = with(kInfinity, 0);
  const std::vector<Case> cases{
      {"rank -1", [&] { return tpcomm_comm_create(-1, 2, job.c_str(), &options, &comm); }, "rank -1 is out of range"},
      {"rank = world", [&] { return tpcomm_comm_create(2, 2, job.c_str(), &options, &comm); }, "rank 2 is out of range"},
      {"world 0", [&] { return tpcomm_comm_create(0, 0, job.c_str(), &options, &comm); }, "world size 0 is out of range"},
      {"world 65", [&] { return tpcomm_comm_create(0, TPCOMM_MAX_WORLD_SIZE + 1, job.c_str(), &options, &comm); },
       "out of range"},
      {"NULL job id", [&] { return tpcomm_comm_create(0, 1, nullptr, &options, &comm); }, "job_id must not be NULL"},
      {"empty job id", [&] { return tpcomm_comm_create(0, 1, "", &options, &comm); }, "job id is empty"},
      {"NULL out", [&] { return tpcomm_comm_create(0, 1, job.c_str(), &options, nullptr); }, "out must not be NULL"},
      {"NaN timeout", [&] { return tpcomm_comm_create(0, 1, job.c_str(), &nan_timeout, &comm); }, "timeout_seconds"},
      {"infinite timeout", [&] { return tpcomm_comm_create(0, 1, job.c_str(), &infinite_timeout, &comm); },
       "timeout_seconds"},
      {"negative timeout", [&] { return tpcomm_comm_create(0, 1, job.c_str(), &negative_timeout, &comm); },
       "timeout_seconds"},
      {"chunk below 4096", [&] { return tpcomm_comm_create(0, 1, job.c_str(), &tiny_chunk, &comm); }, "chunk size 100"},
      {"chunk above 1 GiB", [&] { return tpcomm_comm_create(0, 1, job.c_str(), &huge_chunk, &comm); }, "out of range"},
  };
  for (const Case& c : cases) {
    comm = reinterpret_cast<tpcomm_comm_t>(&comm);  // must be reset to NULL on failure
    const tpcomm_status_t status = c.create();
    const std::string message = tpcomm_last_error();
    EXPECT_EQ(status, TPCOMM_ERROR_INVALID_ARGUMENT) << c.name << ": " << message;
    EXPECT_NE(message.find(c.needle), std::string::npos) << c.name << ": " << message;
    if (std::string(c.name) != "NULL out") {
      EXPECT_EQ(comm, nullptr) << c.name << ": *out was not cleared";
    }
  }
  EXPECT_TRUE(segments_of(job).empty()) << join(segments_of(job));
}

// Use after tpcomm_comm_destroy: the handle is kept as a tombstone, so a
// stale pointer gets a status instead of touching freed memory.
TEST(BadInput, CApiReportsUseAfterDestroy) {
  const std::string job = job_id("after_destroy");
  tpcomm_comm_t comm = nullptr;
  ASSERT_EQ(tpcomm_comm_create(0, 1, job.c_str(), nullptr, &comm), TPCOMM_SUCCESS) << tpcomm_last_error();
  ASSERT_EQ(tpcomm_comm_destroy(comm), TPCOMM_SUCCESS) << tpcomm_last_error();
  float x = 1.0f;
  EXPECT_EQ(tpcomm_all_reduce(comm, &x, &x, 1, TPCOMM_F32, TPCOMM_SUM), TPCOMM_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(tpcomm_last_error()).find("destroyed"), std::string::npos) << tpcomm_last_error();
  int rank = -1;
  EXPECT_EQ(tpcomm_comm_rank(comm, &rank), TPCOMM_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(tpcomm_barrier(comm), TPCOMM_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(tpcomm_comm_destroy(comm), TPCOMM_ERROR_INVALID_ARGUMENT) << "a second destroy must be refused";
  EXPECT_NE(std::string(tpcomm_last_error()).find("destroyed"), std::string::npos) << tpcomm_last_error();
}

// ---- use from a forked child -----------------------------------------------

TEST(BadInput, UseFromAForkedChildIsRefusedAndTheParentStaysUsable) {
  const std::string job = job_id("fork");
  RankProcesses ranks(kWorld, [&](int rank) {
    auto comm = create_with_timeout(rank, kWorld, job, kDeadline);
    tpcomm_comm_t c_comm = create_c_with_timeout(rank, kWorld, job + "c", kDeadline);
    std::fflush(stderr);
    const pid_t child = ::fork();
    if (child == 0) {
      // Both APIs, with every rank's child making the same call.
      int code = 0;
      try {
        float x = 1.0f;
        expect_error([&] { comm.all_reduce(&x, &x, 1, DataType::f32, ReduceOp::sum); }, ErrorCode::invalid_argument,
                     {"forked child"}, "C++ API in a forked child");
        expect_error([&] { comm.barrier(); }, ErrorCode::invalid_argument, {"forked child"}, "barrier in a forked child");
        if (tpcomm_all_reduce(c_comm, &x, &x, 1, TPCOMM_F32, TPCOMM_SUM) != TPCOMM_ERROR_INVALID_ARGUMENT ||
            std::string(tpcomm_last_error()).find("forked child") == std::string::npos) {
          throw std::runtime_error(std::string("C API in a forked child: ") + tpcomm_last_error());
        }
      } catch (const std::exception& error) {
        std::fprintf(stderr, "[rank %d child] %s\n", rank, error.what());
        code = 1;
      }
      std::fflush(stderr);
      ::_exit(code);  // leaves the parent's communicators alone
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the forked child's calls were not refused as expected");
    expect_valid_all_reduce(comm, rank);
    std::int32_t value = rank + 1, sum = 0;
    check(tpcomm_all_reduce(c_comm, &value, &sum, 1, TPCOMM_I32, TPCOMM_SUM) == TPCOMM_SUCCESS && sum == 6,
          std::string("C communicator after the fork: ") + tpcomm_last_error());
    check(tpcomm_comm_destroy(c_comm) == TPCOMM_SUCCESS, tpcomm_last_error());
  });
  expect_all_exited_zero(ranks, 60);
}

// ---- errors only some ranks can see ----------------------------------------

// Every rank makes the same call, but only the root looks at its send (or
// recv) buffer, so only the root can see that it is bad. The promise is the
// same as for any bad argument: an error, and a communicator that stays
// usable on every rank.
TEST(BadInput, BufferErrorOnlyTheRootCanSeeLeavesTheCommunicatorUsable) {
  using D = DataType;
  const std::vector<CppRow> table{
      {"broadcast, null send on the root",
       [](int, auto& c, auto& s) { c.broadcast(nullptr, s.f.data(), 4, D::f32, 0); }, "send buffer is null"},
      {"reduce, null recv on the root",
       [](int, auto& c, auto& s) { c.reduce(s.f.data(), nullptr, 4, D::f32, ReduceOp::sum, 1); },
       "recv buffer is null"},
      {"scatter, root's send partially overlapping its recv",
       [](int, auto& c, auto& s) { c.scatter(s.f.data(), s.f.data() + 1, 4, D::f32, 2); }, "in-place rule"},
  };
  run_rows(table, "bad_root", run_cpp_row);
}

// A timeout longer than the clock can represent (set_timeout(1e12 s) is about
// 31,700 years) means "wait as long as it takes": a wait must then not fail
// at once as if the deadline had already passed.
TEST(BadInput, HugeTimeoutDoesNotExpireAtOnce) {
  const std::string job = job_id("huge_timeout");
  RankProcesses ranks(2, [&](int rank) {
    auto comm = Communicator::create(rank, 2, job);
    comm.set_timeout(std::chrono::duration<double>(1e12));
    comm.barrier();
    if (rank == 1) sleep_seconds(0.3);  // rank 0 has to wait, long enough for the deadline checks
    comm.barrier();
  });
  expect_all_exited_zero(ranks, 30);
}

}  // namespace
