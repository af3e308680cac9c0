// Runs test bodies as real rank processes: fork() one child per rank, each
// runs body(rank) and exits 0 on success, 1 on a thrown exception (message on
// stderr). RankProcesses leaves the processes to the test (kill any rank at
// any moment, reap it when it chooses); run_ranks waits for them with a
// deadline, kills stragglers and reports which rank failed and how. Each run
// gets a fresh job id so runs never collide.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
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

// CLOCK_MONOTONIC is one clock for every process of the machine, so a time
// stamp taken by the test process (the moment of a kill) can be compared with
// one taken by a rank (the moment its call failed).
inline std::int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

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

struct ProcessEnd {
  bool ended = false;
  bool exited = false;
  int exit_code = -1;
  int signal = 0;
  std::string describe() const {
    if (!ended) return "still running";
    return exited ? "exit " + std::to_string(exit_code) : "signal " + std::to_string(signal);
  }
};

// One forked process per rank. The test keeps the pids, so it can kill any
// rank at any moment and decide when (or whether) to reap it: an unreaped
// killed rank stays a zombie, as under a parent that has not noticed yet.
class RankProcesses {
 public:
  RankProcesses(int world, const std::function<void(int rank)>& body) : ends_(static_cast<std::size_t>(world)) {
    std::fflush(stdout);
    std::fflush(stderr);
    for (int rank = 0; rank < world; ++rank) {
      const pid_t pid = ::fork();
      if (pid < 0) {
        kill_all();
        throw std::runtime_error("fork failed");
      }
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
        ::_exit(code);  // skips the test framework's atexit handlers
      }
      pids_.push_back(pid);
    }
  }
  RankProcesses(const RankProcesses&) = delete;
  RankProcesses& operator=(const RankProcesses&) = delete;
  ~RankProcesses() {
    kill_all();
    for (int rank = 0; rank < world(); ++rank) reap(rank);
  }

  int world() const { return static_cast<int>(pids_.size()); }
  pid_t pid(int rank) const { return pids_[static_cast<std::size_t>(rank)]; }
  const ProcessEnd& end(int rank) const { return ends_[static_cast<std::size_t>(rank)]; }

  // SIGKILL now; returns the moment of the kill.
  std::int64_t kill(int rank) {
    ::kill(pid(rank), SIGKILL);
    return now_ns();
  }

  void kill_all() {
    for (std::size_t i = 0; i < pids_.size(); ++i) {
      if (!ends_[i].ended) ::kill(pids_[i], SIGKILL);
    }
  }

  // Blocks until the rank has ended.
  void reap(int rank) {
    auto& end = ends_[static_cast<std::size_t>(rank)];
    if (end.ended) return;
    int status = 0;
    while (::waitpid(pid(rank), &status, 0) < 0 && errno == EINTR) {
    }
    note(end, status);
  }

  // Waits for every rank up to the timeout, then kills the rest. Returns true
  // if all ended by themselves.
  bool wait_all(double timeout_seconds) {
    const std::int64_t deadline = now_ns() + static_cast<std::int64_t>(timeout_seconds * 1e9);
    bool in_time = true;
    for (;;) {
      bool all_ended = true;
      for (std::size_t i = 0; i < pids_.size(); ++i) {
        if (ends_[i].ended) continue;
        int status = 0;
        if (::waitpid(pids_[i], &status, WNOHANG) == pids_[i]) {
          note(ends_[i], status);
        } else {
          all_ended = false;
        }
      }
      if (all_ended) return in_time;
      if (now_ns() > deadline && in_time) {
        in_time = false;
        kill_all();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

  std::string describe() const {
    std::string text;
    for (int rank = 0; rank < world(); ++rank) {
      text += "rank " + std::to_string(rank) + ": " + end(rank).describe() + "; ";
    }
    return text;
  }

 private:
  static void note(ProcessEnd& end, int status) {
    end.ended = true;
    end.exited = WIFEXITED(status);
    end.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    end.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  }

  std::vector<pid_t> pids_;
  std::vector<ProcessEnd> ends_;
};

struct RankOutcome {
  int rank = 0;
  bool exited = false;
  int exit_code = 0;
  int signal = 0;
  bool ok() const { return exited && exit_code == 0; }
};

// Runs body on `world` rank processes to the end; ranks still running at the
// timeout are killed (and report the signal).
inline std::vector<RankOutcome> run_ranks(int world, const std::function<void(int rank)>& body,
                                          double timeout_seconds = 300.0) {
  RankProcesses ranks(world, body);
  ranks.wait_all(timeout_seconds);
  std::vector<RankOutcome> outcomes;
  for (int rank = 0; rank < world; ++rank) {
    const ProcessEnd& end = ranks.end(rank);
    outcomes.push_back({rank, end.exited, end.exit_code, end.signal});
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
