// The accumulation type of the multi-node reductions and the two conversions
// around it. f16 and bf16 contributions are widened to f32 before the first
// fold and rounded once after the last one, so partial results of a node keep
// full f32 precision on their way to the other nodes. avg is a sum followed by
// one division by the world size in the accumulation type. This matches the
// single-node kernels: acc = load(x_0); acc = acc op load(x_k) ...;
// avg: acc / n; store(round(acc)).
#pragma once

#include <cstddef>

#include "tpcomm/tpcomm.hpp"

namespace tpcomm::detail {

// f32 for f16 and bf16, the type itself otherwise.
DataType accumulation_type(DataType dtype);

// The op folded across ranks: sum for avg (divided once at the end).
inline ReduceOp fold_op(ReduceOp op) { return op == ReduceOp::avg ? ReduceOp::sum : op; }

// dst (count elements of accumulation_type(dtype)) = src (count elements of dtype).
void widen(const std::byte* src, DataType dtype, std::byte* dst, std::size_t count);

// dst (count elements of dtype) = src (accumulation type), divided by
// `divisor` first when it is non-zero (avg), rounded to nearest even for
// f16/bf16. dst may equal src; otherwise they must not overlap.
void finish(const std::byte* src, DataType dtype, std::byte* dst, std::size_t count, int divisor);

}  // namespace tpcomm::detail
