#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <utility>
#include <vector>

#include "algorithms/all_reduce.hpp"
#include "core/config.hpp"
#include "tpcomm/tpcomm.hpp"

using tpcomm::detail::Config;
using tpcomm::detail::parse_byte_size;

TEST(Config, ParsesByteSizes) {
  EXPECT_EQ(parse_byte_size("4096", "x"), 4096u);
  EXPECT_EQ(parse_byte_size("512K", "x"), 512u << 10);
  EXPECT_EQ(parse_byte_size("4M", "x"), 4u << 20);
  EXPECT_EQ(parse_byte_size("1G", "x"), 1u << 30);
  EXPECT_THROW(parse_byte_size("", "x"), tpcomm::Error);
  EXPECT_THROW(parse_byte_size("12Q", "x"), tpcomm::Error);
  EXPECT_THROW(parse_byte_size("-1", "x"), tpcomm::Error);
  EXPECT_THROW(parse_byte_size("99999999999999999999G", "x"), tpcomm::Error);
}

namespace {

// Config::from_environment() with `name` set to `value` must fail with
// invalid_argument naming the variable.
void expect_rejected(const char* name, const char* value) {
  ::setenv(name, value, 1);
  try {
    Config::from_environment();
    ADD_FAILURE() << name << "=" << value << " must be rejected";
  } catch (const tpcomm::Error& error) {
    EXPECT_EQ(error.code(), tpcomm::ErrorCode::invalid_argument);
    EXPECT_NE(std::string(error.what()).find(name), std::string::npos) << error.what();
  }
}

}  // namespace

TEST(Config, ReadsTheEnvironmentAndNamesBadValues) {
  ::setenv("TPCOMM_TIMEOUT", "2.5", 1);
  ::setenv("TPCOMM_CHUNK_BYTES", "64K", 1);
  Config config = Config::from_environment();
  EXPECT_DOUBLE_EQ(config.timeout_seconds, 2.5);
  EXPECT_EQ(config.chunk_bytes, 64u << 10);
  expect_rejected("TPCOMM_TIMEOUT", "soon");
  ::unsetenv("TPCOMM_TIMEOUT");
  ::unsetenv("TPCOMM_CHUNK_BYTES");
}

TEST(Config, ThreadsPerRankAreAutoOrANumberFrom1To64) {
  ::setenv("TPCOMM_THREADS", "auto", 1);
  EXPECT_EQ(Config::from_environment().threads, -1);
  ::setenv("TPCOMM_THREADS", "3", 1);
  ::setenv("TPCOMM_THREADS_MIN_BYTES", "256K", 1);
  const Config config = Config::from_environment();
  EXPECT_EQ(config.threads, 3);
  EXPECT_EQ(config.threads_min_bytes, 256u << 10);
  for (const char* bad : {"0", "65", "two", "3x", "-1"}) expect_rejected("TPCOMM_THREADS", bad);
  ::unsetenv("TPCOMM_THREADS");
  ::unsetenv("TPCOMM_THREADS_MIN_BYTES");
}

namespace {

// A setting that is `auto` (measured; the default) or a byte size (fixed):
// `measured` and `size` are the Config members it sets.
void expect_measured_unless_a_size(const char* name, bool Config::*measured, std::size_t Config::*size) {
  ::unsetenv(name);
  EXPECT_TRUE(Config::from_environment().*measured) << name;
  ::setenv(name, "auto", 1);
  EXPECT_TRUE(Config::from_environment().*measured) << name;
  for (const auto& [text, bytes] : {std::pair{"256K", std::size_t{256} << 10}, std::pair{"4M", std::size_t{4} << 20},
                                    std::pair{"64", std::size_t{64}}, std::pair{"0", std::size_t{0}}}) {
    ::setenv(name, text, 1);
    const Config config = Config::from_environment();
    EXPECT_FALSE(config.*measured) << name << "=" << text;
    EXPECT_EQ(config.*size, bytes) << name << "=" << text;
  }
  expect_rejected(name, "often");
  ::unsetenv(name);
}

}  // namespace

TEST(Config, StoresAreMeasuredUnlessASizeIsGiven) {
  expect_measured_unless_a_size("TPCOMM_NT_MIN_BYTES", &Config::measured_stores, &Config::streaming_min_bytes);
  expect_measured_unless_a_size("TPCOMM_NT_RESULT_MIN_BYTES", &Config::measured_results,
                                &Config::result_streaming_min_bytes);
}

TEST(Config, LimitsAreByteSizes) {
  // name, the Config member it sets, its default
  const auto expect_byte_size = [](const char* name, std::size_t Config::*member, std::size_t default_bytes) {
    ::unsetenv(name);
    EXPECT_EQ(Config::from_environment().*member, default_bytes) << name;
    for (const auto& [text, bytes] : {std::pair{"0", std::size_t{0}}, std::pair{"64K", std::size_t{64} << 10},
                                      std::pair{"1G", std::size_t{1} << 30}}) {
      ::setenv(name, text, 1);
      EXPECT_EQ(Config::from_environment().*member, bytes) << name << "=" << text;
    }
    expect_rejected(name, "-1");
    expect_rejected(name, "lots");
    ::unsetenv(name);
  };
  expect_byte_size("TPCOMM_CLAIM_MAX_BYTES", &Config::claim_max_bytes, std::size_t{1} << 20);
  expect_byte_size("TPCOMM_OWN_FROM_INPUT_MAX_BYTES", &Config::own_from_input_max_bytes, std::size_t{4} << 20);
}

