// Serial reference of the multi-node reduction order, built on the
// independent scalar reference of tests/support/reference.hpp:
//   partial_k = fold over node k's ranks in ascending rank order,
//   result    = fold over the partials in node order (nodes ordered by their
//               lowest rank), then / world size for avg;
// f16/bf16 are read as f32 and rounded once at the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "reference.hpp"
#include "tpcomm/tpcomm.hpp"

namespace tpcomm::reference {

namespace detail {

template <class A, class Load, class Store>
void fold_by_node(ReduceOp op, const std::vector<std::vector<int>>& nodes, std::size_t world, std::size_t count,
                  Load load, Store store) {
  auto combine = [&](A a, A b) {
    if constexpr (std::is_floating_point_v<A>) return apply<A>(op, a, b);
    else return apply_int<A>(op, a, b);
  };
  for (std::size_t i = 0; i < count; ++i) {
    A total{};
    for (std::size_t k = 0; k < nodes.size(); ++k) {
      A partial = load(nodes[k][0], i);
      for (std::size_t m = 1; m < nodes[k].size(); ++m) partial = combine(partial, load(nodes[k][m], i));
      total = k == 0 ? partial : combine(total, partial);
    }
    if constexpr (std::is_floating_point_v<A>) {
      if (op == ReduceOp::avg) total = total / static_cast<A>(world);
    }
    store(i, total);
  }
}

template <class T>
T element(const std::vector<const void*>& inputs, int rank, std::size_t i) {
  return static_cast<const T*>(inputs[static_cast<std::size_t>(rank)])[i];
}

}  // namespace detail

// out[i] = the multi-node fold of inputs[r][i] (one input per rank).
inline void hierarchical_reduce(DataType dt, ReduceOp op, const std::vector<const void*>& inputs,
                                const std::vector<std::vector<int>>& nodes, void* out, std::size_t count) {
  const std::size_t world = inputs.size();
  switch (dt) {
    case DataType::f32:
      detail::fold_by_node<float>(
          op, nodes, world, count, [&](int r, std::size_t i) { return detail::element<float>(inputs, r, i); },
          [&](std::size_t i, float v) { static_cast<float*>(out)[i] = v; });
      return;
    case DataType::f64:
      detail::fold_by_node<double>(
          op, nodes, world, count, [&](int r, std::size_t i) { return detail::element<double>(inputs, r, i); },
          [&](std::size_t i, double v) { static_cast<double*>(out)[i] = v; });
      return;
    case DataType::f16:
    case DataType::bf16: {
      const bool half = dt == DataType::f16;
      detail::fold_by_node<float>(
          op, nodes, world, count,
          [&](int r, std::size_t i) {
            const std::uint16_t bits = detail::element<std::uint16_t>(inputs, r, i);
            return half ? half_to_float(bits) : bf16_to_float(bits);
          },
          [&](std::size_t i, float v) { static_cast<std::uint16_t*>(out)[i] = half ? float_to_half(v) : float_to_bf16(v); });
      return;
    }
#define TPCOMM_HIERARCHICAL_INT(DT, T)                                                                 \
  case DataType::DT:                                                                                   \
    detail::fold_by_node<T>(                                                                           \
        op, nodes, world, count, [&](int r, std::size_t i) { return detail::element<T>(inputs, r, i); },         \
        [&](std::size_t i, T v) { static_cast<T*>(out)[i] = v; });                                     \
    return;
    TPCOMM_HIERARCHICAL_INT(i8, std::int8_t)
    TPCOMM_HIERARCHICAL_INT(u8, std::uint8_t)
    TPCOMM_HIERARCHICAL_INT(i32, std::int32_t)
    TPCOMM_HIERARCHICAL_INT(i64, std::int64_t)
#undef TPCOMM_HIERARCHICAL_INT
  }
}

}  // namespace tpcomm::reference
