// Command-line options of tpcomm-perf, parsed by pure functions so that the
// unit tests can exercise them without a communicator.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tpcomm/tpcomm.hpp"

namespace tpcomm::perf {

inline constexpr std::size_t kibibyte = std::size_t{1} << 10;
inline constexpr std::size_t mebibyte = std::size_t{1} << 20;

struct PerfOptions {
  std::string op = "all_reduce";
  DataType dtype = DataType::f32;
  ReduceOp redop = ReduceOp::sum;
  std::size_t min_bytes = 8;
  std::size_t max_bytes = 64 * mebibyte;
  // Each message size is the previous one times this factor (nccl-tests' -f).
  std::size_t step_factor = 2;
  // Timed iterations per size; empty means auto_iterations(bytes).
  std::optional<std::size_t> iters;
  std::size_t warmup = 5;
  // Root rank of broadcast, reduce, gather and scatter (checked against the
  // world size once the communicator exists).
  int root = 0;
  bool check = true;
  // Empty: no JSON report.
  std::string json_path;
  // Empty: TPCOMM_ALGO is left as the environment has it.
  std::string algo;
  // Run inside this many concurrent equal groups of consecutive ranks.
  std::size_t split = 1;
  // Print the library's configuration variables and exit.
  bool print_config = false;
  bool help = false;
};

// A bad command line; main() prints what() and exits with status 2.
class OptionError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// "8", "64K", "64M", "1G" (case-insensitive suffixes, powers of 1024).
// Throws OptionError for anything else, including values that overflow size_t.
std::size_t parse_size(std::string_view text);

// args excludes argv[0]. Accepts "--name value", "--name=value", "-x value"
// and "-xvalue". Throws OptionError naming the offending option.
PerfOptions parse_options(std::span<const std::string_view> args);

// clamp(64 MiB / bytes, 20, 1000): small messages get many iterations so that
// the median is stable, large ones few so that a sweep finishes in minutes.
std::size_t auto_iterations(std::size_t bytes);

// Element counts of the sweep min_bytes, min_bytes * f, ... <= max_bytes, each
// bytes / element_size rounded down; sizes below one element are skipped.
std::vector<std::size_t> message_counts(const PerfOptions& options, std::size_t element_size);

// The --help text.
std::string usage();

}  // namespace tpcomm::perf
