// Configuration: every environment variable tpcomm reads, in one table.
// Values are read when a communicator is created (so a launcher or a test can
// set them per process) and never on the hot path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tpcomm::detail {

struct ConfigVariable {
  std::string_view name;
  std::string_view default_value;
  std::string_view meaning;
};

// The documented table (also printed by `tpcomm-perf --print-config`).
const std::vector<ConfigVariable>& config_variables();

struct Config {
  double timeout_seconds = 300.0;      // TPCOMM_TIMEOUT
  std::size_t chunk_bytes = 1 << 20;   // TPCOMM_CHUNK_BYTES
  std::string algorithm = "auto";      // TPCOMM_ALGO
  std::size_t one_shot_max_bytes = 0;  // TPCOMM_ONE_SHOT_MAX_BYTES (0: by world size)
  int spin_count = -1;                 // TPCOMM_SPIN (-1: by oversubscription)
  bool measured_stores = true;            // TPCOMM_NT_MIN_BYTES=auto: ordinary or streaming by measured cost
  std::size_t streaming_min_bytes = SIZE_MAX;  // TPCOMM_NT_MIN_BYTES=<size>: streaming from this size up
  std::size_t claim_max_bytes = std::size_t{1} << 20;  // TPCOMM_CLAIM_MAX_BYTES
  std::size_t own_from_input_max_bytes = std::size_t{4} << 20;  // TPCOMM_OWN_FROM_INPUT_MAX_BYTES
  bool measured_results = true;                          // TPCOMM_NT_RESULT_MIN_BYTES=auto
  std::size_t result_streaming_min_bytes = SIZE_MAX;     // TPCOMM_NT_RESULT_MIN_BYTES=<size>
  int threads = -1;                    // TPCOMM_THREADS (-1: by CPUs per rank)
  std::size_t threads_min_bytes = std::size_t{1} << 20;  // TPCOMM_THREADS_MIN_BYTES

  // Reads the environment; throws invalid_argument naming a malformed variable.
  static Config from_environment();
};

// Parses "1048576", "512K", "4M", "1G" (powers of 1024). Throws invalid_argument.
std::size_t parse_byte_size(std::string_view text, std::string_view what);

// The CPUs this process may run on, CPU k as bit k % 64 (all bits if unknown).
std::uint64_t affinity_bits();

// TPCOMM_SPIN's default for a job whose ranks may run on these CPUs (one
// affinity_bits() per rank) on a machine with machine_cpus online: spin about
// half a millisecond when every rank can have a CPU of its own, not at all
// when the ranks outnumber the CPUs they share between them. Each rank's own
// affinity is not enough: a launcher that binds every rank to a core of its
// own leaves each with one CPU, and the ranks are not short of CPUs then.
int default_spin_count(const std::vector<std::uint64_t>& rank_cpu_bits, int machine_cpus);

}  // namespace tpcomm::detail
