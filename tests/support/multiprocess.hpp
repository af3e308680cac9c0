// Runs test bodies as real rank processes: fork() one child per rank, each
// runs body(rank) and exits 0 on success, 1 on a thrown exception (message on
// stderr). The parent waits with a deadline, kills stragglers and reports which
// rank failed and how. Each run gets a fresh job id so runs never collide.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace tpcomm::testing {

struct RankOutcome {
  int rank = 0;
  bool exited = false;
  int exit_code = 0;
  int signal = 0;
  bool ok() const { return exited && exit_code == 0; }
};

inline std::string unique_job_id(const std::string& label) {
  static int counter = 0;
  std::random_device device;
  std::ostringstream id;
  id << "test." << label << "." << ::getpid() << "." << counter++ << "." << std::hex << device();
  return id.str();
}

// Throws std::runtime_error(message) when condition is false; for use inside rank bodies.
inline void check(bool condition, const std::string& message) {
  if (!condition) throw std::runtime_error(message);
}

inline std::vector<RankOutcome> run_ranks(int world, const std::function<void(int rank)>& body,
                                          double timeout_seconds = 300.0) {
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      int code = 0;
      try {
        body(rank);
      } catch (const std::exception& error) {
        std::fprintf(stderr, "[rank %d] %s\n", rank, error.what());
        code = 1;
      } catch (...) {
        std::fprintf(stderr, "[rank %d] unknown exception\n", rank);
        code = 1;
      }
      std::fflush(stdout);
      std::fflush(stderr);
      ::_exit(code);  // skip the parent's atexit handlers (gtest's among them)
    }
    pids.push_back(pid);
  }
  std::vector<RankOutcome> outcomes(static_cast<std::size_t>(world));
  std::vector<bool> done(static_cast<std::size_t>(world), false);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  int remaining = world;
  while (remaining > 0) {
    for (int rank = 0; rank < world; ++rank) {
      const auto r = static_cast<std::size_t>(rank);
      if (done[r]) continue;
      int status = 0;
      const pid_t got = ::waitpid(pids[r], &status, WNOHANG);
      if (got == pids[r]) {
        done[r] = true;
        --remaining;
        outcomes[r].rank = rank;
        outcomes[r].exited = WIFEXITED(status);
        outcomes[r].exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        outcomes[r].signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      }
    }
    if (remaining == 0) break;
    if (std::chrono::steady_clock::now() > deadline) {
      for (int rank = 0; rank < world; ++rank) {
        if (!done[static_cast<std::size_t>(rank)]) ::kill(pids[static_cast<std::size_t>(rank)], SIGKILL);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return outcomes;
}

inline std::string describe(const std::vector<RankOutcome>& outcomes) {
  std::ostringstream text;
  for (const auto& o : outcomes) {
    text << "rank " << o.rank << ": ";
    if (o.exited) text << "exit " << o.exit_code;
    else text << "signal " << o.signal;
    text << "; ";
  }
  return text.str();
}

inline bool all_ok(const std::vector<RankOutcome>& outcomes) {
  for (const auto& o : outcomes) {
    if (!o.ok()) return false;
  }
  return true;
}

}  // namespace tpcomm::testing
