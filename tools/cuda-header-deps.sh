#!/usr/bin/env bash
# Meson 1.0.1 (Debian 12) records no header dependencies for nvcc, so ninja does not rebuild a .cu
# object when only a header it includes changed. Until Meson does, this touches the .cu sources
# when a header they may include changed since the last check (a stamp in the build directory);
# `make build` runs it before ninja. Usage: tools/cuda-header-deps.sh BUILD_DIR
set -euo pipefail
build=${1:-build}
[ -d "$build" ] || exit 0
stamp="$build/cuda-header-deps.stamp"
if [ ! -f "$stamp" ] ||
    [ -n "$(find kernels include src models \( -name '*.h' -o -name '*.cuh' \) -newer "$stamp" |
            head -1)" ]; then
    touch kernels/cuda/*.cu tests/cudaemu/*.cu
fi
touch "$stamp"
