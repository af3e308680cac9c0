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
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "collective_cases.hpp"
#include "hierarchical_reference.hpp"
#include "mpi_test_support.hpp"
#include "reference.hpp"
#include "tpcomm/mpi.hpp"

namespace {

using namespace tpcomm::collective_cases;
using tpcomm::DataType;
using tpcomm::ReduceOp;
using tpcomm::testing::check;
namespace ref = tpcomm::reference;

struct Context {
  tpcomm::Communicator& comm;
  std::vector<std::vector<int>> nodes;
  CaseChecks checks;
};

// Every rank holds bitwise the same bytes (checked with MPI, not tpcomm).
void expect_same_on_every_rank(const Spec& s, const unsigned char* data, std::size_t bytes) {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < bytes; ++i) hash = (hash ^ data[i]) * 0x100000001b3ull;
  const std::int64_t h = static_cast<std::int64_t>(hash >> 1);
  std::int64_t mine[2] = {h, -h}, lowest[2] = {0, 0};
  MPI_Allreduce(mine, lowest, 2, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD);
  check(lowest[0] == -lowest[1], describe(s) + ": ranks received different bytes");
}

// The reference folds in the multi-node order of `nodes`, and every rank's
// all_reduce result must be the same bytes.
CaseChecks multi_node_checks(const std::vector<std::vector<int>>& nodes) {
  CaseChecks checks;
  checks.fold = [nodes](DataType dt, ReduceOp op, const std::vector<const void*>& inputs, void* out,
                        std::size_t count) { ref::hierarchical_reduce(dt, op, inputs, nodes, out, count); };
  checks.all_reduce_result = expect_same_on_every_rank;
  return checks;
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
    run_case(c.comm, s, c.checks);
  } catch (const tpcomm::Error& error) {
    std::fprintf(stderr, "[rank %d] %s: tpcomm error: %s\n", c.comm.rank(), describe(s).c_str(), error.what());
    MPI_Abort(MPI_COMM_WORLD, 3);
  } catch (const std::exception& error) {
    ++tally.failures;
    std::fprintf(stderr, "[rank %d] %s\n", c.comm.rank(), error.what());
  }
}

// The matrix's roots are the last rank (alone on its node in 3 + 1) and a
// middle rank that does not lead its node when nodes have two or more ranks.
void run_matrix(Context& c, Tally& tally) {
  MatrixScope scope;
  for (Kind kind : kKinds) {
    if (kind != Kind::barrier) scope.kinds.push_back(kind);
  }
  for_each_matrix_spec(c.comm.world_size(), scope, [&](const Spec& spec) { run_checked(c, spec, tally); });
}

// Mixed collectives in random order (kind, dtype, size including 0, root,
// in-place or not), agreed through a shared seed: collectives of different
// kinds must never disturb one another.
void run_mix(Context& c, Tally& tally) {
  std::mt19937_64 shared(20261128);
  for (int i = 0; i < 600; ++i) run_checked(c, random_spec(shared, c.comm.world_size()), tally);
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
    Context context{comm, tpcomm::testing::node_layout(MPI_COMM_WORLD), {}};
    context.checks = multi_node_checks(context.nodes);
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
