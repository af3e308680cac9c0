#!/usr/bin/env bash
# Builds tpcomm (Release) and runs the main job: a 2-rank all_reduce benchmark
# from 8 B to 64 MiB with checking on.   usage: ./demo.sh [extra tpcomm-perf args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
BUILD_DIR=${BUILD_DIR:-build}
scripts/install-deps.sh build
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target tpcomm-run tpcomm-perf > /dev/null
exec "$BUILD_DIR/tools/tpcomm-run/tpcomm-run" -n 2 "$BUILD_DIR/tools/tpcomm-perf/tpcomm-perf" \
  --op all_reduce -b 8 -e 64M --check "$@"
