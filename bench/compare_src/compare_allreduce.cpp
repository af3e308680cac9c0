// tpcomm all_reduce and Open MPI's MPI_Allreduce, timed in one process by the
// same loop (see harness.hpp), variants interleaved round by round.
//
//   mpirun -np N compare_allreduce [--sizes 4K,32K,...] [--dtypes f32,bf16]
//          [--variants LIST] [--rounds R] [--round-ms MS] [--max-iters I]
//          [--size-budget S] [--label NAME] [--same-elements]
//          [--alt-env "TPCOMM_X=v TPCOMM_Y=w"] [--evict BYTES]
//
// --evict writes that many bytes of scratch memory before every call's input
// rewrite (untimed): the caches then hold only the freshly written input, as
// after a model layer has streamed its weights, instead of whatever the
// previous calls left there.
//
// Sizes are bytes of every dtype; with --same-elements they are bytes of f32
// and every dtype gets that many elements (a bf16 run then moves half the bytes
// of the f32 run it is interleaved with: the same tensor in either dtype).
//
// Variants (default: all):
//   tpcomm_oop     private send and recv buffers
//   tpcomm_ip      one private buffer, send == recv
//   tpcomm_zc_oop  send in a SharedBuffer (alloc_shared), private recv
//   tpcomm_zc_ip   send == recv in a SharedBuffer
//   mpi_oop        MPI_Allreduce, private send and recv (the same buffers as tpcomm_oop)
//   mpi_ip         MPI_Allreduce(MPI_IN_PLACE) (the same buffer as tpcomm_ip)
// --alt-env creates a second communicator with those variables set and adds
// every tpcomm variant again on it, named "<variant>@alt": settings compared
// interleaved, in the same machine state, rather than in separate runs.
//
// bf16 goes to MPI as a 2-byte datatype with a user MPI_Op that adds in f32 and
// rounds to nearest even, like tpcomm: MPI has no bf16 of its own.
//
// Exit status 3 if any checked call returned a wrong result.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "harness.hpp"
#include "mpi_programs.hpp"
#include "tpcomm/tpcomm.hpp"

namespace {

using cmp::Dtype;

bool has(const std::vector<std::string>& list, const char* name) {
  for (const auto& x : list)
    if (x == name) return true;
  return false;
}

void reduce_doubles(std::vector<double>& v, MPI_Op op) {
  MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_DOUBLE, op, MPI_COMM_WORLD);
}

