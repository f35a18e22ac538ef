#!/usr/bin/env bash
# Configures build/ once: the CUDA backend is compiled whenever nvcc exists (so CUDA code is
# always at least compiled and linked), otherwise the CPU-only build.
set -euo pipefail
builddir=${1:-build}
if [ -f "$builddir/build.ninja" ]; then
  exit 0
fi
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
cuda=disabled
command -v nvcc >/dev/null && cuda=enabled
meson setup "$builddir" -Dcuda="$cuda"
