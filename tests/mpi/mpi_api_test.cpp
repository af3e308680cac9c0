// The multi-node communicator's interface beyond the collectives' values:
// creation (from_mpi, Communicator::from_mpi, from_env, the C API), argument
// errors that leave it usable, MPI-side mismatches that fail it for good,
// split/new_group into single-node and multi-node groups, point-to-point
// batches mixing shared-memory and MPI routes, timeouts.
//
// Run under mpirun with 4 ranks through emulate-nodes.sh; rank 0 and rank 3
// must be on different nodes.
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "mpi_test_support.hpp"
#include "tpcomm/mpi.hpp"
#include "tpcomm/tpcomm_mpi.h"

namespace {

using tpcomm::Communicator;
using tpcomm::DataType;
using tpcomm::ErrorCode;
using tpcomm::ReduceOp;
using tpcomm::testing::check;
using Op = Communicator::PointToPoint;

struct Context {
  int rank = 0;
  int size = 0;
  std::vector<std::vector<int>> nodes;
  long long checks = 0;
  long long failures = 0;

  int node_of(int r) const {
    for (std::size_t k = 0; k < nodes.size(); ++k) {
      for (const int member : nodes[k]) {
        if (member == r) return static_cast<int>(k);
      }
    }
    return -1;
  }
  // Do these ranks span several nodes?
  bool spans_nodes(const std::vector<int>& ranks) const {
    for (const int r : ranks) {
      if (node_of(r) != node_of(ranks.front())) return true;
    }
    return false;
  }
};

bool is_hierarchical(const Communicator& comm) {
  return std::string(comm.all_reduce_algorithm(1 << 20)).rfind("hierarchical", 0) == 0;
}

// Runs a section; a failed check counts and the next section runs.
void section(Context& c, const char* name, const std::function<void()>& body) {
  ++c.checks;
  try {
    body();
  } catch (const std::exception& error) {
    ++c.failures;
    std::fprintf(stderr, "[rank %d] %s: %s\n", c.rank, name, error.what());
  }
}

// body must throw tpcomm::Error with this code and a message containing `text`.
void expect_error(ErrorCode code, const std::string& text, const std::function<void()>& body,
                  const std::string& what) {
  try {
    body();
  } catch (const tpcomm::Error& error) {
    check(error.code() == code, what + ": wrong error code " + std::to_string(static_cast<int>(error.code())) +
                                    " (" + error.what() + ")");
    check(std::string(error.what()).find(text) != std::string::npos,
          what + ": message '" + error.what() + "' lacks '" + text + "'");
    return;
  }
  throw std::runtime_error(what + ": no error");
}

// Sum of the ranks of comm: checks that a communicator works end to end.
void expect_working(Communicator& comm, const std::string& what) {
  std::int64_t value = comm.rank();
  comm.all_reduce(&value, &value, 1, DataType::i64, ReduceOp::sum);
  const std::int64_t n = comm.world_size();
  check(value == n * (n - 1) / 2, what + ": all_reduce of ranks gave " + std::to_string(value));
}

void test_identity(Context& c, Communicator& comm) {
  check(comm.rank() == c.rank, "rank " + std::to_string(comm.rank()) + " differs from the MPI rank");
  check(comm.world_size() == c.size, "world size differs from MPI's");
  check(is_hierarchical(comm) == (c.nodes.size() > 1), "single-node/multi-node choice is wrong");
  expect_working(comm, "from_mpi");
  comm.barrier();
}

void test_argument_errors(Context& c, Communicator& comm) {
  std::vector<float> buffer(64, 1.0f);
  const std::string me = "rank " + std::to_string(c.rank) + ": ";
  expect_error(ErrorCode::invalid_argument, me + "all_reduce: send and recv buffers partially overlap", [&] {
    comm.all_reduce(buffer.data(), buffer.data() + 1, 8, DataType::f32, ReduceOp::sum);
  }, "overlap");
  expect_error(ErrorCode::invalid_argument, me + "broadcast: root " + std::to_string(c.size), [&] {
    comm.broadcast(buffer.data(), buffer.data(), 8, DataType::f32, c.size);
  }, "root");
  expect_error(ErrorCode::invalid_argument, "op avg is not defined for integer dtype i32", [&] {
    comm.all_reduce(buffer.data(), buffer.data(), 8, DataType::i32, ReduceOp::avg);
  }, "avg");
  expect_error(ErrorCode::invalid_argument, "peer " + std::to_string(c.rank), [&] {
    comm.send(buffer.data(), 1, DataType::f32, c.rank);
  }, "peer");
  const std::vector<std::size_t> short_counts(2, 1);
  expect_error(ErrorCode::invalid_argument, "recv_counts must have world_size", [&] {
    comm.reduce_scatterv(buffer.data(), buffer.data(), short_counts, DataType::f32, ReduceOp::sum);
  }, "counts");
  expect_error(ErrorCode::invalid_argument, "timeout must be positive",
               [&] { comm.set_timeout(std::chrono::duration<double>(0)); }, "timeout");
  expect_working(comm, "after argument errors");
}

void test_creation(Context& c) {
  expect_error(ErrorCode::invalid_argument, "MPI_COMM_NULL", [&] { tpcomm::from_mpi(MPI_COMM_NULL); }, "null comm");
  // The communicator keeps its own duplicate: freeing the user's is fine.
  MPI_Comm mine = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &mine);
  Communicator comm = Communicator::from_mpi(mine);
  MPI_Comm_free(&mine);
  expect_working(comm, "after MPI_Comm_free of the user's communicator");
  Communicator from_env = Communicator::from_env();
  check(is_hierarchical(from_env) == (c.nodes.size() > 1), "from_env under mpirun chose the wrong communicator");
  expect_working(from_env, "from_env");
}

