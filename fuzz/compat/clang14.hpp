// What the library needs from a compiler that clang 14 (the clang of Debian
// 12, the one with libFuzzer) lacks. Force-included into every C++ file of
// the fuzz build; a no-op with compilers that have these features.
#pragma once

// std::source_location: libstdc++ 12 declares it only when the compiler has
// __builtin_source_location (clang 15 and later). The library uses it in its
// internal error reporting.
#if defined(__clang__) && !__has_builtin(__builtin_source_location)
#include <cstdint>

namespace std {
struct source_location {
  static constexpr source_location current(const char* file = __builtin_FILE(),
                                           const char* function = __builtin_FUNCTION(),
                                           uint_least32_t line = __builtin_LINE(),
                                           uint_least32_t column = __builtin_COLUMN()) noexcept {
    source_location location;
    location.file_ = file;
    location.function_ = function;
    location.line_ = line;
    location.column_ = column;
    return location;
  }
  constexpr const char* file_name() const noexcept { return file_; }
  constexpr const char* function_name() const noexcept { return function_; }
  constexpr uint_least32_t line() const noexcept { return line_; }
  constexpr uint_least32_t column() const noexcept { return column_; }

 private:
  const char* file_ = "";
  const char* function_ = "";
  uint_least32_t line_ = 0;
  uint_least32_t column_ = 0;
};
}  // namespace std
#endif

// __builtin_cpu_supports("f16c"): clang 14 does not know that feature name
// (the kernel dispatch asks for it). Names clang 14 knows go to the builtin;
// f16c is read from CPUID leaf 1, ECX bit 29.
#if defined(__clang__) && __clang_major__ < 15 && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>

#include <cstring>

inline bool tpcomm_fuzz_cpu_supports(const char* feature) {
  if (std::strcmp(feature, "f16c") == 0) {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
  }
#define TPCOMM_FUZZ_FEATURE(name) \
  if (std::strcmp(feature, name) == 0) return __builtin_cpu_supports(name);
  TPCOMM_FUZZ_FEATURE("avx512f")
  TPCOMM_FUZZ_FEATURE("avx512bw")
  TPCOMM_FUZZ_FEATURE("avx512vl")
  TPCOMM_FUZZ_FEATURE("avx512dq")
  TPCOMM_FUZZ_FEATURE("avx2")
  TPCOMM_FUZZ_FEATURE("fma")
  TPCOMM_FUZZ_FEATURE("bmi2")
  TPCOMM_FUZZ_FEATURE("avx")
  TPCOMM_FUZZ_FEATURE("sse4.2")
#undef TPCOMM_FUZZ_FEATURE
  return false;
}
#define __builtin_cpu_supports(feature) tpcomm_fuzz_cpu_supports(feature)
#endif
