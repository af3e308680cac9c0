// Serial reference for tpcomm's reductions, written independently of the
// library's kernels: plain scalar loops, its own f16/bf16 conversions.
// Used by the tests and by tpcomm-perf's checker.
//
// Semantics (the documented contract): fold contributions left to right in
// rank order; f16/bf16 accumulate in f32 and round once (nearest-even);
// integer sum/prod wrap; avg = sum / n in the accumulation type; min/max
// propagate NaN.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "tpcomm/tpcomm.hpp"

namespace tpcomm::reference {

// ---- half-precision conversions (scalar, bit-exact, round-to-nearest-even) --
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    if (mantissa == 0) return std::bit_cast<float>(sign);
    // subnormal half: value = mantissa * 2^-24
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

inline std::uint16_t float_to_half(float f) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const float a = std::fabs(f);
  if (std::isnan(f)) return static_cast<std::uint16_t>(sign | 0x7e00u | ((u >> 13) & 0x3ffu));
  if (a >= 65520.0f) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (a < std::ldexp(1.0f, -14)) {
    // subnormal or zero: quantum 2^-24; nearbyint rounds half to even
    const float q = std::nearbyint(a * 16777216.0f);
    return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(q));
  }
  int e = 0;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  const float quantum = std::ldexp(1.0f, e - 11);
  const float rounded = std::nearbyint(a / quantum) * quantum;  // exact scaling by powers of 2
  int e2 = 0;
  const float m2 = std::frexp(rounded, &e2);
  const std::uint32_t biased = static_cast<std::uint32_t>(e2 - 1 + 15);
  const std::uint32_t mant = static_cast<std::uint32_t>(std::ldexp(m2, 11)) - 1024u;
  return static_cast<std::uint16_t>(sign | (biased << 10) | mant);
}

inline float bf16_to_float(std::uint16_t h) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

inline std::uint16_t float_to_bf16(float f) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  if (std::isnan(f)) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  const std::uint32_t lower = u & 0xffffu;
  std::uint32_t upper = u >> 16;
  if (lower > 0x8000u || (lower == 0x8000u && (upper & 1u))) upper += 1;
  return static_cast<std::uint16_t>(upper);
}

// ---- element access as the accumulation type ---------------------------------
inline double load_as_double(DataType dt, const void* base, std::size_t i) {
  switch (dt) {
    case DataType::f32: return static_cast<const float*>(base)[i];
    case DataType::f64: return static_cast<const double*>(base)[i];
    case DataType::f16: return half_to_float(static_cast<const std::uint16_t*>(base)[i]);
    case DataType::bf16: return bf16_to_float(static_cast<const std::uint16_t*>(base)[i]);
    default: return 0;
  }
}

inline bool is_float(DataType dt) {
  return dt == DataType::f32 || dt == DataType::f64 || dt == DataType::f16 || dt == DataType::bf16;
}

template <class A>
A apply(ReduceOp op, A a, A b) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::avg: return static_cast<A>(a + b);
    case ReduceOp::prod: return static_cast<A>(a * b);
    case ReduceOp::min:
      if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<A>::quiet_NaN();
      return b < a ? b : a;
    case ReduceOp::max:
      if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<A>::quiet_NaN();
      return b > a ? b : a;
  }
  return a;
}

template <class T>
T apply_int(ReduceOp op, T a, T b) {
  using U = std::make_unsigned_t<T>;
  switch (op) {
    case ReduceOp::sum: return static_cast<T>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
    case ReduceOp::prod: return static_cast<T>(static_cast<U>(static_cast<U>(a) * static_cast<U>(b)));
    case ReduceOp::min: return b < a ? b : a;
    case ReduceOp::max: return b > a ? b : a;
    case ReduceOp::avg: break;
  }
  return a;
}

