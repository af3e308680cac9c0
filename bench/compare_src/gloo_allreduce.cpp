// Gloo's all-reduce (Debian libgloo-dev: TCP transport on 127.0.0.1, FileStore
// rendezvous), timed by the same loop as compare_allreduce (see harness.hpp).
// f32 only: Gloo has no bf16 of its own.
//
//   mpirun -np N compare_gloo STORE_DIR [--sizes ...] [--variants LIST] [...]
//
// mpirun is only the launcher here (rank and size come from OMPI_COMM_WORLD_*);
// nothing links MPI. Variants (default: gloo_ring_ip,gloo_ip):
//   gloo_ring_ip  gloo::AllreduceRing (the algorithm object, built once per
//                 size; in place), Gloo's fastest path here
//   gloo_ip       gloo::allreduce with AllreduceOptions, ring, in place (the
//                 per-call API torch.distributed uses)
//   gloo_oop      the same, separate input and output
// GLOO_COMPARE_SYNC=gloo makes the ranks meet in gloo::barrier instead of the
// shared-memory barrier (to check that the barrier is not what Gloo waits on).
#include <gloo/allreduce.h>
#include <gloo/allreduce_ring.h>
#include <gloo/barrier.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/transport/tcp/device.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "harness.hpp"

namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

void f32_sum(void* c, const void* a, const void* b, std::size_t n) {
  auto* out = static_cast<float*>(c);
  const auto* x = static_cast<const float*>(a);
  const auto* y = static_cast<const float*>(b);
  for (std::size_t i = 0; i < n; ++i) out[i] = x[i] + y[i];
}

void f64_max(void* c, const void* a, const void* b, std::size_t n) {
  auto* out = static_cast<double*>(c);
  const auto* x = static_cast<const double*>(a);
  const auto* y = static_cast<const double*>(b);
  for (std::size_t i = 0; i < n; ++i) out[i] = std::max(x[i], y[i]);
}

void f64_min(void* c, const void* a, const void* b, std::size_t n) {
  auto* out = static_cast<double*>(c);
  const auto* x = static_cast<const double*>(a);
  const auto* y = static_cast<const double*>(b);
  for (std::size_t i = 0; i < n; ++i) out[i] = std::min(x[i], y[i]);
}

