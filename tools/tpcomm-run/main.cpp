// tpcomm-run: start N ranks of a program on this machine and supervise them.
//
// The launcher is single-threaded. Every signal it reacts to is blocked and
// read from a signalfd, so a single poll() loop handles child exits, signals
// to forward, the SIGTERM-to-SIGKILL grace deadline and (with --tag-output)
// the ranks' output pipes, with no asynchronous handlers and no EINTR races.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <filesystem>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include "core/job_token.hpp"
#include "launch_options.hpp"

namespace {

using tpcomm::run::concat;
using tpcomm::run::LaunchOptions;
using Clock = std::chrono::steady_clock;

constexpr std::string_view program_name = "tpcomm-run";
constexpr int launcher_error_status = 1;
constexpr int usage_error_status = 2;
constexpr int exec_failure_status = 127;
// A line longer than this is emitted in pieces, so one rank printing without
// newlines cannot make the launcher's memory grow without bound.
constexpr std::size_t max_tagged_line_bytes = std::size_t{64} * 1024;

// ---------------------------------------------------------------------------
// Small system utilities

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// Writes all of data. A non-blocking destination (stdout may be shared with
// a process that set O_NONBLOCK) is waited for rather than losing output.
// Returns false if the destination is gone (e.g. EPIPE): the output is then
// dropped, because stalling or dying would take the whole job down with it.
bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t written = ::write(fd, data.data(), data.size());
    if (written >= 0) {
      data.remove_prefix(static_cast<std::size_t>(written));
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      pollfd writable{fd, POLLOUT, 0};
      ::poll(&writable, 1, -1);
    } else if (errno != EINTR) {
      return false;
    }
  }
  return true;
}

// One write() per message, so a report never interleaves with rank output.
void report(std::string_view message) {
  write_all(STDERR_FILENO, concat(program_name, ": ", message, "\n"));
}

std::string errno_text(int error) { return ::strerror(error); }

std::string describe_signal(int signo) {
  std::string text = concat("signal ", std::to_string(signo));
  if (const char* abbreviation = ::sigabbrev_np(signo)) {
    text += concat(" (SIG", abbreviation, ")");
  }
  return text;
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return concat("exited with status ", std::to_string(WEXITSTATUS(status)));
  return concat("was killed by ", describe_signal(WTERMSIG(status)));
}

// What tpcomm-run itself exits with when this status is the job's failure,
// following the shell convention for deaths by signal.
int exit_status_for(int wait_status) {
  return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
}

std::string format_seconds(double seconds) {
  std::array<char, 32> text{};
  const auto result = std::to_chars(text.data(), text.data() + text.size(), seconds);
  return std::string(text.data(), result.ptr);
}

// If tpcomm-run starts with fd 0, 1 or 2 closed, pipe2() could return one of
// them and redirecting a rank's output would then clobber the pipe itself.
// Parking /dev/null there keeps every later descriptor above 2.
void ensure_standard_fds_open() {
  for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; ++fd) {
    if (::fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
      // open() returns the lowest free descriptor, which is fd.
      (void)::open("/dev/null", O_RDWR);
    }
  }
}

// 128 bits from the kernel's CSPRNG: the job id names the job's shared-memory
// segments, so another user must not be able to predict it and pre-create them.
std::optional<std::string> generate_job_id() {
  std::array<unsigned char, 16> bytes{};
  std::size_t filled = 0;
  while (filled < bytes.size()) {
    const ssize_t got = ::getrandom(bytes.data() + filled, bytes.size() - filled, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return std::nullopt;
    }
    filled += static_cast<std::size_t>(got);
  }
  constexpr std::string_view hex_digits = "0123456789abcdef";
  std::string id;
  for (const unsigned char byte : bytes) {
    id += hex_digits[byte >> 4];
    id += hex_digits[byte & 0x0f];
  }
  return id;
}

// exec functions take NULL-terminated char* arrays; the strings stay owned by
// the vector, which must outlive the returned pointers.
std::vector<char*> c_string_array(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (std::string& text : strings) pointers.push_back(text.data());
  pointers.push_back(nullptr);
  return pointers;
}

// ---------------------------------------------------------------------------
// Environment of the ranks

struct JobIdentity {
  std::string job_id;
  int world_size = 0;
  std::optional<std::string> timeout_seconds;
};

