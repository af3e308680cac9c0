// Error helpers: one error type (tpcomm::Error) with an ErrorCode and a
// message that names the rank, the collective and the values involved.
#pragma once

#include <source_location>
#include <string>

#include "tpcomm/tpcomm.hpp"

namespace tpcomm::detail {

// Throws Error(code, message). Internal errors carry the source location so a
// bug report points at the line; user-facing errors stay readable.
[[noreturn]] void fail(ErrorCode code, const std::string& message,
                       std::source_location where = std::source_location::current());

// Throws Error(system, "<what>: <strerror(errno_value)>").
[[noreturn]] void fail_system(const std::string& what, int errno_value);

}  // namespace tpcomm::detail
