// The fold kernels alone: nanoseconds per element for two sources in cache,
// at every kernel level this CPU has, for f32, bf16 and f16 sum.
//
//   build/bench/fold_kernels [--reps 2000]
//
// Each figure is the median over reps of the mean of 20 back-to-back folds of
// the same buffers (dst separate from the sources), so it is the kernel's
// throughput with its data in L1/L2, not memory bandwidth.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/reduce.hpp"

namespace {

using tpcomm::DataType;
using tpcomm::ReduceOp;

double ns_per_element(tpcomm::detail::FoldFunction fold, std::size_t bytes, std::size_t element, int reps) {
  const std::size_t count = bytes / element;
  std::vector<unsigned char> a(bytes), b(bytes), dst(bytes);
  // 0x3f3f..: an ordinary value in f32, bf16 and f16 alike (no NaN or denormal).
  std::memset(a.data(), 0x3f, bytes);
  std::memset(b.data(), 0x3f, bytes);
  const void* sources[2] = {a.data(), b.data()};
  constexpr int kInner = 20;
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(reps));
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kInner; ++i) fold(dst.data(), sources, 2, count);
    const auto end = std::chrono::steady_clock::now();
    samples.push_back(std::chrono::duration<double, std::nano>(end - start).count() / kInner / static_cast<double>(count));
  }
  std::nth_element(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(samples.size() / 2), samples.end());
  return samples[samples.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 2000;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: fold_kernels [--reps N]\n");
      return 2;
    }
  }
  struct Kind {
    DataType dtype;
    const char* name;
    std::size_t element;
  };
  constexpr Kind kKinds[] = {{DataType::f32, "f32", 4}, {DataType::bf16, "bf16", 2}, {DataType::f16, "f16", 2}};
  constexpr std::size_t kSizes[] = {4096, 32768, 262144};
  int levels = 0;
  const auto* const* tables = tpcomm::detail::available_kernel_tables(&levels);
  std::printf("%-11s %-5s", "level", "dtype");
  for (const std::size_t bytes : kSizes) std::printf(" %9zu B", bytes);
  std::printf("   (ns per element, 2 sources, sum)\n");
  for (int l = 0; l < levels; ++l) {
    for (const Kind& kind : kKinds) {
      const auto fold = tables[l]->fold[static_cast<int>(kind.dtype)][static_cast<int>(ReduceOp::sum)];
      std::printf("%-11.*s %-5s", static_cast<int>(tables[l]->isa.size()), tables[l]->isa.data(), kind.name);
      for (const std::size_t bytes : kSizes) std::printf(" %11.3f", ns_per_element(fold, bytes, kind.element, reps));
      std::printf("\n");
    }
  }
  return 0;
}
