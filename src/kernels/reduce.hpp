// Reduction kernels: fold the contributions of several ranks element by
// element, in rank order, with the documented semantics (see tpcomm.h).
//
// The kernels are compiled once per instruction-set level (scalar baseline,
// AVX2+F16C, AVX-512, AVX-512 with BF16) from one source (reduce_kernels.inc)
// and the best level the CPU supports is chosen once at run time. Every level
// gives bitwise the same result: same per-element operation order, no FMA
// contraction, no reassociation (-ffp-contract=off, no -ffast-math).
#pragma once

#include <cstddef>
#include <string_view>

#include "tpcomm/tpcomm.hpp"

namespace tpcomm::detail {

// dst[i] = fold(op, sources[0][i], ..., sources[n-1][i]); avg divides by n.
// dst may equal any source exactly (each tile is loaded from every source
// before it is stored) but may not partially overlap one.
using FoldFunction = void (*)(void* dst, const void* const* sources, int n, std::size_t count);

struct KernelTable {
  std::string_view isa;                // "avx512bf16", "avx512", "avx2" or "scalar"
  FoldFunction fold[8][5];             // [DataType][ReduceOp]
};

// The table for the best instruction set this CPU supports (TPCOMM_ISA may
// force a lower level by name, e.g. "avx2", for testing).
const KernelTable& kernels();

// All tables this CPU can run, best first (tests compare them bitwise).
const KernelTable* const* available_kernel_tables(int* count);

inline FoldFunction fold_function(DataType dtype, ReduceOp op) {
  return kernels().fold[static_cast<int>(dtype)][static_cast<int>(op)];
}

}  // namespace tpcomm::detail
