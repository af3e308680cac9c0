// Hierarchical all_reduce (tpcomm over MPI) against a flat MPI_Allreduce on
// the same ranks, f32 sum, in-place, message sizes 4 KiB .. 16 MiB.
//
// Every call starts after an MPI_Barrier and counts as its slowest rank's time;
// the two implementations alternate call by call. Prints a Markdown table of
// medians. Run by bench/mpi/run.sh.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tpcomm/mpi.hpp"

namespace {

// Time of one call: the slowest rank's, each call starting after a barrier.
template <class Body>
double slowest_microseconds(Body body) {
  MPI_Barrier(MPI_COMM_WORLD);
  const auto start = std::chrono::steady_clock::now();
  body();
  double mine = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
  double slowest = 0;
  MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return slowest;
}

double median(std::vector<double> times) {
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::string size_label(std::size_t bytes) {
  if (bytes >= (1u << 20)) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes >> 10) + " KiB";
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 20;
  {
    tpcomm::Communicator comm = tpcomm::from_mpi(MPI_COMM_WORLD);
    if (rank == 0) {
      std::printf("%d ranks, tpcomm algorithm %s, %d iterations per size (median; each the slowest rank; alternating)\n\n",
                  size, std::string(comm.all_reduce_algorithm(1 << 20)).c_str(), iterations);
      std::printf("| size | tpcomm hierarchical (us) | flat MPI_Allreduce (us) | speed-up |\n");
      std::printf("|---:|---:|---:|---:|\n");
    }
    for (std::size_t bytes = 4096; bytes <= (std::size_t{16} << 20); bytes *= 4) {
      const std::size_t count = bytes / sizeof(float);
      std::vector<float> data(count, 0.0f);  // stays finite however often it is summed
      const int n = bytes >= (std::size_t{4} << 20) ? std::max(5, iterations / 4) : iterations;
      comm.all_reduce(data.data(), data.data(), count, tpcomm::DataType::f32, tpcomm::ReduceOp::sum);  // warm-up
      MPI_Allreduce(MPI_IN_PLACE, data.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      // Alternating the two keeps them under the same conditions on a busy machine.
      std::vector<double> ours_times, theirs_times;
      for (int i = 0; i < n; ++i) {
        ours_times.push_back(slowest_microseconds([&] {
          comm.all_reduce(data.data(), data.data(), count, tpcomm::DataType::f32, tpcomm::ReduceOp::sum);
        }));
        theirs_times.push_back(slowest_microseconds([&] {
          MPI_Allreduce(MPI_IN_PLACE, data.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        }));
      }
      const double ours = median(ours_times);
      const double theirs = median(theirs_times);
      if (rank == 0) {
        std::printf("| %s | %.0f | %.0f | %.2fx |\n", size_label(bytes).c_str(), ours, theirs, theirs / ours);
        std::fflush(stdout);
      }
    }
  }
  MPI_Finalize();
  return 0;
}