// out[i] = fold(op, inputs[0][i], ..., inputs[n-1][i]) with the documented
// semantics. inputs.size() is the world size.
inline void reduce(DataType dt, ReduceOp op, const std::vector<const void*>& inputs, void* out,
                   std::size_t count) {
  const std::size_t n = inputs.size();
  for (std::size_t i = 0; i < count; ++i) {
    switch (dt) {
      case DataType::f32: {
        float acc = static_cast<const float*>(inputs[0])[i];
        for (std::size_t r = 1; r < n; ++r) acc = apply<float>(op, acc, static_cast<const float*>(inputs[r])[i]);
        if (op == ReduceOp::avg) acc = acc / static_cast<float>(n);
        static_cast<float*>(out)[i] = acc;
        break;
      }
      case DataType::f64: {
        double acc = static_cast<const double*>(inputs[0])[i];
        for (std::size_t r = 1; r < n; ++r) acc = apply<double>(op, acc, static_cast<const double*>(inputs[r])[i]);
        if (op == ReduceOp::avg) acc = acc / static_cast<double>(n);
        static_cast<double*>(out)[i] = acc;
        break;
      }
      case DataType::f16:
      case DataType::bf16: {
        const bool half = dt == DataType::f16;
        auto load = [&](std::size_t r) {
          const std::uint16_t bits = static_cast<const std::uint16_t*>(inputs[r])[i];
          return half ? half_to_float(bits) : bf16_to_float(bits);
        };
        float acc = load(0);
        for (std::size_t r = 1; r < n; ++r) acc = apply<float>(op, acc, load(r));
        if (op == ReduceOp::avg) acc = acc / static_cast<float>(n);
        static_cast<std::uint16_t*>(out)[i] = half ? float_to_half(acc) : float_to_bf16(acc);
        break;
      }
#define TPCOMM_REFERENCE_INT(DT, T)                                                      \
  case DataType::DT: {                                                                   \
    T acc = static_cast<const T*>(inputs[0])[i];                                         \
    for (std::size_t r = 1; r < n; ++r) acc = apply_int<T>(op, acc, static_cast<const T*>(inputs[r])[i]); \
    static_cast<T*>(out)[i] = acc;                                                       \
    break;                                                                               \
  }
      TPCOMM_REFERENCE_INT(i8, std::int8_t)
      TPCOMM_REFERENCE_INT(u8, std::uint8_t)
      TPCOMM_REFERENCE_INT(i32, std::int32_t)
      TPCOMM_REFERENCE_INT(i64, std::int64_t)
#undef TPCOMM_REFERENCE_INT
    }
  }
}

// Deterministic input pattern: element i of rank r at iteration `seed`.
// Values are small so that sums stay exact and products stay finite for
// moderate world sizes, and include negative numbers and (for floats) halves.
inline void fill_pattern(DataType dt, void* buf, std::size_t count, int rank, std::uint64_t seed) {
  for (std::size_t i = 0; i < count; ++i) {
    std::uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull ^ (static_cast<std::uint64_t>(rank) + 1) * 0xC2B2AE3D27D4EB4Full ^
                      seed * 0x165667B19E3779F9ull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    const int small = static_cast<int>(h % 9) - 4;  // -4..4
    const float value = static_cast<float>(small) * ((h >> 8) & 1 ? 0.5f : 1.0f);
    switch (dt) {
      case DataType::f32: static_cast<float*>(buf)[i] = value; break;
      case DataType::f64: static_cast<double*>(buf)[i] = value; break;
      case DataType::f16: static_cast<std::uint16_t*>(buf)[i] = float_to_half(value); break;
      case DataType::bf16: static_cast<std::uint16_t*>(buf)[i] = float_to_bf16(value); break;
      case DataType::i8: static_cast<std::int8_t*>(buf)[i] = static_cast<std::int8_t>(small); break;
      case DataType::u8: static_cast<std::uint8_t*>(buf)[i] = static_cast<std::uint8_t>(small + 4); break;
      case DataType::i32: static_cast<std::int32_t*>(buf)[i] = small * 1000 + static_cast<int>(h >> 40 & 7); break;
      case DataType::i64:
        static_cast<std::int64_t*>(buf)[i] = static_cast<std::int64_t>(small) * 1000000007LL + static_cast<std::int64_t>(h >> 40 & 7);
        break;
    }
  }
}

// Number of elements where a and b differ. Floating values compare bitwise,
// except that any NaN equals any NaN (NaN payloads are not part of the contract).
inline std::size_t count_mismatches(DataType dt, const void* a, const void* b, std::size_t count) {
  const std::size_t esz = dtype_size(dt);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const auto* pa = static_cast<const unsigned char*>(a) + i * esz;
    const auto* pb = static_cast<const unsigned char*>(b) + i * esz;
    if (std::memcmp(pa, pb, esz) == 0) continue;
    if (is_float(dt) && std::isnan(load_as_double(dt, a, i)) && std::isnan(load_as_double(dt, b, i))) continue;
    ++wrong;
  }
  return wrong;
}

}  // namespace tpcomm::reference
