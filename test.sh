#!/usr/bin/env bash
# Builds tpcomm and runs every test: the C++ suites through ctest, the
# Python/PyTorch suites through pytest, the sanitizer builds if
# TPCOMM_SANITIZERS=1, then the argument fuzzer for 60 s (unless TPCOMM_FUZZ=0).
# Exits non-zero on any failure and ends with each runner's summary line.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
BUILD_DIR=${BUILD_DIR:-build}
PYTHON=/usr/bin/python3   # Debian's python, where python3-torch lives
LOG_DIR=$BUILD_DIR/test-logs

scripts/install-deps.sh build test || exit 1
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release > /dev/null || exit 1
cmake --build "$BUILD_DIR" -j"$(nproc)" || exit 1
mkdir -p "$LOG_DIR"

status=0
summaries=()

# Tests of known open defects (listed with their defect) are left out.
OPEN_DEFECTS=$(grep -vE '^\s*(#|$)' tests/robustness/open-defects.txt | paste -sd'|')
echo "== ctest (leaving out $(grep -cvE '^\s*(#|$)' tests/robustness/open-defects.txt) open-defect patterns: tests/robustness/open-defects.txt)"
# (An empty -E pattern would match, and leave out, every test.)
(cd "$BUILD_DIR" && ctest --output-on-failure --timeout 900 ${OPEN_DEFECTS:+-E "$OPEN_DEFECTS"}) 2>&1 | tee "$LOG_DIR/ctest.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
summaries+=("ctest: $(grep -E 'tests passed|tests failed' "$LOG_DIR/ctest.log" | tail -1)")

if [ -d tests/python ]; then
  echo "== pytest"
  # install-deps.sh installs libtorch-dev, so the C++ kernels of the torch
  # operators must have been built (and their Python fallback is tested too).
  BUILD_PATH=$(cd "$BUILD_DIR" && pwd)   # BUILD_DIR may be relative or absolute
  TPCOMM_REQUIRE_CPP_KERNELS=1 TPCOMM_BUILD_DIR=$BUILD_PATH PYTHONPATH=$BUILD_PATH/python \
    "$PYTHON" -m pytest -q tests/python 2>&1 | tee "$LOG_DIR/pytest.log"
  rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || status=1
  summaries+=("pytest: $(grep -E '(passed|failed|error)' "$LOG_DIR/pytest.log" | tail -1)")
fi

# The sanitizer builds (AddressSanitizer+UBSan with every UBSan check, and
# ThreadSanitizer; about 15 minutes on 2 cores): opt-in here with
# TPCOMM_SANITIZERS=1, always on in CI (.ci/run).
if [ "${TPCOMM_SANITIZERS:-0}" = 1 ]; then
  echo "== sanitizers"
  SANITIZER_EXCLUDE="$OPEN_DEFECTS" scripts/run-sanitizers.sh 2>&1 | tee "$LOG_DIR/sanitizers.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  summaries+=("sanitizers: $(tail -1 "$LOG_DIR/sanitizers.log")")
fi
# The libFuzzer target over the C API's argument checks, for a bounded time
# (FUZZ_SECONDS, default 60 s; about 1.5 minutes with its clang build): on by
# default, TPCOMM_FUZZ=0 leaves it out. Skipped, not failed, only if clang or
# its libFuzzer runtime is missing after scripts/install-deps.sh (run-fuzz.sh
# exits 77).
if [ "${TPCOMM_FUZZ:-1}" = 1 ]; then
  echo "== fuzz"
  scripts/run-fuzz.sh 2>&1 | tee "$LOG_DIR/fuzz.log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 77 ]; then
    summaries+=("fuzz: SKIPPED ($(grep -m1 'SKIPPED' "$LOG_DIR/fuzz.log" | sed 's/^run-fuzz.sh: SKIPPED: //'))")
  else
    [ "$rc" -eq 0 ] || status=1
    summaries+=("fuzz: $(tail -1 "$LOG_DIR/fuzz.log")")
  fi
fi

echo
echo "== summary"
for line in "${summaries[@]}"; do echo "$line"; done
if [ $status -eq 0 ]; then echo "test.sh: all suites passed"; else echo "test.sh: FAILURES (see above)"; fi
exit $status
