// Futex wait and wake on a 32-bit atomic, for the two places tpcomm sleeps
// until another thread or process changes a word: helper threads waiting for
// a job (private: one process) and ranks napping in a wait (shared: the word
// lives in the shared segment).
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <ctime>

namespace tpcomm::detail {

static_assert(std::atomic<std::uint32_t>::is_always_lock_free && sizeof(std::atomic<std::uint32_t>) == 4,
              "a futex word is a plain 32-bit integer");

enum class FutexScope { process, shared };

inline int futex_op(int op, FutexScope scope) { return scope == FutexScope::process ? op | FUTEX_PRIVATE_FLAG : op; }

// Sleeps while `word` holds `expected`, until woken, for at most `timeout`
// (none: no limit). Spurious returns are possible: callers look again.
inline void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, FutexScope scope,
                       const std::chrono::microseconds* timeout = nullptr) {
  timespec relative{};
  if (timeout != nullptr) {
    relative.tv_sec = static_cast<time_t>(timeout->count() / 1000000);
    relative.tv_nsec = static_cast<long>(timeout->count() % 1000000) * 1000;
  }
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), futex_op(FUTEX_WAIT, scope), expected,
          timeout != nullptr ? &relative : nullptr, nullptr, 0);
}

inline void futex_wake_all(std::atomic<std::uint32_t>& word, FutexScope scope) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), futex_op(FUTEX_WAKE, scope), INT_MAX, nullptr, nullptr,
          0);
}

}  // namespace tpcomm::detail
