// Soak: 4 ranks run a long random mix of every collective (small messages),
// every result checked against the serial reference, with zero errors and
// no growth in resident memory or open file descriptors. The number of calls
// is TPCOMM_SOAK_CALLS (default 100000); every 10000 calls each rank samples
// VmRSS and its descriptor count, and also splits off a sub-communicator for
// a moment (creation and destruction must not accumulate anything either).
#include <gtest/gtest.h>

#include <cstdlib>
#include <iterator>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>

#include "collective_cases.hpp"
#include "reference.hpp"
#include "robustness.hpp"

namespace {

using namespace tpcomm::robustness;
using namespace tpcomm::collective_cases;
namespace ref = tpcomm::reference;

constexpr int kWorld = 4;
constexpr std::size_t kSampleEvery = 10000;
constexpr std::size_t kMaxSamples = 64;

// The kinds in the order draw() indexes them: the sequence of calls depends on it.
constexpr Kind kSoakKinds[] = {Kind::all_reduce, Kind::reduce_scatter, Kind::reduce_scatterv, Kind::all_gather,
                               Kind::all_gatherv, Kind::broadcast,     Kind::reduce,          Kind::gather,
                               Kind::scatter,    Kind::all_to_all,     Kind::all_to_allv,     Kind::send_recv_ring,
                               Kind::barrier};

std::size_t soak_calls() {
  const char* text = std::getenv("TPCOMM_SOAK_CALLS");
  return text != nullptr && *text != '\0' ? static_cast<std::size_t>(std::strtoull(text, nullptr, 10)) : 100000;
}

// The next call; every rank draws the same Spec.
Spec draw(std::mt19937_64& shared) {
  Spec s{};
  s.kind = kSoakKinds[shared() % std::size(kSoakKinds)];
  s.dtype = kDataTypes[shared() % std::size(kDataTypes)];
  s.op = static_cast<ReduceOp>(shared() % 5);
  if (s.op == ReduceOp::avg && !ref::is_float(s.dtype)) s.op = ReduceOp::sum;
  // prod stays exact only for few factors; the pattern's values are small.
  const std::size_t sizes[] = {0, 1, 3, 17, 64, 255, 1000, 3000};
  s.count = sizes[shared() % std::size(sizes)];
  s.root = static_cast<int>(shared() % kWorld);
  s.in_place = shared() % 2 == 0 && has_in_place_form(s.kind);
  s.seed = shared();
  const std::size_t entries = s.kind == Kind::all_to_allv ? kWorld * kWorld : kWorld;
  if (s.kind == Kind::reduce_scatterv || s.kind == Kind::all_gatherv || s.kind == Kind::all_to_allv) {
    for (std::size_t i = 0; i < entries; ++i) s.counts.push_back(shared() % 4 == 0 ? 0 : shared() % (s.count + 1));
  }
  return s;
}

// Runs call number `call`, naming it in a failure.
void run_call(Communicator& comm, const Spec& s, std::size_t call) {
  try {
    run_case(comm, s);
  } catch (const std::exception& error) {
    std::ostringstream text;
    text << "call " << call << ": " << error.what();
    throw std::runtime_error(text.str());
  }
}

struct Samples {
  std::atomic<int> taken{0};
  long rss_kib[kMaxSamples] = {};
  int fds[kMaxSamples] = {};
  double seconds = 0;
};

TEST(Soak, HundredThousandMixedCollectivesWithoutErrorsOrGrowth) {
  const std::size_t calls = soak_calls();
  const std::string job = job_id("soak");
  SharedArray<Samples> samples(kWorld);
  const std::int64_t start = now_ns();
  RankProcesses ranks(kWorld, [&](int rank) {
    Samples& mine = samples[static_cast<std::size_t>(rank)];
    tpcomm::CommOptions options;
    options.chunk_bytes = kChunkBytes;  // small staging slots: even these sizes take several rounds
    options.timeout = std::chrono::seconds(60);
    auto comm = Communicator::create(rank, kWorld, job, options);
    std::mt19937_64 shared(0x5eed50a6);  // the same sequence on every rank
    for (std::size_t call = 1; call <= calls; ++call) {
      run_call(comm, draw(shared), call);
      if (call % kSampleEvery == 0) {
        // A short-lived sub-communicator: its segment must come and go cleanly.
        auto half = comm.split(rank % 2, rank);
        std::int32_t one = 1, total = 0;
        half->all_reduce(&one, &total, 1, DataType::i32, ReduceOp::sum);
        check(total == 2, "wrong sum in the sub-communicator");
        half.reset();
        const int index = mine.taken.load();
        if (index < static_cast<int>(kMaxSamples)) {
          mine.rss_kib[index] = vm_rss_kib();
          mine.fds[index] = open_fd_count();
          mine.taken = index + 1;
        }
      }
    }
    mine.seconds = seconds_between(start, now_ns());
  });
  // About 3 minutes for 100000 calls on two cores; the bound is for a hang.
  if (!expect_all_exited_zero(ranks, static_cast<double>(calls) / 100.0 + 120)) return;
  for (int r = 0; r < kWorld; ++r) {
    const Samples& s = samples[static_cast<std::size_t>(r)];
    const int taken = s.taken.load();
    std::ostringstream rss, fds;
    for (int i = 0; i < taken; ++i) {
      rss << " " << s.rss_kib[i];
      fds << " " << s.fds[i];
    }
    std::printf("[soak] rank %d: %zu calls in %.1f s; VmRSS KiB:%s; fds:%s\n", r, calls, s.seconds, rss.str().c_str(),
                fds.str().c_str());
    if (taken < 3) continue;
    // The first sample is warm-up (allocator arenas, first use of each size);
    // from the second on, resident memory must stay flat.
    long low = s.rss_kib[1], high = s.rss_kib[1];
    for (int i = 1; i < taken; ++i) {
      low = std::min(low, s.rss_kib[i]);
      high = std::max(high, s.rss_kib[i]);
    }
    if (kResidentMemoryIsMeaningful) {
      EXPECT_LE(high - low, 1024) << "rank " << r << ": VmRSS grew from " << low << " to " << high << " KiB";
    }
    for (int i = 1; i < taken; ++i) EXPECT_EQ(s.fds[i], s.fds[0]) << "rank " << r << ": open descriptors:" << fds.str();
  }
  EXPECT_TRUE(segments_of(job).empty()) << join(segments_of(job));
}

}  // namespace
