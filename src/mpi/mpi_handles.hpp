// Owned MPI communicators and batches of non-blocking messages.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <string_view>
#include <utility>
#include <vector>

namespace tpcomm::detail {

// MPI counts are ints: longer messages travel as several messages of at most
// this many bytes, cut the same way on both sides (both know the length).
inline constexpr std::size_t kMaxMessageBytes = std::size_t{1} << 30;

// Frees its communicator on destruction, unless MPI was finalised first (a
// communicator may outlive MPI_Finalize in a static or at exit).
class MpiComm {
 public:
  MpiComm() = default;
  explicit MpiComm(MPI_Comm comm) : comm_(comm) {}
  MpiComm(MpiComm&& other) noexcept : comm_(std::exchange(other.comm_, MPI_COMM_NULL)) {}
  MpiComm& operator=(MpiComm&& other) noexcept;
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;
  ~MpiComm() { release(); }

  MPI_Comm get() const { return comm_; }
  int rank() const;
  int size() const;

 private:
  void release() noexcept;
  MPI_Comm comm_ = MPI_COMM_NULL;
};

// MPI_Comm_dup / MPI_Comm_split whose result returns errors rather than
// aborting the job. `what` names the caller in error messages.
MpiComm duplicate(MPI_Comm comm, std::string_view what);
MpiComm split(MPI_Comm comm, int color, int key, std::string_view what);

// Non-blocking sends and receives, completed together by wait_all.
class MpiRequests {
 public:
  // Posts the message (as pieces of at most kMaxMessageBytes). Zero bytes
  // posts nothing unless `always` is set (a zero-byte message still matches).
  void send(const void* data, std::size_t bytes, int peer, int tag, MPI_Comm comm, std::string_view what,
            bool always = false);
  void recv(void* data, std::size_t bytes, int peer, int tag, MPI_Comm comm, std::string_view what,
            bool always = false);
  // Waits for every posted request; returns MPI_SUCCESS or the first error
  // (also found in statuses()). The batch is empty again afterwards.
  int wait_all();
  std::size_t size() const { return requests_.size(); }
  // Statuses of the last wait_all, in posting order.
  const std::vector<MPI_Status>& statuses() const { return statuses_; }

 private:
  std::vector<MPI_Request> requests_;
  std::vector<MPI_Status> statuses_;
};

// MPI_Bcast of any number of bytes (in pieces of at most kMaxMessageBytes).
void broadcast_bytes(void* data, std::size_t bytes, int root, MPI_Comm comm, std::string_view what);

}  // namespace tpcomm::detail
