// Process-level tools for the robustness tests: ranks as forked processes that
// the test can kill from outside at a chosen moment (RankProcesses, from
// multiprocess.hpp), a board in shared memory the ranks report to (it survives
// a rank's SIGKILL), probes of what a process holds (file descriptors,
// /dev/shm segments, mappings, memory), and the setup and expectations the
// tests share.
#pragma once

#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <new>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "multiprocess.hpp"
#include "tpcomm/tpcomm.h"
#include "tpcomm/tpcomm.hpp"

namespace tpcomm::robustness {

// The library's names the tests use unqualified, through
// `using namespace tpcomm::robustness`, and the process tools of multiprocess.hpp.
using tpcomm::Communicator, tpcomm::DataType, tpcomm::ErrorCode, tpcomm::ReduceOp;
using tpcomm::testing::check, tpcomm::testing::now_ns, tpcomm::testing::ProcessEnd, tpcomm::testing::RankProcesses;

// ---- time ------------------------------------------------------------------

inline double seconds_between(std::int64_t from_ns, std::int64_t to_ns) {
  return static_cast<double>(to_ns - from_ns) / 1e9;
}

inline void sleep_seconds(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

// ---- names -----------------------------------------------------------------

// A job id made only of the characters the library keeps verbatim in the
// segment name (letters, digits, '_' and '.', at most 64), so the test can find
// the job's segments in /dev/shm by name.
inline std::string job_id(const std::string& label) {
  static int counter = 0;
  std::random_device device;
  char text[96];
  std::snprintf(text, sizeof(text), "rob_%.20s_%d_%d_%08x%08x", label.c_str(), static_cast<int>(::getpid()),
                counter++, device(), device());
  return text;
}

inline std::string segment_prefix(const std::string& job) {
  return "tpcomm-" + std::to_string(::getuid()) + "-" + job + "-";
}

// The name the first communicator of `job` with `world` ranks gets in a process.
inline std::string first_segment_path(const std::string& job, int world) {
  return "/dev/shm/" + segment_prefix(job) + "0-n" + std::to_string(world);
}

inline std::vector<std::string> dev_shm_entries(const std::string& prefix) {
  std::vector<std::string> found;
  if (DIR* dir = ::opendir("/dev/shm")) {
    while (const dirent* entry = ::readdir(dir)) {
      const std::string name = entry->d_name;
      if (name.rfind(prefix, 0) == 0) found.push_back(name);
    }
    ::closedir(dir);
  }
  std::sort(found.begin(), found.end());
  return found;
}

// Segments of one job left in /dev/shm.
inline std::vector<std::string> segments_of(const std::string& job) { return dev_shm_entries(segment_prefix(job)); }

// Every tpcomm segment of this user, whatever the job.
inline std::vector<std::string> all_own_segments() {
  return dev_shm_entries("tpcomm-" + std::to_string(::getuid()) + "-");
}

inline void remove_segments_of(const std::string& job) {
  for (const std::string& name : segments_of(job)) ::unlink(("/dev/shm/" + name).c_str());
}

inline std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (const auto& item : items) text += (text.empty() ? "" : ", ") + item;
  return text.empty() ? "(none)" : text;
}

// ---- what a process holds --------------------------------------------------

inline int open_fd_count() {
  int count = 0;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (const dirent* entry = ::readdir(dir)) {
      if (entry->d_name[0] != '.') ++count;
    }
    ::closedir(dir);
  }
  return count - 1;  // the directory stream's own descriptor
}

// Mappings of tpcomm segments in this process.
inline int segment_mapping_count() {
  std::ifstream maps("/proc/self/maps");
  int count = 0;
  for (std::string line; std::getline(maps, line);) {
    if (line.find("/dev/shm/tpcomm-") != std::string::npos) ++count;
  }
  return count;
}

// Under AddressSanitizer (freed memory waits in a quarantine) or
// ThreadSanitizer (shadow memory grows with use), resident memory says
// nothing about the library's own allocations.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kResidentMemoryIsMeaningful = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool kResidentMemoryIsMeaningful = false;
#else
inline constexpr bool kResidentMemoryIsMeaningful = true;
#endif
#else
inline constexpr bool kResidentMemoryIsMeaningful = true;
#endif

inline long vm_rss_kib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// ---- communicators ----------------------------------------------------------

// A communicator of `job` whose waits are bounded by timeout_seconds.
inline Communicator create_with_timeout(int rank, int world, const std::string& job, double timeout_seconds) {
  CommOptions options;
  options.timeout = std::chrono::duration<double>(timeout_seconds);
  return Communicator::create(rank, world, job, options);
}

// The same through the C API; throws with tpcomm_last_error() if creation fails.
inline tpcomm_comm_t create_c_with_timeout(int rank, int world, const std::string& job, double timeout_seconds) {
  tpcomm_options_t options;
  tpcomm_options_init(&options);
  options.timeout_seconds = timeout_seconds;
  tpcomm_comm_t comm = nullptr;
  check(tpcomm_comm_create(rank, world, job.c_str(), &options, &comm) == TPCOMM_SUCCESS, tpcomm_last_error());
  return comm;
}