void test_c_api(Context& c) {
  tpcomm_comm_t comm = nullptr;
  check(tpcomm_comm_create_from_mpi(MPI_COMM_WORLD, nullptr, nullptr) == TPCOMM_ERROR_INVALID_ARGUMENT,
        "NULL out accepted");
  check(tpcomm_comm_create_from_mpi(MPI_COMM_NULL, nullptr, &comm) == TPCOMM_ERROR_INVALID_ARGUMENT,
        "MPI_COMM_NULL accepted");
  tpcomm_options_t options;
  tpcomm_options_init(&options);
  options.timeout_seconds = 30;
  check(tpcomm_comm_create_from_mpi(MPI_COMM_WORLD, &options, &comm) == TPCOMM_SUCCESS, tpcomm_last_error());
  int rank = -1;
  check(tpcomm_comm_rank(comm, &rank) == TPCOMM_SUCCESS && rank == c.rank, "C API rank");
  double value = 1.5;
  check(tpcomm_all_reduce(comm, &value, &value, 1, TPCOMM_F64, TPCOMM_SUM) == TPCOMM_SUCCESS, tpcomm_last_error());
  check(value == 1.5 * c.size, "C API all_reduce gave " + std::to_string(value));
  check(tpcomm_comm_destroy(comm) == TPCOMM_SUCCESS, tpcomm_last_error());
}

