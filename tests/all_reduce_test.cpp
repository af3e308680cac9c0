// Differential tests of all_reduce against the independent serial reference:
// every dtype x op x {out-of-place, in-place} x world size x count, for each
// algorithm. Ranks are real processes sharing one segment.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <thread>
#include <utility>
#include <cstring>
#include <string>
#include <vector>

#include "multiprocess.hpp"
#include "reference.hpp"
#include "tpcomm/tpcomm.hpp"

namespace {

using tpcomm::DataType;
using tpcomm::ReduceOp;
using tpcomm::testing::check;

constexpr DataType kDataTypes[] = {DataType::f32, DataType::f64, DataType::f16, DataType::bf16,
                                   DataType::i8,  DataType::u8,  DataType::i32, DataType::i64};
constexpr ReduceOp kOps[] = {ReduceOp::sum, ReduceOp::prod, ReduceOp::min, ReduceOp::max, ReduceOp::avg};
constexpr std::size_t kChunkBytes = 4096;  // small staging slot, so chunking is exercised cheaply
constexpr std::size_t kGuard = 64;
constexpr unsigned char kGuardByte = 0xa5;

bool is_float(DataType dt) { return tpcomm::reference::is_float(dt); }

std::vector<std::size_t> counts_for(DataType dt) {
  const std::size_t per_chunk = kChunkBytes / tpcomm::dtype_size(dt);
  const std::size_t staging = 2 * kChunkBytes / tpcomm::dtype_size(dt);  // two slots per rank
  return {0, 1, 2, 7, 63, 4097, per_chunk - 1, per_chunk, per_chunk + 1, 2 * per_chunk + 1, 4 * staging + 3};
}

std::uint64_t fnv1a(const unsigned char* p, std::size_t n) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

// One rank's share of the matrix; throws on the first discrepancy.
void run_matrix(int rank, int world, const std::string& job, const char* variant) {
  // "<algorithm>[_nt][_ntresult][_ownslot][_threads]": the same algorithm
  // with non-temporal copy-in for every chunk, with every result written by
  // non-temporal stores (from 64 bytes up), with the rank's own contribution
  // folded from its slot rather than its input (as calls above 4 MiB do), and
  // with every step (copy in, fold, copy out) split among three threads per
  // rank (uneven pieces).
  std::string algorithm = variant;
  if (algorithm.ends_with("_threads")) {
    algorithm.resize(algorithm.size() - 8);
    ::setenv("TPCOMM_THREADS", "3", 1);
    ::setenv("TPCOMM_THREADS_MIN_BYTES", "256", 1);
  }
  if (algorithm.ends_with("_ownslot")) {
    algorithm.resize(algorithm.size() - 8);
    ::setenv("TPCOMM_OWN_FROM_INPUT_MAX_BYTES", "0", 1);
  }
  if (algorithm.ends_with("_ntresult")) {
    algorithm.resize(algorithm.size() - 9);
    ::setenv("TPCOMM_NT_RESULT_MIN_BYTES", "64", 1);
  }
  if (algorithm.ends_with("_nt")) {
    algorithm.resize(algorithm.size() - 3);
    ::setenv("TPCOMM_NT_MIN_BYTES", "64", 1);
  }
  ::setenv("TPCOMM_ALGO", algorithm.c_str(), 1);
  tpcomm::CommOptions options;
  options.chunk_bytes = kChunkBytes;
  options.timeout = std::chrono::seconds(60);
  auto comm = tpcomm::Communicator::create(rank, world, job, options);
  std::uint64_t seed = 1;
  for (DataType dt : kDataTypes) {
    const std::size_t esz = tpcomm::dtype_size(dt);
    for (ReduceOp op : kOps) {
      if (op == ReduceOp::avg && !is_float(dt)) continue;
      for (bool in_place : {false, true}) {
        for (std::size_t count : counts_for(dt)) {
          ++seed;
          const std::size_t bytes = count * esz;
          std::vector<unsigned char> send(bytes + 1);
          std::vector<unsigned char> recv(bytes + 2 * kGuard, kGuardByte);
          unsigned char* out = recv.data() + kGuard;
          void* input = in_place ? static_cast<void*>(out) : static_cast<void*>(send.data());
          tpcomm::reference::fill_pattern(dt, input, count, rank, seed);
          std::vector<unsigned char> original(static_cast<unsigned char*>(input),
                                              static_cast<unsigned char*>(input) + bytes);
          comm.all_reduce(input, out, count, dt, op);

          // Independent expectation: regenerate every rank's input, fold serially.
          std::vector<std::vector<unsigned char>> inputs(static_cast<std::size_t>(world),
                                                         std::vector<unsigned char>(bytes + 1));
          std::vector<const void*> pointers;
          for (int r = 0; r < world; ++r) {
            tpcomm::reference::fill_pattern(dt, inputs[static_cast<std::size_t>(r)].data(), count, r, seed);
            pointers.push_back(inputs[static_cast<std::size_t>(r)].data());
          }
          std::vector<unsigned char> expected(bytes + 1);
          tpcomm::reference::reduce(dt, op, pointers, expected.data(), count);
          const std::string where = std::string(variant) + " " + std::string(tpcomm::dtype_name(dt)) + " " +
                                    std::string(tpcomm::redop_name(op)) + (in_place ? " in-place" : " out-of-place") +
                                    " count " + std::to_string(count) + " world " + std::to_string(world) + " rank " +
                                    std::to_string(rank);
          const std::size_t wrong = tpcomm::reference::count_mismatches(dt, out, expected.data(), count);
          check(wrong == 0, where + ": " + std::to_string(wrong) + " elements differ from the serial reference");
          for (std::size_t g = 0; g < kGuard; ++g) {
            check(recv[g] == kGuardByte && recv[kGuard + bytes + g] == kGuardByte,
                  where + ": guard bytes around recv were written");
          }
          if (!in_place && bytes > 0) {
            check(std::memcmp(send.data(), original.data(), bytes) == 0, where + ": send buffer was modified");
          }
          // Bitwise identity across ranks (NaN payloads included): min and max
          // of the result's hash over ranks must agree.
          std::int64_t hash[2];
          hash[0] = hash[1] = static_cast<std::int64_t>(fnv1a(out, bytes) >> 1);
          std::int64_t low = hash[0];
          std::int64_t high = hash[1];
          comm.all_reduce(&low, &low, 1, DataType::i64, ReduceOp::min);
          comm.all_reduce(&high, &high, 1, DataType::i64, ReduceOp::max);
          check(low == high, where + ": ranks hold different bytes");
        }
      }
    }
  }
}

class AllReduceMatrix : public ::testing::TestWithParam<std::tuple<int, const char*>> {};

TEST_P(AllReduceMatrix, MatchesSerialReference) {
  const auto [world, algorithm] = GetParam();
  const std::string job = tpcomm::testing::unique_job_id("matrix");
  const auto outcomes = tpcomm::testing::run_ranks(world, [&](int rank) { run_matrix(rank, world, job, algorithm); });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

INSTANTIATE_TEST_SUITE_P(WorldSizesAndAlgorithms, AllReduceMatrix,
                         ::testing::Combine(::testing::Values(1, 2, 3, 4, 5, 8),
                                            ::testing::Values("one_shot", "two_shot", "auto", "one_shot_nt", "two_shot_nt")),
                         [](const auto& test_info) {
                           return "world" + std::to_string(std::get<0>(test_info.param)) + "_" +
                                  std::string(std::get<1>(test_info.param));
                         });

// Results written with non-temporal stores (ShmChannel::ResultStores), and
// every contribution folded from the slots.
INSTANTIATE_TEST_SUITE_P(SourcesAndStores, AllReduceMatrix,
                         ::testing::Combine(::testing::Values(2, 3, 5),
                                            ::testing::Values("one_shot_ntresult", "two_shot_nt_ntresult",
                                                              "one_shot_ownslot", "two_shot_ntresult_ownslot")),
                         [](const auto& test_info) {
                           return "world" + std::to_string(std::get<0>(test_info.param)) + "_" +
                                  std::string(std::get<1>(test_info.param));
                         });

// Helper threads per rank: two per rank beside the rank's own, so that every
// step is cut into uneven pieces; few world sizes (they oversubscribe the CPUs).
INSTANTIATE_TEST_SUITE_P(ThreadsPerRank, AllReduceMatrix,
                         ::testing::Combine(::testing::Values(2, 3, 4),
                                            ::testing::Values("one_shot_threads", "two_shot_nt_threads",
                                                              "one_shot_ntresult_threads")),
                         [](const auto& test_info) {
                           return "world" + std::to_string(std::get<0>(test_info.param)) + "_" +
                                  std::string(std::get<1>(test_info.param));
                         });

// Documented NaN/Inf behaviour: sum/prod follow IEEE; min and max propagate NaN.
TEST(AllReduceSpecialValues, NanAndInfinityFollowTheContract) {
  const std::string job = tpcomm::testing::unique_job_id("nan");
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  // Column i: rank 0 contributes a[i], rank 1 b[i].
  const std::vector<float> a{1.0f, nan, inf, inf, -inf, 2.0f, nan};
  const std::vector<float> b{nan, 1.0f, 1.0f, -inf, 3.0f, inf, nan};
  const auto outcomes = tpcomm::testing::run_ranks(2, [&](int rank) {
    auto comm = tpcomm::Communicator::create(rank, 2, job);
    const std::vector<float>& mine = rank == 0 ? a : b;
    auto run = [&](ReduceOp op) {
      std::vector<float> out(mine.size());
      comm.all_reduce(mine.data(), out.data(), mine.size(), DataType::f32, op);
      return out;
    };
    const auto sum = run(ReduceOp::sum);
    check(std::isnan(sum[0]) && std::isnan(sum[1]), "sum with a NaN must be NaN");
    check(sum[2] == inf, "inf + 1 must be inf");
    check(std::isnan(sum[3]), "inf + -inf must be NaN");
    check(sum[5] == inf, "2 + inf must be inf");
    const auto max = run(ReduceOp::max);
    check(std::isnan(max[0]) && std::isnan(max[1]) && std::isnan(max[6]), "max must propagate NaN from either rank");
    check(max[2] == inf && max[3] == inf && max[4] == 3.0f && max[5] == inf, "max of infinities");
    const auto min = run(ReduceOp::min);
    check(std::isnan(min[0]) && std::isnan(min[1]), "min must propagate NaN from either rank");
    check(min[2] == 1.0f && min[3] == -inf && min[4] == -inf && min[5] == 2.0f, "min of infinities");
    // bf16 and f16 NaN propagate the same way through the f32 accumulator.
    std::uint16_t half_in = rank == 0 ? tpcomm::reference::float_to_half(nan) : tpcomm::reference::float_to_half(1.0f);
    std::uint16_t half_out = 0;
    comm.all_reduce(&half_in, &half_out, 1, DataType::f16, ReduceOp::max);
    check(std::isnan(tpcomm::reference::half_to_float(half_out)), "f16 max must propagate NaN");
  });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

// Calls large enough for the measured choice of result stores (from 2 MiB,
// 1 MiB for zero-copy buffers):
// the first calls of a size alternate between ordinary and streaming stores,
// later ones explore the kind not preferred, so both are used on every size,
// in and out of place, for ordinary buffers and zero-copy ones. Inputs change
// every call; every result is checked against the serial reference.
TEST(AllReduceResultStores, LargeCallsMatchTheReferenceWhicheverStoresAreChosen) {
  const std::string job = tpcomm::testing::unique_job_id("results");
  constexpr int kWorld = 2;
  const auto outcomes = tpcomm::testing::run_ranks(kWorld, [&](int rank) {
    ::unsetenv("TPCOMM_NT_RESULT_MIN_BYTES");  // the default: chosen by measured cost
    auto comm = tpcomm::Communicator::create(rank, kWorld, job);
    // 1 MiB + 12 bytes (the tail after the last whole tile), 3 MiB + 4 (three chunks and a bit).
    for (const std::size_t count : {std::size_t{(1 << 18) + 3}, std::size_t{(3 << 18) + 1}}) {
      for (const DataType dt : {DataType::f32, DataType::bf16}) {
        const std::size_t bytes = count * tpcomm::dtype_size(dt);
        tpcomm::SharedBuffer shared = comm.alloc_shared(bytes + 64);
        std::vector<unsigned char> send(bytes), recv(bytes + 8);
        for (int call = 0; call < 12; ++call) {
          const std::uint64_t seed = 50000 + static_cast<std::uint64_t>(call) * 16 + count % 16;
          const int form = call % 4;  // out of place, in place, zero-copy out of place, zero-copy in place
          unsigned char* input = form == 0   ? send.data()
                                 : form == 1 ? recv.data() + 4
                                             : static_cast<unsigned char*>(shared.data()) + 64;
          unsigned char* output = form == 0 || form == 2 ? recv.data() + 4 : input;
          tpcomm::reference::fill_pattern(dt, input, count, rank, seed);
          comm.all_reduce(input, output, count, dt, ReduceOp::sum);
          std::vector<std::vector<unsigned char>> inputs(kWorld, std::vector<unsigned char>(bytes));
          std::vector<const void*> pointers;
          for (int r = 0; r < kWorld; ++r) {
            tpcomm::reference::fill_pattern(dt, inputs[static_cast<std::size_t>(r)].data(), count, r, seed);
            pointers.push_back(inputs[static_cast<std::size_t>(r)].data());
          }
          std::vector<unsigned char> expected(bytes);
          tpcomm::reference::reduce(dt, ReduceOp::sum, pointers, expected.data(), count);
          const std::size_t wrong = tpcomm::reference::count_mismatches(dt, output, expected.data(), count);
          check(wrong == 0, std::string(tpcomm::dtype_name(dt)) + " count " + std::to_string(count) + " call " +
                                std::to_string(call) + " form " + std::to_string(form) + ": " +
                                std::to_string(wrong) + " elements differ from the serial reference");
        }
      }
    }
  });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

// Many back-to-back calls with inputs that change every call and random
// delays: catches a missing "done reading" acknowledgement or a reused slot.
TEST(AllReduceStress, ChangingInputsWithRandomDelays) {
  const std::string job = tpcomm::testing::unique_job_id("stress");
  constexpr int kWorld = 3;
  const auto outcomes = tpcomm::testing::run_ranks(kWorld, [&](int rank) {
    tpcomm::CommOptions options;
    options.chunk_bytes = kChunkBytes;
    auto comm = tpcomm::Communicator::create(rank, kWorld, job, options);
    std::mt19937 random(static_cast<unsigned>(rank) * 7919u + 1u);
    for (int iteration = 0; iteration < 400; ++iteration) {
      const std::size_t count = static_cast<std::size_t>(1 + (iteration * 37) % 3000);
      std::vector<float> input(count), output(count), expected(count);
      for (std::size_t i = 0; i < count; ++i) input[i] = static_cast<float>((rank + 1) * (iteration + static_cast<int>(i % 13)));
      if (random() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(random() % 300));
      comm.all_reduce(input.data(), output.data(), count, DataType::f32, ReduceOp::sum);
      for (std::size_t i = 0; i < count; ++i) {
        expected[i] = static_cast<float>((1 + 2 + 3) * (iteration + static_cast<int>(i % 13)));
      }
      // Overwrite the input at once, as a producer would: must not affect peers.
      std::fill(input.begin(), input.end(), -1.0f);
      check(output == expected, "iteration " + std::to_string(iteration) + ": wrong result");
    }
  });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

// Zero-copy: inputs in a shared buffer, out-of-place (one-shot from the peers'
// regions) and in-place (two-shot inside the regions), every dtype and op,
// offsets inside the buffer, inputs rewritten right after every call and random
// delays (a missing trailing acknowledgement shows up as wrong results).
TEST(AllReduceZeroCopy, SharedBuffersMatchTheReference) {
  struct Setup {
    int world;
    const char* threads;    // "3": every fold and copy split among three threads per rank
    const char* nt_result;  // "64": every result written with non-temporal stores
  };
  for (const auto& [world, threads, nt_result] : {Setup{2, "1", "auto"}, Setup{3, "1", "auto"}, Setup{5, "1", "auto"},
                                                  Setup{2, "3", "auto"}, Setup{2, "1", "64"}, Setup{3, "3", "64"}}) {
    const std::string job = tpcomm::testing::unique_job_id("zc");
    const auto outcomes = tpcomm::testing::run_ranks(world, [&](int rank) {
      ::setenv("TPCOMM_THREADS", threads, 1);
      ::setenv("TPCOMM_THREADS_MIN_BYTES", "256", 1);
      ::setenv("TPCOMM_NT_RESULT_MIN_BYTES", nt_result, 1);
      auto comm = tpcomm::Communicator::create(rank, world, job);
      constexpr std::size_t kBytes = 1 << 16;
      tpcomm::SharedBuffer shared = comm.alloc_shared(kBytes);
      check(shared.size() == kBytes && shared.data() != nullptr, "shared buffer");
      auto* base = static_cast<unsigned char*>(shared.data());
      std::mt19937 random(static_cast<unsigned>(rank) + 11u);
      std::uint64_t seed = 1000;
      for (DataType dt : kDataTypes) {
        const std::size_t esz = tpcomm::dtype_size(dt);
        for (ReduceOp op : kOps) {
          if (op == ReduceOp::avg && !is_float(dt)) continue;
          for (bool in_place : {false, true}) {
            for (std::size_t count : {std::size_t{1}, std::size_t{7}, std::size_t{1000}, (kBytes - 64) / esz}) {
              ++seed;
              const std::size_t offset = count * esz + 64 <= kBytes ? 64 : 0;
              unsigned char* input = base + offset;
              tpcomm::reference::fill_pattern(dt, input, count, rank, seed);
              std::vector<unsigned char> out(count * esz);
              if (random() % 3 == 0) std::this_thread::sleep_for(std::chrono::microseconds(random() % 200));
              comm.all_reduce(input, in_place ? input : out.data(), count, dt, op);
              std::vector<unsigned char> got(in_place ? input : out.data(), (in_place ? input : out.data()) + count * esz);
              std::memset(input, 0x5a, count * esz);  // a producer overwrites its input at once
              std::vector<std::vector<unsigned char>> inputs(static_cast<std::size_t>(world),
                                                             std::vector<unsigned char>(count * esz));
              std::vector<const void*> pointers;
              for (int r = 0; r < world; ++r) {
                tpcomm::reference::fill_pattern(dt, inputs[static_cast<std::size_t>(r)].data(), count, r, seed);
                pointers.push_back(inputs[static_cast<std::size_t>(r)].data());
              }
              std::vector<unsigned char> expected(count * esz);
              tpcomm::reference::reduce(dt, op, pointers, expected.data(), count);
              const std::size_t wrong = tpcomm::reference::count_mismatches(dt, got.data(), expected.data(), count);
              check(wrong == 0, "zero-copy " + std::string(tpcomm::dtype_name(dt)) + " " +
                                    std::string(tpcomm::redop_name(op)) + (in_place ? " in-place" : " out-of-place") +
                                    " count " + std::to_string(count) + ": " + std::to_string(wrong) + " wrong");
            }
          }
        }
      }
      check(std::string(comm.all_reduce_algorithm(4096)) == "one_shot" &&
                std::string(comm.all_reduce_algorithm(65536, DataType::bf16)) == (world <= 2 ? "one_shot" : "two_shot"),
            "algorithm name");
      // Ranks must use the same offset in the shared buffer.
      float* x = static_cast<float*>(shared.data()) + (rank == 0 ? 0 : 16);
      try {
        comm.all_reduce(x, x, 4, DataType::f32, ReduceOp::sum);
        check(false, "different offsets must be a mismatch");
      } catch (const tpcomm::Error& error) {
        check(error.code() == tpcomm::ErrorCode::mismatch, std::string("expected mismatch: ") + error.what());
      }
    });
    EXPECT_TRUE(tpcomm::testing::all_ok(outcomes))
        << "world " << world << ", threads " << threads << ", non-temporal results from " << nt_result << ": "
        << tpcomm::testing::describe(outcomes);
  }
}

}  // namespace
