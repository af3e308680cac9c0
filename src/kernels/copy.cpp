#include "kernels/copy.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

namespace tpcomm::detail {

void copy_to_shared(std::byte* dst, const std::byte* src, std::size_t bytes, std::size_t streaming_min_bytes) {
#if defined(__x86_64__)
  if (bytes >= streaming_min_bytes) {
    // Align the destination to 16 bytes with an ordinary copy of the head
    // (never more than the whole copy: TPCOMM_NT_MIN_BYTES may be tiny). The
    // source stays at any address: it is read with unaligned loads (loadu).
    const std::size_t head =
        std::min<std::size_t>(bytes, (16 - (reinterpret_cast<std::uintptr_t>(dst) & 15)) & 15);
    std::memcpy(dst, src, head);
    std::size_t i = head;
    // SSE2 is part of every x86-64 CPU: no dispatch needed. 64 bytes per step.
    for (; i + 64 <= bytes; i += 64) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 16));
      const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 32));
      const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 48));
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), a);
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 16), b);
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 32), c);
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 48), d);
    }
    std::memcpy(dst + i, src + i, bytes - i);
    _mm_sfence();
    return;
  }
#else
  (void)streaming_min_bytes;
#endif
  std::memcpy(dst, src, bytes);
}

namespace {

// The tile is small on purpose: with 256-byte tiles an out-of-place 16 MiB f32
// all_reduce took 0.71-0.77x the time of ordinary stores, with 1 KiB tiles
// 1.24-1.37x (long bursts of streaming stores stall the loads of the next
// tile; docs/performance.md item 23).
constexpr std::size_t kStreamTileBytes = 256;

}  // namespace

void fold_streaming(FoldFunction kernel, std::byte* dst, const void* const* sources, int n, std::size_t count,
                    std::size_t element) {
#if defined(__x86_64__)
  const auto address = reinterpret_cast<std::uintptr_t>(dst);
  if (address % element != 0 || count * element < 2 * kStreamTileBytes) {
    kernel(dst, sources, n, count);  // elements straddle lines, or too little to matter
    return;
  }
  std::array<const void*, TPCOMM_MAX_WORLD_SIZE> moved{};
  auto fold_at = [&](std::byte* to, std::size_t first, std::size_t elements) {
    for (int k = 0; k < n; ++k) {
      moved[static_cast<std::size_t>(k)] = static_cast<const std::byte*>(sources[k]) + first * element;
    }
    kernel(to, moved.data(), n, elements);
  };
  // Ordinary stores up to dst's first cache-line boundary and after its last
  // whole tile; whole streamed lines in between.
  const std::size_t head = ((64 - address % 64) % 64) / element;
  if (head != 0) fold_at(dst, 0, head);
  alignas(64) std::byte tile[kStreamTileBytes];
  const std::size_t per_tile = kStreamTileBytes / element;
  std::size_t i = head;
  for (; i + per_tile <= count; i += per_tile) {
    fold_at(tile, i, per_tile);
    std::byte* out = dst + i * element;
    for (std::size_t b = 0; b < kStreamTileBytes; b += 16) {
      _mm_stream_si128(reinterpret_cast<__m128i*>(out + b), _mm_load_si128(reinterpret_cast<const __m128i*>(tile + b)));
    }
  }
  if (i < count) fold_at(dst + i * element, i, count - i);
  _mm_sfence();  // like copy_to_shared: ordered before a later release store
#else
  (void)element;
  kernel(dst, sources, n, count);
#endif
}

}  // namespace tpcomm::detail
