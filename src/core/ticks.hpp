// A cheap monotonic tick counter for timing steps of a call on the hot path.
// Only differences taken on one thread are meaningful; the unit is unspecified
// (TSC ticks on x86-64, nanoseconds elsewhere).
#pragma once

#include <chrono>
#include <cstdint>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace tpcomm::detail {

inline std::uint64_t ticks() {
#if defined(__x86_64__)
  return __rdtsc();
#else
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
#endif
}

}  // namespace tpcomm::detail
