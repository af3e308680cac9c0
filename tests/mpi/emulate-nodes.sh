#!/bin/sh
# Emulates several nodes on one machine under Open MPI's mpirun: gives each
# rank the TPCOMM_NODE_ID named by its position in a comma-separated layout,
# then runs the program.
#
#   mpirun -np 4 tests/mpi/emulate-nodes.sh a,a,b,b program args...   # 2 nodes x 2
#   mpirun -np 4 tests/mpi/emulate-nodes.sh a,a,a,b program args...   # 3 + 1
#   mpirun -np 4 tests/mpi/emulate-nodes.sh a,b,a,b program args...   # interleaved
set -eu
if [ $# -lt 2 ]; then
  echo "usage: emulate-nodes.sh NODE,NODE,... PROGRAM [ARGS...]" >&2
  exit 2
fi
layout=$1
shift
rank=${OMPI_COMM_WORLD_RANK:?emulate-nodes.sh runs under Open MPI mpirun (OMPI_COMM_WORLD_RANK is not set)}
node=$(printf '%s\n' "$layout" | cut -d, -f$((rank + 1)))
if [ -z "$node" ]; then
  echo "emulate-nodes.sh: layout '$layout' names no node for rank $rank" >&2
  exit 2
fi
TPCOMM_NODE_ID=$node
export TPCOMM_NODE_ID
exec "$@"