// The launcher's own environment minus the variables it sets for the ranks:
// a tpcomm-run started from inside another job must not leak that job's rank
// or size into its ranks.
std::vector<std::string> inherited_environment(const JobIdentity& job) {
  std::vector<std::string_view> replaced = {"TPCOMM_RANK", "TPCOMM_WORLD_SIZE", "TPCOMM_LOCAL_RANK",
                                            "TPCOMM_LOCAL_WORLD_SIZE", "TPCOMM_JOB_ID"};
  if (job.timeout_seconds) replaced.push_back("TPCOMM_TIMEOUT");

  std::vector<std::string> variables;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view variable = *entry;
    const std::string_view name = variable.substr(0, variable.find('='));
    if (std::ranges::find(replaced, name) == replaced.end()) variables.emplace_back(variable);
  }
  return variables;
}

std::vector<std::string> rank_environment(std::span<const std::string> inherited,
                                          const JobIdentity& job, int rank) {
  std::vector<std::string> variables(inherited.begin(), inherited.end());
  const std::string rank_text = std::to_string(rank);
  const std::string size_text = std::to_string(job.world_size);
  variables.push_back(concat("TPCOMM_RANK=", rank_text));
  variables.push_back(concat("TPCOMM_WORLD_SIZE=", size_text));
  // Every rank runs on this machine, so local and global numbering coincide.
  variables.push_back(concat("TPCOMM_LOCAL_RANK=", rank_text));
  variables.push_back(concat("TPCOMM_LOCAL_WORLD_SIZE=", size_text));
  variables.push_back(concat("TPCOMM_JOB_ID=", job.job_id));
  if (job.timeout_seconds) variables.push_back(concat("TPCOMM_TIMEOUT=", *job.timeout_seconds));
  return variables;
}

// ---------------------------------------------------------------------------
// Signals

// Takes over the signals the launcher reacts to and remembers what the ranks
// must get back before exec: the signal mask and ignored dispositions survive
// exec, and the ranks should start exactly as if run directly.
class SignalRouting {
 public:
  // Returns an error message on failure.
  std::optional<std::string> install() {
    ::sigemptyset(&handled_);
    ::sigaddset(&handled_, SIGCHLD);
    for (const int signo : {SIGINT, SIGTERM, SIGHUP}) {
      struct sigaction current {};
      ::sigaction(signo, nullptr, &current);
      // An ignored signal stays ignored, for the ranks too: that is how nohup
      // and shells running background jobs ask a whole command to be immune.
      if (current.sa_handler != SIG_IGN) ::sigaddset(&handled_, signo);
    }

    // With SIGCHLD ignored the kernel would reap the ranks itself and their
    // exit statuses would be lost.
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    ::sigemptyset(&default_action.sa_mask);
    ::sigaction(SIGCHLD, &default_action, &original_sigchld_);

    // A closed stdout must not kill the launcher (and with it every rank);
    // write_all() reports EPIPE instead.
    struct sigaction ignore_action {};
    ignore_action.sa_handler = SIG_IGN;
    ::sigemptyset(&ignore_action.sa_mask);
    ::sigaction(SIGPIPE, &ignore_action, &original_sigpipe_);

    if (::sigprocmask(SIG_BLOCK, &handled_, &original_mask_) != 0) {
      return concat("cannot block signals: ", errno_text(errno));
    }
    fd_ = UniqueFd(::signalfd(-1, &handled_, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!fd_.valid()) return concat("cannot create a signalfd: ", errno_text(errno));
    return std::nullopt;
  }

  int fd() const { return fd_.get(); }

  // Called in a forked child before exec.
  void restore_for_exec() const {
    ::sigaction(SIGCHLD, &original_sigchld_, nullptr);
    ::sigaction(SIGPIPE, &original_sigpipe_, nullptr);
    ::sigprocmask(SIG_SETMASK, &original_mask_, nullptr);
  }

 private:
  sigset_t handled_{};
  sigset_t original_mask_{};
  struct sigaction original_sigchld_ {};
  struct sigaction original_sigpipe_ {};
  UniqueFd fd_;
};

// ---------------------------------------------------------------------------
// Tagged output

// One rank's stdout or stderr under --tag-output: the read end of a pipe whose
// bytes are re-emitted line by line, each line prefixed with the rank's tag.
class TaggedStream {
 public:
  TaggedStream(UniqueFd source, int destination, std::string tag)
      : source_(std::move(source)), destination_(destination), tag_(std::move(tag)) {}

  int fd() const { return source_.get(); }
  bool open() const { return source_.valid(); }