int run(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s STORE_DIR [options]\n", argv[0]);
    return 2;
  }
  const std::string store_dir = argv[1];
  const int rank = env_int("OMPI_COMM_WORLD_RANK", -1);
  const int world = env_int("OMPI_COMM_WORLD_SIZE", -1);
  if (rank < 0 || world < 1) {
    std::fprintf(stderr, "compare_gloo: run under mpirun (OMPI_COMM_WORLD_RANK/SIZE are not set)\n");
    return 2;
  }
  cmp::Schedule schedule;
  schedule.dtypes = {cmp::Dtype::f32};
  schedule.label = "gloo";
  for (int i = 2; i < argc; ++i) {
    if (i + 1 >= argc || !cmp::parse_schedule_option(schedule, argv[i], argv[i + 1])) {
      if (rank == 0) std::fprintf(stderr, "compare_gloo: unknown or incomplete option '%s'\n", argv[i]);
      return 2;
    }
    ++i;
  }
  if (schedule.variants.empty()) schedule.variants = {"gloo_ring_ip", "gloo_ip"};

  gloo::transport::tcp::attr attr;
  attr.hostname = "127.0.0.1";
  attr.ai_family = AF_INET;
  auto device = gloo::transport::tcp::CreateDevice(attr);
  gloo::rendezvous::FileStore store(store_dir);
  auto rendezvous = std::make_shared<gloo::rendezvous::Context>(rank, world);
  rendezvous->setTimeout(std::chrono::seconds(120));
  rendezvous->connectFullMesh(store, device);
  const std::shared_ptr<gloo::Context> context = rendezvous;

  const auto gloo_barrier = [&] {
    gloo::BarrierOptions opts(context);
    gloo::barrier(opts);
  };
  // The store directory is unique per run, so its name keys the barrier segment.
  const std::string barrier_name = "/tpcomm-compare-" + std::to_string(getuid()) + "-gloo-" +
                                   store_dir.substr(store_dir.find_last_of('/') + 1);
  cmp::SpinBarrier barrier;
  // Gloo completes transfers in its device thread, which mpirun binds to the
  // same core as the rank: the barrier must not spin it off that core.
  barrier.always_yield();
  if (rank == 0) barrier.create(barrier_name, world);
  gloo_barrier();
  if (rank != 0) barrier.open(barrier_name, world);
  gloo_barrier();
  if (rank == 0) barrier.unlink();
  // GLOO_COMPARE_SYNC=gloo: meet in gloo::barrier instead (diagnostic).
  const char* sync_kind = std::getenv("GLOO_COMPARE_SYNC");
  const bool gloo_sync = sync_kind != nullptr && std::string_view(sync_kind) == "gloo";
  const std::function<void()> sync = [&] {
    if (gloo_sync) gloo_barrier();
    else barrier.wait();
  };

  const auto reduce_with = [&](std::vector<double>& v, void (*fn)(void*, const void*, const void*, std::size_t)) {
    gloo::AllreduceOptions opts(context);
    opts.setOutput(v.data(), v.size());
    opts.setReduceFunction(fn);
    gloo::allreduce(opts);
  };
  const cmp::ReduceVector reduce_max = [&](std::vector<double>& v) { reduce_with(v, f64_max); };
  const cmp::ReduceVector reduce_min = [&](std::vector<double>& v) { reduce_with(v, f64_min); };

  std::size_t max_bytes = 0;
  for (std::size_t b : schedule.sizes) max_bytes = std::max(max_bytes, b);
  cmp::Buffer send(max_bytes), recv(max_bytes), inplace(max_bytes);

  if (rank == 0) {
    cmp::JsonLine("INFO")
        .str("label", schedule.label)
        .integer("world_size", world)
        .str("gloo", "Debian libgloo-dev, tcp transport on 127.0.0.1")
        .print();
  }

  std::uint64_t call = 0;
  bool any_wrong = false;
  for (const cmp::Dtype dtype : schedule.dtypes) {
    if (dtype != cmp::Dtype::f32) continue;
    const cmp::Pattern pattern(dtype, max_bytes / 4, rank);
    for (const std::size_t bytes : schedule.sizes) {
      const std::size_t count = bytes / 4;
      auto* s = reinterpret_cast<float*>(send.data());
      auto* r = reinterpret_cast<float*>(recv.data());
      auto* ip = reinterpret_cast<float*>(inplace.data());
      std::vector<cmp::Variant> variants;
      std::vector<std::unique_ptr<gloo::AllreduceRing<float>>> rings;
      for (const auto& name : schedule.variants) {
        cmp::Variant v;
        v.name = name;
        v.dtype = dtype;
        v.count = count;
        v.pattern = &pattern;
        if (name == "gloo_ring_ip") {
          // Building the algorithm object connects its buffers: done once, untimed.
          rings.push_back(std::make_unique<gloo::AllreduceRing<float>>(context, std::vector<float*>{ip},
                                                                       static_cast<int>(count)));
          v.input = ip;
          v.result = ip;
          v.run = [ring = rings.back().get()] { ring->run(); };
          variants.push_back(std::move(v));
          continue;
        }
        const bool in_place = name == "gloo_ip";
        if (!in_place && name != "gloo_oop") {
          if (rank == 0) std::fprintf(stderr, "compare_gloo: unknown variant '%s'\n", name.c_str());
          return 2;
        }
        float* in = in_place ? ip : s;
        float* out = in_place ? ip : r;
        v.input = in;
        v.result = out;
        v.run = [&context, in, out, count, in_place] {
          gloo::AllreduceOptions opts(context);
          if (!in_place) opts.setInput(in, count);
          opts.setOutput(out, count);
          opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
          opts.setReduceFunction(f32_sum);
          gloo::allreduce(opts);
        };
        variants.push_back(std::move(v));
      }
      const auto stats = cmp::measure(schedule, variants, sync, world, call, reduce_max, reduce_min);
      for (const auto& st : stats) {
        any_wrong = any_wrong || st.wrong > 0;
        if (rank == 0)
          cmp::print_result(schedule, st, world,
                            st.name == "gloo_ring_ip" ? "gloo AllreduceRing" : "gloo::allreduce ring (per-call API)");
      }
    }
  }
  gloo_barrier();
  return any_wrong ? 3 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compare_gloo: %s\n", e.what());
    return 4;
  }
}
