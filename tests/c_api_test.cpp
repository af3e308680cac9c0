// The C API: status codes, last-error messages and no exception crossing it.
#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <string>
#include <vector>

#include "multiprocess.hpp"
#include "tpcomm/tpcomm.h"

namespace {

std::string last_error() { return tpcomm_last_error(); }

TEST(CApi, CreatesAndReducesAcrossProcesses) {
  const std::string job = tpcomm::testing::unique_job_id("capi");
  const auto outcomes = tpcomm::testing::run_ranks(3, [&](int rank) {
    tpcomm_comm_t comm = nullptr;
    tpcomm_options_t options;
    tpcomm_options_init(&options);
    options.timeout_seconds = 30;
    tpcomm::testing::check(tpcomm_comm_create(rank, 3, job.c_str(), &options, &comm) == TPCOMM_SUCCESS, last_error());
    int r = -1, n = -1;
    tpcomm::testing::check(tpcomm_comm_rank(comm, &r) == TPCOMM_SUCCESS && r == rank, "rank");
    tpcomm::testing::check(tpcomm_comm_world_size(comm, &n) == TPCOMM_SUCCESS && n == 3, "world size");
    std::vector<double> x(1000, rank + 1.0), y(1000);
    tpcomm::testing::check(tpcomm_all_reduce(comm, x.data(), y.data(), x.size(), TPCOMM_F64, TPCOMM_AVG) ==
                               TPCOMM_SUCCESS,
                           last_error());
    for (double v : y) tpcomm::testing::check(v == 2.0, "avg of 1, 2, 3");
    tpcomm::testing::check(tpcomm_barrier(comm) == TPCOMM_SUCCESS, last_error());
    tpcomm::testing::check(tpcomm_comm_destroy(comm) == TPCOMM_SUCCESS, last_error());
  });
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

TEST(CApi, BadArgumentsGiveAStatusAndAMessage) {
  EXPECT_EQ(tpcomm_all_reduce(nullptr, nullptr, nullptr, 1, TPCOMM_F32, TPCOMM_SUM), TPCOMM_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("communicator is NULL"), std::string::npos) << last_error();
  tpcomm_comm_t comm = nullptr;
  EXPECT_EQ(tpcomm_comm_create(0, 0, "x", nullptr, &comm), TPCOMM_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("world size 0"), std::string::npos) << last_error();
  EXPECT_EQ(tpcomm_comm_create(0, 65, "x", nullptr, &comm), TPCOMM_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(tpcomm_comm_create(3, 2, "x", nullptr, &comm), TPCOMM_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("rank 3 is out of range"), std::string::npos) << last_error();
  EXPECT_EQ(tpcomm_comm_create(0, 1, nullptr, nullptr, &comm), TPCOMM_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(tpcomm_comm_create(0, 1, "x", nullptr, nullptr), TPCOMM_ERROR_INVALID_ARGUMENT);
  tpcomm_options_t options;
  tpcomm_options_init(&options);
  options.timeout_seconds = NAN;
  EXPECT_EQ(tpcomm_comm_create(0, 1, "x", &options, &comm), TPCOMM_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(comm, nullptr);

  const std::string job = tpcomm::testing::unique_job_id("capi-args");
  ASSERT_EQ(tpcomm_comm_create(0, 1, job.c_str(), nullptr, &comm), TPCOMM_SUCCESS) << last_error();
  float buffer[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_EQ(tpcomm_all_reduce(comm, buffer, nullptr, 4, TPCOMM_F32, TPCOMM_SUM), TPCOMM_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("recv buffer is null"), std::string::npos) << last_error();
  EXPECT_EQ(tpcomm_all_reduce(comm, buffer, buffer + 1, 4, TPCOMM_F32, TPCOMM_SUM), TPCOMM_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(tpcomm_all_reduce(comm, buffer, buffer, 4, static_cast<tpcomm_dtype_t>(99), TPCOMM_SUM),
            TPCOMM_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("unknown dtype value 99"), std::string::npos) << last_error();
  EXPECT_EQ(tpcomm_all_reduce(comm, buffer, buffer, 4, TPCOMM_F32, static_cast<tpcomm_redop_t>(77)),
            TPCOMM_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("unknown reduce op"), std::string::npos) << last_error();
  EXPECT_EQ(tpcomm_all_reduce(comm, buffer, buffer, 4, TPCOMM_I32, TPCOMM_AVG), TPCOMM_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(tpcomm_comm_set_timeout(comm, -1), TPCOMM_ERROR_INVALID_ARGUMENT);
  int rank = 0;
  EXPECT_EQ(tpcomm_comm_rank(comm, nullptr), TPCOMM_ERROR_INVALID_ARGUMENT);
  // Still usable after all of that.
  float out[4] = {};
  EXPECT_EQ(tpcomm_all_reduce(comm, buffer, out, 4, TPCOMM_F32, TPCOMM_SUM), TPCOMM_SUCCESS) << last_error();
  EXPECT_EQ(out[3], 4.0f);
  EXPECT_EQ(tpcomm_comm_rank(comm, &rank), TPCOMM_SUCCESS);
  EXPECT_EQ(tpcomm_comm_destroy(comm), TPCOMM_SUCCESS);
  EXPECT_EQ(tpcomm_comm_destroy(nullptr), TPCOMM_SUCCESS);
  // Use after destroy and a second destroy are reported, not undefined.
  EXPECT_EQ(tpcomm_all_reduce(comm, buffer, out, 4, TPCOMM_F32, TPCOMM_SUM), TPCOMM_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("communicator was destroyed"), std::string::npos) << last_error();
  EXPECT_EQ(tpcomm_comm_destroy(comm), TPCOMM_ERROR_INVALID_ARGUMENT);
}

TEST(CApi, NamesAndParsing) {
  tpcomm_dtype_t dtype;
  EXPECT_EQ(tpcomm_dtype_from_string("bf16", &dtype), TPCOMM_SUCCESS);
  EXPECT_EQ(dtype, TPCOMM_BF16);
  EXPECT_EQ(tpcomm_dtype_from_string("float7", &dtype), TPCOMM_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("float7"), std::string::npos);
  tpcomm_redop_t op;
  EXPECT_EQ(tpcomm_redop_from_string("avg", &op), TPCOMM_SUCCESS);
  EXPECT_EQ(op, TPCOMM_AVG);
  EXPECT_EQ(tpcomm_dtype_size(TPCOMM_I64), 8u);
  EXPECT_EQ(tpcomm_dtype_size(static_cast<tpcomm_dtype_t>(17)), 0u);
  EXPECT_STREQ(tpcomm_status_string(TPCOMM_ERROR_TIMEOUT), "TPCOMM_ERROR_TIMEOUT");
  // Any int is a value of the enum (MIN_ENUM/MAX_ENUM), so an unknown one is
  // named, not undefined (clang's -fsanitize=enum checks that in the fuzzer).
  for (int bad : {8, -1, INT_MAX, INT_MIN}) {
    EXPECT_STREQ(tpcomm_status_string(static_cast<tpcomm_status_t>(bad)), "TPCOMM_UNKNOWN_STATUS") << bad;
  }
  EXPECT_STREQ(tpcomm_dtype_name(TPCOMM_F16), "f16");
  EXPECT_STREQ(tpcomm_redop_name(TPCOMM_MAX), "max");
  EXPECT_STREQ(tpcomm_version(), "0.1.0");
}

}  // namespace