  // One read(), so a rank printing continuously cannot starve the others.
  // Returns the number of bytes read.
  std::size_t read_available() {
    std::array<char, std::size_t{64} * 1024> chunk;
    for (;;) {
      const ssize_t got = ::read(source_.get(), chunk.data(), chunk.size());
      if (got > 0) {
        pending_.append(chunk.data(), static_cast<std::size_t>(got));
        emit_complete_lines();
        return static_cast<std::size_t>(got);
      }
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
      close();  // end of file, or an error that reading again will not fix
      return 0;
    }
  }

  // Called once the rank has exited, when everything it wrote is in the pipe.
  // A process the rank left behind may still hold the pipe open and keep
  // writing, so this neither waits for end of file nor reads more than the
  // pipe can hold, which bounds what the rank itself left unread.
  void drain_and_close() {
    if (open()) {
      const int capacity = ::fcntl(source_.get(), F_GETPIPE_SZ);
      std::size_t budget = capacity > 0 ? static_cast<std::size_t>(capacity) : 0;
      while (open() && budget > 0) {
        const std::size_t got = read_available();
        if (got == 0) break;
        budget -= std::min(got, budget);
      }
    }
    close();
  }

 private:
  void emit_complete_lines() {
    std::string tagged;
    std::size_t line_start = 0;
    for (std::size_t newline = pending_.find('\n'); newline != std::string::npos;
         newline = pending_.find('\n', line_start)) {
      tagged.append(tag_).append(pending_, line_start, newline + 1 - line_start);
      line_start = newline + 1;
    }
    pending_.erase(0, line_start);
    if (pending_.size() >= max_tagged_line_bytes) {
      tagged.append(tag_).append(pending_).append("\n");
      pending_.clear();
    }
    if (!tagged.empty()) write_all(destination_, tagged);
  }

  // A last line without a newline still gets its tag, and a newline so that
  // the next rank's line starts on a line of its own.
  void close() {
    if (!pending_.empty()) {
      write_all(destination_, concat(tag_, pending_, "\n"));
      pending_.clear();
    }
    source_.reset();
  }

  UniqueFd source_;
  int destination_;
  std::string tag_;
  std::string pending_;
};

// ---------------------------------------------------------------------------
// Shared-memory cleanup

// The library unlinks a job's segments as soon as every rank has attached, so
// leftovers exist only when a rank died during start-up. Segment names are
// "tpcomm-<uid>-<token>-<instance>-n<world>", possibly with a suffix after
// that, where the token is what the library makes of the job id: the id itself
// if it is a plain name, a hash of it otherwise. Neither kind of token contains
// a '-', so requiring the '-' after the token spares another job whose token
// merely begins with this one.
void remove_leftover_segments(const std::string& job_id) {
  const std::string prefix =
      concat("tpcomm-", std::to_string(::getuid()), "-", tpcomm::detail::job_token(job_id), "-");
  std::error_code error;
  std::filesystem::directory_iterator entry("/dev/shm", error);
  int removed = 0;
  for (; !error && entry != std::filesystem::directory_iterator(); entry.increment(error)) {
    const std::string name = entry->path().filename().string();
    if (!name.starts_with(prefix)) continue;
    std::error_code remove_error;
    if (std::filesystem::remove(entry->path(), remove_error)) {
      ++removed;
    } else if (remove_error) {
      report(concat("cannot remove ", entry->path().string(), ": ", remove_error.message()));
    }
  }
  if (removed > 0) {
    report(concat("removed ", std::to_string(removed), " leftover shared-memory segment(s) of job ",
                  job_id));
  }
}

// ---------------------------------------------------------------------------
// The job

struct Rank {
  int index = 0;
  pid_t pid = -1;
  bool running = false;
  // The signals the rank got because the job was being stopped: those sent by
  // tpcomm-run, and a terminal's Ctrl-C. A death by one of them is a
  // consequence of the stop, never the cause of a failure.
  std::set<int> stop_signals;
};

// A rank that ended unsuccessfully, as tpcomm-run reports it.
struct RankFailure {
  int index = 0;
  pid_t pid = -1;
  int wait_status = 0;
  bool killed_by_outside_signal = false;
};

class Job {
 public:
  Job(const LaunchOptions& options, JobIdentity identity, const SignalRouting& signals)
      : options_(options), identity_(std::move(identity)), signals_(signals) {}

