// tpcomm-perf: nccl-tests style bandwidth and correctness sweep of a tpcomm
// collective. See usage() in options.cpp for the method.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aligned_buffer.hpp"
#include "checker.hpp"
#include "collectives.hpp"
#include "options.hpp"
#include "reference.hpp"
#include "report.hpp"
#include "core/config.hpp"
#include "tpcomm/tpcomm.hpp"

namespace tpcomm::perf {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  const std::size_t middle = values.size() / 2;
  std::ranges::nth_element(values, values.begin() + static_cast<std::ptrdiff_t>(middle));
  const double upper = values[middle];
  if (values.size() % 2 == 1) return upper;
  const double lower = *std::max_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(middle));
  return (lower + upper) / 2;
}

// Message sizes in elements, each the most the collective can move within
// the requested bytes. A collective without payload is timed once, as count 0.
std::vector<std::size_t> sweep_counts(const PerfOptions& options, const Collective& collective,
                                      int world_size) {
  if (!collective.has_payload) return {0};
  std::vector<std::size_t> counts;
  for (const std::size_t count : message_counts(options, dtype_size(options.dtype)))
    if (const std::size_t usable = collective.usable_count(count, world_size); usable > 0)
      counts.push_back(usable);
  return counts;
}

// Runs and times one collective at the sizes of a sweep. Buffers are allocated
// once, at the largest shape, and reused for every size.
class Runner {
 public:
  Runner(Communicator& comm, const PerfOptions& options, const Collective& collective,
         const std::vector<std::size_t>& counts)
      : comm_(comm),
        options_(options),
        collective_(collective),
        me_{.rank = comm.rank(), .world_size = comm.world_size(), .root = options.root},
        element_size_(dtype_size(options.dtype)) {
    // The recv buffer also serves in place, where it holds input and output.
    std::size_t send_count = 0;
    std::size_t recv_count = 0;
    for (const std::size_t count : counts) {
      const Shape shape = collective.shape(count, me_);
      send_count = std::max(send_count, shape.send_count);
      recv_count = std::max({recv_count, shape.recv_count, shape.in_place_extent()});
    }
    send_ = AlignedBuffer(send_count * element_size_);
    recv_ = AlignedBuffer(recv_count * element_size_ + guard_bytes);
    if (options.check && collective.has_payload)
      checker_.emplace(collective, options.dtype, options.redop, me_, counts);
  }

  // Warm-up and timed iterations of one size in one mode; every rank returns
  // the same record.
  Record measure(std::size_t count, bool in_place) {
    const Shape shape = collective_.shape(count, me_);
    const std::size_t bytes = count * element_size_;
    const std::size_t iters = options_.iters.value_or(auto_iterations(bytes));
    std::vector<double> times;
    times.reserve(iters);
    std::int64_t wrong = 0;
    for (std::size_t i = 0; i < options_.warmup + iters; ++i) {
      const double seconds = run_iteration(count, shape, in_place, wrong);
      if (i >= options_.warmup) times.push_back(seconds);
    }
    // Per iteration, the slowest rank defines the collective's time.
    comm_.all_reduce(times.data(), times.data(), times.size(), DataType::f64, ReduceOp::max);
    comm_.all_reduce(&wrong, &wrong, 1, DataType::i64, ReduceOp::sum);

    const double seconds = median(std::move(times));
    const double algbw = seconds > 0 ? static_cast<double>(bytes) / seconds / 1e9 : 0;
    return {.bytes = bytes,
            .count = count,
            .in_place = in_place,
            .iters = iters,
            .time_us = seconds * 1e6,
            .algbw = algbw,
            .busbw = algbw * collective_.bus_factor(me_.world_size),
            .wrong = wrong,
            .algo = std::string(collective_.algorithm(comm_, bytes, options_.dtype))};
  }

