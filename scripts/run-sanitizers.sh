#!/usr/bin/env bash
# Builds tpcomm with sanitizers and runs the C++ test suite (ctest) under each:
#   asan  AddressSanitizer + UndefinedBehaviorSanitizer   (build-asan/)
#   tsan  ThreadSanitizer                                 (build-tsan/)
# UBSan runs every check of -fsanitize=undefined, misaligned access included
# (the kernel tests fold buffers at odd byte offsets), and any report fails.
#
#   scripts/run-sanitizers.sh [asan] [tsan]      (default: both)
#
# Environment:
#   SANITIZER_BUILD_ROOT  where build-asan/ and build-tsan/ go (default: the
#                         repository root, where build-*/ is git-ignored)
#   SANITIZER_BUILD_TYPE  default RelWithDebInfo (optimised, with line numbers)
#   SANITIZER_EXCLUDE     extra ctest -E regex of tests to leave out
#
# Left out under sanitizers: install_and_consume (a consumer built without the
# sanitizer runtime cannot load an instrumented libtpcomm) and the perf.run.*
# benchmark runs (minutes each when instrumented; their argument parsing and
# checker still run as perf.* unit tests). The soak runs 20000 calls instead of
# 100000. The robustness tests (label robustness) run after the others, one at
# a time as in ./test.sh (see run_kind). The MPI tests (label mpi) run in a
# last pass, without LeakSanitizer (Open MPI's own allocations) and with one
# TSan suppression for Open MPI's TCP transport. TSan runs without ASLR
# (setarch -R): its shadow-memory layout does not fit every kernel's mmap
# randomisation (vm.mmap_rnd_bits above 28).
#
# Exits non-zero if a build fails, a test fails or a sanitizer reports anything;
# reports (with stacks) are collected at the end, logs in <build>/sanitizer-logs/.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
ROOT=${SANITIZER_BUILD_ROOT:-$REPO}
BUILD_TYPE=${SANITIZER_BUILD_TYPE:-RelWithDebInfo}
JOBS=$(nproc)

EXCLUDE='^install_and_consume$|^perf\.run\.'
if [ -n "${SANITIZER_EXCLUDE:-}" ]; then EXCLUDE="$EXCLUDE|$SANITIZER_EXCLUDE"; fi

