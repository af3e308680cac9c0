// ShmSegment: one POSIX shared-memory segment, owned (RAII, move-only).
//
// Creation reserves the memory with posix_fallocate so that a full /dev/shm
// fails here, with a clear error, instead of as SIGBUS on first touch later.
// Segments are owner-only (0600). The name is unlinked as soon as every rank
// has attached (see Communicator), so a crash later leaves nothing behind.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <optional>
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

  // Creates the segment `name` fully formed or not at all: the memory is
  // reserved and `initialise` run under a private temporary name
  // (`name` + ".init" + pid), which is then hard-linked to `name` (atomic,
  // fails if `name` exists). So a process that finds `name` finds an
  // initialised segment, and a creator killed half-way leaves only its
  // temporary name. Returns nullopt if `name` already exists. Throws on errors.
  static std::optional<ShmSegment> create_published(const std::string& name, std::size_t bytes,
                                                    const std::function<void(std::byte*)>& initialise);
  // Opens and maps the existing segment `name` whatever its size (size() tells;
  // an empty one is not mapped). Returns nullopt if there is none. The object
  // may unlink the name (see unlink()).
  static std::optional<ShmSegment> open_existing(const std::string& name);
  // The temporary name create_published uses for `name` in process `pid`.
  static std::string temporary_name(const std::string& name, pid_t pid);

  // Removes the name from /dev/shm if it still refers to this segment (never
  // a newer segment that took the same name); the mapping stays valid.
  // Idempotent.
  void unlink();
  // Stops this object from unlinking the name on destruction (another rank
  // owns that step).
  void forget_name() { linked_ = false; }

  // Seconds since the file was last modified (created, for a segment that is
  // only written through its mapping), or 0 if unknown.
  double age_seconds() const;

  std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& name() const { return name_; }

 private:
  void release() noexcept;

  std::string name_;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  bool linked_ = false;
  dev_t device_ = 0;  // identity of the file, so unlink() spares a successor
  ino_t inode_ = 0;
};

}  // namespace tpcomm::detail