// ---- errors ----------------------------------------------------------------

inline const char* code_name(ErrorCode code) {
  return tpcomm_status_string(static_cast<tpcomm_status_t>(code));
}

// Runs body, which must throw tpcomm::Error with `code` and a message
// containing every needle. Returns the message.
template <class Body>
std::string expect_error(Body&& body, ErrorCode code, const std::vector<std::string>& needles,
                         const std::string& what) {
  try {
    body();
  } catch (const Error& error) {
    const std::string message = error.what();
    check(error.code() == code, what + ": expected " + code_name(code) + ", got " + code_name(error.code()) + ": " +
                                    message);
    for (const auto& needle : needles) {
      check(message.find(needle) != std::string::npos, what + ": message lacks '" + needle + "': " + message);
    }
    return message;
  }
  throw std::runtime_error(what + ": no error was raised");
}

// ---- memory shared with forked ranks ---------------------------------------

// An array in an anonymous shared mapping: made before fork(), it is the same
// memory in the test process and in every rank, and what a rank wrote stays
// readable after the rank has been killed.
template <class T>
class SharedArray {
 public:
  explicit SharedArray(std::size_t size) : size_(size) {
    void* memory = ::mmap(nullptr, bytes(), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) throw std::runtime_error("mmap of the shared board failed");
    items_ = static_cast<T*>(memory);
    for (std::size_t i = 0; i < size_; ++i) new (&items_[i]) T();
  }
  SharedArray(const SharedArray&) = delete;
  SharedArray& operator=(const SharedArray&) = delete;
  ~SharedArray() {
    for (std::size_t i = 0; i < size_; ++i) items_[i].~T();
    ::munmap(items_, bytes());
  }
  T& operator[](std::size_t i) { return items_[i]; }
  const T& operator[](std::size_t i) const { return items_[i]; }
  std::size_t size() const { return size_; }

 private:
  std::size_t bytes() const { return std::max<std::size_t>(sizeof(T) * size_, 1); }
  T* items_ = nullptr;
  std::size_t size_ = 0;
};

// What one rank tells the test process. Written by the rank, read by the test
// after the rank has ended (or while it runs, for the progress fields).
struct RankReport {
  enum Outcome : int { none = 0, failed = 1, succeeded = 2 };

  std::atomic<int> stage{0};       // progress marker the rank advances
  std::atomic<int> go{0};          // set by the test process to release the rank
  std::atomic<int> outcome{none};  // how the observed call ended
  std::atomic<std::int64_t> call_started_ns{0};
  int code = 0;                    // ErrorCode, when outcome == failed
  std::int64_t failed_ns = 0;      // when the error surfaced
  double later_call_seconds = -1;  // how long the call after the failure took to fail
  int later_code = 0;
  char message[2048] = {};
  char later_message[2048] = {};

  void record(const Error& error) {
    failed_ns = now_ns();
    code = static_cast<int>(error.code());
    std::snprintf(message, sizeof(message), "%s", error.what());
    outcome.store(failed, std::memory_order_release);
  }
  void record_later(const Error& error, double seconds) {
    later_call_seconds = seconds;
    later_code = static_cast<int>(error.code());
    std::snprintf(later_message, sizeof(later_message), "%s", error.what());
  }
  // Runs call and records how it ended: succeeded, or failed with a
  // tpcomm::Error. Any other exception passes through (the rank fails).
  template <class Call>
  void observe(Call&& call) {
    try {
      call();
      outcome = succeeded;
    } catch (const Error& error) {
      record(error);
    }
  }
  void await_go() const {
    while (go.load(std::memory_order_acquire) == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
};

// Waits until predicate() holds; false if it did not within the timeout.
template <class Predicate>
bool wait_until(Predicate predicate, double timeout_seconds) {
  const std::int64_t deadline = now_ns() + static_cast<std::int64_t>(timeout_seconds * 1e9);
  while (!predicate()) {
    if (now_ns() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

// ---- expectations in the test process ---------------------------------------

// Waits for the ranks (killing them at the timeout) and expects every one to
// have exited with 0. Returns whether they all ended in time.
inline bool expect_all_exited_zero(RankProcesses& ranks, double timeout_seconds) {
  const bool in_time = ranks.wait_all(timeout_seconds);
  EXPECT_TRUE(in_time) << ranks.describe();
  for (int r = 0; r < ranks.world(); ++r) {
    EXPECT_TRUE(ranks.end(r).exited && ranks.end(r).exit_code == 0) << ranks.describe();
  }
  return in_time;
}

// Expects what a rank reported to be an error with `expected` code whose
// message contains every needle. `who` starts each failure message.
inline void expect_reported_error(ErrorCode code, const std::string& message, ErrorCode expected,
                                  const std::vector<std::string>& needles, const std::string& who) {
  EXPECT_EQ(code, expected) << who << message;
  for (const auto& needle : needles) {
    EXPECT_NE(message.find(needle), std::string::npos) << who << "message lacks '" << needle << "': " << message;
  }
}

}  // namespace tpcomm::robustness
