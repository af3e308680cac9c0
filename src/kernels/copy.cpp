#include "kernels/copy.hpp"

#include <algorithm>
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

}  // namespace tpcomm::detail
