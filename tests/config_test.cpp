#include <gtest/gtest.h>

#include <cstdlib>

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

TEST(Config, ReadsTheEnvironmentAndNamesBadValues) {
  ::setenv("TPCOMM_TIMEOUT", "2.5", 1);
  ::setenv("TPCOMM_CHUNK_BYTES", "64K", 1);
  Config config = Config::from_environment();
  EXPECT_DOUBLE_EQ(config.timeout_seconds, 2.5);
  EXPECT_EQ(config.chunk_bytes, 64u << 10);
  ::setenv("TPCOMM_TIMEOUT", "soon", 1);
  try {
    Config::from_environment();
    ADD_FAILURE() << "a malformed TPCOMM_TIMEOUT must be rejected";
  } catch (const tpcomm::Error& error) {
    EXPECT_EQ(error.code(), tpcomm::ErrorCode::invalid_argument);
    EXPECT_NE(std::string(error.what()).find("TPCOMM_TIMEOUT"), std::string::npos);
  }
  ::unsetenv("TPCOMM_TIMEOUT");
  ::unsetenv("TPCOMM_CHUNK_BYTES");
}