// The default all_reduce algorithm follows the measured crossovers (see
// default_prefers_one_shot); an explicit limit or a forced name overrides it.
TEST(AlgorithmSelection, FollowsTheMeasuredCrossoversByWorldSizeAndDtype) {
  using tpcomm::DataType;
  auto pick = [](std::size_t bytes, DataType dtype, int world, std::size_t limit = 0,
                 std::string_view forced = "auto") {
    return std::string(tpcomm::detail::select_all_reduce_algorithm(forced, bytes, dtype, world, limit).name);
  };
  constexpr std::size_t K = 1024;
  for (const std::size_t bytes : {K, 4 * K, 64 * K, 2048 * K, std::size_t{1} << 30}) {
    EXPECT_EQ(pick(bytes, DataType::f32, 2), "one_shot") << bytes;
  }
  for (const std::size_t bytes : {K, 2 * K, 4 * K, 32 * K, 64 * K, 128 * K, 2048 * K, std::size_t{1} << 30}) {
    EXPECT_EQ(pick(bytes, DataType::bf16, 2), "one_shot") << bytes;
    EXPECT_EQ(pick(bytes, DataType::f16, 2), "one_shot") << bytes;
  }
  EXPECT_EQ(pick(256 * K, DataType::f32, 3), "one_shot");
  EXPECT_EQ(pick(32 * K, DataType::bf16, 3), "one_shot");
  EXPECT_EQ(pick(64 * K, DataType::bf16, 3), "two_shot");
  EXPECT_EQ(pick(8 * K, DataType::f32, 4), "one_shot");
  EXPECT_EQ(pick(16 * K, DataType::f32, 4), "two_shot");
  EXPECT_EQ(pick(512 * K, DataType::f32, 4), "two_shot");
  EXPECT_EQ(pick(1024 * K, DataType::f32, 4), "one_shot");
  EXPECT_EQ(pick(8 * K, DataType::f16, 4), "one_shot");
  EXPECT_EQ(pick(16 * K, DataType::bf16, 4), "two_shot");
  EXPECT_EQ(pick(2048 * K, DataType::bf16, 4), "two_shot");
  EXPECT_EQ(pick(16 * K, DataType::f32, 8), "one_shot");
  EXPECT_EQ(pick(32 * K, DataType::f32, 8), "two_shot");
  EXPECT_EQ(pick(16 * K, DataType::bf16, 8), "one_shot");
  EXPECT_EQ(pick(32 * K, DataType::bf16, 8), "two_shot");
  EXPECT_EQ(pick(16 * K, DataType::f32, 5), "one_shot");
  EXPECT_EQ(pick(32 * K, DataType::f16, 6), "two_shot");
  // TPCOMM_ONE_SHOT_MAX_BYTES: one limit for every dtype and world size.
  EXPECT_EQ(pick(64 * K, DataType::bf16, 8, 64 * K), "one_shot");
  EXPECT_EQ(pick(64 * K + 1, DataType::f32, 2, 64 * K), "two_shot");
  // TPCOMM_ALGO.
  EXPECT_EQ(pick(K, DataType::f32, 8, 0, "two_shot"), "two_shot");
  EXPECT_EQ(pick(1 << 30, DataType::f32, 8, 0, "one_shot"), "one_shot");
  EXPECT_THROW(pick(K, DataType::f32, 2, 0, "three_shot"), tpcomm::Error);
}

// TPCOMM_SPIN's default follows the CPUs the ranks share between them, not one
// rank's own affinity: a launcher that binds each of 2 ranks to a core of its
// own (mpirun's default) leaves each rank one CPU, yet no rank waits for a CPU.
TEST(DefaultSpin, FollowsTheCpusTheRanksShareNotOneRanksAffinity) {
  using tpcomm::detail::default_spin_count;
  constexpr int kSpin = 20000;
  EXPECT_EQ(default_spin_count({0b01, 0b10}, 2), kSpin);    // bound to cores of their own
  EXPECT_EQ(default_spin_count({0b01, 0b01}, 2), 0);        // both bound to CPU 0
  EXPECT_EQ(default_spin_count({0b11, 0b11}, 2), kSpin);    // unbound, one CPU each
  EXPECT_EQ(default_spin_count({0b11, 0b11, 0b11}, 2), 0);  // 3 ranks on 2 CPUs
  EXPECT_EQ(default_spin_count(std::vector<std::uint64_t>(8, 0b11), 2), 0);
  // Affinity unknown (all bits): the machine's CPU count decides.
  EXPECT_EQ(default_spin_count({~0ull, ~0ull}, 2), kSpin);
  EXPECT_EQ(default_spin_count({~0ull, ~0ull, ~0ull}, 2), 0);
  EXPECT_EQ(default_spin_count(std::vector<std::uint64_t>(64, ~0ull), 128), kSpin);
  EXPECT_EQ(default_spin_count({0b1}, 1), kSpin);  // one rank
  // This process's own mask: at least one CPU, at most the machine's.
  const int own = std::popcount(tpcomm::detail::affinity_bits());
  EXPECT_GE(own, 1);
  EXPECT_LE(own, std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
}
