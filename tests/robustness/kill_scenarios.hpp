// A rank killed with SIGKILL at a chosen phase of a job: during the
// rendezvous, inside a large all_reduce, or between collectives. The test
// process forks the ranks, kills the victim from outside at the chosen moment
// and collects what every survivor saw (error, message, when it surfaced) and
// what the job left in /dev/shm.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "robustness.hpp"
#include "shm/layout.hpp"
#include "tpcomm/tpcomm.hpp"

namespace tpcomm::robustness {

enum class KillPhase {
  // The victim created the segment and attached; some of the other ranks were
  // already waiting in the rendezvous, the rest arrive after its death.
  rendezvous_creator,
  // The victim created the segment and attached alone; every other rank
  // arrives after its death, to a segment whose only recorded rank is dead.
  rendezvous_creator_alone,
  // Another rank created the segment; the victim attached, then died while
  // ranks were still missing.
  rendezvous_joiner,
  // The victim died before it attached: to the others it is a rank that
  // never arrives.
  rendezvous_unattached,
  // The victim died inside a 64 MiB all_reduce that every rank runs in a loop.
  in_collective,
  // Every rank finished a barrier and is idle; the victim dies (and stays an
  // unreaped zombie) before the survivors' next call.
  between,
};

inline const char* phase_name(KillPhase phase) {
  switch (phase) {
    case KillPhase::rendezvous_creator: return "rendezvous_creator";
    case KillPhase::rendezvous_creator_alone: return "rendezvous_creator_alone";
    case KillPhase::rendezvous_joiner: return "rendezvous_joiner";
    case KillPhase::rendezvous_unattached: return "rendezvous_unattached";
    case KillPhase::in_collective: return "in_collective";
    case KillPhase::between: return "between";
  }
  return "?";
}

inline bool is_rendezvous(KillPhase phase) {
  return phase == KillPhase::rendezvous_creator || phase == KillPhase::rendezvous_creator_alone ||
         phase == KillPhase::rendezvous_joiner || phase == KillPhase::rendezvous_unattached;
}

// Whether `rank` has attached to the segment at `path`. A white-box look at the
// segment header: the only way to kill a rank exactly after it attached.
inline bool has_attached(const std::string& path, int rank) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool attached = false;
  struct stat info {};
  // An unsized segment must not be mapped: touching it would raise SIGBUS.
  if (::fstat(fd, &info) == 0 && static_cast<std::size_t>(info.st_size) >= sizeof(detail::SegmentHeader)) {
    void* map = ::mmap(nullptr, sizeof(detail::SegmentHeader), PROT_READ, MAP_SHARED, fd, 0);
    if (map != MAP_FAILED) {
      const auto* header = static_cast<const detail::SegmentHeader*>(map);
      attached = header->magic.load(std::memory_order_acquire) == detail::kSegmentMagic &&
                 header->ranks[rank].arrived.load(std::memory_order_acquire) == 1;
      ::munmap(map, sizeof(detail::SegmentHeader));
    }
  }
  ::close(fd);
  return attached;
}

struct KillScenario {
  KillPhase phase = KillPhase::in_collective;
  int world = 2;
  bool kill_all = false;  // every rank dies, not just the victim
  std::uint64_t seed = 0;
  // Rendezvous phases: another job starts on the machine (its rendezvous
  // sweeps /dev/shm for stale segments) after the victim died and before the
  // late ranks arrive.
  bool another_job_starts = false;
};

struct SurvivorView {
  int rank = 0;
  int outcome = RankReport::none;
  ErrorCode code = ErrorCode::internal;
  std::string message;
  double detection_seconds = -1;
  ErrorCode later_code = ErrorCode::internal;
  std::string later_message;
  double later_call_seconds = -1;
};

struct KillResult {
  int victim = -1;
  double kill_delay_seconds = 0;
  std::vector<SurvivorView> survivors;
  std::vector<std::string> leftover_segments;
  std::string processes;        // how each rank process ended
  bool ranks_ended_in_time = true;
  std::string setup_problem;    // the scenario itself could not be staged
  double max_detection() const {
    double worst = 0;
    for (const auto& s : survivors) worst = std::max(worst, s.detection_seconds);
    return worst;
  }
};

// The timeout of the survivors: long enough that a detection within 5 s
// cannot come from the deadline, except for a victim that never attached (then
// the deadline is the only signal there is). Inside a 64 MiB collective on an
// oversubscribed machine (or under a sanitizer) single waits can be long.
inline double survivor_timeout(KillPhase phase) {
  if (phase == KillPhase::rendezvous_unattached) return 3.0;
  return is_rendezvous(phase) ? 10.0 : 60.0;
}

