// Differential tests of every collective on a communicator made from MPI
// (several emulated nodes, or one), against serial references built from
// regenerated inputs: every dtype, every op for one dtype per family, roots on
// and off a node's first rank, uneven v counts with zeros, in-place and
// out-of-place, sizes that cross the staging chunks and the MPI pieces. The
// reductions follow the multi-node order (hierarchical_reference.hpp) and
// all_reduce results are compared bitwise across ranks.
//
//   tpcomm_mpi_collectives matrix|mix [from_mpi|member|from_env]
// Run under mpirun, normally through emulate-nodes.sh.
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "hierarchical_reference.hpp"
#include "mpi_test_support.hpp"
#include "reference.hpp"
#include "tpcomm/mpi.hpp"

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

bool rooted(Kind k) { return k == Kind::broadcast || k == Kind::reduce || k == Kind::gather || k == Kind::scatter; }
bool reduces(Kind k) {
  return k == Kind::reduce_scatter || k == Kind::reduce_scatterv || k == Kind::reduce || k == Kind::all_reduce;
}

// Everything that defines one call; every rank derives the same Spec.
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

std::string describe(const Spec& s) {
  return std::string(kind_name(s.kind)) + " " + std::string(tpcomm::dtype_name(s.dtype)) + " " +
         std::string(tpcomm::redop_name(s.op)) + " count " + std::to_string(s.count) + " root " +
         std::to_string(s.root) + (s.in_place ? " in-place" : "");
}

Bytes pattern(DataType dt, std::size_t count, int rank, std::uint64_t seed) {
  Bytes b(count * tpcomm::dtype_size(dt) + 1);
  ref::fill_pattern(dt, b.data(), count, rank, seed);
  return b;
}

struct Context {
  tpcomm::Communicator& comm;
  std::vector<std::vector<int>> nodes;
};

Bytes fold(const Context& c, const Spec& s, std::size_t count) {
  const int world = c.comm.world_size();
  std::vector<Bytes> inputs;
  std::vector<const void*> pointers;
  for (int r = 0; r < world; ++r) inputs.push_back(pattern(s.dtype, count, r, s.seed));
  for (auto& in : inputs) pointers.push_back(in.data());
  Bytes out(count * tpcomm::dtype_size(s.dtype) + 1);
  ref::hierarchical_reduce(s.dtype, s.op, pointers, c.nodes, out.data(), count);
  return out;
}

void expect_equal(const Spec& s, const unsigned char* got, const unsigned char* want, std::size_t count,
                  const std::string& what) {
  const std::size_t wrong = ref::count_mismatches(s.dtype, got, want, count);
  check(wrong == 0, describe(s) + ": " + what + ": " + std::to_string(wrong) + " wrong elements");
}

// Every rank holds bitwise the same bytes (checked with MPI, not tpcomm).
void expect_same_on_every_rank(const Spec& s, const unsigned char* data, std::size_t bytes) {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < bytes; ++i) hash = (hash ^ data[i]) * 0x100000001b3ull;
  const std::int64_t h = static_cast<std::int64_t>(hash >> 1);
  std::int64_t mine[2] = {h, -h}, lowest[2] = {0, 0};
  MPI_Allreduce(mine, lowest, 2, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD);
  check(lowest[0] == -lowest[1], describe(s) + ": ranks received different bytes");
}

std::size_t sum(const std::vector<std::size_t>& v, std::size_t begin, std::size_t end) {
  return std::accumulate(v.begin() + static_cast<long>(begin), v.begin() + static_cast<long>(end), std::size_t{0});
}

