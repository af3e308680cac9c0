// A rank program for the tpcomm-run tests: it records what the launcher gave
// it and then misbehaves on request.
//
//   launcher_probe OUTDIR SCRIPT_RANK0 [SCRIPT_RANK1 ...]
//     Rank r runs SCRIPT_r (the last script if there are fewer than ranks).
//     On start it writes OUTDIR/rank-R.pid and OUTDIR/rank-R.env (its TPCOMM_*
//     variables). A script is a '+'-separated list of steps:
//       ready            create OUTDIR/rank-R.ready
//       await-peers      wait (up to 10 s) until every rank is ready
//       ignore-term      ignore SIGTERM
//       record-signals   on SIGINT/SIGTERM/SIGHUP write the signal number to
//                        OUTDIR/rank-R.signal and exit 0
//       sleep:S          sleep S seconds
//       print:N          print N numbered lines to stdout and to stderr, then
//                        one line without a newline to each
//       orphan:S         leave behind a process that sleeps S seconds with
//                        stdout and stderr open; its pid goes to
//                        OUTDIR/rank-R.orphan
//       shm              create /dev/shm/tpcomm-<uid>-<jobid>-x, record the
//                        path in OUTDIR/rank-R.shm
//       raise:SIG        send itself signal number SIG
//       exit:N           exit with status N
//     After the last step the probe exits 0.
//
//   launcher_probe --default-signals PROGRAM [ARGS...]
//     Runs PROGRAM with SIGINT, SIGTERM and SIGHUP at their default action and
//     unblocked, whatever the test runner set: a shell starts background jobs
//     with SIGINT ignored, and the launcher keeps ignored signals ignored.

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

constexpr int probe_error_status = 99;

[[noreturn]] void fail(const std::string& message) {
  std::cerr << "launcher_probe: " << message << std::endl;
  std::exit(probe_error_status);
}

int env_int(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) fail(std::string(name) + " is not set");
  return std::atoi(value);
}

// Written under a temporary name and renamed, so a test polling for the file
// never reads it half-written.
void write_file(const std::filesystem::path& path, const std::string& contents) {
  const std::filesystem::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary);
    out << contents;
    if (!out) fail("cannot write " + temporary.string());
  }
  std::filesystem::rename(temporary, path);
}