 private:
  // One call on freshly written input; returns its duration in seconds and
  // adds what the checker found to `wrong`.
  double run_iteration(std::size_t count, const Shape& shape, bool in_place, std::int64_t& wrong) {
    // A new seed every call: inputs a previous call already saw would measure
    // cache sharing rather than communication, and would hide stale results.
    const std::uint64_t seed = next_seed_++;
    std::byte* const base = recv_.data();
    std::byte* const send = in_place ? base + shape.in_place_send_offset * element_size_ : send_.data();
    std::byte* const recv = in_place ? base + shape.in_place_recv_offset * element_size_ : base;
    std::byte* const guard = base + (in_place ? shape.in_place_extent() : shape.recv_count) * element_size_;
    reference::fill_pattern(options_.dtype, send, shape.send_count, me_.rank, seed);
    if (checker_) write_guard(guard);
    // Every rank starts the timed call together; the skew left after the
    // barrier is part of what a real caller sees too.
    comm_.barrier();
    const Clock::time_point start = Clock::now();
    collective_.run(comm_, send, recv, shape, options_.dtype, options_.redop, me_);
    const std::chrono::duration<double> elapsed = Clock::now() - start;
    // A rank that is done must not start its untimed work (checking, writing
    // the next input) while another is still inside the timed call: with more
    // ranks than CPUs it would take the CPU the late rank needs, and the call
    // would look up to 8x slower than it is (8 ranks on 2 CPUs, 32 KiB).
    comm_.barrier();
    if (checker_)
      wrong += checker_->count_wrong(count, seed, {.send = send, .recv = recv, .guard = guard, .in_place = in_place});
    return elapsed.count();
  }

  Communicator& comm_;
  const PerfOptions& options_;
  const Collective& collective_;
  const Participant me_;
  const std::size_t element_size_;
  AlignedBuffer send_;
  AlignedBuffer recv_;
  std::optional<Checker> checker_;
  // Identical sequence on every rank, so the checker can rebuild any rank's input.
  std::uint64_t next_seed_ = 1;
};

// Opens the JSON file on rank 0 before the sweep, so that a bad path fails in
// seconds rather than after it; every rank learns the outcome.
std::optional<std::ofstream> open_json(Communicator& comm, const PerfOptions& options) {
  if (options.json_path.empty()) return std::nullopt;
  std::optional<std::ofstream> file;
  std::string problem;
  if (comm.rank() == 0) {
    file.emplace(options.json_path);
    if (!*file)
      problem = "cannot open --json file '" + options.json_path + "': " + std::strerror(errno);
  }
  std::int64_t failed = problem.empty() ? 0 : 1;
  comm.all_reduce(&failed, &failed, 1, DataType::i64, ReduceOp::max);
  if (failed != 0) throw OptionError(problem.empty() ? "rank 0 cannot open the --json file" : problem);
  return file;
}

// Checks that need the world size; every rank reaches the same verdict.
void validate_for_world(const PerfOptions& options, const Collective& collective, int world_size,
                        std::span<const std::size_t> counts) {
  if (collective.rooted && options.root >= world_size)
    throw OptionError("--root " + std::to_string(options.root) + " is not a rank of this " +
                      std::to_string(world_size) + "-rank job");
  if (counts.empty())
    throw OptionError("no size from --min-bytes to --max-bytes holds a whole message of " +
                      std::string(collective.name) + " (" + std::to_string(world_size) + " blocks of " +
                      std::string(dtype_name(options.dtype)) + ")");
}

// A launcher stops the whole job as soon as one rank exits with an error, so
// ranks leave together: after rank 0 has said why.
int leave_together(Communicator& comm, int status) {
  std::fflush(stdout);
  comm.barrier();
  return status;
}

int run(Communicator& comm, const PerfOptions& options, bool prints) {
  const Collective& collective = *find_collective(options.op);
  const std::vector<std::size_t> counts = sweep_counts(options, collective, comm.world_size());
  std::optional<std::ofstream> json;
  try {
    validate_for_world(options, collective, comm.world_size(), counts);
    json = open_json(comm, options);
  } catch (const OptionError& e) {
    // Every rank reaches the same verdict; one report is enough.
    if (comm.rank() == 0 && prints) std::fprintf(stderr, "tpcomm-perf: %s\n", e.what());
    return leave_together(comm, 2);
  }
  Runner runner(comm, options, collective, counts);
  prints = prints && comm.rank() == 0;
  const TableWriter table(stdout, options, collective, comm.world_size());
  if (prints) table.header();

  std::vector<Record> records;
  for (const std::size_t count : counts) {
    const Record out_of_place = runner.measure(count, false);
    records.push_back(out_of_place);
    if (collective.has_payload && collective.in_place) {
      const Record in_place = runner.measure(count, true);
      records.push_back(in_place);
      if (prints) table.row(out_of_place, &in_place);
    } else if (prints) {
      table.row(out_of_place, nullptr);
    }
  }

  const Summary summary = summarize(records);
  if (prints) table.footer(summary);
  int status = summary.wrong == 0 ? 0 : 1;
  if (json) {
    write_json(*json, options, collective, comm.world_size(), records, summary);
    json->close();
    if (!*json) {
      std::fprintf(stderr, "tpcomm-perf: writing '%s' failed\n", options.json_path.c_str());
      status = 1;
    }
  }
  return leave_together(comm, status);
}