// Runs one Spec on this rank and checks the result against the reference.
void run_one(Context& c, const Spec& s) {
  tpcomm::Communicator& comm = c.comm;
  const int n = comm.world_size();
  const int me = comm.rank();
  const auto un = static_cast<std::size_t>(n);
  const auto ume = static_cast<std::size_t>(me);
  const std::size_t e = tpcomm::dtype_size(s.dtype);
  switch (s.kind) {
    case Kind::all_reduce: {
      Bytes buf = pattern(s.dtype, s.count, me, s.seed), out(buf.size());
      unsigned char* result = s.in_place ? buf.data() : out.data();
      comm.all_reduce(buf.data(), result, s.count, s.dtype, s.op);
      expect_equal(s, result, fold(c, s, s.count).data(), s.count, "result");
      expect_same_on_every_rank(s, result, s.count * e);
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
      const Bytes full = fold(c, s, total);
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
      unsigned char* recv = (me == s.root && s.in_place) ? send.data() : out.data();
      comm.broadcast(me == s.root ? send.data() : nullptr, recv, s.count, s.dtype, s.root);
      expect_equal(s, recv, pattern(s.dtype, s.count, s.root, s.seed).data(), s.count, "broadcast value");
      break;
    }
    case Kind::reduce: {
      Bytes send = pattern(s.dtype, s.count, me, s.seed), out(s.count * e + 1, 0xee);
      unsigned char* recv = me == s.root ? (s.in_place ? send.data() : out.data()) : nullptr;
      comm.reduce(send.data(), recv, s.count, s.dtype, s.op, s.root);
      if (me == s.root) expect_equal(s, recv, fold(c, s, s.count).data(), s.count, "reduced value");
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
      // counts[s * n + d]: elements rank s sends to rank d, packed in
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
      // Neighbours in rank order: with emulated nodes some hops stay on a
      // node (shared memory) and some cross nodes (MPI), in one batch.
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

struct Tally {
  long long checks = 0;
  long long failures = 0;
};

// Data mismatches are reported and counted; a tpcomm::Error means the ranks
// may be out of step, so it ends the job.
void run_checked(Context& c, const Spec& s, Tally& tally) {
  ++tally.checks;
  try {
    run_one(c, s);
  } catch (const tpcomm::Error& error) {
    std::fprintf(stderr, "[rank %d] %s: tpcomm error: %s\n", c.comm.rank(), describe(s).c_str(), error.what());
    MPI_Abort(MPI_COMM_WORLD, 3);
  } catch (const std::exception& error) {
    ++tally.failures;
    std::fprintf(stderr, "[rank %d] %s\n", c.comm.rank(), error.what());
  }
}

void run_matrix(Context& c, Tally& tally) {
  const int world = c.comm.world_size();
  std::uint64_t seed = 7;
  // The last rank (alone on its node in 3 + 1) and a middle rank that does not
  // lead its node when nodes have two or more ranks.
  const std::vector<int> roots = world == 1 ? std::vector<int>{0} : std::vector<int>{world - 1, world / 2};
  for (Kind kind : kKinds) {
    if (kind == Kind::barrier) continue;
    for (DataType dt : kDataTypes) {
      const std::size_t per_chunk = kChunkBytes / tpcomm::dtype_size(dt);
      const std::vector<std::size_t> counts{0, 1, 7, 63, per_chunk / 3 + 1, per_chunk + 1, 9 * per_chunk + 5};
      std::vector<ReduceOp> ops{ReduceOp::sum};
      if (reduces(kind) && (dt == DataType::bf16 || dt == DataType::i32 || dt == DataType::f64)) {
        ops = {ReduceOp::sum, ReduceOp::prod, ReduceOp::min, ReduceOp::max};
        if (ref::is_float(dt)) ops.push_back(ReduceOp::avg);
      }
      if (kind == Kind::all_reduce && dt == DataType::f16) ops = {ReduceOp::sum, ReduceOp::avg};
      for (ReduceOp op : ops) {
        for (int root : rooted(kind) ? roots : std::vector<int>{0}) {
          for (bool in_place : {false, true}) {
            if (in_place && (kind == Kind::all_to_allv || kind == Kind::send_recv_ring)) continue;
            for (std::size_t count : counts) {
              run_checked(c, make_spec(kind, dt, op, count, root, in_place, ++seed, world), tally);
            }
          }
        }
      }
    }
  }
}

// Mixed collectives in random order (kind, dtype, size including 0, root,
// in-place or not), agreed through a shared seed: collectives of different
// kinds must never disturb one another.
void run_mix(Context& c, Tally& tally) {
  const int world = c.comm.world_size();
  std::mt19937_64 shared(20261128);
  for (int i = 0; i < 600; ++i) {
    const Kind kind = kKinds[shared() % std::size(kKinds)];
    const DataType dt = kDataTypes[shared() % std::size(kDataTypes)];
    ReduceOp op = static_cast<ReduceOp>(shared() % 5);
    if (op == ReduceOp::avg && !ref::is_float(dt)) op = ReduceOp::max;
    const std::size_t sizes[] = {0, 1, 5, 100, 1000, 3000};
    const std::size_t count = sizes[shared() % std::size(sizes)];
    const int root = static_cast<int>(shared() % static_cast<std::uint64_t>(world));
    bool in_place = shared() % 2 == 0;
    if (kind == Kind::all_to_allv || kind == Kind::send_recv_ring) in_place = false;
    run_checked(c, make_spec(kind, dt, op, count, root, in_place, shared(), world), tally);
  }
}

// Inputs whose sums and products depend on the order of the fold: signed
// values (1 + m/8) * 2^e with exponents far apart (narrower for f16, whose
// range is small, and for products, which must stay finite).
void fill_order_sensitive(DataType dt, void* buf, std::size_t count, int rank, std::uint64_t seed, ReduceOp op) {
  const int spread = op == ReduceOp::prod ? 2 : dt == DataType::f16 ? 6 : dt == DataType::f64 ? 40 : 20;
  for (std::size_t i = 0; i < count; ++i) {
    std::uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull ^ (static_cast<std::uint64_t>(rank) + 1) * 0xC2B2AE3D27D4EB4Full ^
                      seed * 0x165667B19E3779F9ull;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    const int exponent = static_cast<int>(h % static_cast<std::uint64_t>(2 * spread + 1)) - spread;
    const double magnitude = std::ldexp(1.0 + static_cast<double>((h >> 16) % 8) / 8.0, exponent);
    const double value = (h >> 24) & 1 ? -magnitude : magnitude;
    switch (dt) {
      case DataType::f32: static_cast<float*>(buf)[i] = static_cast<float>(value); break;
      case DataType::f64: static_cast<double*>(buf)[i] = value; break;
      case DataType::f16: static_cast<std::uint16_t*>(buf)[i] = ref::float_to_half(static_cast<float>(value)); break;
      case DataType::bf16: static_cast<std::uint16_t*>(buf)[i] = ref::float_to_bf16(static_cast<float>(value)); break;
      default: break;
    }
  }
}

// The fold order is the documented one, bitwise, for the floating types; and
// these inputs do tell it apart from a flat fold in rank order whenever the
// node layout makes the two differ.
void run_order(Context& c, Tally& tally) {
  tpcomm::Communicator& comm = c.comm;
  const int n = comm.world_size();
  const int me = comm.rank();
  // A flat fold is the same expression when nodes are contiguous and every
  // node after the first has a single rank.
  bool same_as_flat = true;
  for (std::size_t k = 0, next = 0; k < c.nodes.size(); ++k) {
    for (const int r : c.nodes[k]) same_as_flat = same_as_flat && r == static_cast<int>(next++);
    if (k > 0 && c.nodes[k].size() > 1) same_as_flat = false;
  }
  const std::vector<std::vector<int>> flat{[&] {
    std::vector<int> all(static_cast<std::size_t>(n));
    std::iota(all.begin(), all.end(), 0);
    return all;
  }()};
  std::size_t differs_from_flat = 0;
  std::uint64_t seed = 1000;
  for (DataType dt : {DataType::f32, DataType::f64, DataType::f16, DataType::bf16}) {
    const std::size_t e = tpcomm::dtype_size(dt);
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg, ReduceOp::prod}) {
      for (std::size_t count : {std::size_t{1000}, 9 * kChunkBytes / e + 5}) {
        for (int variant = 0; variant < 4; ++variant) {
          ++seed;
          const Spec s{variant == 2 ? Kind::reduce : variant == 3 ? Kind::reduce_scatter : Kind::all_reduce,
                       dt, op, count, n - 1, variant == 1, seed, {}};
          ++tally.checks;
          try {
            std::vector<Bytes> inputs;
            std::vector<const void*> pointers;
            for (int r = 0; r < n; ++r) {
              inputs.emplace_back(count * e + 1);
              fill_order_sensitive(dt, inputs.back().data(), count, r, seed, op);
              pointers.push_back(inputs.back().data());
            }
            Bytes want(count * e + 1), flat_want(count * e + 1);
            ref::hierarchical_reduce(dt, op, pointers, c.nodes, want.data(), count);
            ref::hierarchical_reduce(dt, op, pointers, flat, flat_want.data(), count);
            Bytes send = inputs[static_cast<std::size_t>(me)], out(count * e + 1);
            const std::size_t block = count / static_cast<std::size_t>(n);
            switch (s.kind) {
              case Kind::all_reduce: {
                unsigned char* result = s.in_place ? send.data() : out.data();
                comm.all_reduce(send.data(), result, count, dt, op);
                expect_equal(s, result, want.data(), count, "order-sensitive result");
                expect_same_on_every_rank(s, result, count * e);
                if (dt == DataType::f32 && op == ReduceOp::sum) {
                  differs_from_flat += ref::count_mismatches(dt, want.data(), flat_want.data(), count);
                }
                break;
              }
              case Kind::reduce:
                comm.reduce(send.data(), me == s.root ? out.data() : nullptr, count, dt, op, s.root);
                if (me == s.root) expect_equal(s, out.data(), want.data(), count, "order-sensitive reduce");
                break;
              default:
                comm.reduce_scatter(send.data(), out.data(), block, dt, op);
                expect_equal(s, out.data(), want.data() + static_cast<std::size_t>(me) * block * e, block,
                             "order-sensitive block");
                break;
            }
          } catch (const tpcomm::Error& error) {
            std::fprintf(stderr, "[rank %d] %s: tpcomm error: %s\n", me, describe(s).c_str(), error.what());
            MPI_Abort(MPI_COMM_WORLD, 3);
          } catch (const std::exception& error) {
            ++tally.failures;
            std::fprintf(stderr, "[rank %d] %s\n", me, error.what());
          }
        }
      }
    }
  }
  ++tally.checks;
  if (!same_as_flat && differs_from_flat == 0) {
    ++tally.failures;
    std::fprintf(stderr, "[rank %d] order-sensitive inputs never told the node order from the flat order\n", me);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  const std::string mode = argc > 1 ? argv[1] : "matrix";
  const std::string via = argc > 2 ? argv[2] : "from_mpi";
  Tally tally;
  {
    tpcomm::CommOptions options;
    options.chunk_bytes = kChunkBytes;
    options.timeout = std::chrono::seconds(60);
    tpcomm::Communicator comm = tpcomm::testing::make_communicator(via, options);
    Context context{comm, tpcomm::testing::node_layout(MPI_COMM_WORLD)};
    // One node: the plain shared-memory communicator; several: the hierarchical one.
    const std::string algorithm(comm.all_reduce_algorithm(1 << 20));
    const bool hierarchical = algorithm.rfind("hierarchical", 0) == 0;
    ++tally.checks;
    if (hierarchical != (context.nodes.size() > 1)) {
      ++tally.failures;
      std::fprintf(stderr, "[rank %d] %zu node(s) but all_reduce algorithm '%s'\n", comm.rank(),
                   context.nodes.size(), algorithm.c_str());
    }
    int mpi_rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
    ++tally.checks;
    if (comm.rank() != mpi_rank) ++tally.failures;
    if (mode == "mix") {
      run_mix(context, tally);
    } else {
      run_matrix(context, tally);
      run_order(context, tally);
    }
  }
  const int code = tpcomm::testing::report(("mpi " + mode + " via " + via).c_str(), tally.checks, tally.failures);
  MPI_Finalize();
  return code;
}
