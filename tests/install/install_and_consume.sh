#!/usr/bin/env bash
# usage: install_and_consume.sh BUILD_DIR CONSUMER_SOURCE SCRATCH
set -euo pipefail
build=$1 source=$2 scratch=$3
rm -rf "$scratch"
prefix=$scratch/prefix
cmake --install "$build" --prefix "$prefix" > "$scratch.install.log" 2>&1 || { cat "$scratch.install.log"; exit 1; }
for f in bin/tpcomm-run bin/tpcomm-perf include/tpcomm/tpcomm.h include/tpcomm/tpcomm.hpp \
         lib/cmake/tpcomm/tpcommConfig.cmake lib/pkgconfig/tpcomm.pc; do
  [ -e "$prefix/$f" ] || { echo "missing in the installed tree: $f"; exit 1; }
done
soname=$(objdump -p "$prefix"/lib/libtpcomm.so | awk '/SONAME/ {print $2}')
[ "$soname" = "libtpcomm.so.0" ] || { echo "unexpected SONAME '$soname'"; exit 1; }

# 1. CMake consumer through find_package(tpcomm CONFIG).
cmake -S "$source" -B "$scratch/consumer" -DCMAKE_PREFIX_PATH="$prefix" > /dev/null
cmake --build "$scratch/consumer" > /dev/null
"$prefix/bin/tpcomm-run" -n 2 "$scratch/consumer/consumer"

# 2. Plain compiler through pkg-config (C API from C).
PKG_CONFIG_PATH=$prefix/lib/pkgconfig cc -o "$scratch/consumer_c" "$source/consumer.c" \
  $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs tpcomm) -Wl,-rpath,"$prefix/lib"
"$prefix/bin/tpcomm-run" -n 3 "$scratch/consumer_c"
# 3. The Python package, from the installed tree alone (it finds the installed
#    library relative to itself), with the torch operators' C++ kernels when
#    they were built.
site=$prefix/lib/python3/dist-packages
if [ -d "$site/tpcomm" ]; then
  expect_cpp=0
  [ -e "$build/python/tpcomm/torch/_torch_ops.so" ] && expect_cpp=1
  [ "$expect_cpp" = 0 ] || [ -e "$site/tpcomm/torch/_torch_ops.so" ] || { echo "missing: tpcomm/torch/_torch_ops.so"; exit 1; }
  env -u PYTHONPATH PYTHONPATH="$site" EXPECT_CPP=$expect_cpp "$prefix/bin/tpcomm-run" -n 2 /usr/bin/python3 -c '
import os, torch, tpcomm, tpcomm.torch
from tpcomm.torch import _ops
comm = tpcomm.init()
assert tpcomm._library.library_path.startswith(os.environ["PYTHONPATH"].rsplit("/lib/", 1)[0]), tpcomm._library.library_path
assert bool(_ops.CPP_KERNELS) == (os.environ["EXPECT_CPP"] == "1"), _ops.CPP_KERNELS
x = torch.full((5,), float(comm.rank + 1))
assert torch.equal(torch.ops.tpcomm.all_reduce(x), torch.full((5,), 3.0))
torch.ops.tpcomm.all_reduce_(x)
assert torch.equal(x, torch.full((5,), 3.0))
comm.close()
'
fi
echo "installed tree is usable"
