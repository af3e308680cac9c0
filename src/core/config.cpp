#include "core/config.hpp"

#include <sched.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "core/error.hpp"

namespace tpcomm::detail {

const std::vector<ConfigVariable>& config_variables() {
  static const std::vector<ConfigVariable> table{
      {"TPCOMM_TIMEOUT", "300", "seconds any wait may last before failing with an error naming the late rank"},
      {"TPCOMM_CHUNK_BYTES", "1M", "bytes of one staging slot per rank (two slots each); larger messages go in chunks"},
      {"TPCOMM_ALGO", "auto", "all_reduce algorithm: auto, one_shot or two_shot"},
      {"TPCOMM_ONE_SHOT_MAX_BYTES", "by world size and dtype", "auto picks one_shot up to this message size, two_shot above"},
      {"TPCOMM_SPIN", "auto",
       "busy-wait iterations (pauses) before a waiting rank starts yielding the CPU (auto: 20000, ~0.5 ms; 0 when the ranks outnumber the CPUs they may run on)"},
      {"TPCOMM_NT_MIN_BYTES", "auto",
       "copies into staging of at least this size use non-temporal stores (auto: ordinary or non-temporal by measured cost, from 4 KiB)"},
      {"TPCOMM_NT_RESULT_MIN_BYTES", "auto",
       "all_reduce results of at least this size are written with non-temporal stores (auto: ordinary or non-temporal by measured cost, from 2 MiB; 1 MiB for zero-copy buffers)"},
      {"TPCOMM_OWN_FROM_INPUT_MAX_BYTES", "4M",
       "all_reduce calls up to this size fold the rank's own contribution from its input (likely in cache), not from its copy in staging (0: never)"},
      {"TPCOMM_CLAIM_MAX_BYTES", "1M",
       "after a collective whose last copy into staging is up to this size, its slot for the next call is taken for writing while the caller computes (0: never)"},
      {"TPCOMM_THREADS", "auto",
       "threads per rank that move the data of large all_reduce steps (auto: CPUs / ranks, at most 4)"},
      {"TPCOMM_THREADS_MIN_BYTES", "1M", "all_reduce steps (copy in, fold, copy out) of this size and up use those threads"},
      {"TPCOMM_ISA", "best available", "force the reduction kernel level: scalar or avx2 (read once per process)"},
      {"TPCOMM_RANK, TPCOMM_WORLD_SIZE, TPCOMM_JOB_ID", "-", "set by tpcomm-run; read by from_env"},
      {"TPCOMM_NODE_ID", "the machine", "under MPI: ranks with the same value form one node (emulate several nodes on one machine)"},
      {"RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_RUN_ID", "-",
       "torchrun's variables; read by from_env when TPCOMM_RANK is absent"},
      {"OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK, OMPI_COMM_WORLD_LOCAL_SIZE", "-",
       "Open MPI's variables; read by from_env when neither of the above is set"},
  };
  return table;
}

std::size_t parse_byte_size(std::string_view text, std::string_view what) {
  auto bad = [&]() -> std::size_t {
    fail(ErrorCode::invalid_argument,
         std::string(what) + ": cannot parse '" + std::string(text) + "' as a byte size (e.g. 4096, 512K, 4M, 1G)");
  };
  if (text.empty()) return bad();
  std::size_t multiplier = 1;
  std::string digits(text);
  switch (digits.back()) {
    case 'K': case 'k': multiplier = std::size_t{1} << 10; digits.pop_back(); break;
    case 'M': case 'm': multiplier = std::size_t{1} << 20; digits.pop_back(); break;
    case 'G': case 'g': multiplier = std::size_t{1} << 30; digits.pop_back(); break;
    default: break;
  }
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return bad();
  errno = 0;
  const unsigned long long value = std::strtoull(digits.c_str(), nullptr, 10);
  if (errno != 0 || value > std::numeric_limits<std::size_t>::max() / multiplier) return bad();
  return static_cast<std::size_t>(value) * multiplier;
}

namespace {

const char* env(const char* name) {
  const char* value = std::getenv(name);
  return (value != nullptr && *value != '\0') ? value : nullptr;
}

}  // namespace

Config Config::from_environment() {
  Config config;
  if (const char* value = env("TPCOMM_TIMEOUT")) {
    char* end = nullptr;
    const double seconds = std::strtod(value, &end);
    if (end == value || *end != '\0' || !std::isfinite(seconds) || seconds <= 0) {
      fail(ErrorCode::invalid_argument,
           std::string("TPCOMM_TIMEOUT: expected a positive number of seconds, got '") + value + "'");
    }
    config.timeout_seconds = seconds;
  }
  if (const char* value = env("TPCOMM_CHUNK_BYTES")) {
    config.chunk_bytes = parse_byte_size(value, "TPCOMM_CHUNK_BYTES");
  }
  if (const char* value = env("TPCOMM_ALGO")) config.algorithm = value;
  if (const char* value = env("TPCOMM_ONE_SHOT_MAX_BYTES")) {
    config.one_shot_max_bytes = parse_byte_size(value, "TPCOMM_ONE_SHOT_MAX_BYTES");
  }
  if (const char* value = env("TPCOMM_NT_MIN_BYTES"); value != nullptr && std::string_view(value) != "auto") {
    config.streaming_min_bytes = parse_byte_size(value, "TPCOMM_NT_MIN_BYTES");
    config.measured_stores = false;
  }
  if (const char* value = env("TPCOMM_CLAIM_MAX_BYTES")) {
    config.claim_max_bytes = parse_byte_size(value, "TPCOMM_CLAIM_MAX_BYTES");
  }
  if (const char* value = env("TPCOMM_OWN_FROM_INPUT_MAX_BYTES")) {
    config.own_from_input_max_bytes = parse_byte_size(value, "TPCOMM_OWN_FROM_INPUT_MAX_BYTES");
  }
  if (const char* value = env("TPCOMM_NT_RESULT_MIN_BYTES"); value != nullptr && std::string_view(value) != "auto") {
    config.result_streaming_min_bytes = parse_byte_size(value, "TPCOMM_NT_RESULT_MIN_BYTES");
    config.measured_results = false;
  }
  if (const char* value = env("TPCOMM_SPIN")) {
    config.spin_count = static_cast<int>(parse_byte_size(value, "TPCOMM_SPIN"));
  }
  if (const char* value = env("TPCOMM_THREADS"); value != nullptr && std::string_view(value) != "auto") {
    char* end = nullptr;
    errno = 0;
    const long threads = std::strtol(value, &end, 10);
    if (end == value || *end != '\0' || errno != 0 || threads < 1 || threads > 64) {
      fail(ErrorCode::invalid_argument,
           std::string("TPCOMM_THREADS: expected auto or a number of threads from 1 to 64, got '") + value + "'");
    }
    config.threads = static_cast<int>(threads);
  }
  if (const char* value = env("TPCOMM_THREADS_MIN_BYTES")) {
    config.threads_min_bytes = parse_byte_size(value, "TPCOMM_THREADS_MIN_BYTES");
  }
  return config;
}

std::uint64_t affinity_bits() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return ~std::uint64_t{0};
  std::uint64_t bits = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) bits |= std::uint64_t{1} << (cpu % 64);
  }
  return bits;
}

int default_spin_count(const std::vector<std::uint64_t>& rank_cpu_bits, int machine_cpus) {
  // With a CPU per rank, ranks that compute between calls arrive up to tens of
  // microseconds apart, and a rank that yields after a short spin gives its CPU
  // away and comes back late to the next call: in a loop of 54 us of work and
  // a 4 KiB all_reduce, 1000 spins (a pause is ~25 ns here) made the call cost
  // 1.7-3.3 us, 20000 spins 0.6-0.9 us (docs/performance.md item 18). With
  // more ranks than CPUs a spinning rank only keeps the one it waits for off
  // the CPU: with 3, 4 and 8 ranks on 2 CPUs, 64 spins took up to 1.4x the time
  // of none (item 31). CPUs that collide modulo 64 count once, so a huge
  // machine can look smaller than it is: the cost is a yield, never an error.
  std::uint64_t shared = 0;
  for (const std::uint64_t bits : rank_cpu_bits) shared |= bits;
  const int cpus = std::min(std::popcount(shared), std::max(machine_cpus, 1));
  return static_cast<int>(rank_cpu_bits.size()) > cpus ? 0 : 20000;
}

}  // namespace tpcomm::detail
