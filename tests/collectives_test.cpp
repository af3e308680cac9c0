// Differential tests for every collective against serial references built
// from regenerated inputs: dtypes, ops, roots other than 0, uneven v counts
// with zeros, in-place and out-of-place, non-power-of-two world sizes, chunking
// past the staging area; plus a randomised sequence of mixed collectives.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "multiprocess.hpp"
#include "reference.hpp"
#include "tpcomm/tpcomm.hpp"

namespace {

using tpcomm::DataType;
using tpcomm::ReduceOp;
using tpcomm::testing::check;
namespace ref = tpcomm::reference;
using Bytes = std::vector<unsigned char>;

constexpr DataType kDataTypes[] = {DataType::f32, DataType::f64, DataType::f16, DataType::bf16,
                                   DataType::i8,  DataType::u8,  DataType::i32, DataType::i64};
constexpr std::size_t kChunkBytes = 4096;

enum class Kind { reduce_scatter, reduce_scatterv, all_gather, all_gatherv, broadcast, reduce, gather, scatter,
                  all_to_all, all_to_allv, send_recv_ring, barrier, all_reduce };
constexpr Kind kKinds[] = {Kind::reduce_scatter, Kind::reduce_scatterv, Kind::all_gather, Kind::all_gatherv,
                           Kind::broadcast,      Kind::reduce,          Kind::gather,     Kind::scatter,
                           Kind::all_to_all,     Kind::all_to_allv,     Kind::send_recv_ring, Kind::barrier,
                           Kind::all_reduce};

const char* kind_name(Kind k) {
  static const char* names[] = {"reduce_scatter", "reduce_scatterv", "all_gather", "all_gatherv", "broadcast",
                                "reduce", "gather", "scatter", "all_to_all", "all_to_allv", "sendrecv", "barrier",
                                "all_reduce"};
  return names[static_cast<int>(k)];
}

// Everything that defines one call; every rank derives the same Spec from a seed.
struct Spec {
  Kind kind;
  DataType dtype;
  ReduceOp op;
  std::size_t count;
  int root;
  bool in_place;
  std::uint64_t seed;
  std::vector<std::size_t> counts;  // v forms: per-rank counts; all_to_allv: the n x n matrix row-major
};

Bytes pattern(DataType dt, std::size_t count, int rank, std::uint64_t seed) {
  Bytes b(count * tpcomm::dtype_size(dt) + 1);
  ref::fill_pattern(dt, b.data(), count, rank, seed);
  return b;
}

Bytes fold(const Spec& s, int world, std::size_t count) {
  std::vector<Bytes> inputs;
  std::vector<const void*> pointers;
  for (int r = 0; r < world; ++r) inputs.push_back(pattern(s.dtype, count, r, s.seed));
  for (auto& in : inputs) pointers.push_back(in.data());
  Bytes out(count * tpcomm::dtype_size(s.dtype) + 1);
  ref::reduce(s.dtype, s.op, pointers, out.data(), count);
  return out;
}

void expect_equal(const Spec& s, const unsigned char* got, const unsigned char* want, std::size_t count,
                  const std::string& what) {
  const std::size_t wrong = ref::count_mismatches(s.dtype, got, want, count);
  check(wrong == 0, std::string(kind_name(s.kind)) + " " + std::string(tpcomm::dtype_name(s.dtype)) + " " +
                        std::string(tpcomm::redop_name(s.op)) + " count " + std::to_string(s.count) + " root " +
                        std::to_string(s.root) + (s.in_place ? " in-place" : "") + ": " + what + ": " +
                        std::to_string(wrong) + " wrong elements");
}

std::size_t sum(const std::vector<std::size_t>& v, std::size_t begin, std::size_t end) {
  return std::accumulate(v.begin() + static_cast<long>(begin), v.begin() + static_cast<long>(end), std::size_t{0});
}

// Runs one Spec on this rank and checks the result against the reference.
void run_one(tpcomm::Communicator& comm, const Spec& s) {
  const int n = comm.world_size();
  const int me = comm.rank();
  const auto un = static_cast<std::size_t>(n);
  const auto ume = static_cast<std::size_t>(me);
  const std::size_t e = tpcomm::dtype_size(s.dtype);
  switch (s.kind) {
    case Kind::all_reduce: {
      Bytes buf = pattern(s.dtype, s.count, me, s.seed), out(buf.size());
      comm.all_reduce(buf.data(), s.in_place ? buf.data() : out.data(), s.count, s.dtype, s.op);
      expect_equal(s, s.in_place ? buf.data() : out.data(), fold(s, n, s.count).data(), s.count, "result");
      break;
    }
    case Kind::reduce_scatter:
    case Kind::reduce_scatterv: {
      const bool v = s.kind == Kind::reduce_scatterv;
      const std::vector<std::size_t> counts = v ? s.counts : std::vector<std::size_t>(un, s.count);
      const std::size_t total = sum(counts, 0, un), offset = sum(counts, 0, ume), mine = counts[ume];
      Bytes send = pattern(s.dtype, total, me, s.seed), out(mine * e + 1);
      unsigned char* recv = s.in_place ? send.data() + offset * e : out.data();
      if (v) comm.reduce_scatterv(send.data(), recv, counts, s.dtype, s.op);
      else comm.reduce_scatter(send.data(), recv, s.count, s.dtype, s.op);
      const Bytes full = fold(s, n, total);
      expect_equal(s, recv, full.data() + offset * e, mine, "my block");
      break;
    }
    case Kind::all_gather:
    case Kind::all_gatherv: {
      const bool v = s.kind == Kind::all_gatherv;
      const std::vector<std::size_t> counts = v ? s.counts : std::vector<std::size_t>(un, s.count);
      const std::size_t total = sum(counts, 0, un), offset = sum(counts, 0, ume);
      Bytes recv(total * e + 1, 0xee);
      Bytes own = pattern(s.dtype, counts[ume], me, s.seed);
      const unsigned char* send = own.data();
      if (s.in_place) {
        std::memcpy(recv.data() + offset * e, own.data(), counts[ume] * e);
        send = recv.data() + offset * e;
      }
      if (v) comm.all_gatherv(send, recv.data(), counts, s.dtype);
      else comm.all_gather(send, recv.data(), s.count, s.dtype);
      for (int r = 0; r < n; ++r) {
        const Bytes want = pattern(s.dtype, counts[static_cast<std::size_t>(r)], r, s.seed);
        expect_equal(s, recv.data() + sum(counts, 0, static_cast<std::size_t>(r)) * e, want.data(),
                     counts[static_cast<std::size_t>(r)], "block of rank " + std::to_string(r));
      }
      break;
    }
    case Kind::broadcast: {
      Bytes send = pattern(s.dtype, s.count, me, s.seed), out(s.count * e + 1, 0xee);
      unsigned char* recv = (s.in_place || me != s.root) ? (me == s.root ? send.data() : out.data()) : out.data();
      comm.broadcast(me == s.root ? send.data() : nullptr, recv, s.count, s.dtype, s.root);
      expect_equal(s, recv, pattern(s.dtype, s.count, s.root, s.seed).data(), s.count, "broadcast value");
      break;
    }
    case Kind::reduce: {
      Bytes send = pattern(s.dtype, s.count, me, s.seed), out(s.count * e + 1, 0xee);
      unsigned char* recv = me == s.root ? (s.in_place ? send.data() : out.data()) : nullptr;
      comm.reduce(send.data(), recv, s.count, s.dtype, s.op, s.root);
      if (me == s.root) expect_equal(s, recv, fold(s, n, s.count).data(), s.count, "reduced value");
      break;
    }
    case Kind::gather: {
      Bytes recv(me == s.root ? un * s.count * e + 1 : 1, 0xee);
      Bytes own = pattern(s.dtype, s.count, me, s.seed);
      const unsigned char* send = own.data();
      if (s.in_place && me == s.root) {
        std::memcpy(recv.data() + ume * s.count * e, own.data(), s.count * e);
        send = recv.data() + ume * s.count * e;
      }
      comm.gather(send, me == s.root ? recv.data() : nullptr, s.count, s.dtype, s.root);
      if (me == s.root) {
        for (int r = 0; r < n; ++r) {
          expect_equal(s, recv.data() + static_cast<std::size_t>(r) * s.count * e,
                       pattern(s.dtype, s.count, r, s.seed).data(), s.count, "gathered block " + std::to_string(r));
        }
      }
      break;
    }
    case Kind::scatter: {
      Bytes send = pattern(s.dtype, un * s.count, s.root, s.seed), out(s.count * e + 1, 0xee);
      unsigned char* recv = (me == s.root && s.in_place) ? send.data() + ume * s.count * e : out.data();
      comm.scatter(me == s.root ? send.data() : nullptr, recv, s.count, s.dtype, s.root);
      const Bytes whole = pattern(s.dtype, un * s.count, s.root, s.seed);
      expect_equal(s, recv, whole.data() + ume * s.count * e, s.count, "scattered block");
      break;
    }
    case Kind::all_to_all: {
      Bytes send = pattern(s.dtype, un * s.count, me, s.seed), out(un * s.count * e + 1, 0xee);
      unsigned char* recv = s.in_place ? send.data() : out.data();
      comm.all_to_all(send.data(), recv, s.count, s.dtype);
      for (int r = 0; r < n; ++r) {
        const Bytes theirs = pattern(s.dtype, un * s.count, r, s.seed);
        expect_equal(s, recv + static_cast<std::size_t>(r) * s.count * e, theirs.data() + ume * s.count * e, s.count,
                     "block from rank " + std::to_string(r));
      }
      break;
    }
    case Kind::all_to_allv: {
      // counts[s * n + d]: elements rank s sends to rank d. Blocks are packed in
      // destination order with a one-element gap, so displacements matter.
      auto at = [&](std::size_t src, std::size_t dst) { return s.counts[src * un + dst]; };
      std::vector<std::size_t> send_counts(un), send_displs(un), recv_counts(un), recv_displs(un);
      std::size_t send_total = 0, recv_total = 0;
      for (std::size_t d = 0; d < un; ++d) {
        send_counts[d] = at(ume, d);
        send_displs[d] = send_total;
        send_total += send_counts[d] + 1;
        recv_counts[d] = at(d, ume);
        recv_displs[d] = recv_total;
        recv_total += recv_counts[d] + 1;
      }
      Bytes send = pattern(s.dtype, send_total, me, s.seed), recv(recv_total * e + 1, 0xee);
      comm.all_to_allv(send.data(), send_counts, send_displs, recv.data(), recv_counts, recv_displs, s.dtype);
      for (std::size_t src = 0; src < un; ++src) {
        // Where src's block for me started in src's send buffer.
        std::size_t their_displ = 0;
        for (std::size_t d = 0; d < ume; ++d) their_displ += at(src, d) + 1;
        const Bytes theirs = pattern(s.dtype, their_displ + at(src, ume), static_cast<int>(src), s.seed);
        expect_equal(s, recv.data() + recv_displs[src] * e, theirs.data() + their_displ * e, at(src, ume),
                     "block from rank " + std::to_string(src));
      }
      break;
    }
    case Kind::send_recv_ring: {
      if (n == 1) break;
      Bytes send = pattern(s.dtype, s.count, me, s.seed), recv(s.count * e + 1, 0xee);
      using Op = tpcomm::Communicator::PointToPoint;
      const int next = (me + 1) % n, prev = (me + n - 1) % n;
      const Op ops[] = {{Op::Kind::recv, recv.data(), s.count, s.dtype, prev},
                        {Op::Kind::send, send.data(), s.count, s.dtype, next}};
      comm.batch(ops);
      expect_equal(s, recv.data(), pattern(s.dtype, s.count, prev, s.seed).data(), s.count, "ring receive");
      break;
    }
    case Kind::barrier:
      comm.barrier();
      break;
  }
}

std::vector<std::size_t> uneven_counts(std::mt19937_64& random, std::size_t entries, std::size_t largest) {
  std::vector<std::size_t> counts(entries);
  for (auto& c : counts) c = (random() % 4 == 0) ? 0 : random() % (largest + 1);
  return counts;
}

Spec make_spec(Kind kind, DataType dt, ReduceOp op, std::size_t count, int root, bool in_place, std::uint64_t seed,
               int world) {
  Spec s{kind, dt, op, count, root, in_place, seed, {}};
  std::mt19937_64 random(seed);
  const auto un = static_cast<std::size_t>(world);
  if (kind == Kind::reduce_scatterv || kind == Kind::all_gatherv) s.counts = uneven_counts(random, un, count);
  if (kind == Kind::all_to_allv) s.counts = uneven_counts(random, un * un, count);
  return s;
}

bool reduces(Kind k) { return k == Kind::reduce_scatter || k == Kind::reduce_scatterv || k == Kind::reduce || k == Kind::all_reduce; }

void run_matrix(int rank, int world, const std::string& job) {
  tpcomm::CommOptions options;
  options.chunk_bytes = kChunkBytes;
  options.timeout = std::chrono::seconds(60);
  auto comm = tpcomm::Communicator::create(rank, world, job, options);
  std::uint64_t seed = 7;
  const std::vector<int> roots = world == 1 ? std::vector<int>{0} : std::vector<int>{world - 1, world / 2};
  for (Kind kind : kKinds) {
    if (kind == Kind::all_reduce || kind == Kind::barrier) continue;  // covered by all_reduce_test
    for (DataType dt : kDataTypes) {
      const std::size_t per_chunk = kChunkBytes / tpcomm::dtype_size(dt);
      const std::vector<std::size_t> counts{0, 1, 7, 63, per_chunk / 3 + 1, per_chunk + 1, 9 * per_chunk + 5};
      // Every op for reducing collectives with one dtype per family; sum elsewhere.
      std::vector<ReduceOp> ops{ReduceOp::sum};
      if (reduces(kind) && (dt == DataType::bf16 || dt == DataType::i32 || dt == DataType::f64)) {
        ops = {ReduceOp::sum, ReduceOp::prod, ReduceOp::min, ReduceOp::max};
        if (ref::is_float(dt)) ops.push_back(ReduceOp::avg);
      }
      for (ReduceOp op : ops) {
        for (int root : roots) {
          for (bool in_place : {false, true}) {
            if (kind == Kind::all_to_allv || kind == Kind::send_recv_ring) {
              if (in_place) continue;
            }
            for (std::size_t count : counts) {
              run_one(comm, make_spec(kind, dt, op, count, root, in_place, ++seed, world));
            }
          }
        }
      }
    }
  }
}

class CollectiveMatrix : public ::testing::TestWithParam<int> {};

TEST_P(CollectiveMatrix, EveryCollectiveMatchesTheSerialReference) {
  const int world = GetParam();
  const std::string job = tpcomm::testing::unique_job_id("coll");
  const auto outcomes = tpcomm::testing::run_ranks(world, [&](int rank) { run_matrix(rank, world, job); }, 900);
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

INSTANTIATE_TEST_SUITE_P(WorldSizes, CollectiveMatrix, ::testing::Values(1, 2, 3, 4, 5, 8),
                         [](const auto& test_info) { return "world" + std::to_string(test_info.param); });

// A few thousand mixed collectives in random order (kind, dtype, size including
// 0, root, in-place or not), agreed through a shared seed, every result checked:
// collectives of different kinds must never disturb one another.
TEST(CollectiveSequence, RandomMixOfThousandsOfCallsOnFourRanks) {
  const std::string job = tpcomm::testing::unique_job_id("mix");
  constexpr int kWorld = 4;
  const auto outcomes = tpcomm::testing::run_ranks(kWorld, [&](int rank) {
    tpcomm::CommOptions options;
    options.chunk_bytes = kChunkBytes;
    auto comm = tpcomm::Communicator::create(rank, kWorld, job, options);
    std::mt19937_64 shared(20261128);  // identical on every rank
    for (int i = 0; i < 3000; ++i) {
      const Kind kind = kKinds[shared() % std::size(kKinds)];
      const DataType dt = kDataTypes[shared() % std::size(kDataTypes)];
      ReduceOp op = static_cast<ReduceOp>(shared() % 5);
      if (op == ReduceOp::avg && !ref::is_float(dt)) op = ReduceOp::max;
      const std::size_t sizes[] = {0, 1, 5, 100, 1000, 3000};
      const std::size_t count = sizes[shared() % std::size(sizes)];
      const int root = static_cast<int>(shared() % kWorld);
      bool in_place = shared() % 2 == 0;
      if (kind == Kind::all_to_allv || kind == Kind::send_recv_ring) in_place = false;
      run_one(comm, make_spec(kind, dt, op, count, root, in_place, shared(), kWorld));
    }
  }, 900);
  EXPECT_TRUE(tpcomm::testing::all_ok(outcomes)) << tpcomm::testing::describe(outcomes);
}

}  // namespace
