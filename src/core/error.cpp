#include "core/error.hpp"

#include <cstring>

namespace tpcomm::detail {

void fail(ErrorCode code, const std::string& message, std::source_location where) {
  if (code == ErrorCode::internal) {
    throw Error(code, message + " (internal error at " + where.file_name() + ":" +
                          std::to_string(where.line()) + ")");
  }
  throw Error(code, message);
}

void fail_system(const std::string& what, int errno_value) {
  throw Error(ErrorCode::system, what + ": " + std::strerror(errno_value));
}

}  // namespace tpcomm::detail