void test_split(Context& c, Communicator& comm) {
  // Even and odd ranks, in reverse rank order.
  std::optional<Communicator> parity = comm.split(c.rank % 2, -c.rank);
  check(parity.has_value(), "split returned no communicator");
  std::vector<int> members;
  for (int r = c.size - 1; r >= 0; --r) {
    if (r % 2 == c.rank % 2) members.push_back(r);
  }
  const auto position = std::find(members.begin(), members.end(), c.rank) - members.begin();
  check(parity->rank() == static_cast<int>(position), "split: key order not respected");
  check(parity->world_size() == static_cast<int>(members.size()), "split: wrong size");
  check(is_hierarchical(*parity) == c.spans_nodes(members), "split: single-node/multi-node choice is wrong");
  expect_working(*parity, "parity split");
  // Split again inside the child.
  std::optional<Communicator> again = parity->split(0, 0);
  check(again && again->world_size() == parity->world_size(), "split of a split");
  expect_working(*again, "split of a split");

  // One group per node: each is a plain shared-memory communicator.
  std::optional<Communicator> by_node = comm.split(c.node_of(c.rank), 0);
  check(by_node && !is_hierarchical(*by_node), "a single-node group is not plain shared memory");
  expect_working(*by_node, "node split");

  // Opting out.
  std::optional<Communicator> without_first = comm.split(c.rank == 0 ? tpcomm::kUndefinedColor : 1, 0);
  check(without_first.has_value() == (c.rank != 0), "kUndefinedColor");
  if (without_first) expect_working(*without_first, "split without rank 0");

  // Timeouts are inherited.
  comm.set_timeout(std::chrono::duration<double>(42));
  check(comm.timeout().count() == 42, "set_timeout");
  std::optional<Communicator> child = comm.split(0, 0);
  check(child && child->timeout().count() == 42, "child did not inherit the timeout");
  comm.set_timeout(std::chrono::duration<double>(60));
}

void test_new_group(Context& c, Communicator& comm) {
  const int last = c.size - 1;
  const std::vector<int> list{last, 0};
  std::optional<Communicator> group = comm.new_group(list);
  check(group.has_value() == (c.rank == 0 || c.rank == last), "new_group membership");
  if (group) {
    check(group->rank() == (c.rank == last ? 0 : 1), "new_group order");
    check(is_hierarchical(*group) == c.spans_nodes(list), "new_group: single-node/multi-node choice is wrong");
    expect_working(*group, "new_group");
  }
  const std::vector<int> different{c.rank};
  expect_error(ErrorCode::mismatch, "different rank lists", [&] { comm.new_group(different); }, "new_group lists");
  expect_working(comm, "after a new_group mismatch");
}

void test_point_to_point(Context& c, Communicator& comm) {
  const int n = c.size;
  // Every rank sends a distinct message to every other rank and receives one
  // from each, all in one batch: some routes stay on a node, some use MPI,
  // and messages are large enough to need the receiver's progress.
  const std::size_t count = 300000 + static_cast<std::size_t>(c.rank);
  std::vector<std::vector<float>> outgoing(static_cast<std::size_t>(n)), incoming(static_cast<std::size_t>(n));
  std::vector<Op> ops;
  for (int peer = 0; peer < n; ++peer) {
    if (peer == c.rank) continue;
    auto& out = outgoing[static_cast<std::size_t>(peer)];
    out.resize(count);
    std::iota(out.begin(), out.end(), static_cast<float>(c.rank * 1000 + peer));
    incoming[static_cast<std::size_t>(peer)].resize(300000 + static_cast<std::size_t>(peer));
    ops.push_back({Op::Kind::recv, incoming[static_cast<std::size_t>(peer)].data(),
                   incoming[static_cast<std::size_t>(peer)].size(), DataType::f32, peer});
    ops.push_back({Op::Kind::send, out.data(), out.size(), DataType::f32, peer});
  }
  comm.batch(ops);
  for (int peer = 0; peer < n; ++peer) {
    if (peer == c.rank) continue;
    const auto& in = incoming[static_cast<std::size_t>(peer)];
    check(in.front() == static_cast<float>(peer * 1000 + c.rank) && in.back() == in.front() + static_cast<float>(in.size() - 1),
          "batch: wrong data from rank " + std::to_string(peer));
  }
  // Messages of one pair arrive in order, zero-count ones included.
  const int next = (c.rank + 1) % n, prev = (c.rank + n - 1) % n;
  std::int32_t a = c.rank, b = c.rank * 10, got_a = -1, got_b = -1;
  const Op ordered[] = {{Op::Kind::send, &a, 1, DataType::i32, next}, {Op::Kind::send, nullptr, 0, DataType::i32, next},
                        {Op::Kind::send, &b, 1, DataType::i32, next}, {Op::Kind::recv, &got_a, 1, DataType::i32, prev},
                        {Op::Kind::recv, nullptr, 0, DataType::i32, prev}, {Op::Kind::recv, &got_b, 1, DataType::i32, prev}};
  comm.batch(ordered);
  check(got_a == prev && got_b == prev * 10, "batch: messages of a pair out of order");
  // Blocking send/recv between the first and the last rank (different nodes).
  if (c.rank == 0) {
    double x = 2.5;
    comm.send(&x, 1, DataType::f64, n - 1);
  } else if (c.rank == n - 1) {
    double x = 0;
    comm.recv(&x, 1, DataType::f64, 0);
    check(x == 2.5, "send/recv across nodes");
  }
  comm.barrier();
}

