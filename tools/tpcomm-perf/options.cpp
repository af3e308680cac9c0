#include "options.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <limits>

#include "collectives.hpp"
#include "reference.hpp"

namespace tpcomm::perf {
namespace {

constexpr std::array all_dtypes{DataType::f32, DataType::f64, DataType::f16, DataType::bf16,
                                DataType::i8,  DataType::u8,  DataType::i32, DataType::i64};
constexpr std::array all_redops{ReduceOp::sum, ReduceOp::prod, ReduceOp::min, ReduceOp::max,
                                ReduceOp::avg};
constexpr std::array all_algos{std::string_view{"one_shot"}, std::string_view{"two_shot"},
                               std::string_view{"auto"}};

template <class Range, class Name>
std::string join_names(const Range& range, Name name) {
  std::string out;
  for (const auto& item : range) {
    if (!out.empty()) out += ", ";
    out += name(item);
  }
  return out;
}

std::string quoted(std::string_view text) { return "'" + std::string(text) + "'"; }

// Whole-string unsigned decimal; nullopt for anything else (sign, spaces, overflow).
std::optional<std::size_t> parse_unsigned(std::string_view text) {
  std::size_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc{} || ptr != end) return std::nullopt;
  return value;
}

std::size_t parse_count(std::string_view option, std::string_view value, std::size_t minimum) {
  const auto parsed = parse_unsigned(value);
  if (!parsed || *parsed < minimum)
    throw OptionError(std::string(option) + " wants an integer >= " + std::to_string(minimum) +
                      ", got " + quoted(value));
  return *parsed;
}

std::size_t parse_size_option(std::string_view option, std::string_view value) {
  try {
    return parse_size(value);
  } catch (const OptionError& e) {
    throw OptionError(std::string(option) + ": " + e.what());
  }
}

// ---- the option table -----------------------------------------------------------
struct OptionSpec {
  std::string_view long_name;  // without "--"
  char short_name;             // '\0' if none
  bool takes_value;
  void (*apply)(PerfOptions& options, std::string_view value);
};

void set_op(PerfOptions& o, std::string_view v) {
  if (find_collective(v) == nullptr)
    throw OptionError("unknown --op " + quoted(v) + " (choose from: " +
                      join_names(collectives(), [](const Collective& c) { return c.name; }) + ")");
  o.op = v;
}

void set_dtype(PerfOptions& o, std::string_view v) {
  const auto found = std::ranges::find(all_dtypes, v, dtype_name);
  if (found == all_dtypes.end())
    throw OptionError("unknown --dtype " + quoted(v) + " (choose from: " +
                      join_names(all_dtypes, dtype_name) + ")");
  o.dtype = *found;
}

void set_redop(PerfOptions& o, std::string_view v) {
  const auto found = std::ranges::find(all_redops, v, redop_name);
  if (found == all_redops.end())
    throw OptionError("unknown --redop " + quoted(v) + " (choose from: " +
                      join_names(all_redops, redop_name) + ")");
  o.redop = *found;
}

void set_iters(PerfOptions& o, std::string_view v) {
  if (v == "auto") {
    o.iters.reset();
  } else {
    o.iters = parse_count("--iters", v, 1);
  }
}

void set_root(PerfOptions& o, std::string_view v) {
  const std::size_t root = parse_count("--root", v, 0);
  if (root >= TPCOMM_MAX_WORLD_SIZE)
    throw OptionError("--root " + std::string(v) + " is beyond the largest world size (" +
                      std::to_string(TPCOMM_MAX_WORLD_SIZE) + ")");
  o.root = static_cast<int>(root);
}

void set_algo(PerfOptions& o, std::string_view v) {
  if (std::ranges::find(all_algos, v) == all_algos.end())
    throw OptionError("unknown --algo " + quoted(v) + " (choose from: " +
                      join_names(all_algos, [](std::string_view a) { return a; }) + ")");
  o.algo = v;
}

constexpr std::array option_table{
    OptionSpec{"op", '\0', true, set_op},
    OptionSpec{"dtype", '\0', true, set_dtype},
    OptionSpec{"redop", '\0', true, set_redop},
    OptionSpec{"min-bytes", 'b', true,
               [](PerfOptions& o, std::string_view v) { o.min_bytes = parse_size_option("--min-bytes", v); }},
    OptionSpec{"max-bytes", 'e', true,
               [](PerfOptions& o, std::string_view v) { o.max_bytes = parse_size_option("--max-bytes", v); }},
    OptionSpec{"step-factor", 'f', true,
               [](PerfOptions& o, std::string_view v) { o.step_factor = parse_count("--step-factor", v, 2); }},
    OptionSpec{"iters", 'n', true, set_iters},
    OptionSpec{"warmup", 'w', true,
               [](PerfOptions& o, std::string_view v) { o.warmup = parse_count("--warmup", v, 0); }},
    OptionSpec{"root", 'r', true, set_root},
    OptionSpec{"check", '\0', false, [](PerfOptions& o, std::string_view) { o.check = true; }},
    OptionSpec{"no-check", '\0', false, [](PerfOptions& o, std::string_view) { o.check = false; }},
    OptionSpec{"json", '\0', true,
               [](PerfOptions& o, std::string_view v) {
                 if (v.empty()) throw OptionError("--json wants a file name");
                 o.json_path = v;
               }},
    OptionSpec{"algo", '\0', true, set_algo},
    OptionSpec{"split", '\0', true,
               [](PerfOptions& o, std::string_view v) {
                 o.split = parse_count("--split", v, 1);
                 if (o.split > TPCOMM_MAX_WORLD_SIZE) throw OptionError("--split " + std::string(v) + " is too large");
               }},
    OptionSpec{"print-config", '\0', false, [](PerfOptions& o, std::string_view) { o.print_config = true; }},
    OptionSpec{"help", 'h', false, [](PerfOptions& o, std::string_view) { o.help = true; }},
};

// Splits one argument into the option it names and an attached value, if any.
struct Matched {
  const OptionSpec* spec = nullptr;
  std::optional<std::string_view> attached;
  std::string display;  // how the option is named in messages
};

Matched match_option(std::string_view arg) {
  if (arg.starts_with("--")) {
    std::string_view name = arg.substr(2);
    std::optional<std::string_view> attached;
    if (const auto eq = name.find('='); eq != std::string_view::npos) {
      attached = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const auto spec = std::ranges::find(option_table, name, &OptionSpec::long_name);
    if (spec == option_table.end()) throw OptionError("unknown option " + quoted(arg));
    return {&*spec, attached, "--" + std::string(name)};
  }
  if (arg.size() >= 2 && arg[0] == '-') {
    const auto spec = std::ranges::find(option_table, arg[1], &OptionSpec::short_name);
    if (spec == option_table.end()) throw OptionError("unknown option " + quoted(arg));
    std::optional<std::string_view> attached;
    if (arg.size() > 2) attached = arg.substr(2);
    return {&*spec, attached, std::string(arg.substr(0, 2))};
  }
  throw OptionError("unexpected argument " + quoted(arg));
}

void validate(const PerfOptions& o) {
  if (o.min_bytes == 0) throw OptionError("--min-bytes must be at least 1");
  if (o.min_bytes > o.max_bytes)
    throw OptionError("--min-bytes (" + std::to_string(o.min_bytes) + ") exceeds --max-bytes (" +
                      std::to_string(o.max_bytes) + ")");
  const Collective* collective = find_collective(o.op);
  if (collective->reduces && o.redop == ReduceOp::avg && !reference::is_float(o.dtype))
    throw OptionError("--redop avg needs a floating-point --dtype, not " +
                      std::string(dtype_name(o.dtype)));
  if (collective->has_payload && o.max_bytes < dtype_size(o.dtype))
    throw OptionError("--max-bytes (" + std::to_string(o.max_bytes) + ") is smaller than one " +
                      std::string(dtype_name(o.dtype)) + " element");
}

}  // namespace

std::size_t parse_size(std::string_view text) {
  std::size_t multiplier = 1;
  std::string_view digits = text;
  if (!text.empty()) {
    switch (std::toupper(static_cast<unsigned char>(text.back()))) {
      case 'K': multiplier = kibibyte; break;
      case 'M': multiplier = mebibyte; break;
      case 'G': multiplier = kibibyte * mebibyte; break;
      default: break;
    }
    if (multiplier != 1) digits.remove_suffix(1);
  }
  const auto value = parse_unsigned(digits);
  if (!value)
    throw OptionError("bad size " + quoted(text) + " (want a number with an optional K, M or G suffix)");
  if (*value > std::numeric_limits<std::size_t>::max() / multiplier)
    throw OptionError("size " + quoted(text) + " is too large");
  return *value * multiplier;
}

PerfOptions parse_options(std::span<const std::string_view> args) {
  PerfOptions options;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const Matched m = match_option(args[i]);
    std::string_view value;
    if (m.spec->takes_value) {
      if (m.attached) {
        value = *m.attached;
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        throw OptionError(m.display + " wants a value");
      }
    } else if (m.attached) {
      throw OptionError(m.display + " takes no value");
    }
    m.spec->apply(options, value);
  }
  if (!options.help) validate(options);
  return options;
}