int run(int argc, char** argv, int rank, int world) {
  cmp::Schedule schedule;
  bool same_elements = false;
  std::vector<std::string> alt_settings;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--same-elements") {
      same_elements = true;
      continue;
    }
    if (std::string_view(argv[i]) == "--alt-env" && i + 1 < argc) {
      alt_settings = cmp::split_words(argv[++i]);
      continue;
    }
    if (i + 1 >= argc || !cmp::parse_schedule_option(schedule, argv[i], argv[i + 1])) {
      if (rank == 0) std::fprintf(stderr, "compare_allreduce: unknown or incomplete option '%s'\n", argv[i]);
      return 2;
    }
    ++i;
  }
  const std::vector<std::string> all{"tpcomm_oop", "tpcomm_ip", "tpcomm_zc_oop", "tpcomm_zc_ip", "mpi_oop", "mpi_ip"};
  if (schedule.variants.empty()) schedule.variants = all;
  for (const auto& v : schedule.variants) {
    if (!has(all, v.c_str())) {
      if (rank == 0) std::fprintf(stderr, "compare_allreduce: unknown variant '%s'\n", v.c_str());
      return 2;
    }
  }
  const auto wants = [&](const char* name) { return has(schedule.variants, name); };
  const bool want_zero_copy = wants("tpcomm_zc_oop") || wants("tpcomm_zc_ip");

  std::size_t max_bytes = 0;
  for (std::size_t b : schedule.sizes) max_bytes = std::max(max_bytes, b);

  // The communicator exists for every run, so that a run timing only MPI has
  // the same processes and segments around as one timing both.
  tpcomm::Communicator comm = tpcomm::Communicator::from_env();
  if (comm.world_size() != world || comm.rank() != rank) {
    std::fprintf(stderr, "compare_allreduce: tpcomm rank %d/%d differs from MPI rank %d/%d\n", comm.rank(),
                 comm.world_size(), rank, world);
    return 2;
  }

  std::optional<tpcomm::Communicator> alt;
  if (!alt_settings.empty()) alt.emplace(cmp::communicator_with(alt_settings));

  // The timing barrier lives in its own segment, named after rank 0's pid.
  long pid = static_cast<long>(getpid());
  MPI_Bcast(&pid, 1, MPI_LONG, 0, MPI_COMM_WORLD);
  const std::string barrier_name = "/tpcomm-compare-" + std::to_string(getuid()) + "-" + std::to_string(pid);
  cmp::SpinBarrier barrier;
  if (rank == 0) barrier.create(barrier_name, world);
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank != 0) barrier.open(barrier_name, world);
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) barrier.unlink();

  // One set of buffers for all sizes and for tpcomm and MPI alike: the same
  // pages, already faulted in, for every variant.
  cmp::Buffer send(max_bytes), recv(max_bytes), inplace(max_bytes);
  tpcomm::SharedBuffer shared, alt_shared;
  if (want_zero_copy) shared = comm.alloc_shared(max_bytes);
  if (want_zero_copy && alt) alt_shared = alt->alloc_shared(max_bytes);

  MPI_Datatype bf16_type;
  MPI_Type_contiguous(2, MPI_BYTE, &bf16_type);
  MPI_Type_commit(&bf16_type);
  MPI_Op bf16_op;
  MPI_Op_create(cmp::bf16_sum, /*commute=*/1, &bf16_op);

  if (rank == 0) {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    std::string v(version, static_cast<std::size_t>(len));
    if (const auto nl = v.find('\n'); nl != std::string::npos) v.resize(nl);
    cmp::JsonLine("INFO")
        .str("label", schedule.label)
        .integer("world_size", world)
        .str("mpi_library", v)
        .integer("tpcomm_chunk_bytes", static_cast<long long>(comm.chunk_bytes()))
        .integer("hardware_threads", static_cast<long long>(std::thread::hardware_concurrency()))
        .str("glibc_tunables", std::getenv("GLIBC_TUNABLES") != nullptr ? std::getenv("GLIBC_TUNABLES") : "")
        .str("alt_env", [&] {
          std::string joined;
          for (const auto& x : alt_settings) joined += (joined.empty() ? "" : " ") + x;
          return joined;
        }())
        .print();
  }

  const cmp::ReduceVector reduce_max = [](std::vector<double>& v) { reduce_doubles(v, MPI_MAX); };
  const cmp::ReduceVector reduce_min = [](std::vector<double>& v) { reduce_doubles(v, MPI_MIN); };

  // One pattern per dtype, each long enough for the largest size.
  std::vector<cmp::Pattern> patterns;
  patterns.reserve(schedule.dtypes.size());
  for (const Dtype dtype : schedule.dtypes) patterns.emplace_back(dtype, max_bytes / cmp::elem_size(dtype), rank);

  std::uint64_t call = 0;
  bool any_wrong = false;
  for (const std::size_t bytes : schedule.sizes) {
    // Both dtypes of a size are interleaved too: bf16 and f32 are compared in
    // the same machine state.
    std::vector<cmp::Variant> variants;
    std::vector<std::string> algorithms;
    for (std::size_t d = 0; d < schedule.dtypes.size(); ++d) {
      const Dtype dtype = schedule.dtypes[d];
      const std::size_t count = bytes / (same_elements ? 4 : cmp::elem_size(dtype));
      const int mcount = static_cast<int>(count);
      const tpcomm::DataType tdt = dtype == Dtype::f32 ? tpcomm::DataType::f32 : tpcomm::DataType::bf16;
      const MPI_Datatype mdt = dtype == Dtype::f32 ? MPI_FLOAT : bf16_type;
      const MPI_Op mop = dtype == Dtype::f32 ? MPI_SUM : bf16_op;
      void* s = send.data();
      void* r = recv.data();
      void* ip = inplace.data();
      for (const auto& name : schedule.variants) {
        const bool is_tpcomm = name.rfind("tpcomm", 0) == 0;
        // Each tpcomm variant once per communicator; MPI variants once.
        for (int which = 0; which < (is_tpcomm && alt ? 2 : 1); ++which) {
          tpcomm::Communicator& c = which == 0 ? comm : *alt;
          void* zc = which == 0 ? shared.data() : alt_shared.data();
          cmp::Variant v;
          v.name = which == 0 ? name : name + "@alt";
          v.dtype = dtype;
          v.count = count;
          v.pattern = &patterns[d];
          std::string algorithm;
          if (name == "tpcomm_oop") {
            v.input = s, v.result = r;
            v.run = [&c, s, r, count, tdt] { c.all_reduce(s, r, count, tdt, tpcomm::ReduceOp::sum); };
            algorithm = c.all_reduce_algorithm(count * cmp::elem_size(dtype), tdt);
          } else if (name == "tpcomm_ip") {
            v.input = ip, v.result = ip;
            v.run = [&c, ip, count, tdt] { c.all_reduce(ip, ip, count, tdt, tpcomm::ReduceOp::sum); };
            algorithm = c.all_reduce_algorithm(count * cmp::elem_size(dtype), tdt);
          } else if (name == "tpcomm_zc_oop") {
            v.input = zc, v.result = r;
            v.run = [&c, zc, r, count, tdt] { c.all_reduce(zc, r, count, tdt, tpcomm::ReduceOp::sum); };
            algorithm = "zero-copy one-shot";
          } else if (name == "tpcomm_zc_ip") {
            v.input = zc, v.result = zc;
            v.run = [&c, zc, count, tdt] { c.all_reduce(zc, zc, count, tdt, tpcomm::ReduceOp::sum); };
            algorithm = "zero-copy two-shot";
          } else if (name == "mpi_oop") {
            v.input = s, v.result = r;
            v.run = [s, r, mcount, mdt, mop] { MPI_Allreduce(s, r, mcount, mdt, mop, MPI_COMM_WORLD); };
            algorithm = "Open MPI tuned default";
          } else {  // mpi_ip
            v.input = ip, v.result = ip;
            v.run = [ip, mcount, mdt, mop] { MPI_Allreduce(MPI_IN_PLACE, ip, mcount, mdt, mop, MPI_COMM_WORLD); };
            algorithm = "Open MPI tuned default";
          }
          variants.push_back(std::move(v));
          algorithms.push_back(std::move(algorithm));
        }
      }
    }
    const auto stats =
        cmp::measure(schedule, variants, [&barrier] { barrier.wait(); }, world, call, reduce_max, reduce_min);
    for (std::size_t i = 0; i < stats.size(); ++i) {
      any_wrong = any_wrong || stats[i].wrong > 0;
      if (rank == 0) cmp::print_result(schedule, stats[i], world, algorithms[i]);
    }
  }

  MPI_Op_free(&bf16_op);
  MPI_Type_free(&bf16_type);
  return any_wrong ? 3 : 0;
}

}  // namespace

int main(int argc, char** argv) { return cmp::mpi_main(argc, argv, "compare_allreduce", run); }
