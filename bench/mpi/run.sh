#!/usr/bin/env bash
# Hierarchical all_reduce (tpcomm over MPI) against a flat MPI_Allreduce on the
# same 4 ranks, emulated as 2 nodes x 2 ranks on this machine: shared memory
# inside an emulated node for tpcomm, MPI over TCP on loopback between nodes
# (and between every pair of ranks for the flat MPI_Allreduce).
#
#   bench/mpi/run.sh [BUILD_DIR] [ITERATIONS]
#
# BUILD_DIR (default: build) is a tpcomm build with MPI; the benchmark program
# is built there by CMake (bench/mpi), or here with mpicxx if it is missing.
# LAYOUT (default a,a,b,b) and TPCOMM_SPIN may be set in the environment.
# TPCOMM_SPIN defaults to 64 because the emulation may run more ranks than the
# machine has cores; set it empty for tpcomm's automatic choice.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
iterations=${2:-20}
layout=${LAYOUT:-a,a,b,b}
ranks=$(($(tr -cd ',' <<< "$layout" | wc -c) + 1))

program=$(find "$build" -name tpcomm_mpi_all_reduce_bench -type f -perm -u+x | head -n 1)
if [ -z "$program" ]; then
  library=$(find "$build" -name 'libtpcomm.so' | head -n 1)
  [ -n "$library" ] || { echo "run.sh: no libtpcomm.so under $build" >&2; exit 1; }
  program=$build/tpcomm_mpi_all_reduce_bench
  mpicxx -O2 -std=c++20 -DOMPI_SKIP_MPICXX=1 -I"$root/include" "$here/all_reduce_bench.cpp" -o "$program" \
    -L"$(dirname "$library")" -ltpcomm -Wl,-rpath,"$(dirname "$library")"
fi

echo "layout $layout ($ranks ranks), $(nproc) cores, TPCOMM_SPIN=${TPCOMM_SPIN-64}"
exec mpirun --oversubscribe --allow-run-as-root -np "$ranks" \
  --mca pml ob1 --mca btl self,tcp --mca btl_tcp_if_include lo \
  -x TPCOMM_SPIN="${TPCOMM_SPIN-64}" \
  "$root/tests/mpi/emulate-nodes.sh" "$layout" "$program" "$iterations"
