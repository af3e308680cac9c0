// Cases of the differential collective tests: a Spec says which call to make,
// every rank derives the same Specs (from a seed, or from a generator seeded
// alike), and run_case makes the call on one rank and checks its result
// against the serial reference built from regenerated inputs. Used by the
// single-node suite, the MPI suite and the soak test; what differs between
// them (the order in which the reference folds, extra checks of an all_reduce
// result) is a CaseChecks parameter. A failed check throws std::runtime_error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "reference.hpp"
#include "tpcomm/tpcomm.hpp"

namespace tpcomm::collective_cases {

using Bytes = std::vector<unsigned char>;

inline constexpr DataType kDataTypes[] = {DataType::f32, DataType::f64, DataType::f16, DataType::bf16,
                                          DataType::i8,  DataType::u8,  DataType::i32, DataType::i64};

// The staging chunk of the suites' communicators: small, so that modest sizes
// already take several rounds.
inline constexpr std::size_t kChunkBytes = 4096;

enum class Kind { reduce_scatter, reduce_scatterv, all_gather, all_gatherv, broadcast, reduce, gather, scatter,
                  all_to_all, all_to_allv, send_recv_ring, barrier, all_reduce };
inline constexpr Kind kKinds[] = {Kind::reduce_scatter, Kind::reduce_scatterv, Kind::all_gather, Kind::all_gatherv,
                                  Kind::broadcast,      Kind::reduce,          Kind::gather,     Kind::scatter,
                                  Kind::all_to_all,     Kind::all_to_allv,     Kind::send_recv_ring, Kind::barrier,
                                  Kind::all_reduce};

inline const char* kind_name(Kind k) {
  static const char* names[] = {"reduce_scatter", "reduce_scatterv", "all_gather", "all_gatherv", "broadcast",
                                "reduce", "gather", "scatter", "all_to_all", "all_to_allv", "sendrecv", "barrier",
                                "all_reduce"};
  return names[static_cast<int>(k)];
}

inline bool rooted(Kind k) {
  return k == Kind::broadcast || k == Kind::reduce || k == Kind::gather || k == Kind::scatter;
}
inline bool reduces(Kind k) {
  return k == Kind::reduce_scatter || k == Kind::reduce_scatterv || k == Kind::reduce || k == Kind::all_reduce;
}
// all_to_allv and the send/recv ring have no in-place form.
inline bool has_in_place_form(Kind k) { return k != Kind::all_to_allv && k != Kind::send_recv_ring; }

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

inline std::string describe(const Spec& s) {
  std::ostringstream text;  // not operator+ chains: GCC 12 warns falsely (-Wrestrict) on them
  text << kind_name(s.kind) << " " << dtype_name(s.dtype) << " " << redop_name(s.op) << " count " << s.count
       << " root " << s.root << (s.in_place ? " in-place" : "");
  return text.str();
}

// Rank `rank`'s input: `count` elements of the reference pattern, and one spare byte.
inline Bytes pattern(DataType dt, std::size_t count, int rank, std::uint64_t seed) {
  Bytes b(count * dtype_size(dt) + 1);
  reference::fill_pattern(dt, b.data(), count, rank, seed);
  return b;
}

inline std::size_t sum(const std::vector<std::size_t>& v, std::size_t begin, std::size_t end) {
  return std::accumulate(v.begin() + static_cast<long>(begin), v.begin() + static_cast<long>(end), std::size_t{0});
}

inline std::vector<std::size_t> uneven_counts(std::mt19937_64& random, std::size_t entries, std::size_t largest) {
  std::vector<std::size_t> counts(entries);
  for (auto& c : counts) c = (random() % 4 == 0) ? 0 : random() % (largest + 1);
  return counts;
}

// A Spec whose v counts (some of them zero) are drawn from its seed.
inline Spec make_spec(Kind kind, DataType dt, ReduceOp op, std::size_t count, int root, bool in_place,
                      std::uint64_t seed, int world) {
  Spec s{kind, dt, op, count, root, in_place, seed, {}};
  std::mt19937_64 random(seed);
  const auto un = static_cast<std::size_t>(world);
  if (kind == Kind::reduce_scatterv || kind == Kind::all_gatherv) s.counts = uneven_counts(random, un, count);
  if (kind == Kind::all_to_allv) s.counts = uneven_counts(random, un * un, count);
  return s;
}

// The matrix, in a fixed order with seeds counting up from 7: every dtype;
// sizes 0, 1, odd and around a chunk; for reducing kinds every op on one dtype
// per family (bf16, i32, f64; sum and avg on f16 for all_reduce), sum
// elsewhere; the last rank and a middle one as roots; in-place and
// out-of-place where the call has both forms.
struct MatrixScope {
  std::vector<Kind> kinds;
  // Run kinds without a root once per root too (with other seeds), rather
  // than once with root 0.
  bool every_root_for_every_kind = false;
};

template <class Run>
void for_each_matrix_spec(int world, const MatrixScope& scope, Run run) {
  std::uint64_t seed = 7;
  const std::vector<int> roots = world == 1 ? std::vector<int>{0} : std::vector<int>{world - 1, world / 2};
  for (Kind kind : scope.kinds) {
    for (DataType dt : kDataTypes) {
      const std::size_t per_chunk = kChunkBytes / dtype_size(dt);
      const std::vector<std::size_t> counts{0, 1, 7, 63, per_chunk / 3 + 1, per_chunk + 1, 9 * per_chunk + 5};
      std::vector<ReduceOp> ops{ReduceOp::sum};
      if (reduces(kind) && (dt == DataType::bf16 || dt == DataType::i32 || dt == DataType::f64)) {
        ops = {ReduceOp::sum, ReduceOp::prod, ReduceOp::min, ReduceOp::max};
        if (reference::is_float(dt)) ops.push_back(ReduceOp::avg);
      }
      if (kind == Kind::all_reduce && dt == DataType::f16) ops = {ReduceOp::sum, ReduceOp::avg};
      for (ReduceOp op : ops) {
        for (int root : rooted(kind) || scope.every_root_for_every_kind ? roots : std::vector<int>{0}) {
          for (bool in_place : {false, true}) {
            if (in_place && !has_in_place_form(kind)) continue;
            for (std::size_t count : counts) run(make_spec(kind, dt, op, count, root, in_place, ++seed, world));
          }
        }
      }
    }
  }
}

// The next call of a random mix of every kind (dtype, op, size including 0,
// root, in-place or not), drawn from `shared`, which every rank seeds alike.
inline Spec random_spec(std::mt19937_64& shared, int world) {
  const Kind kind = kKinds[shared() % std::size(kKinds)];
  const DataType dt = kDataTypes[shared() % std::size(kDataTypes)];
  ReduceOp op = static_cast<ReduceOp>(shared() % 5);
  if (op == ReduceOp::avg && !reference::is_float(dt)) op = ReduceOp::max;
  const std::size_t sizes[] = {0, 1, 5, 100, 1000, 3000};
  const std::size_t count = sizes[shared() % std::size(sizes)];
  const int root = static_cast<int>(shared() % static_cast<std::uint64_t>(world));
  bool in_place = shared() % 2 == 0;
  if (!has_in_place_form(kind)) in_place = false;
  return make_spec(kind, dt, op, count, root, in_place, shared(), world);
}

// What a suite checks beyond the plain comparison with the reference.
struct CaseChecks {
  // Folds the ranks' inputs (one per rank, in rank order) into the expected
  // reduction: in rank order (reference::reduce) unless the suite's layout
  // folds in another order.
  std::function<void(DataType, ReduceOp, const std::vector<const void*>& inputs, void* out, std::size_t count)> fold =
      reference::reduce;
  // If set, also run on this rank's all_reduce result.
  std::function<void(const Spec& s, const unsigned char* result, std::size_t bytes)> all_reduce_result;
};

// The expected reduction of `count` elements of every rank's pattern.
inline Bytes folded(const Spec& s, int world, std::size_t count, const CaseChecks& checks) {
  std::vector<Bytes> inputs;
  std::vector<const void*> pointers;
  for (int r = 0; r < world; ++r) inputs.push_back(pattern(s.dtype, count, r, s.seed));
  for (auto& in : inputs) pointers.push_back(in.data());
  Bytes out(count * dtype_size(s.dtype) + 1);
  checks.fold(s.dtype, s.op, pointers, out.data(), count);
  return out;
}

inline void expect_equal(const Spec& s, const unsigned char* got, const unsigned char* want, std::size_t count,
                         const std::string& what) {
  const std::size_t wrong = reference::count_mismatches(s.dtype, got, want, count);
  if (wrong == 0) return;
  std::ostringstream text;
  text << describe(s) << ": " << what << ": " << wrong << " wrong elements";
  throw std::runtime_error(text.str());
}

// Runs one Spec on this rank and checks the result against the reference.
inline void run_case(Communicator& comm, const Spec& s, const CaseChecks& checks = {}) {
  const int n = comm.world_size();
  const int me = comm.rank();
  const auto un = static_cast<std::size_t>(n);
  const auto ume = static_cast<std::size_t>(me);
  const std::size_t e = dtype_size(s.dtype);
  switch (s.kind) {
    case Kind::all_reduce: {
      Bytes buf = pattern(s.dtype, s.count, me, s.seed), out(buf.size());
      unsigned char* result = s.in_place ? buf.data() : out.data();
      comm.all_reduce(buf.data(), result, s.count, s.dtype, s.op);
      expect_equal(s, result, folded(s, n, s.count, checks).data(), s.count, "result");
      if (checks.all_reduce_result) checks.all_reduce_result(s, result, s.count * e);
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
      const Bytes full = folded(s, n, total, checks);
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
      if (me == s.root) expect_equal(s, recv, folded(s, n, s.count, checks).data(), s.count, "reduced value");
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
      // Neighbours in rank order: with several nodes some hops stay on a
      // node (shared memory) and some cross nodes, in one batch.
      Bytes send = pattern(s.dtype, s.count, me, s.seed), recv(s.count * e + 1, 0xee);
      using Op = Communicator::PointToPoint;
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

}  // namespace tpcomm::collective_cases