// A receive that does not match its send fails the receiving rank's
// communicator: the error names both sides, and the communicator stays failed.
void test_point_to_point_mismatch(Context& c, Communicator& comm) {
  const int last = c.size - 1;
  const std::vector<int> pair{0, last};
  for (const bool wrong_dtype : {false, true}) {
    std::optional<Communicator> group = comm.new_group(pair);
    if (!group) continue;
    float data[12] = {};
    if (c.rank == 0) {
      group->send(data, 10, DataType::f32, 1);
    } else {
      const DataType dtype = wrong_dtype ? DataType::i32 : DataType::f32;
      const std::size_t count = wrong_dtype ? 10 : 12;
      expect_error(ErrorCode::mismatch, "recv from rank 0 expects " + std::to_string(count) + " x " +
                                            std::string(tpcomm::dtype_name(dtype)) + " but rank 0 sent 10 x f32",
                   [&] { group->recv(data, count, dtype, 0); }, "p2p mismatch");
      expect_error(ErrorCode::comm_failed, "failed earlier", [&] { group->barrier(); }, "failed stays failed");
    }
  }
  comm.barrier();
}

// all_to_allv counts that disagree fail every rank with a mismatch.
void test_all_to_allv_mismatch(Context& c, Communicator& comm) {
  std::optional<Communicator> group = comm.split(0, 0);
  const auto n = static_cast<std::size_t>(c.size);
  std::vector<std::size_t> send_counts(n, 2), displs(n), recv_counts(n, 2);
  for (std::size_t i = 0; i < n; ++i) displs[i] = 2 * i;
  if (c.rank == 1) recv_counts[0] = 3;  // rank 0 sends 2
  std::vector<float> send(2 * n + 1), recv(2 * n + 1);
  expect_error(ErrorCode::mismatch, "rank 0 sends 2 elements to rank 1 but rank 1 expects recv_counts[0] = 3",
               [&] { group->all_to_allv(send.data(), send_counts, displs, recv.data(), recv_counts, displs, DataType::f32); },
               "all_to_allv counts");
  expect_error(ErrorCode::comm_failed, "failed earlier", [&] { group->barrier(); }, "failed stays failed");
  expect_working(comm, "parent after a child's failure");
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  Context c;
  MPI_Comm_rank(MPI_COMM_WORLD, &c.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &c.size);
  c.nodes = tpcomm::testing::node_layout(MPI_COMM_WORLD);
  {
    tpcomm::CommOptions options;
    options.timeout = std::chrono::seconds(60);
    options.chunk_bytes = 4096;
    Communicator comm = tpcomm::from_mpi(MPI_COMM_WORLD, options);
    section(c, "identity", [&] { test_identity(c, comm); });
    section(c, "argument errors", [&] { test_argument_errors(c, comm); });
    section(c, "creation", [&] { test_creation(c); });
    section(c, "C API", [&] { test_c_api(c); });
    section(c, "split", [&] { test_split(c, comm); });
    section(c, "new_group", [&] { test_new_group(c, comm); });
    section(c, "point-to-point", [&] { test_point_to_point(c, comm); });
    section(c, "point-to-point mismatch", [&] { test_point_to_point_mismatch(c, comm); });
    section(c, "all_to_allv mismatch", [&] { test_all_to_allv_mismatch(c, comm); });
  }
  const int code = tpcomm::testing::report("mpi api", c.checks, c.failures);
  MPI_Finalize();
  return code;
}
