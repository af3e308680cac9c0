// Pieces shared by the compare_* programs that run under MPI (compare_allreduce,
// decode_loop): a bf16 sum for MPI_Allreduce, communicators created with extra
// settings (--alt-env), and main() around MPI_Init/MPI_Finalize.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "harness.hpp"
#include "tpcomm/tpcomm.hpp"

namespace cmp {

// MPI_Op for bf16 (2-byte elements): widen, add in f32, round once.
inline void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const std::uint16_t*>(in);
  auto* b = static_cast<std::uint16_t*>(inout);
  const int n = *len;
  for (int i = 0; i < n; ++i) b[i] = f32_to_bf16(bf16_to_f32(a[i]) + bf16_to_f32(b[i]));
}

// "A=1 B=2" -> {"A=1", "B=2"}.
inline std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t start = text.find_first_not_of(' ', i);
    if (start == std::string::npos) break;
    const std::size_t end = std::min(text.find(' ', start), text.size());
    out.push_back(text.substr(start, end - start));
    i = end;
  }
  return out;
}

// Communicator::from_env() with extra "NAME=value" settings in the environment
// while it is created (the library reads its configuration then).
inline tpcomm::Communicator communicator_with(const std::vector<std::string>& settings) {
  std::vector<std::pair<std::string, std::optional<std::string>>> saved;
  for (const auto& setting : settings) {
    const auto eq = setting.find('=');
    if (eq == std::string::npos) throw std::invalid_argument("--alt-env: expected NAME=value, got '" + setting + "'");
    const std::string name = setting.substr(0, eq);
    const char* old = std::getenv(name.c_str());
    saved.emplace_back(name, old != nullptr ? std::optional<std::string>(old) : std::nullopt);
    setenv(name.c_str(), setting.c_str() + eq + 1, 1);
  }
  tpcomm::Communicator comm = tpcomm::Communicator::from_env();
  for (const auto& [name, old] : saved) {
    if (old) setenv(name.c_str(), old->c_str(), 1);
    else unsetenv(name.c_str());
  }
  return comm;
}

// main() of an MPI program: run(argc, argv, rank, world) on every rank; an
// exception aborts the job; every rank exits with the worst status of all, so
// a wrong result anywhere fails the run.
template <class Run>
int mpi_main(int argc, char** argv, const char* program, Run run) {
  MPI_Init(&argc, &argv);
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  int status = 0;
  try {
    status = run(argc, argv, rank, world);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s rank %d: %s\n", program, rank, e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 4);
  }
  int worst = 0;
  MPI_Allreduce(&status, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}

}  // namespace cmp