std::size_t auto_iterations(std::size_t bytes) {
  constexpr std::size_t target_bytes = 64 * mebibyte;
  constexpr std::size_t fewest = 20;
  constexpr std::size_t most = 1000;
  if (bytes == 0) return most;
  return std::clamp(target_bytes / bytes, fewest, most);
}

std::vector<std::size_t> message_counts(const PerfOptions& options, std::size_t element_size) {
  std::vector<std::size_t> counts;
  for (std::size_t bytes = options.min_bytes; bytes <= options.max_bytes;) {
    if (const std::size_t count = bytes / element_size; count > 0) counts.push_back(count);
    if (bytes > options.max_bytes / options.step_factor) break;  // next step would pass max (or overflow)
    bytes *= options.step_factor;
  }
  return counts;
}

std::string usage() {
  return R"(usage: tpcomm-perf [options]
Measures a tpcomm collective over a range of message sizes, out of place and in
place, in the style of nccl-tests. Run it under a launcher, e.g.
  tpcomm-run -n 2 tpcomm-perf --op all_reduce -b 8 -e 64M

  --op NAME            collective: all_reduce (default), reduce_scatter, all_gather,
                       broadcast, reduce, gather, scatter, all_to_all, barrier
  --dtype NAME         f32 (default), f64, f16, bf16, i8, u8, i32, i64
  --redop NAME         sum (default), prod, min, max, avg (avg: floating types only)
  -b, --min-bytes N    smallest message (default 8); K, M, G suffixes are powers of 1024
  -e, --max-bytes N    largest message (default 64M)
  -f, --step-factor N  multiply the size by N between steps (integer >= 2, default 2)
  -n, --iters N|auto   timed iterations per size (default auto: clamp(64M / bytes, 20, 1000))
  -w, --warmup N       untimed iterations per size before timing (default 5)
  -r, --root N         root rank of broadcast, reduce, gather, scatter (default 0)
      --check          check every iteration against a serial reference (default)
      --no-check       skip checking (checking needs world_size x max-bytes of scratch per rank)
      --json FILE      also write the settings and results as JSON (rank 0)
      --algo NAME      all_reduce algorithm: one_shot, two_shot, auto (sets TPCOMM_ALGO)
      --split N        run inside N concurrent equal groups of consecutive ranks
                       (cost of concurrent groups); group 0's figures are printed
      --print-config   print the library's environment variables and exit
  -h, --help           show this text

Every iteration rewrites the input with a new pattern (untimed), synchronises
with a barrier, then times one call. time is the median over the timed
iterations of the slowest rank's time. As in nccl-tests, bytes is the larger
of the send and recv buffers (sizes are rounded down to whole elements, and to
world_size blocks for the block collectives), algbw = bytes / time and busbw =
algbw x 2(n-1)/n for all_reduce, (n-1)/n for reduce_scatter, all_gather,
gather, scatter and all_to_all, 1 for broadcast and reduce. #wrong counts
mismatching elements, modified send elements and overwritten guard bytes,
summed over ranks.
Exit status: 0 all correct, 1 wrong results or a library error, 2 bad options.
)";
}

}  // namespace tpcomm::perf
