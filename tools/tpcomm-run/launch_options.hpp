// Command-line interface of tpcomm-run.
//
// Parsing is a pure function of the argument list (no I/O, no exit) so that
// it can be tested directly; main() decides what to print and how to exit.
#ifndef TPCOMM_RUN_LAUNCH_OPTIONS_HPP
#define TPCOMM_RUN_LAUNCH_OPTIONS_HPP

#include <tpcomm/tpcomm.h>

#include <charconv>
#include <cmath>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

namespace tpcomm::run {

inline constexpr int max_world_size = TPCOMM_MAX_WORLD_SIZE;
inline constexpr double default_grace_seconds = 3.0;

// Joins pieces of text. Used instead of chains of operator+, which are longer
// to read and make GCC 12 emit false -Wrestrict warnings.
template <typename... Pieces>
std::string concat(const Pieces&... pieces) {
  std::string text;
  (text.append(std::string_view(pieces)), ...);
  return text;
}

struct LaunchOptions {
  int world_size = 0;
  bool tag_output = false;
  // Kept as the user wrote it: the ranks parse TPCOMM_TIMEOUT themselves, and
  // re-formatting a double could change what they read.
  std::optional<std::string> timeout_seconds;
  double grace_seconds = default_grace_seconds;
  // PROGRAM followed by its arguments; never empty in a successful parse.
  std::vector<std::string> command;
};

struct HelpRequested {};

struct UsageError {
  std::string message;
};

using ParseResult = std::variant<LaunchOptions, HelpRequested, UsageError>;

inline std::string usage_text() {
  return concat(
      "Usage: tpcomm-run -n N [--tag-output] [--timeout S] [--grace S] [--] PROGRAM [ARGS...]\n"
      "\n"
      "Start N ranks of PROGRAM on this machine. Each rank gets TPCOMM_RANK,\n"
      "TPCOMM_WORLD_SIZE, TPCOMM_LOCAL_RANK, TPCOMM_LOCAL_WORLD_SIZE and a\n"
      "TPCOMM_JOB_ID shared by all ranks of the job (an existing TPCOMM_JOB_ID\n"
      "is kept).\n"
      "\n"
      "Options:\n"
      "  -n N          number of ranks, 1..",
      std::to_string(max_world_size),
      " (required)\n"
      "  --tag-output  prefix each line the ranks print with \"[RANK] \"\n"
      "  --timeout S   set TPCOMM_TIMEOUT=S: seconds the library waits for peers\n"
      "  --grace S     seconds a rank gets to exit after being asked to stop,\n"
      "                before it is killed with SIGKILL (default 3)\n"
      "  -h, --help    print this help and exit\n"
      "\n"
      "When a rank exits with a non-zero status or is killed by a signal, the\n"
      "other ranks get SIGTERM, and tpcomm-run names the failed rank and exits\n"
      "with its status (128+N for signal N). If more ranks fail before all have\n"
      "ended or the grace period is over, a rank killed by a signal that\n"
      "tpcomm-run did not send is named (the first such), as the likely cause\n"
      "of the others' errors; otherwise the first rank seen to fail.\n"
      "SIGINT, SIGTERM and SIGHUP sent to tpcomm-run are forwarded to every rank\n"
      "and tpcomm-run exits with 128+N.\n");
}

namespace detail {

inline std::optional<int> parse_int(std::string_view text) {
  int value = 0;
  const char* end = text.data() + text.size();
  auto [stop, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc{} || stop != end) return std::nullopt;
  return value;
}

inline std::optional<double> parse_seconds(std::string_view text) {
  double value = 0.0;
  const char* end = text.data() + text.size();
  auto [stop, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc{} || stop != end || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

inline std::string quoted(std::string_view text) { return concat("'", text, "'"); }

}  // namespace detail

// args is argv without argv[0]. Options must come before PROGRAM: the first
// argument that is not an option (or everything after "--") is the command,
// so options meant for PROGRAM are passed through untouched.
inline ParseResult parse_arguments(std::span<const std::string_view> args) {
  LaunchOptions options;
  bool have_world_size = false;

  std::size_t index = 0;
  // Returns the value of an option given either as "--name=value" (inline) or
  // as the next argument.
  auto take_value =
      [&](std::optional<std::string_view> inline_value) -> std::optional<std::string_view> {
    if (inline_value) return inline_value;
    if (index + 1 >= args.size()) return std::nullopt;
    return args[++index];
  };

  for (; index < args.size(); ++index) {
    const std::string_view arg = args[index];
    if (arg == "--") {
      ++index;
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') break;  // PROGRAM ("-" alone is a name too)

    std::string_view name = arg;
    std::optional<std::string_view> inline_value;
    if (arg.starts_with("--")) {
      if (const auto equals = arg.find('='); equals != std::string_view::npos) {
        name = arg.substr(0, equals);
        inline_value = arg.substr(equals + 1);
      }
    } else if (arg.starts_with("-n") && arg.size() > 2) {
      name = "-n";
      inline_value = arg.substr(2);
    }

    if (name == "-h" || name == "--help") {
      return HelpRequested{};
    }
    if (name == "--tag-output") {
      if (inline_value) return UsageError{"option --tag-output takes no value"};
      options.tag_output = true;
    } else if (name == "-n") {
      const auto value = take_value(inline_value);
      if (!value) return UsageError{"option -n needs a value"};
      const auto count = detail::parse_int(*value);
      if (!count || *count < 1 || *count > max_world_size) {
        return UsageError{concat("-n must be an integer from 1 to ", std::to_string(max_world_size),
                                 ", got ", detail::quoted(*value))};
      }
      options.world_size = *count;
      have_world_size = true;
    } else if (name == "--timeout") {
      const auto value = take_value(inline_value);
      if (!value) return UsageError{"option --timeout needs a value"};
      const auto seconds = detail::parse_seconds(*value);
      if (!seconds || *seconds <= 0.0) {
        return UsageError{
            concat("--timeout must be a positive number of seconds, got ", detail::quoted(*value))};
      }
      options.timeout_seconds = std::string(*value);
    } else if (name == "--grace") {
      const auto value = take_value(inline_value);
      if (!value) return UsageError{"option --grace needs a value"};
      const auto seconds = detail::parse_seconds(*value);
      if (!seconds || *seconds < 0.0) {
        return UsageError{concat("--grace must be a non-negative number of seconds, got ",
                                 detail::quoted(*value))};
      }
      options.grace_seconds = *seconds;
    } else {
      return UsageError{concat("unknown option ", detail::quoted(arg))};
    }
  }

  if (!have_world_size) return UsageError{"the number of ranks is missing (use -n N)"};
  if (index >= args.size()) return UsageError{"PROGRAM is missing"};
  options.command.assign(args.begin() + static_cast<std::ptrdiff_t>(index), args.end());
  return options;
}

}  // namespace tpcomm::run

#endif  // TPCOMM_RUN_LAUNCH_OPTIONS_HPP