  // Runs the job to completion; returns tpcomm-run's exit status.
  int run() {
    start_ranks();
    supervise();
    report_failure();
    for (TaggedStream& stream : streams_) stream.drain_and_close();
    remove_leftover_segments(identity_.job_id);
    return exit_status_.value_or(0);
  }

 private:
  void start_ranks() {
    std::vector<std::string> command = options_.command;
    std::vector<char*> argv = c_string_array(command);
    const std::vector<std::string> inherited = inherited_environment(identity_);
    const std::string exec_error_prefix =
        concat(program_name, ": cannot execute ", command.front(), ": ");
    const pid_t launcher_pid = ::getpid();

    for (int index = 0; index < options_.world_size; ++index) {
      std::vector<std::string> environment = rank_environment(inherited, identity_, index);
      std::vector<char*> envp = c_string_array(environment);

      UniqueFd stdout_write;
      UniqueFd stderr_write;
      if (options_.tag_output) {
        const std::string tag = concat("[", std::to_string(index), "] ");
        auto out = make_tagged_pipe(STDOUT_FILENO, tag);
        auto err = make_tagged_pipe(STDERR_FILENO, tag);
        if (!out || !err) {
          fail_to_start(index, concat("cannot create a pipe: ", errno_text(errno)));
          return;
        }
        stdout_write = std::move(*out);
        stderr_write = std::move(*err);
      }

      const pid_t pid = ::fork();
      if (pid < 0) {
        fail_to_start(index, concat("cannot fork: ", errno_text(errno)));
        return;
      }
      if (pid == 0) {
        exec_rank(argv, envp, stdout_write.get(), stderr_write.get(), launcher_pid,
                  exec_error_prefix);
      }
      ranks_.push_back(Rank{index, pid, true});
      // The parent's copies of the write ends close here, so a pipe reaches
      // end of file exactly when the rank (and anything it spawned) is done.
    }
  }

  // Creates a pipe for one output stream of a rank, keeps the read end as a
  // TaggedStream and returns the write end for the child.
  std::optional<UniqueFd> make_tagged_pipe(int destination, const std::string& tag) {
    std::array<int, 2> ends{};
    // CLOEXEC on both ends: no rank may inherit another rank's pipes, or
    // those pipes would never reach end of file.
    if (::pipe2(ends.data(), O_CLOEXEC) != 0) return std::nullopt;
    UniqueFd read_end(ends[0]);
    UniqueFd write_end(ends[1]);
    // Only the launcher's end is non-blocking; the rank gets an ordinary
    // blocking stdout/stderr.
    ::fcntl(read_end.get(), F_SETFL, ::fcntl(read_end.get(), F_GETFL) | O_NONBLOCK);
    streams_.emplace_back(std::move(read_end), destination, tag);
    return write_end;
  }

  // Runs in the forked child and never returns. The launcher is
  // single-threaded, so the child may allocate and format freely.
  [[noreturn]] void exec_rank(std::vector<char*>& argv, std::vector<char*>& envp, int stdout_fd,
                              int stderr_fd, pid_t launcher_pid,
                              const std::string& exec_error_prefix) const {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    // If the launcher died before prctl() took effect, no signal will come.
    if (::getppid() != launcher_pid) ::_exit(launcher_error_status);
    // dup2() clears CLOEXEC on the copy, so only fds 1 and 2 survive exec.
    if (stdout_fd >= 0 && ::dup2(stdout_fd, STDOUT_FILENO) < 0) ::_exit(launcher_error_status);
    if (stderr_fd >= 0 && ::dup2(stderr_fd, STDERR_FILENO) < 0) ::_exit(launcher_error_status);
    signals_.restore_for_exec();
    ::execvpe(argv.front(), argv.data(), envp.data());
    const int exec_error = errno;
    write_all(STDERR_FILENO, concat(exec_error_prefix, errno_text(exec_error), "\n"));
    ::_exit(exec_failure_status);
  }

  void fail_to_start(int index, const std::string& reason) {
    report(concat("rank ", std::to_string(index), ": ", reason));
    begin_stop(launcher_error_status);
    signal_running_ranks(SIGTERM);
  }

  bool any_running() const {
    return std::ranges::any_of(ranks_, [](const Rank& rank) { return rank.running; });
  }

  bool stopping() const { return kill_deadline_.has_value(); }

  // Marks the job as ending: ranks still running when the grace period is
  // over get SIGKILL. Only the first reason to stop decides the exit status,
  // though when that reason is a failed rank, rank_ended() may still name
  // another rank as the cause.
  void begin_stop(int exit_status) {
    if (stopping()) return;
    exit_status_ = exit_status;
    kill_deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(options_.grace_seconds));
  }

