// What an all_reduce costs inside a loop of computation, as in a tensor-parallel
// decode step: every iteration computes (streams over --work-bytes of weights)
// and writes a fresh activation of --bytes, then all-reduces it. No barriers
// between iterations: ranks drift as they would in an engine.
//
//   mpirun -np 2 build/bench/decode_loop [--bytes 4K] [--work-bytes 256K]
//          [--iters 500] [--blocks 31] [--dtype f32|bf16]
//          [--variants compute,tpcomm_ip,tpcomm_oop,mpi_ip,mpi_oop]
//          [--alt-env "TPCOMM_X=v ..."]
//
// A block is --iters iterations of one variant, started together after a
// barrier; its time is the slowest rank's. Blocks of all variants are
// interleaved, round by round in a rotating order, and the report gives each
// variant's median time per iteration and that minus the computation alone
// ("compute"): the all_reduce's cost in the loop. Unlike a timed single call,
// this charges work a call leaves to the caller (for example memory transfers
// still in flight when it returns) to the call. The last result of every block
// is checked against a reference folded in rank order (in f32; bf16 rounded once).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "harness.hpp"
#include "mpi_programs.hpp"
#include "tpcomm/tpcomm.hpp"

namespace {

using cmp::Dtype;

// The activation rank `rank` writes in iteration `iter`, element j, as f32.
float activation(int rank, std::uint64_t iter, std::size_t j, float weights_sum) {
  const std::uint32_t h = static_cast<std::uint32_t>((j * 2654435761u) ^ (static_cast<std::uint32_t>(rank) * 40503u) ^
                                                     static_cast<std::uint32_t>(iter * 2246822519u));
  return static_cast<float>(h % 2048) * 0.25f - 256.0f + weights_sum;
}

struct Variant {
  std::string name;
  tpcomm::Communicator* comm = nullptr;  // tpcomm variants
  bool in_place = true;
  bool mpi = false;
  bool communicates = true;
  std::vector<double> per_iter_us;
  std::uint64_t wrong = 0;
};

int run(int argc, char** argv, int rank, int world) {
  std::size_t bytes = 4096, work_bytes = 256 * 1024;
  int iters = 500, blocks = 31;
  Dtype dtype = Dtype::f32;
  std::string variant_list = "compute,tpcomm_ip,tpcomm_oop,mpi_ip,mpi_oop";
  std::vector<std::string> alt_settings;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + ": missing value");
      return argv[++i];
    };
    if (a == "--bytes") bytes = cmp::parse_bytes(next());
    else if (a == "--work-bytes") work_bytes = cmp::parse_bytes(next());
    else if (a == "--iters") iters = std::stoi(next());
    else if (a == "--blocks") blocks = std::stoi(next());
    else if (a == "--dtype") {
      const std::string d = next();
      if (d != "f32" && d != "bf16") throw std::invalid_argument("--dtype: f32 or bf16, got '" + d + "'");
      dtype = d == "f32" ? Dtype::f32 : Dtype::bf16;
    } else if (a == "--variants") variant_list = next();
    else if (a == "--alt-env") alt_settings = cmp::split_words(next());
    else throw std::invalid_argument("unknown argument '" + a + "' (see the comment at the top of decode_loop.cpp)");
  }
  if (iters < 1 || blocks < 1 || bytes < cmp::elem_size(dtype)) throw std::invalid_argument("nothing to measure");

  tpcomm::Communicator comm = tpcomm::Communicator::from_env();
  std::optional<tpcomm::Communicator> alt;
  if (!alt_settings.empty()) alt.emplace(cmp::communicator_with(alt_settings));

  const std::size_t count = bytes / cmp::elem_size(dtype);
  const tpcomm::DataType tdt = dtype == Dtype::f32 ? tpcomm::DataType::f32 : tpcomm::DataType::bf16;
  MPI_Datatype bf16_type;
  MPI_Type_contiguous(2, MPI_BYTE, &bf16_type);
  MPI_Type_commit(&bf16_type);
  MPI_Op bf16_op;
  MPI_Op_create(&cmp::bf16_sum, 1, &bf16_op);
  const MPI_Datatype mdt = dtype == Dtype::f32 ? MPI_FLOAT : bf16_type;
  const MPI_Op mop = dtype == Dtype::f32 ? MPI_SUM : bf16_op;

  std::vector<Variant> variants;
  for (const std::string& name : cmp::split_list(variant_list)) {
    const bool known = name == "compute" || name == "tpcomm_ip" || name == "tpcomm_oop" || name == "mpi_ip" ||
                       name == "mpi_oop";
    if (!known) throw std::invalid_argument("unknown variant '" + name + "'");
    for (int which = 0; which < (name.rfind("tpcomm", 0) == 0 && alt ? 2 : 1); ++which) {
      Variant v;
      v.name = which == 0 ? name : name + "@alt";
      v.comm = which == 0 ? &comm : &*alt;
      v.in_place = name.find("_oop") == std::string::npos;
      v.mpi = name.rfind("mpi", 0) == 0;
      v.communicates = name != "compute";
      variants.push_back(std::move(v));
    }
  }

  // The same weights on every rank: the computation costs the same everywhere.
  std::vector<float> weights(std::max<std::size_t>(1, work_bytes / 4));
  for (std::size_t i = 0; i < weights.size(); ++i) weights[i] = static_cast<float>(i % 7) * 1e-6f;
  std::vector<std::byte> x(bytes), y(bytes);
  std::uint64_t iter = 0;

  // Streams the weights: the computation's bulk, and a term of every activation.
  auto weights_sum = [&] {
    float acc = 0;
    for (const float w : weights) acc += w;
    return acc * 1e-3f;
  };
  auto compute = [&](std::uint64_t it) {
    const float s = weights_sum();
    if (dtype == Dtype::f32) {
      auto* out = reinterpret_cast<float*>(x.data());
      for (std::size_t j = 0; j < count; ++j) out[j] = activation(rank, it, j, s);
    } else {
      auto* out = reinterpret_cast<std::uint16_t*>(x.data());
      for (std::size_t j = 0; j < count; ++j) out[j] = cmp::f32_to_bf16(activation(rank, it, j, s));
    }
  };

  for (int b = 0; b < blocks; ++b) {
    for (std::size_t k = 0; k < variants.size(); ++k) {
      Variant& v = variants[(k + static_cast<std::size_t>(b)) % variants.size()];
      MPI_Barrier(MPI_COMM_WORLD);
      const auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i, ++iter) {
        compute(iter);
        if (!v.communicates) continue;
        void* out = v.in_place ? x.data() : y.data();
        if (v.mpi) {
          MPI_Allreduce(v.in_place ? MPI_IN_PLACE : x.data(), out, static_cast<int>(count), mdt, mop, MPI_COMM_WORLD);
        } else {
          v.comm->all_reduce(x.data(), out, count, tdt, tpcomm::ReduceOp::sum);
        }
      }
      double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
      MPI_Allreduce(MPI_IN_PLACE, &us, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      v.per_iter_us.push_back(us / iters);
      if (!v.communicates) continue;
      // The last iteration's result against every rank's activation folded in rank order.
      const std::uint64_t last = iter - 1;
      const float s = weights_sum();
      const std::byte* got = v.in_place ? x.data() : y.data();
      for (std::size_t j = 0; j < count; ++j) {
        float sum = 0;
        for (int r = 0; r < world; ++r) {
          const float a = activation(r, last, j, s);
          const float term = dtype == Dtype::f32 ? a : cmp::bf16_to_f32(cmp::f32_to_bf16(a));
          sum = r == 0 ? term : sum + term;  // f32 in rank order; bf16 rounded once at the end
        }
        if (dtype == Dtype::f32) {
          float g;
          std::memcpy(&g, got + j * 4, 4);
          v.wrong += g != sum;
        } else {
          std::uint16_t g;
          std::memcpy(&g, got + j * 2, 2);
          v.wrong += g != cmp::f32_to_bf16(sum);
        }
      }
    }
  }

  double compute_us = -1;
  for (Variant& v : variants) {
    std::sort(v.per_iter_us.begin(), v.per_iter_us.end());
    if (v.name == "compute") compute_us = v.per_iter_us[v.per_iter_us.size() / 2];
  }
  std::uint64_t wrong = 0;
  for (Variant& v : variants) {
    std::uint64_t total = v.wrong;
    MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    v.wrong = total;
    wrong += total;
  }
  if (rank == 0) {
    std::printf("# decode loop: %d ranks, %s, %zu bytes per all_reduce, %zu bytes of weights streamed per "
                "iteration, %d iterations per block, %d blocks; median per iteration (slowest rank)\n",
                world, dtype == Dtype::f32 ? "f32" : "bf16", bytes, work_bytes, iters, blocks);
    std::printf("%-16s %12s %14s %8s\n", "variant", "us/iter", "all_reduce us", "wrong");
    for (const Variant& v : variants) {
      const double med = v.per_iter_us[v.per_iter_us.size() / 2];
      char cost[32] = "-";
      if (v.communicates && compute_us >= 0) std::snprintf(cost, sizeof cost, "%.3f", med - compute_us);
      std::printf("%-16s %12.3f %14s %8llu\n", v.name.c_str(), med, cost, static_cast<unsigned long long>(v.wrong));
      // median_us: the all_reduce's cost per iteration (for "compute": the computation's time).
      const double value = v.communicates ? (compute_us >= 0 ? med - compute_us : med) : med;
      std::printf("RESULT {\"variant\":\"%s\",\"bytes\":%zu,\"dtype\":\"%s\",\"world_size\":%d,"
                  "\"median_us\":%.4f,\"per_iter_us\":%.4f,\"compute_us\":%.4f,\"work_bytes\":%zu,"
                  "\"iterations\":%d,\"samples\":%zu,\"wrong\":%llu}\n",
                  v.name.c_str(), bytes, dtype == Dtype::f32 ? "f32" : "bf16", world, value, med, compute_us,
                  work_bytes, iters, v.per_iter_us.size(), static_cast<unsigned long long>(v.wrong));
    }
  }
  MPI_Op_free(&bf16_op);
  MPI_Type_free(&bf16_type);
  return wrong == 0 ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) { return cmp::mpi_main(argc, argv, "decode_loop", run); }
