// Chooses the kernel table once, from what the CPU supports.
#include <cstdlib>
#include <string_view>

#include "kernels/reduce.hpp"

namespace tpcomm::detail {
namespace scalar { const KernelTable& table(); }
namespace avx2 { const KernelTable& table(); }
namespace avx512 { const KernelTable& table(); }
namespace avx512bf16 { const KernelTable& table(); }

namespace {

struct Tables {
  const KernelTable* list[4] = {};
  int count = 0;
};

const Tables& detect() {
  static const Tables tables = [] {
    Tables t;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma")) {
      if (__builtin_cpu_supports("avx512bf16")) t.list[t.count++] = &avx512bf16::table();
      t.list[t.count++] = &avx512::table();
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma")) {
      t.list[t.count++] = &avx2::table();
    }
    t.list[t.count++] = &scalar::table();
    return t;
  }();
  return tables;
}

}  // namespace

const KernelTable* const* available_kernel_tables(int* count) {
  *count = detect().count;
  return detect().list;
}

const KernelTable& kernels() {
  // TPCOMM_ISA lets tests and benchmarks force a lower level; read once.
  static const KernelTable* chosen = [] {
    const Tables& t = detect();
    const char* forced = std::getenv("TPCOMM_ISA");
    if (forced != nullptr) {
      for (int i = 0; i < t.count; ++i) {
        if (t.list[i]->isa == std::string_view(forced)) return t.list[i];
      }
    }
    return t.list[0];
  }();
  return *chosen;
}

}  // namespace tpcomm::detail
