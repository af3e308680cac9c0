// tpcomm-run when ranks die: it exits non-zero naming the killed rank at every
// phase, removes what a job killed during its rendezvous left in /dev/shm,
// gives every job a fresh unguessable id, and runs two jobs side by side.
// The ranks are crash_rank processes.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "robustness.hpp"

namespace {

using namespace tpcomm::robustness;

struct LaunchResult {
  int status = -1;  // exit status of tpcomm-run, or 128 + signal
  bool timed_out = false;
  std::string out;
  std::string err;
};

std::string read_file(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

class TempFile {
 public:
  TempFile() {
    char pattern[] = "/tmp/tpcomm-robustness-XXXXXX";
    const int fd = ::mkstemp(pattern);
    if (fd >= 0) ::close(fd);
    path_ = pattern;
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A running tpcomm-run: PROGRAM's output goes to temporary files.
class Launch {
 public:
  // job_id empty: tpcomm-run generates one.
  Launch(int world, const std::vector<std::string>& program_args, const std::string& job_id) {
    std::vector<std::string> args{TPCOMM_RUN_PATH, "-n", std::to_string(world), "--grace", "2", CRASH_RANK_PATH};
    args.insert(args.end(), program_args.begin(), program_args.end());
    std::fflush(stdout);
    std::fflush(stderr);
    pid_ = ::fork();
    if (pid_ == 0) {
      const int out = ::open(out_.path().c_str(), O_WRONLY | O_TRUNC);
      const int err = ::open(err_.path().c_str(), O_WRONLY | O_TRUNC);
      if (out < 0 || err < 0) ::_exit(126);
      ::dup2(out, STDOUT_FILENO);
      ::dup2(err, STDERR_FILENO);
      if (job_id.empty()) {
        ::unsetenv("TPCOMM_JOB_ID");
      } else {
        ::setenv("TPCOMM_JOB_ID", job_id.c_str(), 1);
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  Launch(const Launch&) = delete;
  Launch& operator=(const Launch&) = delete;
  ~Launch() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }

  LaunchResult wait(double timeout_seconds = 60) {
    LaunchResult result;
    int status = 0;
    const bool ended = wait_until([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, timeout_seconds);
    if (!ended) {
      result.timed_out = true;
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    pid_ = -1;
    result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    result.out = read_file(out_.path());
    result.err = read_file(err_.path());
    return result;
  }

 private:
  TempFile out_;
  TempFile err_;
  pid_t pid_ = -1;
};

LaunchResult launch(int world, const std::vector<std::string>& args, const std::string& job_id) {
  Launch running(world, args, job_id);
  return running.wait();
}

class KilledRank : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(KilledRank, LauncherExitsNonZeroNamingItAndNoSegmentRemains) {
  const auto& [phase, world] = GetParam();
  std::random_device device;
  const int victim = static_cast<int>(device() % static_cast<unsigned>(world));
  const std::string job = job_id("launch");
  const LaunchResult result = launch(world, {phase, std::to_string(victim)}, job);
  const std::string context = phase + " world " + std::to_string(world) + " victim " + std::to_string(victim);
  std::printf("[launcher] %s: status %d\n%s", context.c_str(), result.status, result.err.c_str());
  ASSERT_FALSE(result.timed_out) << context << ": tpcomm-run hung\n" << result.err;
  EXPECT_NE(result.status, 0) << context;
  // The first failure tpcomm-run reports must be the killed rank, not a
  // survivor that noticed the death.
  const std::regex named("tpcomm-run: rank " + std::to_string(victim) +
                         R"( \(pid [0-9]+\) was killed by signal 9 \(SIGKILL\))");
  EXPECT_TRUE(std::regex_search(result.err, named)) << context << ": stderr:\n" << result.err;
  EXPECT_EQ(result.status, 128 + SIGKILL) << context << ": stderr:\n" << result.err;
  EXPECT_TRUE(segments_of(job).empty()) << context << ": left in /dev/shm: " << join(segments_of(job));
  remove_segments_of(job);
}

INSTANTIATE_TEST_SUITE_P(Phases, KilledRank,
                         ::testing::Combine(::testing::Values("rendezvous", "in_collective", "between"),
                                            ::testing::Values(2, 4, 8)),
                         [](const auto& p) { return std::get<0>(p.param) + "_world" + std::to_string(std::get<1>(p.param)); });

// Children of a process, from /proc.
std::vector<pid_t> children_of(pid_t parent) {
  std::ifstream file("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) + "/children");
  std::vector<pid_t> children;
  for (pid_t child = 0; file >> child;) children.push_back(child);
  return children;
}

char process_state(pid_t pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const std::size_t paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() ? text[paren + 2] : '?';
}

// The survivors notice the death within milliseconds and exit; if they have
// ended too by the time tpcomm-run looks (here: it is stopped until every rank
// has ended), it must still name the rank that was killed, not a survivor.
TEST(Launcher, NamesTheKilledRankWhenSurvivorsEndedBeforeItLooked) {
  constexpr int kWorld = 4;
  const int victim = kWorld - 1;
  const std::string job = job_id("launch_late");
  Launch running(kWorld, {"in_collective", std::to_string(victim)}, job);
  ASSERT_TRUE(wait_until([&] { return children_of(running.pid()).size() == kWorld; }, 30));
  ::kill(running.pid(), SIGSTOP);
  const std::vector<pid_t> ranks = children_of(running.pid());
  const bool all_ended = wait_until(
      [&] {
        for (const pid_t rank : ranks) {
          if (process_state(rank) != 'Z') return false;
        }
        return true;
      },
      30);
  ::kill(running.pid(), SIGCONT);
  ASSERT_TRUE(all_ended) << "the ranks did not end while tpcomm-run was stopped";
  const LaunchResult result = running.wait();
  const std::regex named("tpcomm-run: rank " + std::to_string(victim) +
                         R"( \(pid [0-9]+\) was killed by signal 9 \(SIGKILL\))");
  EXPECT_TRUE(std::regex_search(result.err, named)) << "stderr:\n" << result.err;
  EXPECT_EQ(result.status, 128 + SIGKILL) << "stderr:\n" << result.err;
  EXPECT_TRUE(segments_of(job).empty()) << join(segments_of(job));
  remove_segments_of(job);
}

TEST(Launcher, RemovesTheSegmentWhenEveryRankDiesDuringTheRendezvous) {
  const std::string job = job_id("launch_all");
  const LaunchResult result = launch(2, {"all_rendezvous"}, job);
  ASSERT_FALSE(result.timed_out) << result.err;
  EXPECT_EQ(result.status, 128 + SIGKILL) << result.err;
  EXPECT_NE(result.err.find("removed 1 leftover shared-memory segment(s) of job " + job), std::string::npos)
      << result.err;
  EXPECT_TRUE(segments_of(job).empty()) << "left in /dev/shm: " << join(segments_of(job));
  remove_segments_of(job);
}

// The library turns a job id that is not a plain file name (here: dashes)
// into "h" + FNV-1a hash in the segment name. Cleanup must find that too.
std::string hashed_token(const std::string& job) {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (const char c : job) hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  char text[20];
  std::snprintf(text, sizeof(text), "h%016llx", static_cast<unsigned long long>(hash));
  return text;
}

TEST(Launcher, RemovesTheSegmentOfAnInheritedJobIdThatIsNotAPlainName) {
  const std::string job = "rob-launch-" + job_id("dash");
  const std::string token = hashed_token(job);
  const LaunchResult result = launch(2, {"all_rendezvous"}, job);
  ASSERT_FALSE(result.timed_out) << result.err;
  EXPECT_NE(result.status, 0) << result.err;
  EXPECT_TRUE(segments_of(token).empty())
      << "job id '" << job << "' (segment token " << token << "): left in /dev/shm: " << join(segments_of(token))
      << "\ntpcomm-run's stderr:\n"
      << result.err;
  remove_segments_of(token);
}

TEST(Launcher, GivesEveryJobAFreshUnguessableId) {
  std::set<std::string> ids;
  for (int run = 0; run < 2; ++run) {
    const LaunchResult result = launch(3, {"print_job"}, "");
    ASSERT_EQ(result.status, 0) << result.err;
    std::set<std::string> in_this_job;
    const std::regex line(R"(job (\S+) rank [0-9]+)");
    for (auto it = std::sregex_iterator(result.out.begin(), result.out.end(), line); it != std::sregex_iterator(); ++it) {
      in_this_job.insert((*it)[1]);
    }
    ASSERT_EQ(in_this_job.size(), 1u) << "ranks of one job must share one id:\n" << result.out;
    const std::string id = *in_this_job.begin();
    // 128 random bits, in hex: a name nobody can guess to join or disturb the job.
    EXPECT_TRUE(std::regex_match(id, std::regex("[0-9a-f]{32}"))) << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 2u) << "two jobs got the same id";
}

TEST(Launcher, TwoJobsWithTheSameWorldSizeAtOnceAreBothCorrect) {
  Launch first(2, {"verify"}, "");
  Launch second(2, {"verify"}, "");
  const LaunchResult a = first.wait(120);
  const LaunchResult b = second.wait(120);
  EXPECT_EQ(a.status, 0) << a.err;
  EXPECT_EQ(b.status, 0) << b.err;
}

}  // namespace
