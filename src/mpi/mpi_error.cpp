#include "mpi/mpi_error.hpp"

#include "core/error.hpp"

namespace tpcomm::detail {

std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  std::string message(text, static_cast<std::size_t>(length));
  int error_class = code;
  if (MPI_Error_class(code, &error_class) == MPI_SUCCESS && error_class != code) {
    char class_text[MPI_MAX_ERROR_STRING];
    int class_length = 0;
    if (MPI_Error_string(error_class, class_text, &class_length) == MPI_SUCCESS) {
      message += " (" + std::string(class_text, static_cast<std::size_t>(class_length)) + ")";
    }
  }
  return message;
}

void fail_mpi(int code, std::string_view what) {
  fail(ErrorCode::system, std::string(what) + ": " + mpi_error_string(code));
}

}  // namespace tpcomm::detail
