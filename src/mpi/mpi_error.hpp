// MPI failures as tpcomm errors. Every MPI communicator tpcomm owns returns
// errors (MPI_ERRORS_RETURN) instead of aborting, and every call's result goes
// through check_mpi, so a failed MPI call becomes Error(system) carrying MPI's
// own message.
#pragma once

#include <mpi.h>

#include <string>
#include <string_view>

namespace tpcomm::detail {

// MPI's text for an error code (its error class too when they differ).
std::string mpi_error_string(int code);

// Throws Error(system, "<what>: <MPI's message>").
[[noreturn]] void fail_mpi(int code, std::string_view what);

inline void check_mpi(int code, std::string_view what) {
  if (code != MPI_SUCCESS) fail_mpi(code, what);
}

}  // namespace tpcomm::detail
