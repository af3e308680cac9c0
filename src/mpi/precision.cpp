#include "mpi/precision.hpp"

#include <bit>
#include <cstdint>
#include <cstring>

namespace tpcomm::detail {
namespace {

// The conversions of the reduction kernels (kernels/reduce_kernels.inc),
// scalar: exact for every input, round to nearest even.
float half_to_float(std::uint16_t h) {
  const std::uint32_t magnitude_bits = static_cast<std::uint32_t>(h & 0x7fffu) << 13;
  const float scaled = std::bit_cast<float>(magnitude_bits) * 0x1p112f;
  std::uint32_t bits = std::bit_cast<std::uint32_t>(scaled);
  if ((h & 0x7c00u) == 0x7c00u) bits = 0x7f800000u | magnitude_bits;
  return std::bit_cast<float>(bits | (static_cast<std::uint32_t>(h & 0x8000u) << 16));
}

std::uint16_t float_to_half(float f) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t a = u & 0x7fffffffu;
  std::uint32_t out;
  if (a > 0x7f800000u) {
    out = 0x7e00u | ((a >> 13) & 0x3ffu);
  } else if (a >= 0x477ff000u) {
    out = 0x7c00u;
  } else if (a < 0x38800000u) {
    const float rounded = std::bit_cast<float>(a) + 0.5f;
    out = std::bit_cast<std::uint32_t>(rounded) - std::bit_cast<std::uint32_t>(0.5f);
  } else {
    const std::uint32_t odd = (a >> 13) & 1u;
    out = (a + 0xc8000fffu + odd) >> 13;
  }
  return static_cast<std::uint16_t>(out | sign);
}

float bf16_to_float(std::uint16_t h) { return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16); }

std::uint16_t float_to_bf16(float f) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const std::uint32_t nan = (u >> 16) | 0x40u;
  return static_cast<std::uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

template <class Convert>
void widen_16(const std::byte* src, std::byte* dst, std::size_t count, Convert convert) {
  for (std::size_t i = 0; i < count; ++i) {
    std::uint16_t bits;
    std::memcpy(&bits, src + 2 * i, 2);
    const float value = convert(bits);
    std::memcpy(dst + 4 * i, &value, 4);
  }
}

template <class Convert>
void narrow_16(const std::byte* src, std::byte* dst, std::size_t count, int divisor, Convert convert) {
  // Element i is read before element i is written: dst may alias src, as the
  // narrower writes never reach elements not yet read.
  for (std::size_t i = 0; i < count; ++i) {
    float value;
    std::memcpy(&value, src + 4 * i, 4);
    if (divisor != 0) value = value / static_cast<float>(divisor);
    const std::uint16_t bits = convert(value);
    std::memcpy(dst + 2 * i, &bits, 2);
  }
}

template <class T>
void divide(const std::byte* src, std::byte* dst, std::size_t count, int divisor) {
  for (std::size_t i = 0; i < count; ++i) {
    T value;
    std::memcpy(&value, src + sizeof(T) * i, sizeof(T));
    value = value / static_cast<T>(divisor);
    std::memcpy(dst + sizeof(T) * i, &value, sizeof(T));
  }
}

}  // namespace

DataType accumulation_type(DataType dtype) {
  return (dtype == DataType::f16 || dtype == DataType::bf16) ? DataType::f32 : dtype;
}

void widen(const std::byte* src, DataType dtype, std::byte* dst, std::size_t count) {
  switch (dtype) {
    case DataType::f16: widen_16(src, dst, count, half_to_float); return;
    case DataType::bf16: widen_16(src, dst, count, bf16_to_float); return;
    default: std::memcpy(dst, src, count * dtype_size(dtype)); return;
  }
}

void finish(const std::byte* src, DataType dtype, std::byte* dst, std::size_t count, int divisor) {
  switch (dtype) {
    case DataType::f16: narrow_16(src, dst, count, divisor, float_to_half); return;
    case DataType::bf16: narrow_16(src, dst, count, divisor, float_to_bf16); return;
    case DataType::f32:
      if (divisor != 0) return divide<float>(src, dst, count, divisor);
      break;
    case DataType::f64:
      if (divisor != 0) return divide<double>(src, dst, count, divisor);
      break;
    default: break;
  }
  if (src != dst) std::memcpy(dst, src, count * dtype_size(dtype));
}

}  // namespace tpcomm::detail