  void signal_running_ranks(int signo) {
    // A rank that has exited but is not yet reaped is a zombie, so its pid
    // cannot have been reused by an unrelated process.
    for (Rank& rank : ranks_) {
      if (!rank.running) continue;
      rank.stop_signals.insert(signo);
      ::kill(rank.pid, signo);
    }
  }

  void supervise() {
    while (any_running()) {
      std::vector<pollfd> watched{{signals_.fd(), POLLIN, 0}};
      std::vector<TaggedStream*> watched_streams;
      for (TaggedStream& stream : streams_) {
        if (!stream.open()) continue;
        watched.push_back({stream.fd(), POLLIN, 0});
        watched_streams.push_back(&stream);
      }

      const int ready = ::poll(watched.data(), watched.size(), poll_timeout_ms());
      if (ready < 0 && errno != EINTR) {
        report(concat("poll failed: ", errno_text(errno), "; killing all ranks"));
        kill_and_reap_all();
        return;
      }
      if (ready > 0) {
        if (watched.front().revents != 0) handle_signals();
        for (std::size_t i = 0; i < watched_streams.size(); ++i) {
          if (watched[i + 1].revents != 0) watched_streams[i]->read_available();
        }
      }
      if (kill_deadline_ && !sigkill_sent_ && Clock::now() >= *kill_deadline_) {
        kill_remaining_ranks();
      }
    }
  }

  int poll_timeout_ms() const {
    if (!kill_deadline_ || sigkill_sent_) return -1;
    const auto remaining =
        std::chrono::ceil<std::chrono::milliseconds>(*kill_deadline_ - Clock::now()).count();
    return static_cast<int>(std::clamp<decltype(remaining)>(remaining, 0, INT_MAX));
  }

  void handle_signals() {
    signalfd_siginfo info{};
    for (;;) {
      const ssize_t got = ::read(signals_.fd(), &info, sizeof info);
      if (got < 0 && errno == EINTR) continue;
      if (got != static_cast<ssize_t>(sizeof info)) break;
      if (info.ssi_signo != SIGCHLD) {
        handle_stop_signal(static_cast<int>(info.ssi_signo), info.ssi_code);
      }
    }
    // SIGCHLD is not queued: one notification may stand for several exits,
    // so reap everything that has ended.
    reap_ranks();
  }

  void handle_stop_signal(int signo, int code) {
    // A terminal sends Ctrl-C (SI_KERNEL) to the whole foreground process
    // group, ranks included. Forwarding it as well would interrupt them twice,
    // e.g. raise a second KeyboardInterrupt inside a Python rank's cleanup.
    const bool ranks_already_signalled = signo == SIGINT && code == SI_KERNEL;
    if (ranks_already_signalled) {
      for (Rank& rank : ranks_) {
        if (rank.running) rank.stop_signals.insert(signo);
      }
    } else {
      signal_running_ranks(signo);
    }
    if (!stopping()) report(concat("received ", describe_signal(signo), "; stopping all ranks"));
    begin_stop(128 + signo);
  }

