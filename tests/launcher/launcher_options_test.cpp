// Unit tests of tpcomm-run's argument parser.

#include <initializer_list>
#include <iostream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "launch_options.hpp"

namespace {

using tpcomm::run::HelpRequested;
using tpcomm::run::LaunchOptions;
using tpcomm::run::ParseResult;
using tpcomm::run::UsageError;

int failures = 0;

void check(bool condition, std::string_view what) {
  if (!condition) {
    std::cerr << "FAILED: " << what << "\n";
    ++failures;
  }
}

ParseResult parse(std::initializer_list<std::string_view> args) {
  const std::vector<std::string_view> list(args);
  return tpcomm::run::parse_arguments(list);
}

const LaunchOptions* options_of(const ParseResult& result, std::string_view what) {
  const auto* options = std::get_if<LaunchOptions>(&result);
  if (options == nullptr) {
    const auto* error = std::get_if<UsageError>(&result);
    std::cerr << "FAILED: " << what << ": not accepted"
              << (error != nullptr ? ": " + error->message : std::string()) << "\n";
    ++failures;
  }
  return options;
}

void expect_error(std::initializer_list<std::string_view> args, std::string_view message_part,
                  std::string_view what) {
  const ParseResult result = parse(args);
  const auto* error = std::get_if<UsageError>(&result);
  check(error != nullptr, std::string(what) + ": rejected");
  if (error != nullptr) {
    check(error->message.find(message_part) != std::string::npos,
          std::string(what) + ": message '" + error->message + "' mentions '" +
              std::string(message_part) + "'");
  }
}

void test_minimal() {
  const ParseResult result = parse({"-n", "2", "prog"});
  if (const auto* options = options_of(result, "minimal")) {
    check(options->world_size == 2, "minimal: world size");
    check(!options->tag_output, "minimal: no tagging by default");
    check(!options->timeout_seconds, "minimal: no timeout by default");
    check(options->grace_seconds == tpcomm::run::default_grace_seconds, "minimal: default grace");
    check(options->command == std::vector<std::string>{"prog"}, "minimal: command");
  }
}

void test_all_options() {
  const ParseResult result =
      parse({"--tag-output", "-n4", "--timeout=2.5", "--grace", "0", "--", "--prog", "x"});
  if (const auto* options = options_of(result, "all options")) {
    check(options->world_size == 4, "all options: -nN form");
    check(options->tag_output, "all options: --tag-output");
    check(options->timeout_seconds == std::string("2.5"), "all options: timeout kept verbatim");
    check(options->grace_seconds == 0.0, "all options: grace 0 allowed");
    check(options->command == std::vector<std::string>{"--prog", "x"},
          "all options: -- ends the options");
  }
}

void test_program_arguments_untouched() {
  const ParseResult result = parse({"-n", "3", "python3", "-n", "5", "--help", "--bogus"});
  if (const auto* options = options_of(result, "program arguments")) {
    check(options->world_size == 3, "program arguments: -n of the program is not ours");
    check(options->command == std::vector<std::string>{"python3", "-n", "5", "--help", "--bogus"},
          "program arguments: passed through");
  }
}

void test_limits() {
  const ParseResult one = parse({"-n", "1", "p"});
  check(options_of(one, "-n 1") != nullptr, "-n 1 accepted");
  const ParseResult max = parse({"-n", "64", "p"});
  check(options_of(max, "-n 64") != nullptr, "-n 64 accepted");
  expect_error({"-n", "0", "p"}, "-n must be", "-n 0");
  expect_error({"-n", "65", "p"}, "-n must be", "-n 65");
  expect_error({"-n", "-3", "p"}, "-n must be", "-n -3");
  expect_error({"-n", "2.0", "p"}, "-n must be", "-n 2.0");
  expect_error({"-n", "", "p"}, "-n must be", "-n ''");
  expect_error({"-n", "99999999999999999999", "p"}, "-n must be", "-n overflow");
}

void test_errors() {
  expect_error({}, "number of ranks", "no arguments");
  expect_error({"prog"}, "number of ranks", "missing -n");
  expect_error({"-n", "2"}, "PROGRAM is missing", "missing program");
  expect_error({"-n", "2", "--"}, "PROGRAM is missing", "missing program after --");
  expect_error({"-n"}, "needs a value", "-n without value");
  expect_error({"-n", "2", "--timeout"}, "needs a value", "--timeout without value");
  expect_error({"-n", "2", "--grace"}, "needs a value", "--grace without value");
  expect_error({"-n", "2", "--bogus", "p"}, "unknown option '--bogus'", "unknown long option");
  expect_error({"-x", "-n", "2", "p"}, "unknown option '-x'", "unknown short option");
  expect_error({"-n", "2", "--timeout", "0", "p"}, "--timeout", "zero timeout");
  expect_error({"-n", "2", "--timeout", "-1", "p"}, "--timeout", "negative timeout");
  expect_error({"-n", "2", "--timeout", "soon", "p"}, "--timeout", "timeout not a number");
  expect_error({"-n", "2", "--timeout", "inf", "p"}, "--timeout", "infinite timeout");
  expect_error({"-n", "2", "--timeout", "2s", "p"}, "--timeout", "timeout with unit");
  expect_error({"-n", "2", "--grace", "-0.5", "p"}, "--grace", "negative grace");
  expect_error({"-n", "2", "--tag-output=1", "p"}, "takes no value", "--tag-output=1");
}

void test_help() {
  check(std::holds_alternative<HelpRequested>(parse({"-h"})), "-h");
  check(std::holds_alternative<HelpRequested>(parse({"--help"})), "--help");
  check(std::holds_alternative<HelpRequested>(parse({"-n", "2", "--help", "p"})),
        "--help among options");
  check(tpcomm::run::usage_text().starts_with("Usage: tpcomm-run -n N "), "usage text");
}

}  // namespace

int main() {
  test_minimal();
  test_all_options();
  test_program_arguments_untouched();
  test_limits();
  test_errors();
  test_help();
  if (failures != 0) {
    std::cerr << failures << " check(s) failed\n";
    return 1;
  }
  std::cout << "all checks passed\n";
  return 0;
}
