#!/usr/bin/env bash
# Installs zotune's build dependencies from Debian when any is missing (needs root or sudo).
set -euo pipefail
packages=(meson ninja-build pkg-config gcc g++ libopenblas-dev libcjson-dev libpcre2-dev)
# Several processes (docs/distributed.md): MPI for CPU ranks and mpirun for the dist suite.
packages+=(openmpi-bin libopenmpi-dev)
# The sanitizer build (docs/design.md §5.7): clang, its sanitizer and libFuzzer runtimes, its
# OpenMP runtime, and llvm-symbolizer for readable reports.
packages+=(clang libclang-rt-14-dev libomp-14-dev llvm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
