// Helper threads of one rank: they split the data movement of a large
// collective step (the copy into staging memory, the fold, the copy out) so
// that a rank with spare cores moves memory with several of them.
//
// The rank's own thread keeps every synchronisation with the other ranks; the
// helpers only ever run pure memory work handed to them by run(), which
// returns when all of it is done. Helpers spin for a short while after a job
// (the next chunk usually follows within microseconds), then sleep on a futex
// until the next one: an idle communicator costs no CPU.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

namespace tpcomm::detail {

class WorkerPool {
 public:
  static constexpr int kMaxThreads = 255;

  // `threads` in 1 .. kMaxThreads counts the caller: threads - 1 helper
  // threads are started.
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  int threads() const { return static_cast<int>(helpers_.size()) + 1; }

  // Calls part(i) once for every i in [0, min(parts, threads())): part 0 on
  // the calling thread, the others on helpers, and returns when all have
  // returned. `part` must not throw. Not reentrant: one caller at a time.
  template <class Part>
  void run(int parts, const Part& part) {
    run_erased(parts, [](const void* context, int i) { (*static_cast<const Part*>(context))(i); }, &part);
  }

 private:
  using Invoke = void (*)(const void* context, int part);
  void run_erased(int parts, Invoke invoke, const void* context);
  void helper_main(int index);

  int owner_;  // pid of the process whose helper threads these are
  std::vector<std::thread> helpers_;
  // Written by run() before it starts a job; read only by the helpers that
  // take part in it, and run() does not return (so cannot start the next
  // job) before they are done.
  Invoke invoke_ = nullptr;
  const void* context_ = nullptr;
  // Each on its own cache line: the job word is read by spinning helpers,
  // `remaining` written by each finishing helper, `sleepers` rarely. The job
  // word holds a job counter (high 24 bits) and the job's number of parts
  // (low 8 bits), so a helper reads both in one load: one that sat out a job
  // cannot pair that job's counter with the next job's parts.
  alignas(64) std::atomic<std::uint32_t> job_word_{0};
  alignas(64) std::atomic<int> remaining_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  std::atomic<bool> stopping_{false};
};

// Splits [0, count) into `parts` contiguous pieces whose boundaries are
// multiples of `granule` (but the last); returns the begin of piece i (i ==
// parts gives count).
inline std::size_t piece_begin(std::size_t count, int parts, int i, std::size_t granule) {
  if (i >= parts) return count;
  const std::size_t granules = (count + granule - 1) / granule;
  const std::size_t begin = granules * static_cast<std::size_t>(i) / static_cast<std::size_t>(parts) * granule;
  return begin < count ? begin : count;
}

}  // namespace tpcomm::detail