  void reap_ranks() {
    const bool was_stopping = stopping();
    for (;;) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid < 0 && errno == EINTR) continue;
      if (pid <= 0) break;  // nothing more has ended (0) or no children left
      // Children the process had before it exec'd tpcomm-run are reaped too,
      // and otherwise ignored.
      const auto rank = std::ranges::find(ranks_, pid, &Rank::pid);
      if (rank != ranks_.end()) rank_ended(*rank, status);
    }
    // The survivors of a failure are asked to stop only after everything that
    // had already ended is reaped, so that no rank which died before
    // tpcomm-run looked counts as having got the SIGTERM.
    if (!was_stopping && stopping()) signal_running_ranks(SIGTERM);
  }

  // Which failed rank is the job's failure. A rank killed by a signal (a
  // crash, the OOM killer, a kill -9) usually takes the others down with it:
  // they notice that it is gone and exit with an error of their own, possibly
  // before tpcomm-run reaps any of them, and waitpid() returns them in no
  // useful order. So the first failure seen only opens the choice. Until
  // every rank has ended or the grace period is over, a rank killed by a
  // signal that is not one of its stop_signals replaces a failure that is a
  // non-zero exit; between failures of the same kind the first seen stays.
  // The choice is reported once it is final (report_failure()): one line,
  // since reporting every rank that ended would bury the cause.
  void rank_ended(Rank& rank, int status) {
    rank.running = false;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
    const RankFailure failure{
        .index = rank.index,
        .pid = rank.pid,
        .wait_status = status,
        .killed_by_outside_signal =
            WIFSIGNALED(status) && !rank.stop_signals.contains(WTERMSIG(status))};
    if (!stopping()) {
      failure_ = failure;
      begin_stop(exit_status_for(status));
      return;
    }
    // Stopped for another reason (a signal to tpcomm-run, a rank that could
    // not be started): ranks ending is the expected outcome.
    if (!failure_ || failure_reported_) return;
    if (failure.killed_by_outside_signal && !failure_->killed_by_outside_signal) {
      failure_ = failure;
      exit_status_ = exit_status_for(status);
    }
  }

  void report_failure() {
    if (!failure_ || failure_reported_) return;
    failure_reported_ = true;
    report(concat("rank ", std::to_string(failure_->index), " (pid ", std::to_string(failure_->pid),
                  ") ", describe_wait_status(failure_->wait_status)));
  }

  void kill_remaining_ranks() {
    // A rank that ended within the grace period counts for the choice of the
    // failure even if its SIGCHLD has not been read yet.
    reap_ranks();
    report_failure();
    sigkill_sent_ = true;
    for (Rank& rank : ranks_) {
      if (!rank.running) continue;
      report(concat("rank ", std::to_string(rank.index), " (pid ", std::to_string(rank.pid),
                    ") still running ", format_seconds(options_.grace_seconds),
                    " s after being asked to stop; sending SIGKILL"));
      rank.stop_signals.insert(SIGKILL);
      ::kill(rank.pid, SIGKILL);
    }
  }

  // Last resort when the event loop itself cannot continue.
  void kill_and_reap_all() {
    if (!exit_status_) exit_status_ = launcher_error_status;
    signal_running_ranks(SIGKILL);
    for (Rank& rank : ranks_) {
      while (rank.running) {
        if (::waitpid(rank.pid, nullptr, 0) == rank.pid || errno != EINTR) rank.running = false;
      }
    }
  }

  const LaunchOptions& options_;
  const JobIdentity identity_;
  const SignalRouting& signals_;
  std::vector<Rank> ranks_;
  // Built completely before supervise() starts, so pointers into it stay valid.
  std::vector<TaggedStream> streams_;
  std::optional<Clock::time_point> kill_deadline_;
  bool sigkill_sent_ = false;
  std::optional<int> exit_status_;
  // Set when a failed rank stopped the job; see rank_ended().
  std::optional<RankFailure> failure_;
  bool failure_reported_ = false;
};

int print_usage_error(const std::string& message) {
  const std::string usage = tpcomm::run::usage_text();
  report(message);
  write_all(STDERR_FILENO, concat(std::string_view(usage).substr(0, usage.find('\n') + 1),
                                  "Run 'tpcomm-run --help' for more information.\n"));
  return usage_error_status;
}

}  // namespace

int main(int argc, char** argv) {
  ensure_standard_fds_open();

  // Skips argv[0], which a caller of execve() may leave out.
  const std::vector<std::string_view> args(argv + std::min(argc, 1), argv + argc);
  const tpcomm::run::ParseResult parsed = tpcomm::run::parse_arguments(args);
  if (std::holds_alternative<tpcomm::run::HelpRequested>(parsed)) {
    return write_all(STDOUT_FILENO, tpcomm::run::usage_text()) ? 0 : launcher_error_status;
  }
  if (const auto* error = std::get_if<tpcomm::run::UsageError>(&parsed)) {
    return print_usage_error(error->message);
  }
  const auto& options = std::get<LaunchOptions>(parsed);

  JobIdentity identity{
      .job_id = {}, .world_size = options.world_size, .timeout_seconds = options.timeout_seconds};
  // An empty inherited id cannot keep this job apart from others, so it
  // counts as unset.
  if (const char* inherited = ::getenv("TPCOMM_JOB_ID"); inherited != nullptr && *inherited) {
    identity.job_id = inherited;
  } else if (auto generated = generate_job_id()) {
    identity.job_id = std::move(*generated);
  } else {
    report(concat("cannot generate a job id: ", errno_text(errno)));
    return launcher_error_status;
  }

  SignalRouting signals;
  if (const auto error = signals.install()) {
    report(*error);
    return launcher_error_status;
  }
  return Job(options, std::move(identity), signals).run();
}
