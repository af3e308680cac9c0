// Soak: 4 ranks run a long random mix of every collective (small messages),
// every result checked against the serial reference, with zero errors and
// no growth in resident memory or open file descriptors. The number of calls
// is TPCOMM_SOAK_CALLS (default 100000); every 10000 calls each rank samples
// VmRSS and its descriptor count, and also splits off a sub-communicator for
// a moment (creation and destruction must not accumulate anything either).
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "reference.hpp"
#include "robustness.hpp"

namespace {

using namespace tpcomm::robustness;
using tpcomm::Communicator;
using tpcomm::DataType;
using tpcomm::ReduceOp;
namespace ref = tpcomm::reference;
using Bytes = std::vector<unsigned char>;

constexpr int kWorld = 4;
constexpr std::size_t kSampleEvery = 10000;
constexpr std::size_t kMaxSamples = 64;

constexpr DataType kDataTypes[] = {DataType::f32, DataType::f64, DataType::f16, DataType::bf16,
                                   DataType::i8,  DataType::u8,  DataType::i32, DataType::i64};

enum class Kind { all_reduce, reduce_scatter, reduce_scatterv, all_gather, all_gatherv, broadcast, reduce, gather,
                  scatter, all_to_all, all_to_allv, ring, barrier };
constexpr Kind kKinds[] = {Kind::all_reduce, Kind::reduce_scatter, Kind::reduce_scatterv, Kind::all_gather,
                           Kind::all_gatherv, Kind::broadcast,     Kind::reduce,          Kind::gather,
                           Kind::scatter,    Kind::all_to_all,     Kind::all_to_allv,     Kind::ring,
                           Kind::barrier};

std::size_t soak_calls() {
  const char* text = std::getenv("TPCOMM_SOAK_CALLS");
  return text != nullptr && *text != '\0' ? static_cast<std::size_t>(std::strtoull(text, nullptr, 10)) : 100000;
}

// Everything that defines one call; every rank draws the same Spec.
struct Spec {
  Kind kind;
  DataType dtype;
  ReduceOp op;
  std::size_t count;
  int root;
  bool in_place;
  std::uint64_t seed;
  std::vector<std::size_t> counts;  // v forms: per rank; all_to_allv: n x n, row = sender
};

Spec draw(std::mt19937_64& shared) {
  Spec s{};
  s.kind = kKinds[shared() % std::size(kKinds)];
  s.dtype = kDataTypes[shared() % std::size(kDataTypes)];
  s.op = static_cast<ReduceOp>(shared() % 5);
  if (s.op == ReduceOp::avg && !ref::is_float(s.dtype)) s.op = ReduceOp::sum;
  // prod stays exact only for few factors; the pattern's values are small.
  const std::size_t sizes[] = {0, 1, 3, 17, 64, 255, 1000, 3000};
  s.count = sizes[shared() % std::size(sizes)];
  s.root = static_cast<int>(shared() % kWorld);
  s.in_place = shared() % 2 == 0 && s.kind != Kind::all_to_allv && s.kind != Kind::ring;
  s.seed = shared();
  const std::size_t entries = s.kind == Kind::all_to_allv ? kWorld * kWorld : kWorld;
  if (s.kind == Kind::reduce_scatterv || s.kind == Kind::all_gatherv || s.kind == Kind::all_to_allv) {
    for (std::size_t i = 0; i < entries; ++i) s.counts.push_back(shared() % 4 == 0 ? 0 : shared() % (s.count + 1));
  }
  return s;
}

Bytes pattern(const Spec& s, std::size_t count, int rank) {
  Bytes b(count * tpcomm::dtype_size(s.dtype) + 1);
  ref::fill_pattern(s.dtype, b.data(), count, rank, s.seed);
  return b;
}

Bytes fold(const Spec& s, std::size_t count) {
  std::vector<Bytes> inputs;
  std::vector<const void*> pointers;
  for (int r = 0; r < kWorld; ++r) inputs.push_back(pattern(s, count, r));
  for (auto& in : inputs) pointers.push_back(in.data());
  Bytes out(count * tpcomm::dtype_size(s.dtype) + 1);
  ref::reduce(s.dtype, s.op, pointers, out.data(), count);
  return out;
}

std::size_t sum(const std::vector<std::size_t>& v, std::size_t end) {
  return std::accumulate(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(end), std::size_t{0});
}

void expect_equal(const Spec& s, std::size_t call, const unsigned char* got, const unsigned char* want,
                  std::size_t count, const char* what) {
  const std::size_t wrong = ref::count_mismatches(s.dtype, got, want, count);
  if (wrong == 0) return;
  std::ostringstream text;  // not operator+ chains: GCC 12 warns falsely (-Wrestrict) on them
  text << "call " << call << ": kind " << static_cast<int>(s.kind) << " " << tpcomm::dtype_name(s.dtype) << " "
       << tpcomm::redop_name(s.op) << " count " << s.count << " root " << s.root << (s.in_place ? " in-place" : "")
       << ": " << what << ": " << wrong << " wrong elements";
  throw std::runtime_error(text.str());
}

void run_one(Communicator& comm, const Spec& s, std::size_t call) {
  const int me = comm.rank();
  const auto n = static_cast<std::size_t>(kWorld);
  const auto my = static_cast<std::size_t>(me);
  const std::size_t e = tpcomm::dtype_size(s.dtype);
  switch (s.kind) {
    case Kind::all_reduce: {
      Bytes in = pattern(s, s.count, me), out(in.size());
      unsigned char* recv = s.in_place ? in.data() : out.data();
      comm.all_reduce(in.data(), recv, s.count, s.dtype, s.op);
      expect_equal(s, call, recv, fold(s, s.count).data(), s.count, "all_reduce");
      break;
    }
    case Kind::reduce_scatter:
    case Kind::reduce_scatterv: {
      const bool v = s.kind == Kind::reduce_scatterv;
      const std::vector<std::size_t> counts = v ? s.counts : std::vector<std::size_t>(n, s.count);
      const std::size_t total = sum(counts, n), offset = sum(counts, my);
      Bytes in = pattern(s, total, me), out(counts[my] * e + 1);
      unsigned char* recv = s.in_place ? in.data() + offset * e : out.data();
      if (v) comm.reduce_scatterv(in.data(), recv, counts, s.dtype, s.op);
      else comm.reduce_scatter(in.data(), recv, s.count, s.dtype, s.op);
      expect_equal(s, call, recv, fold(s, total).data() + offset * e, counts[my], "reduce_scatter block");
      break;
    }
    case Kind::all_gather:
    case Kind::all_gatherv: {
      const bool v = s.kind == Kind::all_gatherv;
      const std::vector<std::size_t> counts = v ? s.counts : std::vector<std::size_t>(n, s.count);
      const std::size_t total = sum(counts, n), offset = sum(counts, my);
      Bytes recv(total * e + 1, 0xee), own = pattern(s, counts[my], me);
      const unsigned char* send = own.data();
      if (s.in_place) {
        std::memcpy(recv.data() + offset * e, own.data(), counts[my] * e);
        send = recv.data() + offset * e;
      }
      if (v) comm.all_gatherv(send, recv.data(), counts, s.dtype);
      else comm.all_gather(send, recv.data(), s.count, s.dtype);
      for (std::size_t r = 0; r < n; ++r) {
        expect_equal(s, call, recv.data() + sum(counts, r) * e, pattern(s, counts[r], static_cast<int>(r)).data(),
                     counts[r], "all_gather block");
      }
      break;
    }
    case Kind::broadcast: {
      Bytes in = pattern(s, s.count, me), out(s.count * e + 1, 0xee);
      unsigned char* recv = (me == s.root && s.in_place) ? in.data() : out.data();
      comm.broadcast(me == s.root ? in.data() : nullptr, recv, s.count, s.dtype, s.root);
      expect_equal(s, call, recv, pattern(s, s.count, s.root).data(), s.count, "broadcast");
      break;
    }
    case Kind::reduce: {
      Bytes in = pattern(s, s.count, me), out(s.count * e + 1, 0xee);
      unsigned char* recv = me == s.root ? (s.in_place ? in.data() : out.data()) : nullptr;
      comm.reduce(in.data(), recv, s.count, s.dtype, s.op, s.root);
      if (me == s.root) expect_equal(s, call, recv, fold(s, s.count).data(), s.count, "reduce");
      break;
    }
    case Kind::gather: {
      Bytes recv(me == s.root ? n * s.count * e + 1 : 1, 0xee), own = pattern(s, s.count, me);
      const unsigned char* send = own.data();
      if (s.in_place && me == s.root) {
        std::memcpy(recv.data() + my * s.count * e, own.data(), s.count * e);
        send = recv.data() + my * s.count * e;
      }
      comm.gather(send, me == s.root ? recv.data() : nullptr, s.count, s.dtype, s.root);
      if (me == s.root) {
        for (std::size_t r = 0; r < n; ++r) {
          expect_equal(s, call, recv.data() + r * s.count * e, pattern(s, s.count, static_cast<int>(r)).data(),
                       s.count, "gather block");
        }
      }
      break;
    }
    case Kind::scatter: {
      Bytes whole = pattern(s, n * s.count, s.root), out(s.count * e + 1, 0xee);
      unsigned char* recv = (me == s.root && s.in_place) ? whole.data() + my * s.count * e : out.data();
      comm.scatter(me == s.root ? whole.data() : nullptr, recv, s.count, s.dtype, s.root);
      expect_equal(s, call, recv, pattern(s, n * s.count, s.root).data() + my * s.count * e, s.count, "scatter");
      break;
    }
    case Kind::all_to_all: {
      Bytes in = pattern(s, n * s.count, me), out(n * s.count * e + 1, 0xee);
      unsigned char* recv = s.in_place ? in.data() : out.data();
      comm.all_to_all(in.data(), recv, s.count, s.dtype);
      for (std::size_t r = 0; r < n; ++r) {
        expect_equal(s, call, recv + r * s.count * e,
                     pattern(s, n * s.count, static_cast<int>(r)).data() + my * s.count * e, s.count,
                     "all_to_all block");
      }
      break;
    }
    case Kind::all_to_allv: {
      auto at = [&](std::size_t from, std::size_t to) { return s.counts[from * n + to]; };
      std::vector<std::size_t> send_counts(n), send_displs(n), recv_counts(n), recv_displs(n);
      std::size_t send_total = 0, recv_total = 0;
      for (std::size_t d = 0; d < n; ++d) {
        send_counts[d] = at(my, d);
        send_displs[d] = send_total;
        send_total += send_counts[d] + 1;  // a gap: displacements must be honoured
        recv_counts[d] = at(d, my);
        recv_displs[d] = recv_total;
        recv_total += recv_counts[d] + 1;
      }
      Bytes in = pattern(s, send_total, me), recv(recv_total * e + 1, 0xee);
      comm.all_to_allv(in.data(), send_counts, send_displs, recv.data(), recv_counts, recv_displs, s.dtype);
      for (std::size_t from = 0; from < n; ++from) {
        std::size_t their_displ = 0;
        for (std::size_t d = 0; d < my; ++d) their_displ += at(from, d) + 1;
        const Bytes theirs = pattern(s, their_displ + at(from, my), static_cast<int>(from));
        expect_equal(s, call, recv.data() + recv_displs[from] * e, theirs.data() + their_displ * e, at(from, my),
                     "all_to_allv block");
      }
      break;
    }
    case Kind::ring: {
      Bytes in = pattern(s, s.count, me), recv(s.count * e + 1, 0xee);
      using P2P = Communicator::PointToPoint;
      const int next = (me + 1) % kWorld, prev = (me + kWorld - 1) % kWorld;
      const P2P ops[] = {{P2P::Kind::recv, recv.data(), s.count, s.dtype, prev},
                         {P2P::Kind::send, in.data(), s.count, s.dtype, next}};
      comm.batch(ops);
      expect_equal(s, call, recv.data(), pattern(s, s.count, prev).data(), s.count, "ring receive");
      break;
    }
    case Kind::barrier:
      comm.barrier();
      break;
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
    options.chunk_bytes = 4096;  // small staging slots: even these sizes take several rounds
    options.timeout = std::chrono::seconds(60);
    auto comm = Communicator::create(rank, kWorld, job, options);
    std::mt19937_64 shared(0x5eed50a6);  // the same sequence on every rank
    for (std::size_t call = 1; call <= calls; ++call) {
      run_one(comm, draw(shared), call);
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
  ASSERT_TRUE(ranks.wait_all(static_cast<double>(calls) / 100.0 + 120)) << ranks.describe();
  for (int r = 0; r < kWorld; ++r) {
    EXPECT_TRUE(ranks.end(r).exited && ranks.end(r).exit_code == 0) << ranks.describe();
  }
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