// --split N: the same benchmark inside N concurrent groups of consecutive
// ranks, so the cost of groups sharing the machine can be measured. Group 0's
// rank 0 prints; the exit status is the worst over all ranks.
int run_in_groups(Communicator& world, const PerfOptions& options) {
  const auto groups = static_cast<int>(options.split);
  if (world.world_size() % groups != 0) {
    if (world.rank() == 0) {
      std::fprintf(stderr, "tpcomm-perf: --split %d does not divide the %d ranks into equal groups\n", groups,
                   world.world_size());
    }
    return leave_together(world, 2);
  }
  const int size = world.world_size() / groups;
  std::optional<Communicator> group = world.split(world.rank() / size, world.rank());
  std::int64_t status = run(*group, options, world.rank() == 0);
  world.all_reduce(&status, &status, 1, DataType::i64, ReduceOp::max);
  return static_cast<int>(status);
}

// The library's configuration table (every environment variable it reads).
void print_config(std::FILE* out) {
  std::fprintf(out, "# tpcomm configuration (read when a communicator is created)\n");
  for (const auto& variable : tpcomm::detail::config_variables()) {
    const char* value = nullptr;
    if (variable.name.find(',') == std::string_view::npos) value = std::getenv(std::string(variable.name).c_str());
    std::fprintf(out, "%-40.*s default %-14.*s %s%s\n  %.*s\n", static_cast<int>(variable.name.size()),
                 variable.name.data(), static_cast<int>(variable.default_value.size()),
                 variable.default_value.data(), value != nullptr ? "now " : "", value != nullptr ? value : "",
                 static_cast<int>(variable.meaning.size()), variable.meaning.data());
  }
}

// Before the communicator exists, the launcher's variables are the only way to
// know the rank (same order as Communicator::from_env()).
std::string rank_from_environment() {
  for (const char* name : {"TPCOMM_RANK", "RANK", "OMPI_COMM_WORLD_RANK"})
    if (const char* value = std::getenv(name); value != nullptr && *value != '\0') return value;
  return "?";
}

}  // namespace
}  // namespace tpcomm::perf

int main(int argc, char** argv) {
  using namespace tpcomm::perf;
  std::string rank_label = rank_from_environment();

  PerfOptions options;
  try {
    const std::vector<std::string_view> args(argv + 1, argv + argc);
    options = parse_options(args);
  } catch (const OptionError& e) {
    // Every rank says it: with no communicator yet, nothing keeps rank 0
    // alive until it has, once the launcher sees another rank fail.
    std::fprintf(stderr, "tpcomm-perf: %s\nTry 'tpcomm-perf --help'.\n", e.what());
    return 2;
  }
  if (options.help) {
    // Every rank parses the same command line; one copy of the text is enough.
    if (rank_label == "0" || rank_label == "?") std::fputs(usage().c_str(), stdout);
    return 0;
  }
  // The library reads TPCOMM_ALGO when the communicator is created.
  if (!options.algo.empty()) setenv("TPCOMM_ALGO", options.algo.c_str(), 1);

  if (options.print_config) {
    if (rank_label == "0" || rank_label == "?") print_config(stdout);
    return 0;
  }

  try {
    tpcomm::Communicator world = tpcomm::Communicator::from_env();
    rank_label = std::to_string(world.rank());
    if (options.split <= 1) return run(world, options, true);
    return run_in_groups(world, options);
  } catch (const std::exception& e) {
    // tpcomm::Error and anything else (allocation failure) alike. The
    // library's messages already start with the rank.
    const std::string what = e.what();
    if (what.rfind("rank ", 0) == 0) std::fprintf(stderr, "tpcomm-perf: %s\n", what.c_str());
    else std::fprintf(stderr, "tpcomm-perf: rank %s: %s\n", rank_label.c_str(), what.c_str());
    return 1;
  }
}
