// A rank program for tpcomm-run that dies on request, to check what the
// launcher and the surviving ranks do about it.
//
//   crash_rank PHASE [VICTIM]
//
// The job comes from tpcomm-run's environment (Communicator::from_env).
// VICTIM (default: the last rank) kills itself with SIGKILL:
//   rendezvous      the victim attaches first and dies 0.2 s later, while the
//                   other ranks (which start 1 s late) have not arrived
//   in_collective   every rank loops over a 16 MiB all_reduce; the victim dies
//                   0.1 .. 0.5 s into the loop
//   between         after a barrier the victim dies; the others call a barrier
//                   0.2 s later
// Without a victim:
//   all_rendezvous  every rank attaches to a rendezvous that cannot complete
//                   (one rank more than the job has) and dies 0.5 s later
//   verify          3000 all_reduces whose results are checked; exit 0 if right
//   print_job       print "job <TPCOMM_JOB_ID> rank <R>" and exit 0
//
// A survivor that sees an error prints "rank R: detected after S s: MESSAGE"
// on stderr and exits 3.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tpcomm/tpcomm.hpp"

namespace {

using Clock = std::chrono::steady_clock;

int env_int(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::atoi(value) : -1;
}

[[noreturn]] void die() {
  ::kill(::getpid(), SIGKILL);
  for (;;) ::pause();
}

// Kills this process after `seconds`, whatever its main thread is doing.
void die_after(double seconds) {
  std::thread([seconds] {
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    die();
  }).detach();
}

int usage() {
  std::fprintf(stderr, "usage: crash_rank rendezvous|in_collective|between|all_rendezvous|verify|print_job [VICTIM]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string_view phase = argv[1];
  const int rank = env_int("TPCOMM_RANK");
  const int world = env_int("TPCOMM_WORLD_SIZE");
  const char* job = std::getenv("TPCOMM_JOB_ID");
  if (rank < 0 || world < 1 || job == nullptr) {
    std::fprintf(stderr, "crash_rank: run me under tpcomm-run\n");
    return 2;
  }
  const int victim = argc > 2 ? std::atoi(argv[2]) : world - 1;
  const bool is_victim = rank == victim;
  tpcomm::CommOptions options;
  options.timeout = std::chrono::seconds(30);
  const auto start = Clock::now();

  try {
    if (phase == "print_job") {
      std::printf("job %s rank %d\n", job, rank);
      return 0;
    }
    if (phase == "all_rendezvous") {
      die_after(0.5);
      (void)tpcomm::Communicator::create(rank, world + 1, job, options);
      return 1;  // cannot complete: a rank is missing
    }
    if (phase == "verify") {
      auto comm = tpcomm::Communicator::from_env(options);
      for (std::int64_t i = 0; i < 3000; ++i) {
        std::int64_t value = (rank + 1) * 1000 + i, sum = 0;
        comm.all_reduce(&value, &sum, 1, tpcomm::DataType::i64, tpcomm::ReduceOp::sum);
        const std::int64_t n = world;
        if (sum != 1000 * n * (n + 1) / 2 + n * i) {
          std::fprintf(stderr, "rank %d: wrong sum %lld in call %lld\n", rank, static_cast<long long>(sum),
                       static_cast<long long>(i));
          return 4;
        }
      }
      return 0;
    }
    if (phase == "rendezvous") {
      if (is_victim) {
        die_after(0.2);
      } else {
        std::this_thread::sleep_for(std::chrono::seconds(1));
      }
      auto comm = tpcomm::Communicator::from_env(options);
      comm.barrier();
      return 0;
    }
    if (phase == "in_collective") {
      auto comm = tpcomm::Communicator::from_env(options);
      std::vector<float> data(std::size_t{4} << 20, 1.0f);
      comm.barrier();
      if (is_victim) die_after(0.1 + static_cast<double>(std::random_device()() % 400) / 1000.0);
      for (;;) comm.all_reduce(data.data(), data.data(), data.size(), tpcomm::DataType::f32, tpcomm::ReduceOp::sum);
    }
    if (phase == "between") {
      auto comm = tpcomm::Communicator::from_env(options);
      comm.barrier();
      if (is_victim) die();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      comm.barrier();
      return 0;
    }
  } catch (const tpcomm::Error& error) {
    std::fprintf(stderr, "rank %d: detected after %.3f s: %s\n", rank,
                 std::chrono::duration<double>(Clock::now() - start).count(), error.what());
    return 3;
  }
  return usage();
}
