// The machine's floors for a 2-rank shared-memory all_reduce:
//   memcpy_64MiB_1thr, memcpy_1MiB_1thr   bytes copied per second, one thread
//   memcpy_64MiB_2thr                     both CPUs copying at once (what two ranks
//                                         copying in at the same time get, per thread)
//   add_64MiB_2thr                        c = a + b (f32) on both CPUs at once: what
//                                         each rank of a zero-copy one-shot does
//   add_{1,4}MiB_{warm,cold}_result_2thr
//                                         c = a + b over 1 or 4 MiB on both CPUs at once,
//                                         a and b just written; c just written too (where
//                                         an in-place result goes) or out of every cache
//                                         (where an out-of-place one goes): the ratio is
//                                         the memory system's price for writing a result
//                                         away from the input
//   handoff_oneway                        one cache line ping-ponged between two
//                                         processes on CPU 0 and CPU 1, spinning;
//                                         half a round trip, with p10/p90 because
//                                         the machine switches latency states
// Output: "FLOOR {json}" lines.
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace {

void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu % static_cast<int>(std::max(1u, std::thread::hardware_concurrency())), &set);
  sched_setaffinity(0, sizeof set, &set);
}

enum class Kernel { copy, add };

// What each thread does, untimed, before every rep.
enum class Prepare {
  nothing,
  inputs_then_result,  // write a, b and c: every line just written
  evict_then_inputs,   // write 64 MiB elsewhere, then a and b: c's lines are gone
};

void write_all(float* p, std::size_t n, float value) {
  for (std::size_t i = 0; i < n; ++i) p[i] = value;
}

void run_kernel(Kernel k, float* a, const float* b, float* c, std::size_t n) {
  if (k == Kernel::copy) {
    std::memcpy(c, a, n * sizeof(float));
  } else {
    for (std::size_t i = 0; i < n; ++i) c[i] = a[i] + b[i];
  }
}

// Median over reps of the time from the first thread's start to the last
// thread's end; the threads start each rep together (spin barrier).
double kernel_seconds(Kernel k, int threads, std::size_t bytes, int reps, Prepare prepare = Prepare::nothing) {
  const std::size_t n = bytes / sizeof(float);
  constexpr std::size_t kEvictFloats = (std::size_t{64} << 20) / sizeof(float);
  std::vector<std::vector<float>> a(threads), b(threads), c(threads), scratch(threads);
  for (int t = 0; t < threads; ++t) {
    a[t].assign(n, 1.0f);
    b[t].assign(n, 2.0f);
    c[t].assign(n, 0.0f);
    if (prepare == Prepare::evict_then_inputs) scratch[t].assign(kEvictFloats, 0.0f);
  }
  std::atomic<int> arrived{0};
  std::vector<std::vector<std::int64_t>> start(threads, std::vector<std::int64_t>(reps)),
      end(threads, std::vector<std::int64_t>(reps));
  auto body = [&](int t) {
    pin(t);
    run_kernel(k, a[t].data(), b[t].data(), c[t].data(), n);
    for (int r = 0; r < reps; ++r) {
      if (prepare == Prepare::evict_then_inputs) write_all(scratch[t].data(), kEvictFloats, static_cast<float>(r));
      if (prepare != Prepare::nothing) {
        write_all(a[t].data(), n, 1.0f + static_cast<float>(r));
        write_all(b[t].data(), n, 2.0f);
      }
      if (prepare == Prepare::inputs_then_result) write_all(c[t].data(), n, 0.0f);
      arrived.fetch_add(1, std::memory_order_acq_rel);
      while (arrived.load(std::memory_order_acquire) < (r + 1) * threads) {
      }
      start[t][r] = cmp::now_ns();
      run_kernel(k, a[t].data(), b[t].data(), c[t].data(), n);
      end[t][r] = cmp::now_ns();
    }
  };
  std::vector<std::thread> others;
  for (int t = 1; t < threads; ++t) others.emplace_back(body, t);
  body(0);
  for (auto& th : others) th.join();
  pin(0);
  std::vector<double> seconds(reps);
  for (int r = 0; r < reps; ++r) {
    std::int64_t s = start[0][r], e = end[0][r];
    for (int t = 1; t < threads; ++t) {
      s = std::min(s, start[t][r]);
      e = std::max(e, end[t][r]);
    }
    seconds[r] = static_cast<double>(e - s) * 1e-9;
  }
  return cmp::quantile(seconds, 0.5);
}

