#!/usr/bin/env bash
# Installs what tpcomm needs from Debian's repository, only what is missing.
#   scripts/install-deps.sh build|test|bench ...
# build: compiler, CMake; test: + GoogleTest, Python with torch (and its C++
# headers, for the operators' C++ kernels)/numpy/pytest,
# Open MPI, clang (fuzzer, sanitizers); bench: + Open MPI, Gloo.
# Idempotent and fast when everything is present (one dpkg query).
set -euo pipefail

packages=(cmake g++ make pkg-config)
for group in "$@"; do
  case "$group" in
    build) ;;
    test) packages+=(libgtest-dev python3-torch libtorch-dev python3-numpy python3-pytest openmpi-bin libopenmpi-dev
                     clang libclang-rt-14-dev) ;;
    bench) packages+=(openmpi-bin libopenmpi-dev libgloo-dev python3-torch libtorch-dev python3-numpy) ;;
    *) echo "install-deps.sh: unknown group '$group' (build, test, bench)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: missing Debian packages: ${missing[*]}" >&2
  echo "install-deps.sh: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "install-deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
