// How soon a rank that has waited a long time (an inference server between
// requests) comes back once the last rank arrives.
//
//   tpcomm-run -n 2 build/bench/idle_wake [--idle-ms 20] [--calls 40]
//
// Every call, rank 0 sleeps --idle-ms before an all_reduce of 4 KiB while the
// other ranks are already inside it: past their spin and yield phases they
// nap. The figure is, per call, the time from rank 0 entering the call to the
// last other rank leaving it (CLOCK_MONOTONIC is one clock for every process
// of the machine); median, p90 and max over the calls.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tpcomm/tpcomm.hpp"

namespace {

double now_us() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) * 1e-3;
}

}  // namespace

int main(int argc, char** argv) {
  int idle_ms = 20;
  int calls = 40;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--idle-ms") == 0) idle_ms = std::atoi(argv[i + 1]);
    else if (std::strcmp(argv[i], "--calls") == 0) calls = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: idle_wake [--idle-ms N] [--calls N]\n");
      return 2;
    }
  }
  if (idle_ms < 0 || calls < 1) {
    std::fprintf(stderr, "idle_wake: --idle-ms must be >= 0 and --calls >= 1\n");
    return 2;
  }
  try {
    auto comm = tpcomm::Communicator::from_env();
    std::vector<float> x(1024, 1.0f);
    std::vector<double> wake_us;
    for (int i = 0; i < calls; ++i) {
      double times[2] = {0, 0};  // [0]: rank 0 enters; [1]: the last other rank leaves
      if (comm.rank() == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(idle_ms));
        times[0] = now_us();
      }
      comm.all_reduce(x.data(), x.data(), x.size(), tpcomm::DataType::f32, tpcomm::ReduceOp::sum);
      if (comm.rank() != 0) times[1] = now_us();
      comm.all_reduce(times, times, 2, tpcomm::DataType::f64, tpcomm::ReduceOp::max);
      wake_us.push_back(times[1] - times[0]);
    }
    std::sort(wake_us.begin(), wake_us.end());
    if (comm.rank() == 0) {
      std::printf("%d ranks, %d ms idle before each of %d calls: the waiting ranks return %.1f us (median), "
                  "%.1f us (p90), %.1f us (max) after the last rank enters\n",
                  comm.world_size(), idle_ms, calls, wake_us[wake_us.size() / 2],
                  wake_us[wake_us.size() * 9 / 10], wake_us.back());
    }
  } catch (const tpcomm::Error& error) {
    std::fprintf(stderr, "idle_wake: %s\n", error.what());
    return 1;
  }
  return 0;
}