kinds=("$@")
if [ ${#kinds[@]} -eq 0 ]; then kinds=(asan tsan); fi

status=0
summaries=()
script_start=$SECONDS

run_kind() {
  local kind=$1 flags build logs start
  case "$kind" in
    asan) flags="address,undefined" ;;
    tsan) flags="thread" ;;
    *) echo "run-sanitizers.sh: unknown sanitizer '$kind' (asan, tsan)" >&2; return 2 ;;
  esac
  build=$ROOT/build-$kind
  logs=$build/sanitizer-logs
  start=$SECONDS
  mkdir -p "$logs"

  echo "== $kind: configure and build ($build, $BUILD_TYPE, -fsanitize=$flags)"
  if ! cmake -S "$REPO" -B "$build" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DTPCOMM_SANITIZE="$flags" \
         -DTPCOMM_BUILD_PYTHON=OFF -DTPCOMM_BUILD_TESTS=ON >"$logs/configure.log" 2>&1; then
    cat "$logs/configure.log" >&2
    summaries+=("$kind: configure FAILED")
    return 1
  fi
  if ! cmake --build "$build" -j"$JOBS" >"$logs/build.log" 2>&1; then
    grep -E 'error|Error' "$logs/build.log" | head -20 >&2
    summaries+=("$kind: build FAILED (see $logs/build.log)")
    return 1
  fi
  local built=$((SECONDS - start))

  echo "== $kind: ctest"
  local -a runner=()
  local -a environment=(TPCOMM_SOAK_CALLS=20000)
  if [ "$kind" = asan ]; then
    # abort_on_error: a report fails the rank (and so its test) at once.
    environment+=(ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:strict_string_checks=1:check_initialization_order=1
                  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1)
  else
    # Open MPI's TCP transport takes two of its own locks in both orders
    # (third-party code, reported from the MPI tests); nothing else is
    # suppressed.
    printf 'deadlock:mca_btl_tcp_\n' >"$logs/tsan.supp"
    # die_after_fork=0: ranks are forked children; the test processes are
    # single-threaded when they fork, which is what TSan requires.
    environment+=(TSAN_OPTIONS=halt_on_error=1:die_after_fork=0:second_deadlock_stack=1:suppressions=$logs/tsan.supp)
    if command -v setarch >/dev/null; then runner=(setarch "$(uname -m)" -R); fi
  fi
  (cd "$build" && env "${environment[@]}" "${runner[@]}" ctest -j"$JOBS" -E "$EXCLUDE" -LE 'mpi|robustness' \
     --output-on-failure) >"$logs/ctest.log" 2>&1
  local rc=$?
  # The robustness tests (label robustness) run one at a time, as in ./test.sh:
  # they kill ranks, time how fast the survivors notice against fixed bounds
  # and look at /dev/shm before and after, so a test starting other jobs next
  # to them (whose start-ups sweep /dev/shm), on a machine already slowed down
  # by the sanitizer, changes what they measure.
  if [ -n "$(cd "$build" && ctest -N -L robustness | grep 'Test *#')" ]; then
    (cd "$build" && env "${environment[@]}" "${runner[@]}" ctest -j1 -E "$EXCLUDE" -L robustness --output-on-failure) \
      >>"$logs/ctest.log" 2>&1 || rc=1
  fi
  # The MPI tests (label mpi) run apart: Open MPI never frees much of what it
  # allocates (much of it from plugins it has unloaded by exit, so no stack can
  # be attributed), so LeakSanitizer is off for them; every other check stays.
  if [ -n "$(cd "$build" && ctest -N -L mpi | grep 'Test *#')" ]; then
    local -a mpi_environment=("${environment[@]}")
    if [ "$kind" = asan ]; then
      mpi_environment+=(ASAN_OPTIONS=abort_on_error=1:detect_leaks=0:strict_string_checks=1)
    fi
    (cd "$build" && env "${mpi_environment[@]}" "${runner[@]}" ctest -j"$JOBS" -E "$EXCLUDE" -L mpi --output-on-failure) \
      >>"$logs/ctest.log" 2>&1 || rc=1
  fi
  local tested=$((SECONDS - start - built))
  local result
  result=$(grep -E 'tests passed|tests failed' "$logs/ctest.log" | tr '\n' ';' | sed 's/;$//; s/;/; then /g')
  summaries+=("$kind: ${result:-no ctest summary} (build ${built} s, tests ${tested} s)")
  if [ $rc -ne 0 ]; then
    grep -E '^\s+[0-9]+ - .*\((Failed|Timeout|Not Run|SEGFAULT|Subprocess aborted|Exception)' "$logs/ctest.log" >&2
  fi

  # Every sanitizer report, with the lines that follow it (the stack).
  grep -n -A30 -E 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|WARNING: ThreadSanitizer|ThreadSanitizer: ' \
    "$logs/ctest.log" >"$logs/reports.txt"
  if [ -s "$logs/reports.txt" ]; then
    local count
    count=$(grep -cE 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|WARNING: ThreadSanitizer' "$logs/reports.txt")
    summaries+=("$kind: $count sanitizer report(s), see $logs/reports.txt")
    echo "---- $kind sanitizer reports (first 80 lines of $logs/reports.txt)" >&2
    head -80 "$logs/reports.txt" >&2
    rc=1
  fi
  return $rc
}

for kind in "${kinds[@]}"; do
  run_kind "$kind" || status=1
done

echo
echo "== summary ($((SECONDS - script_start)) s)"
for line in "${summaries[@]}"; do echo "$line"; done
if [ $status -eq 0 ]; then echo "run-sanitizers.sh: clean"; else echo "run-sanitizers.sh: FAILURES (see above)"; fi
exit $status