std::vector<std::string> split(std::string_view text, char separator) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = text.find(separator, start);
    parts.emplace_back(text.substr(start, end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

// Path of the signal record, formatted before any handler can run because a
// handler may only use async-signal-safe calls.
std::array<char, 4096> signal_record_path{};

extern "C" void record_signal(int signo) {
  const int fd = ::open(signal_record_path.data(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    std::array<char, 4> text{};
    int length = 0;
    if (signo >= 10) text[static_cast<std::size_t>(length++)] = static_cast<char>('0' + signo / 10);
    text[static_cast<std::size_t>(length++)] = static_cast<char>('0' + signo % 10);
    text[static_cast<std::size_t>(length++)] = '\n';
    (void)!::write(fd, text.data(), static_cast<std::size_t>(length));
    ::close(fd);
  }
  ::_exit(0);
}

class Probe {
 public:
  Probe(std::filesystem::path outdir, int rank, int world_size)
      : outdir_(std::move(outdir)), rank_(rank), world_size_(world_size) {}

  std::filesystem::path file(int rank, std::string_view extension) const {
    return outdir_ / ("rank-" + std::to_string(rank) + "." + std::string(extension));
  }

  void record_start() const {
    write_file(file(rank_, "pid"), std::to_string(::getpid()) + "\n");
    std::string variables;
    for (char** entry = environ; *entry != nullptr; ++entry) {
      if (std::string_view(*entry).starts_with("TPCOMM_")) variables += std::string(*entry) + "\n";
    }
    write_file(file(rank_, "env"), variables);
  }

  void run_step(const std::string& step) const {
    const std::size_t colon = step.find(':');
    const std::string name = step.substr(0, colon);
    const std::string argument = colon == std::string::npos ? "" : step.substr(colon + 1);

    if (name == "ready") {
      write_file(file(rank_, "ready"), "");
    } else if (name == "await-peers") {
      await_peers();
    } else if (name == "ignore-term") {
      std::signal(SIGTERM, SIG_IGN);
    } else if (name == "record-signals") {
      const std::string path = file(rank_, "signal").string();
      if (path.size() >= signal_record_path.size()) fail("output path too long");
      std::memcpy(signal_record_path.data(), path.c_str(), path.size() + 1);
      for (const int signo : {SIGINT, SIGTERM, SIGHUP}) std::signal(signo, record_signal);
    } else if (name == "sleep") {
      std::this_thread::sleep_for(std::chrono::duration<double>(std::stod(argument)));
    } else if (name == "print") {
      print_lines(std::stoi(argument));
    } else if (name == "orphan") {
      leave_orphan(std::stod(argument));
    } else if (name == "shm") {
      create_segment();
    } else if (name == "raise") {
      std::fflush(nullptr);
      ::raise(std::stoi(argument));
    } else if (name == "exit") {
      std::fflush(nullptr);
      std::exit(std::stoi(argument));
    } else {
      fail("unknown step '" + step + "'");
    }
  }

 private:
  void await_peers() const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (int peer = 0; peer < world_size_; ++peer) {
      while (!std::filesystem::exists(file(peer, "ready"))) {
        if (std::chrono::steady_clock::now() > deadline) fail("peers never became ready");
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
  }

  void print_lines(int count) const {
    for (int i = 0; i < count; ++i) {
      std::cout << "line " << rank_ << " " << i << "\n";
      std::cerr << "error " << rank_ << " " << i << "\n";
    }
    std::cout << "tail " << rank_ << std::flush;
    std::cerr << "etail " << rank_ << std::flush;
  }

  void leave_orphan(double seconds) const {
    std::fflush(nullptr);
    std::cout.flush();
    const pid_t child = ::fork();
    if (child < 0) fail(std::string("cannot fork: ") + std::strerror(errno));
    if (child == 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
      ::_exit(0);
    }
    write_file(file(rank_, "orphan"), std::to_string(child) + "\n");
  }

  void create_segment() const {
    const char* job_id = std::getenv("TPCOMM_JOB_ID");
    if (job_id == nullptr) fail("TPCOMM_JOB_ID is not set");
    const std::string path =
        "/dev/shm/tpcomm-" + std::to_string(::getuid()) + "-" + std::string(job_id) + "-x";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0600);
    if (fd < 0) fail("cannot create " + path + ": " + std::strerror(errno));
    ::close(fd);
    write_file(file(rank_, "shm"), path + "\n");
  }

  std::filesystem::path outdir_;
  int rank_;
  int world_size_;
};

[[noreturn]] void exec_with_default_signals(char** command) {
  sigset_t unblocked;
  ::sigemptyset(&unblocked);
  for (const int signo : {SIGINT, SIGTERM, SIGHUP}) {
    std::signal(signo, SIG_DFL);
    ::sigaddset(&unblocked, signo);
  }
  ::sigprocmask(SIG_UNBLOCK, &unblocked, nullptr);
  ::execvp(command[0], command);
  fail(std::string("cannot execute ") + command[0] + ": " + std::strerror(errno));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::string_view(argv[1]) == "--default-signals") {
    exec_with_default_signals(argv + 2);
  }
  if (argc < 3) fail("usage: launcher_probe OUTDIR SCRIPT_RANK0 [SCRIPT_RANK1 ...]");

  const int rank = env_int("TPCOMM_RANK");
  const int world_size = env_int("TPCOMM_WORLD_SIZE");
  const Probe probe(argv[1], rank, world_size);
  probe.record_start();

  const int script_count = argc - 2;
  const std::string script = argv[2 + std::min(rank, script_count - 1)];
  for (const std::string& step : split(script, '+')) probe.run_step(step);
  return 0;
}