void emit_bandwidth(const char* name, std::size_t bytes, int threads, double seconds, const char* note) {
  cmp::JsonLine("FLOOR")
      .str("name", name)
      .integer("bytes", static_cast<long long>(bytes))
      .integer("threads", threads)
      .num("time_us", seconds * 1e6)
      .num("gbps_per_thread", static_cast<double>(bytes) / seconds / 1e9)
      .str("note", note)
      .print();
}

// One-way handoff of a cache line: batches of round trips between CPU 0 and
// CPU 1 over `seconds` of wall time (long enough to see both latency states).
void handoff(double seconds) {
  struct alignas(64) Line {
    std::atomic<std::uint64_t> value;
  };
  void* mem = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return;
  auto* line = new (mem) Line{};
  auto* stop = new (static_cast<char*>(mem) + 128) std::atomic<int>{0};
  const pid_t child = fork();
  if (child == 0) {
    pin(1);
    for (std::uint64_t i = 1;; i += 2) {
      std::uint64_t v;
      while ((v = line->value.load(std::memory_order_acquire)) != i) {
        if (stop->load(std::memory_order_relaxed) != 0) _exit(0);
      }
      line->value.store(i + 1, std::memory_order_release);
    }
  }
  pin(0);
  constexpr int kBatch = 500;
  std::vector<double> oneway;
  std::uint64_t next = 1;
  const std::int64_t deadline = cmp::now_ns() + static_cast<std::int64_t>(seconds * 1e9);
  for (int b = 0; cmp::now_ns() < deadline; ++b) {
    const std::int64_t t0 = cmp::now_ns();
    for (int i = 0; i < kBatch; ++i, next += 2) {
      line->value.store(next, std::memory_order_release);
      while (line->value.load(std::memory_order_acquire) != next + 1) {
      }
    }
    // The first batch warms both sides up.
    if (b > 0) oneway.push_back(static_cast<double>(cmp::now_ns() - t0) * 1e-9 / kBatch / 2);
  }
  stop->store(1);
  line->value.store(0);
  waitpid(child, nullptr, 0);
  munmap(mem, 4096);
  cmp::JsonLine("FLOOR")
      .str("name", "handoff_oneway")
      .integer("bytes", 64)
      .integer("threads", 2)
      .num("time_ns", cmp::quantile(oneway, 0.5) * 1e9)
      .num("p10_ns", cmp::quantile(oneway, 0.1) * 1e9)
      .num("p90_ns", cmp::quantile(oneway, 0.9) * 1e9)
      .integer("batches", static_cast<long long>(oneway.size()))
      .str("note", "spin ping-pong on one cache line, CPU0<->CPU1, half a round trip; batches of 500")
      .print();
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int reps_big = quick ? 7 : 15;
  const std::size_t big = 64u << 20, small = 1u << 20;
  emit_bandwidth("memcpy_64MiB_1thr", big, 1, kernel_seconds(Kernel::copy, 1, big, reps_big),
                 "bytes copied per second, one thread");
  emit_bandwidth("memcpy_1MiB_1thr", small, 1, kernel_seconds(Kernel::copy, 1, small, quick ? 101 : 301),
                 "bytes copied per second, one thread, cache resident");
  emit_bandwidth("memcpy_64MiB_2thr", big, 2, kernel_seconds(Kernel::copy, 2, big, reps_big),
                 "both CPUs copying their own 64 MiB at once; per thread");
  emit_bandwidth("add_64MiB_2thr", big, 2, kernel_seconds(Kernel::add, 2, big, reps_big),
                 "c = a + b, f32, 64 MiB each, both CPUs at once; GB/s of c per thread");
  // c = a + b at sizes an all_reduce result takes, with c's lines just written
  // or not; the JSON names carry the size (e.g. add_1MiB_cold_result_2thr).
  for (const std::size_t mib : {1u, 4u}) {
    const std::size_t bytes = mib << 20;
    const int reps = quick ? 9 : 21;
    const std::string size = std::to_string(mib) + "MiB";
    emit_bandwidth(("add_" + size + "_warm_result_2thr").c_str(), bytes, 2,
                   kernel_seconds(Kernel::add, 2, bytes, reps, Prepare::inputs_then_result),
                   "c = a + b, f32, both CPUs; a, b and c just written (where an in-place result goes)");
    emit_bandwidth(("add_" + size + "_cold_result_2thr").c_str(), bytes, 2,
                   kernel_seconds(Kernel::add, 2, bytes, reps, Prepare::evict_then_inputs),
                   "the same with c out of every cache (where an out-of-place result goes)");
  }
  handoff(quick ? 1.0 : 3.0);
  return 0;
}
