#include "mpi/mpi_handles.hpp"

#include <algorithm>
#include <string>

#include "mpi/mpi_error.hpp"

namespace tpcomm::detail {

MpiComm& MpiComm::operator=(MpiComm&& other) noexcept {
  if (this != &other) {
    release();
    comm_ = std::exchange(other.comm_, MPI_COMM_NULL);
  }
  return *this;
}

int MpiComm::rank() const {
  int rank = 0;
  MPI_Comm_rank(comm_, &rank);
  return rank;
}

int MpiComm::size() const {
  int size = 0;
  MPI_Comm_size(comm_, &size);
  return size;
}

void MpiComm::release() noexcept {
  if (comm_ == MPI_COMM_NULL) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&comm_);
  comm_ = MPI_COMM_NULL;
}

MpiComm duplicate(MPI_Comm comm, std::string_view what) {
  MPI_Comm copy = MPI_COMM_NULL;
  check_mpi(MPI_Comm_dup(comm, &copy), std::string(what) + ": MPI_Comm_dup");
  MpiComm owned(copy);
  check_mpi(MPI_Comm_set_errhandler(copy, MPI_ERRORS_RETURN), std::string(what) + ": MPI_Comm_set_errhandler");
  return owned;
}

MpiComm split(MPI_Comm comm, int color, int key, std::string_view what) {
  MPI_Comm part = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split(comm, color, key, &part), std::string(what) + ": MPI_Comm_split");
  MpiComm owned(part);
  if (part != MPI_COMM_NULL) {
    check_mpi(MPI_Comm_set_errhandler(part, MPI_ERRORS_RETURN), std::string(what) + ": MPI_Comm_set_errhandler");
  }
  return owned;
}

namespace {

template <class Post>
void post_pieces(std::size_t bytes, bool always, Post post) {
  if (bytes == 0 && always) post(std::size_t{0}, 0);
  for (std::size_t offset = 0; offset < bytes; offset += kMaxMessageBytes) {
    post(offset, static_cast<int>(std::min(kMaxMessageBytes, bytes - offset)));
  }
}

}  // namespace

void MpiRequests::send(const void* data, std::size_t bytes, int peer, int tag, MPI_Comm comm, std::string_view what,
                       bool always) {
  post_pieces(bytes, always, [&](std::size_t offset, int length) {
    MPI_Request request = MPI_REQUEST_NULL;
    const int code =
        MPI_Isend(static_cast<const std::byte*>(data) + offset, length, MPI_BYTE, peer, tag, comm, &request);
    if (code != MPI_SUCCESS) fail_mpi(code, std::string(what) + ": MPI_Isend to rank " + std::to_string(peer));
    requests_.push_back(request);
  });
}

void MpiRequests::recv(void* data, std::size_t bytes, int peer, int tag, MPI_Comm comm, std::string_view what,
                       bool always) {
  post_pieces(bytes, always, [&](std::size_t offset, int length) {
    MPI_Request request = MPI_REQUEST_NULL;
    const int code = MPI_Irecv(static_cast<std::byte*>(data) + offset, length, MPI_BYTE, peer, tag, comm, &request);
    if (code != MPI_SUCCESS) fail_mpi(code, std::string(what) + ": MPI_Irecv from rank " + std::to_string(peer));
    requests_.push_back(request);
  });
}

int MpiRequests::wait_all() {
  statuses_.assign(requests_.size(), MPI_Status{});
  int result = MPI_SUCCESS;
  if (!requests_.empty()) {
    result = MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), statuses_.data());
    if (result == MPI_ERR_IN_STATUS) {
      for (const MPI_Status& status : statuses_) {
        if (status.MPI_ERROR != MPI_SUCCESS && status.MPI_ERROR != MPI_ERR_PENDING) {
          result = status.MPI_ERROR;
          break;
        }
      }
    }
  }
  requests_.clear();
  return result;
}

void broadcast_bytes(void* data, std::size_t bytes, int root, MPI_Comm comm, std::string_view what) {
  for (std::size_t offset = 0; offset < bytes; offset += kMaxMessageBytes) {
    const int length = static_cast<int>(std::min(kMaxMessageBytes, bytes - offset));
    const int code = MPI_Bcast(static_cast<std::byte*>(data) + offset, length, MPI_BYTE, root, comm);
    if (code != MPI_SUCCESS) fail_mpi(code, std::string(what) + ": MPI_Bcast");
  }
}

}  // namespace tpcomm::detail
