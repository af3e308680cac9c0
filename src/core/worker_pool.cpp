#include "core/worker_pool.hpp"

#include <sched.h>
#include <unistd.h>

#include <chrono>

#include "core/futex.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TPCOMM_WORKER_RELAX() _mm_pause()
#else
#define TPCOMM_WORKER_RELAX() ((void)0)
#endif

namespace tpcomm::detail {
namespace {

// How long a helper keeps spinning for the next job before it sleeps: longer
// than the gap between two chunks of one call, far shorter than the gap
// between calls of an idle program.
constexpr auto kSpinBeforeSleep = std::chrono::microseconds(200);

}  // namespace

WorkerPool::WorkerPool(int threads) : owner_(getpid()) {
  threads = threads < 1 ? 1 : (threads > kMaxThreads ? kMaxThreads : threads);
  for (int i = 1; i < threads; ++i) helpers_.emplace_back([this, i] { helper_main(i); });
}

WorkerPool::~WorkerPool() {
  if (getpid() != owner_) {
    // A forked child's copy: its helper threads exist only in the parent, so
    // there is nothing to stop or join. The thread objects are left alone
    // (destroying a joinable std::thread terminates the process).
    new std::vector<std::thread>(std::move(helpers_));
    return;
  }
  stopping_.store(true, std::memory_order_relaxed);
  job_word_.fetch_add(1u << 8, std::memory_order_seq_cst);
  futex_wake_all(job_word_, FutexScope::process);
  for (auto& helper : helpers_) helper.join();
}

void WorkerPool::run_erased(int parts, Invoke invoke, const void* context) {
  if (parts > threads()) parts = threads();
  if (parts <= 1) {
    if (parts == 1) invoke(context, 0);
    return;
  }
  invoke_ = invoke;
  context_ = context;
  remaining_.store(parts - 1, std::memory_order_relaxed);
  // The next counter with this job's parts. seq_cst pairs with the helper's
  // "sleepers++; look at the job word again": either the helper sees the new
  // job, or this sees it asleep and wakes it.
  const std::uint32_t old = job_word_.load(std::memory_order_relaxed);
  job_word_.store(((old >> 8) + 1) << 8 | static_cast<std::uint32_t>(parts), std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) futex_wake_all(job_word_, FutexScope::process);
  invoke(context, 0);
  // The helpers are running their parts: a short wait, unless they were
  // descheduled (more threads than CPUs), in which case give them the CPU.
  for (int i = 0; remaining_.load(std::memory_order_acquire) > 0; ++i) {
    if (i < 4096) {
      TPCOMM_WORKER_RELAX();
    } else {
      sched_yield();
    }
  }
}

void WorkerPool::helper_main(int index) {
  std::uint32_t seen = 0;  // the job word as the constructor left it: no job yet
  for (;;) {
    // Wait for the next job: spin first, then sleep.
    const auto spin_until = std::chrono::steady_clock::now() + kSpinBeforeSleep;
    std::uint32_t now = job_word_.load(std::memory_order_acquire);
    for (int i = 0; now == seen; ++i) {
      TPCOMM_WORKER_RELAX();
      if ((i & 255) == 255 && std::chrono::steady_clock::now() >= spin_until) {
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        if (job_word_.load(std::memory_order_seq_cst) == seen) futex_wait(job_word_, seen, FutexScope::process);
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
      }
      now = job_word_.load(std::memory_order_acquire);
    }
    seen = now;
    if (stopping_.load(std::memory_order_relaxed)) return;
    if (index < static_cast<int>(now & 0xffu)) {
      invoke_(context_, index);
      remaining_.fetch_sub(1, std::memory_order_release);
    }
  }
}

}  // namespace tpcomm::detail
