#include "shm/segment.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <thread>
#include <utility>

#include "core/error.hpp"

namespace tpcomm::detail {
namespace {

// Closes a file descriptor on scope exit; the mapping outlives it.
struct FileDescriptor {
  int fd = -1;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

const std::string kShmDirectory = "/dev/shm";

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

ShmSegment::ShmSegment(ShmSegment&& other) noexcept
    : name_(std::move(other.name_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      linked_(std::exchange(other.linked_, false)),
      device_(other.device_),
      inode_(other.inode_) {}

ShmSegment& ShmSegment::operator=(ShmSegment&& other) noexcept {
  if (this != &other) {
    release();
    name_ = std::move(other.name_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    linked_ = std::exchange(other.linked_, false);
    device_ = other.device_;
    inode_ = other.inode_;
  }
  return *this;
}

ShmSegment::~ShmSegment() { release(); }

void ShmSegment::release() noexcept {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
  unlink();
}

void ShmSegment::unlink() {
  if (!linked_) return;
  linked_ = false;
  // Only the file this object mapped: the name may since have been taken by
  // a new segment (a later job with the same id), which must stay.
  struct stat info {};
  if (inode_ != 0 && (::stat((kShmDirectory + name_).c_str(), &info) != 0 || info.st_dev != device_ ||
                      info.st_ino != inode_)) {
    return;
  }
  ::shm_unlink(name_.c_str());
}

double ShmSegment::age_seconds() const {
  struct stat info {};
  if (::stat((kShmDirectory + name_).c_str(), &info) != 0) return 0;
  return static_cast<double>(::time(nullptr) - info.st_mtime);
}

std::string ShmSegment::temporary_name(const std::string& name, pid_t pid) {
  return name + ".init" + std::to_string(pid);
}

std::optional<ShmSegment> ShmSegment::create_published(const std::string& name, std::size_t bytes,
                                                       const std::function<void(std::byte*)>& initialise) {
  const std::string temporary = temporary_name(name, ::getpid());
  // A leftover of an earlier attempt of this very process (same pid) is ours.
  ::shm_unlink(temporary.c_str());
  FileDescriptor file;
  file.fd = ::shm_open(temporary.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, S_IRUSR | S_IWUSR);
  if (file.fd < 0) fail_system("shm_open(" + temporary + ")", errno);
  struct RemoveTemporary {
    const std::string& name;
    ~RemoveTemporary() { ::shm_unlink(name.c_str()); }
  } remove_temporary{temporary};
  // posix_fallocate reserves tmpfs pages now: "no space" is an error here,
  // not a SIGBUS when a rank first touches the page mid-collective.
  if (const int rc = ::posix_fallocate(file.fd, 0, static_cast<off_t>(bytes)); rc != 0) {
    fail_system("cannot reserve " + std::to_string(bytes) + " bytes of shared memory for " + name +
                    " (is /dev/shm large enough?)",
                rc);
  }
  struct stat info {};
  if (::fstat(file.fd, &info) != 0) fail_system("fstat(" + temporary + ")", errno);
  void* mapping = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, file.fd, 0);
  if (mapping == MAP_FAILED) fail_system("mmap(" + temporary + ", " + std::to_string(bytes) + " bytes)", errno);
  ShmSegment segment;
  segment.name_ = name;
  segment.data_ = static_cast<std::byte*>(mapping);
  segment.size_ = bytes;
  segment.device_ = info.st_dev;
  segment.inode_ = info.st_ino;
  initialise(segment.data_);
  // POSIX shared memory is tmpfs under /dev/shm on Linux: link() publishes
  // the finished file under its real name, or fails if the name is taken.
  if (::link((kShmDirectory + temporary).c_str(), (kShmDirectory + name).c_str()) != 0) {
    if (errno == EEXIST) return std::nullopt;
    fail_system("link(" + temporary + ", " + name + ")", errno);
  }
  segment.linked_ = true;
  return segment;
}

std::optional<ShmSegment> ShmSegment::open_existing(const std::string& name) {
  FileDescriptor file;
  file.fd = ::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0);
  if (file.fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    fail_system("shm_open(" + name + ") of an existing segment", errno);
  }
  struct stat info {};
  if (::fstat(file.fd, &info) != 0) fail_system("fstat(" + name + ")", errno);
  ShmSegment segment;
  segment.name_ = name;
  segment.device_ = info.st_dev;
  segment.inode_ = info.st_ino;
  if (info.st_size > 0) {
    const auto bytes = static_cast<std::size_t>(info.st_size);
    void* mapping = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, file.fd, 0);
    if (mapping == MAP_FAILED) fail_system("mmap(" + name + ", " + std::to_string(bytes) + " bytes)", errno);
    segment.data_ = static_cast<std::byte*>(mapping);
    segment.size_ = bytes;
  }
  segment.linked_ = true;
  return segment;
}

ShmSegment ShmSegment::create_or_open(const std::string& name, std::size_t bytes, double deadline_seconds,
                                      OpenResult* result) {
  ShmSegment segment;
  segment.name_ = name;
  FileDescriptor file;
  file.fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, S_IRUSR | S_IWUSR);
  if (file.fd >= 0) {
    *result = OpenResult::created;
    segment.linked_ = true;  // from here on, a failure unlinks what we created
    // posix_fallocate reserves tmpfs pages now: "no space" is an error here,
    // not a SIGBUS when a rank first touches the page mid-collective.
    const int rc = ::posix_fallocate(file.fd, 0, static_cast<off_t>(bytes));
    if (rc != 0) {
      ::shm_unlink(name.c_str());
      segment.linked_ = false;
      fail_system("cannot reserve " + std::to_string(bytes) + " bytes of shared memory for " + name +
                      " (is /dev/shm large enough?)",
                  rc);
    }
  } else {
    if (errno != EEXIST) fail_system("shm_open(" + name + ")", errno);
    *result = OpenResult::opened;
    file.fd = ::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0);
    if (file.fd < 0) fail_system("shm_open(" + name + ") of an existing segment", errno);
    // The creator may not have sized it yet: wait, bounded, until it has.
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      struct stat info {};
      if (::fstat(file.fd, &info) != 0) fail_system("fstat(" + name + ")", errno);
      if (static_cast<std::size_t>(info.st_size) == bytes) break;
      if (info.st_size != 0 && static_cast<std::size_t>(info.st_size) != bytes) {
        fail(ErrorCode::mismatch, "shared-memory segment " + name + " has " + std::to_string(info.st_size) +
                                      " bytes but this rank expects " + std::to_string(bytes) +
                                      " (ranks disagree on world size or chunk size?)");
      }
      if (seconds_since(start) > deadline_seconds) {
        fail(ErrorCode::timeout, "segment " + name + " was created but never sized by its creator within " +
                                     std::to_string(deadline_seconds) + " s");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  void* mapping = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, file.fd, 0);
  if (mapping == MAP_FAILED) fail_system("mmap(" + name + ", " + std::to_string(bytes) + " bytes)", errno);
  segment.data_ = static_cast<std::byte*>(mapping);
  segment.size_ = bytes;
  struct stat info {};
  if (::fstat(file.fd, &info) == 0) {
    segment.device_ = info.st_dev;
    segment.inode_ = info.st_ino;
  }
  // An opener may unlink only once it has validated and mapped the segment:
  // one that fails here (a size mismatch) must leave it for the others.
  segment.linked_ = true;
  return segment;
}

}  // namespace tpcomm::detail
