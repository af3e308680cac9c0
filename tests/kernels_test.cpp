// Every kernel level (scalar, AVX2, AVX-512 and AVX-512 BF16 where the CPU has
// them) against the independent serial reference, bitwise, for every dtype and
// op, including special values, lengths that are not multiples of the vector
// width and n = 1..9 sources, and buffers at any byte offset. Also the f16/bf16
// conversions over all 65536 patterns, the copy into staging memory and the
// fold that streams its result.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/copy.hpp"
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

// Every kernel of every level: body(level, dtype, op) for each dtype and each
// op that applies to it (avg on floating types only).
template <class Body>
void for_each_kernel(const Body& body) {
  constexpr DataType kDataTypes[] = {DataType::f32, DataType::f64, DataType::f16, DataType::bf16,
                                     DataType::i8,  DataType::u8,  DataType::i32, DataType::i64};
  for (const auto* level : tables()) {
    for (DataType dt : kDataTypes) {
      for (int op_index = 0; op_index < 5; ++op_index) {
        const auto op = static_cast<ReduceOp>(op_index);
        if (op == ReduceOp::avg && !ref::is_float(dt)) continue;
        body(*level, dt, op);
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
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
  for_each_kernel([&](const tpcomm::detail::KernelTable& level, DataType dt, ReduceOp op) {
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
        level.fold[static_cast<int>(dt)][static_cast<int>(op)](actual.data(), pointers.data(), n, count);
        ASSERT_EQ(ref::count_mismatches(dt, actual.data(), expected.data(), count), 0u)
            << level.isa << " " << tpcomm::dtype_name(dt) << " " << tpcomm::redop_name(op) << " n=" << n
            << " count=" << count;
      }
    }
  });
}

TEST(Kernels, EveryLevelAcceptsBuffersAtAnyByteOffset) {
  // The API does not require element alignment: sources and destination may
  // start at any byte (a tensor view at an odd offset). Same results as from
  // aligned buffers, in place too; under UBSan (-fsanitize=alignment) this
  // also checks that no kernel accesses an element through a misaligned
  // typed pointer.
  std::mt19937_64 random(7);
  for_each_kernel([&](const tpcomm::detail::KernelTable& level, DataType dt, ReduceOp op) {
    const std::size_t esz = tpcomm::dtype_size(dt);
    for (int n : {1, 2, 3, 5}) {
      for (std::size_t count : {1u, 9u, 40u, 300u}) {
        const std::size_t bytes = count * esz;
        // Aligned copies for the reference, misaligned ones (offset 1..7,
        // different per buffer) for the kernel.
        std::vector<std::vector<unsigned char>> aligned(static_cast<std::size_t>(n), std::vector<unsigned char>(bytes));
        std::vector<std::vector<unsigned char>> storage(static_cast<std::size_t>(n), std::vector<unsigned char>(bytes + 8));
        std::vector<const void*> reference_inputs, inputs;
        for (int k = 0; k < n; ++k) {
          auto& a = aligned[static_cast<std::size_t>(k)];
          fill_random(dt, a.data(), count, random);
          reference_inputs.push_back(a.data());
          unsigned char* shifted = storage[static_cast<std::size_t>(k)].data() + 1 + (k * 3) % 7;
          std::memcpy(shifted, a.data(), bytes);
          inputs.push_back(shifted);
        }
        std::vector<unsigned char> expected(bytes), actual(bytes), out(bytes + 8);
        ref::reduce(dt, op, reference_inputs, expected.data(), count);
        const auto fold = level.fold[static_cast<int>(dt)][static_cast<int>(op)];
        const auto where = [&](const char* how) {
          return std::string(level.isa) + " " + std::string(tpcomm::dtype_name(dt)) + " " +
                 std::string(tpcomm::redop_name(op)) + " n=" + std::to_string(n) +
                 " count=" + std::to_string(count) + " " + how;
        };
        fold(out.data() + 5, inputs.data(), n, count);
        std::memcpy(actual.data(), out.data() + 5, bytes);
        ASSERT_EQ(ref::count_mismatches(dt, actual.data(), expected.data(), count), 0u) << where("out of place");
        // In place: the destination is the (misaligned) first source.
        fold(const_cast<void*>(inputs[0]), inputs.data(), n, count);
        std::memcpy(actual.data(), inputs[0], bytes);
        ASSERT_EQ(ref::count_mismatches(dt, actual.data(), expected.data(), count), 0u) << where("in place");
      }
    }
  });
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

TEST(Kernels, CopyToSharedCopiesEverySizeAtEveryOffset) {
  // Plain and non-temporal copies (streaming from 0, 1 and 64 bytes up: the
  // threshold is TPCOMM_NT_MIN_BYTES, any size), destination and source at
  // every offset within 16 bytes, sizes around the 16-byte head and 64-byte
  // steps: exactly the bytes asked for, nothing around them.
  std::mt19937_64 random(3);
  std::vector<std::byte> source(512), destination(512);
  for (auto& b : source) b = static_cast<std::byte>(random());
  for (std::size_t streaming_min : {std::size_t{0}, std::size_t{1}, std::size_t{64}, SIZE_MAX}) {
    for (std::size_t to = 0; to < 16; ++to) {
      for (std::size_t from = 0; from < 16; from += 5) {
        for (std::size_t bytes = 0; bytes <= 200; ++bytes) {
          std::fill(destination.begin(), destination.end(), std::byte{0xa5});
          std::vector<std::byte> expected = destination;
          std::copy_n(source.begin() + static_cast<std::ptrdiff_t>(from), bytes,
                      expected.begin() + static_cast<std::ptrdiff_t>(32 + to));
          tpcomm::detail::copy_to_shared(destination.data() + 32 + to, source.data() + from, bytes, streaming_min);
          ASSERT_TRUE(destination == expected) << "streaming from " << streaming_min << ", destination offset " << to
                                               << ", source offset " << from << ", " << bytes << " bytes";
        }
      }
    }
  }
}

TEST(Kernels, StreamingFoldMatchesTheReferenceAtEveryOffset) {
  // fold_streaming writes the kernel's result through a 256-byte tile with
  // non-temporal stores, ordinary stores for the head up to dst's first
  // cache line and for the tail. Every level, dtype and op, 1-3 sources,
  // destination offsets 0..71 bytes (element-aligned and not), counts around
  // the tile and line boundaries, out of place and in place: bitwise the
  // serial reference, and nothing written outside the result.
  std::mt19937_64 random(11);
  constexpr std::size_t kGuard = 128;
  for_each_kernel([&](const tpcomm::detail::KernelTable& level, DataType dt, ReduceOp op) {
    const std::size_t esz = tpcomm::dtype_size(dt);
    for (int n : {1, 2, 3}) {
      for (std::size_t bytes : {std::size_t{0}, std::size_t{8}, std::size_t{511}, std::size_t{512},
                                std::size_t{576}, std::size_t{1000}, std::size_t{4104}}) {
        const std::size_t count = bytes / esz;
        std::vector<std::vector<unsigned char>> sources(static_cast<std::size_t>(n),
                                                        std::vector<unsigned char>(count * esz + 1));
        std::vector<const void*> pointers;
        for (auto& source : sources) {
          fill_random(dt, source.data(), count, random);
          pointers.push_back(source.data());
        }
        std::vector<unsigned char> expected(count * esz + 1);
        ref::reduce(dt, op, pointers, expected.data(), count);
        const auto fold = level.fold[static_cast<int>(dt)][static_cast<int>(op)];
        for (std::size_t offset = 0; offset < 72; offset += (offset < 8 ? 1 : 8)) {
          const auto where = [&](const char* how) {
            return std::string(level.isa) + " " + std::string(tpcomm::dtype_name(dt)) + " " +
                   std::string(tpcomm::redop_name(op)) + " n=" + std::to_string(n) + " count=" +
                   std::to_string(count) + " offset=" + std::to_string(offset) + " " + how;
          };
          // A 64-byte aligned buffer, so that offset is the offset within a cache line.
          std::vector<std::uint64_t> storage((2 * kGuard + count * esz + 72) / 8 + 8, 0xa5a5a5a5a5a5a5a5ull);
          auto* base = reinterpret_cast<unsigned char*>(storage.data());
          base += (64 - reinterpret_cast<std::uintptr_t>(base) % 64) % 64;
          unsigned char* out = base + kGuard + offset;
          const std::vector<unsigned char> before(base, base + 2 * kGuard + count * esz + 72);
          // The reference compares aligned copies (it reads elements through typed pointers).
          std::vector<unsigned char> actual(count * esz + 1);
          const auto result = [&] {
            std::memcpy(actual.data(), out, count * esz);
            return ref::count_mismatches(dt, actual.data(), expected.data(), count);
          };
          tpcomm::detail::fold_streaming(fold, reinterpret_cast<std::byte*>(out), pointers.data(), n, count, esz);
          ASSERT_EQ(result(), 0u) << where("out of place");
          for (std::size_t i = 0; i < before.size(); ++i) {
            if (base + i >= out && base + i < out + count * esz) continue;
            ASSERT_EQ(base[i], before[i]) << where("wrote outside the result") << " at byte " << i;
          }
          // In place: the destination is the first source, at the same offset.
          std::memcpy(out, sources[0].data(), count * esz);
          std::vector<const void*> in_place = pointers;
          in_place[0] = out;
          tpcomm::detail::fold_streaming(fold, reinterpret_cast<std::byte*>(out), in_place.data(), n, count, esz);
          ASSERT_EQ(result(), 0u) << where("in place");
        }
      }
    }
  });
}

TEST(Kernels, Bf16ResultsThatNeedCareMatchTheReferenceAtEveryPosition) {
  // Pairs of bf16 inputs whose fold lands where a fast conversion can differ
  // from round-to-nearest-even: denormal inputs, a denormal sum of two normal
  // numbers (a conversion that reads denormals as zero gives 0 there),
  // signalling and quiet NaNs with payloads, infinities, a sum that rounds up
  // to infinity and ties in both directions. Each pair is put at every
  // position of 40 elements (two 16-element vector steps and a tail) among
  // ordinary values, at every level, for every op, out of place and in place.
  // (NaNs compare equal whatever their payload, as everywhere in these tests.)
  struct Pair {
    std::uint16_t a, b;
    const char* what;
  };
  const Pair pairs[] = {
      {0x0001, 0x0000, "smallest denormal + 0"},
      {0x8055, 0x0003, "denormal + denormal"},
      {0x00c0, 0x8080, "normal + normal = denormal"},
      {0x0080, 0x807f, "smallest normal - largest denormal"},
      {0x7f81, 0x3f80, "signalling NaN + 1"},
      {0xffc5, 0x3f80, "negative quiet NaN with payload + 1"},
      {0x7f80, 0xff80, "inf - inf"},
      {0x7f80, 0x3f80, "inf + 1"},
      {0x7f7f, 0x7b80, "largest finite + something: rounds to inf"},
      {0x3f80, 0x3b80, "1 + 2^-8: tie, stays even"},
      {0x3f81, 0x3b80, "(1 + 2^-7) + 2^-8: tie, rounds up to even"},
  };
  constexpr std::size_t kCount = 40;
  std::mt19937_64 random(11);
  for (const auto* level : tables()) {
    for (int op_index = 0; op_index < 5; ++op_index) {
      const auto op = static_cast<ReduceOp>(op_index);
      const auto fold = level->fold[static_cast<int>(DataType::bf16)][op_index];
      for (const Pair& pair : pairs) {
        for (std::size_t position = 0; position < kCount; ++position) {
          std::uint16_t a[kCount], b[kCount];
          for (std::size_t i = 0; i < kCount; ++i) {
            a[i] = ref::float_to_bf16(static_cast<float>(static_cast<int>(random() % 200) - 100) / 8.0f);
            b[i] = ref::float_to_bf16(static_cast<float>(static_cast<int>(random() % 200) - 100) / 8.0f);
          }
          a[position] = pair.a;
          b[position] = pair.b;
          const std::vector<const void*> sources = {a, b};
          std::uint16_t expected[kCount], actual[kCount];
          ref::reduce(DataType::bf16, op, sources, expected, kCount);
          fold(actual, sources.data(), 2, kCount);
          ASSERT_EQ(ref::count_mismatches(DataType::bf16, actual, expected, kCount), 0u)
              << level->isa << " " << tpcomm::redop_name(op) << " " << pair.what << " at " << position << ": got 0x"
              << std::hex << actual[position] << ", want 0x" << expected[position];
          fold(a, sources.data(), 2, kCount);  // in place over the first source
          ASSERT_EQ(ref::count_mismatches(DataType::bf16, a, expected, kCount), 0u)
              << level->isa << " " << tpcomm::redop_name(op) << " " << pair.what << " at " << position << ", in place";
        }
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