constexpr std::size_t kLargeCount = std::size_t{64} << 20 >> 2;  // 64 MiB of f32

inline KillResult run_kill_scenario(const KillScenario& scenario) {
  const int world = scenario.world;
  const KillPhase phase = scenario.phase;
  std::mt19937_64 random(scenario.seed);
  KillResult result;
  result.victim = static_cast<int>(random() % static_cast<std::uint64_t>(world));
  const int victim = result.victim;
  // The rank that creates the segment in the rendezvous phases.
  const bool victim_creates = phase == KillPhase::rendezvous_creator || phase == KillPhase::rendezvous_creator_alone;
  int first = victim;
  if (!victim_creates) {
    first = static_cast<int>((static_cast<std::uint64_t>(victim) + 1 + random() % static_cast<std::uint64_t>(world - 1)) %
                             static_cast<std::uint64_t>(world));
  }
  // Ranks already inside the rendezvous when the victim dies (early); the
  // others start after its death. At least one rank always starts late, so
  // the rendezvous is incomplete when the victim dies (with two ranks and the
  // victim joining last it completes: then the victim dies right after).
  std::vector<bool> early(static_cast<std::size_t>(world), false);
  early[static_cast<std::size_t>(first)] = true;
  if (phase == KillPhase::rendezvous_joiner) early[static_cast<std::size_t>(victim)] = true;
  std::vector<int> others;  // neither the victim nor the first rank, in random order
  for (int r = 0; r < world; ++r) {
    if (r != victim && r != first) others.push_back(r);
  }
  std::shuffle(others.begin(), others.end(), random);
  if (phase == KillPhase::rendezvous_creator && others.size() >= 2) {
    const std::size_t waiting = 1 + random() % (others.size() - 1);
    for (std::size_t i = 0; i < waiting; ++i) early[static_cast<std::size_t>(others[i])] = true;
  }
  if (phase == KillPhase::rendezvous_joiner) {
    for (std::size_t i = 0; i + 1 < others.size(); ++i) early[static_cast<std::size_t>(others[i])] = random() % 2 == 0;
  }
  const double delay = static_cast<double>(random() % 1000) / 1000.0;  // 0 .. 1 s, scaled per phase
  const std::string job = job_id(std::string(phase_name(phase)).substr(0, 12) + (scenario.kill_all ? "A" : "1"));
  const std::string path = first_segment_path(job, world);

  SharedArray<RankReport> board(static_cast<std::size_t>(world));
  CommOptions options;
  options.timeout = std::chrono::duration<double>(survivor_timeout(phase));

  auto body = [&](int rank) {
    RankReport& me = board[static_cast<std::size_t>(rank)];
    auto observe = [&](auto&& calls) {
      try {
        calls();
        me.outcome.store(RankReport::succeeded);
        return false;
      } catch (const Error& error) {
        me.record(error);
        return true;
      }
    };
    auto later_call = [&](Communicator& comm) {
      const std::int64_t start = now_ns();
      try {
        comm.barrier();
      } catch (const Error& error) {
        me.record_later(error, seconds_between(start, now_ns()));
      }
    };
    if (is_rendezvous(phase)) {
      const bool is_early = early[static_cast<std::size_t>(rank)];
      if (!is_early) me.await_go();
      // Early ranks other than the first wait for its segment, so that the
      // intended rank is the one that creates it.
      if (is_early && rank != first) {
        check(wait_until([&] { return ::access(path.c_str(), F_OK) == 0; }, 30), "segment never appeared");
      }
      me.call_started_ns = now_ns();
      if (rank == victim) {
        // Attaches (and, if the rendezvous completes, joins one barrier), then
        // stays put until killed.
        auto comm = Communicator::create(rank, world, job, options);
        me.stage = 2;  // the rendezvous completed (its name may be gone already)
        comm.barrier();
        for (;;) ::pause();
      }
      // The second barrier can never complete: the victim joins one at most.
      std::optional<Communicator> comm;
      const bool failed = observe([&] {
        comm.emplace(Communicator::create(rank, world, job, options));
        comm->barrier();
        comm->barrier();
      });
      if (failed && comm) later_call(*comm);
      return;
    }
    auto comm = Communicator::create(rank, world, job, options);
    comm.barrier();
    if (phase == KillPhase::in_collective) {
      std::vector<float> data(kLargeCount, 1.0f);
      me.stage = 1;
      const bool failed = observe([&] {
        for (;;) {
          me.call_started_ns = now_ns();
          comm.all_reduce(data.data(), data.data(), data.size(), DataType::f32, ReduceOp::sum);
        }
      });
      if (failed) later_call(comm);
    } else {
      me.stage = 1;
      me.await_go();
      me.call_started_ns = now_ns();
      float x = 1.0f;
      const bool failed = observe([&] { comm.all_reduce(&x, &x, 1, DataType::f32, ReduceOp::sum); });
      if (failed) later_call(comm);
    }
  };

  std::int64_t kill_ns = 0;
  {
    RankProcesses ranks(world, body);
    auto release = [&](int r) { board[static_cast<std::size_t>(r)].go.store(1, std::memory_order_release); };
    auto kill_victims = [&] {
      if (scenario.kill_all) {
        ranks.kill_all();
        kill_ns = now_ns();
      } else {
        kill_ns = ranks.kill(victim);
      }
    };
    switch (phase) {
      case KillPhase::rendezvous_creator:
      case KillPhase::rendezvous_creator_alone:
      case KillPhase::rendezvous_joiner: {
        const auto& victim_report = board[static_cast<std::size_t>(victim)];
        if (!wait_until([&] { return has_attached(path, victim) || victim_report.stage.load() == 2; }, 30)) {
          result.setup_problem = "the victim never attached";
        }
        if (phase == KillPhase::rendezvous_creator) {
          for (int r = 0; r < world; ++r) {
            if (r == victim || !early[static_cast<std::size_t>(r)]) continue;
            if (!wait_until([&] { return has_attached(path, r); }, 30)) result.setup_problem = "an early rank never attached";
          }
        }
        result.kill_delay_seconds = delay * 0.2;
        sleep_seconds(result.kill_delay_seconds);
        kill_victims();
        if (!scenario.kill_all) ranks.reap(victim);
        if (scenario.another_job_starts) {
          const Communicator bystander = Communicator::create(0, 1, job_id("bystander"), CommOptions{});
        }
        for (int r = 0; r < world; ++r) release(r);
        break;
      }
      case KillPhase::rendezvous_unattached: {
        for (int r = 0; r < world; ++r) {
          if (!early[static_cast<std::size_t>(r)]) continue;
          if (!wait_until([&] { return has_attached(path, r); }, 30)) result.setup_problem = "an early rank never attached";
        }
        result.kill_delay_seconds = delay * 0.2;
        sleep_seconds(result.kill_delay_seconds);
        kill_victims();
        if (!scenario.kill_all) ranks.reap(victim);
        for (int r = 0; r < world; ++r) release(r);
        break;
      }
      case KillPhase::in_collective: {
        for (int r = 0; r < world; ++r) {
          if (!wait_until([&] { return board[static_cast<std::size_t>(r)].stage.load() == 1; }, 60)) {
            result.setup_problem = "a rank never reached the collective";
          }
        }
        // Into the all_reduce loop by a random amount: 0.05 .. 0.55 s.
        result.kill_delay_seconds = 0.05 + delay * 0.5;
        sleep_seconds(result.kill_delay_seconds);
        kill_victims();
        if (!scenario.kill_all) ranks.reap(victim);
        break;
      }
      case KillPhase::between: {
        for (int r = 0; r < world; ++r) {
          if (!wait_until([&] { return board[static_cast<std::size_t>(r)].stage.load() == 1; }, 60)) {
            result.setup_problem = "a rank never became idle";
          }
        }
        result.kill_delay_seconds = delay * 0.1;
        sleep_seconds(result.kill_delay_seconds);
        kill_victims();  // not reaped: the victim stays a zombie
        sleep_seconds(0.02);
        for (int r = 0; r < world; ++r) release(r);
        break;
      }
    }
    // Survivors have 5 s to notice plus a margin to report; a rank still
    // running after that is a hang.
    result.ranks_ended_in_time = ranks.wait_all(survivor_timeout(phase) + 20);
    result.processes = ranks.describe();
  }

  if (!scenario.kill_all) {
    for (int r = 0; r < world; ++r) {
      if (r == victim) continue;
      const RankReport& report = board[static_cast<std::size_t>(r)];
      SurvivorView view;
      view.rank = r;
      view.outcome = report.outcome.load();
      view.code = static_cast<ErrorCode>(report.code);
      view.message = report.message;
      view.later_code = static_cast<ErrorCode>(report.later_code);
      view.later_message = report.later_message;
      view.later_call_seconds = report.later_call_seconds;
      if (view.outcome == RankReport::failed) {
        view.detection_seconds = seconds_between(std::max(kill_ns, report.call_started_ns.load()), report.failed_ns);
      }
      result.survivors.push_back(view);
    }
  }
  result.leftover_segments = segments_of(job);
  return result;
}

}  // namespace tpcomm::robustness
