#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer, and runs each for a bounded time.
#
#   scripts/run-fuzz.sh
#
# Environment:
#   FUZZ_SECONDS      time per target (default 60)
#   FUZZ_BUILD_DIR    build directory (default build-fuzz in the repository;
#                     the corpus lives in its corpus/ and crashing inputs in
#                     its artifacts/, both kept between runs)
#   FUZZ_NO_SANITIZE  sanitizer checks to leave out (e.g. "enum"), only to look
#                     past a new report locally while it is being fixed; empty
#                     (every check, alignment included) by default and in CI
#
# Exits non-zero if a target crashes, trips a sanitizer or breaks one of its
# own rules; the message says how to replay the input (FUZZ_TRACE=1 prints the
# calls it makes). Exits 77 (skipped) without building anything if clang or its
# libFuzzer runtime is missing (scripts/install-deps.sh test installs both:
# clang, libclang-rt-14-dev).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
BUILD_DIR=${FUZZ_BUILD_DIR:-$REPO/build-fuzz}
NO_SANITIZE=${FUZZ_NO_SANITIZE:-}
TARGETS=(fuzz_arguments)

if ! command -v cmake >/dev/null; then
  echo "run-fuzz.sh: cmake not found (scripts/install-deps.sh build installs it)" >&2
  exit 2
fi
for tool in clang clang++; do
  if ! command -v "$tool" >/dev/null; then
    echo "run-fuzz.sh: SKIPPED: $tool not found (scripts/install-deps.sh test installs clang)" >&2
    exit 77
  fi
done
# The libFuzzer runtime is a separate package from clang itself.
probe=$(mktemp -d)
printf '%s\n' '#include <cstddef>' '#include <cstdint>' \
  'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }' >"$probe/probe.cpp"
if ! clang++ -fsanitize=fuzzer,address,undefined "$probe/probe.cpp" -o "$probe/probe" >"$probe/log" 2>&1; then
  head -5 "$probe/log" >&2
  echo "run-fuzz.sh: SKIPPED: clang++ cannot link a libFuzzer target (scripts/install-deps.sh test installs" \
       "libclang-rt-14-dev)" >&2
  rm -rf "$probe"
  exit 77
fi
rm -rf "$probe"

echo "== configure and build ($BUILD_DIR)"
cmake -S fuzz -B "$BUILD_DIR" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DTPCOMM_FUZZ_NO_SANITIZE="$NO_SANITIZE" >"$BUILD_DIR.configure.log" 2>&1 ||
  { cat "$BUILD_DIR.configure.log" >&2; exit 2; }
rm -f "$BUILD_DIR.configure.log"
cmake --build "$BUILD_DIR" -j"$(nproc)" || exit 2

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

status=0
for target in "${TARGETS[@]}"; do
  corpus=$BUILD_DIR/corpus/$target
  artifacts=$BUILD_DIR/artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  log=$BUILD_DIR/$target.log
  echo "== $target for ${SECONDS_PER_TARGET} s (corpus: $corpus)"
  # -timeout: any single input running this long is a hang, reported as a crash.
  "$BUILD_DIR/$target" -max_total_time="$SECONDS_PER_TARGET" -timeout=30 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1
  rc=$?
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" | awk '!seen[$0]++'
  if [ $rc -ne 0 ]; then
    status=1
    echo "run-fuzz.sh: $target FAILED (exit $rc); report:" >&2
    grep -E 'runtime error|ERROR: AddressSanitizer|ERROR: libFuzzer|fuzz_arguments: |SUMMARY|Test unit written' "$log" | head -20 >&2
    input=$(grep -oE "Test unit written to \S+" "$log" | tail -1 | cut -d' ' -f5)
    if [ -n "$input" ]; then
      echo "run-fuzz.sh: replay with: FUZZ_TRACE=1 $BUILD_DIR/$target $input" >&2
    fi
    echo "run-fuzz.sh: full log: $log" >&2
  else
    echo "$target: no crash in ${SECONDS_PER_TARGET} s"
  fi
done
exit $status
