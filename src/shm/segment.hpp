// ShmSegment: one POSIX shared-memory segment, owned (RAII, move-only).
//
// Creation reserves the memory with posix_fallocate so that a full /dev/shm
// fails here, with a clear error, instead of as SIGBUS on first touch later.
// Segments are owner-only (0600). The name is unlinked as soon as every rank
// has attached (see Communicator), so a crash later leaves nothing behind.
#pragma once

#include <cstddef>
#include <string>

namespace tpcomm::detail {

class ShmSegment {
 public:
  enum class OpenResult { created, opened };

  ShmSegment() = default;
  ShmSegment(ShmSegment&& other) noexcept;
  ShmSegment& operator=(ShmSegment&& other) noexcept;
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;
  ~ShmSegment();

  // Creates the segment `name` (starting with '/') of `bytes` bytes if it does
  // not exist yet, else opens the existing one. An opened segment is mapped
  // once its creator has sized it (wait bounded by deadline_seconds). Throws.
  static ShmSegment create_or_open(const std::string& name, std::size_t bytes, double deadline_seconds,
                                   OpenResult* result);

  // Removes the name from /dev/shm (the mapping stays valid). Idempotent.
  void unlink();
  // Stops this object from unlinking the name on destruction (another rank
  // owns that step).
  void forget_name() { linked_ = false; }

  std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& name() const { return name_; }

 private:
  void release() noexcept;

  std::string name_;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  bool linked_ = false;
};

}  // namespace tpcomm::detail
