// Every kernel level (scalar, AVX2, AVX-512 where the CPU has it) against the
// independent serial reference, bitwise, for every dtype and op, including
// special values, lengths that are not multiples of the vector width and
// n = 1..9 sources. Also the f16/bf16 conversions over all 65536 patterns.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/reduce.hpp"
#include "reference.hpp"

namespace {

using tpcomm::DataType;
using tpcomm::ReduceOp;
namespace ref = tpcomm::reference;

std::vector<const tpcomm::detail::KernelTable*> tables() {
  int count = 0;
  const auto* const* list = tpcomm::detail::available_kernel_tables(&count);
  return {list, list + count};
}

// Random bit patterns of floats, with specials mixed in.
void fill_random(DataType dt, void* buf, std::size_t count, std::mt19937_64& random) {
  const std::size_t esz = tpcomm::dtype_size(dt);
  auto* bytes = static_cast<unsigned char*>(buf);
  for (std::size_t i = 0; i < count * esz; ++i) bytes[i] = static_cast<unsigned char>(random());
  if (dt == DataType::f32) {
    auto* f = static_cast<float*>(buf);
    const float specials[] = {0.0f, -0.0f, std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                              std::numeric_limits<float>::quiet_NaN(), 1e-40f, 65504.0f, 1.0f};
    for (std::size_t i = 0; i < count; i += 5) f[i] = specials[random() % 8];
    for (std::size_t i = 2; i < count; i += 3) f[i] = static_cast<float>(static_cast<int>(random() % 200) - 100) / 8.0f;
  }
}

TEST(Kernels, EveryLevelMatchesTheReferenceBitwise) {
  std::mt19937_64 random(42);
  const DataType dtypes[] = {DataType::f32, DataType::f64, DataType::f16, DataType::bf16,
                             DataType::i8,  DataType::u8,  DataType::i32, DataType::i64};
  for (const auto* table : tables()) {
    for (DataType dt : dtypes) {
      for (int op_index = 0; op_index < 5; ++op_index) {
        const auto op = static_cast<ReduceOp>(op_index);
        if (op == ReduceOp::avg && !ref::is_float(dt)) continue;
        for (int n = 1; n <= 9; ++n) {
          for (std::size_t count : {1u, 7u, 8u, 15u, 16u, 33u, 255u, 256u, 257u, 1000u}) {
            const std::size_t bytes = count * tpcomm::dtype_size(dt);
            std::vector<std::vector<unsigned char>> inputs(static_cast<std::size_t>(n), std::vector<unsigned char>(bytes));
            std::vector<const void*> pointers;
            for (auto& input : inputs) {
              fill_random(dt, input.data(), count, random);
              pointers.push_back(input.data());
            }
            std::vector<unsigned char> expected(bytes), actual(bytes);
            ref::reduce(dt, op, pointers, expected.data(), count);
            table->fold[static_cast<int>(dt)][op_index](actual.data(), pointers.data(), n, count);
            ASSERT_EQ(ref::count_mismatches(dt, actual.data(), expected.data(), count), 0u)
                << table->isa << " " << tpcomm::dtype_name(dt) << " " << tpcomm::redop_name(op) << " n=" << n
                << " count=" << count;
          }
        }
      }
    }
  }
}

TEST(Kernels, HalfConversionsAreExactForEveryPattern) {
  // f16 -> f32 -> f16 must round-trip every non-NaN pattern, at every level
  // (a sum with a single source is load + store).
  for (const auto* table : tables()) {
    for (DataType dt : {DataType::f16, DataType::bf16}) {
      std::vector<std::uint16_t> all(65536), out(65536);
      for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i);
      const void* source = all.data();
      table->fold[static_cast<int>(dt)][static_cast<int>(ReduceOp::sum)](out.data(), &source, 1, all.size());
      for (std::size_t i = 0; i < all.size(); ++i) {
        const float value = dt == DataType::f16 ? ref::half_to_float(all[i]) : ref::bf16_to_float(all[i]);
        if (std::isnan(value)) continue;
        ASSERT_EQ(out[i], all[i]) << table->isa << " " << tpcomm::dtype_name(dt) << " pattern " << i;
      }
    }
  }
}

TEST(Kernels, FloatToHalfRoundsToNearestEven) {
  // Reference conversion against known values (independent of the kernels).
  EXPECT_EQ(ref::float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(ref::float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(ref::float_to_half(65520.0f), 0x7c00);        // halfway to the next: rounds to inf
  EXPECT_EQ(ref::float_to_half(1.0f + 1.0f / 2048), 0x3c00);  // halfway, even stays
  EXPECT_EQ(ref::float_to_half(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(ref::float_to_half(std::ldexp(1.0f, -25)), 0x0000);  // halfway to 0: even
  EXPECT_EQ(ref::float_to_bf16(1.0f + 1.0f / 256), 0x3f80);     // halfway, even stays
  EXPECT_EQ(ref::float_to_bf16(1.0f + 3.0f / 256), 0x3f82);     // halfway, rounds up to even
}

}  // namespace
