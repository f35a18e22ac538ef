#!/usr/bin/env bash
# Configures a sanitizer build (docs/design.md §5.7) once: ASan + UBSan, every test, no CUDA
# backend. Usage: tools/configure-sanitize.sh [BUILD_DIR] [clang|gcc]
#
# clang (the default) is the build whose suites run: the fuzz harnesses need its libFuzzer, and
# one compiler for the C library, the C++ host executor and the harnesses keeps a single
# sanitizer runtime in each test binary. gcc is only compiled, for its own warnings: under
# -Werror an instrumented GCC build fails on diagnostics that neither plain build shows. It is
# the plain `-Db_sanitize=address,undefined` build, in recover mode, since the paths that UBSan's
# recoverable checks leave behind are where GCC's false positives come from, and it builds the
# library and the command only (-Dtests=false): the tests' code is compiled by the two others,
# and the executor's C++ would triple its time.
#
# -Db_lundef=false: the sanitizer runtimes are linked into executables, not into the static
# library, so its undefined references to them are expected.
# -fno-sanitize-recover=all (clang): the first undefined behaviour aborts the test, so it cannot
# pass with a report buried in its log.
# -Wno-pass-failed (clang): ASan checks every load, which keeps clang from vectorizing the CPU
# backend's `omp simd` reductions; the pragma is a request, and the build must not fail over it.
# -Dcuda=disabled: nvcc does not build the host code with the sanitizers; the CUDA kernels still
# run, through the host executor (tests/cudaemu), which needs only the toolkit's headers.
# -Dbench=false: benchmarks time things, which sanitizers distort, and they decide nothing.
set -euo pipefail
builddir=${1:-build-sanitize}
compiler=${2:-clang}
if [ -f "$builddir/build.ninja" ]; then
  exit 0
fi
flags=''
openmp=auto
tests=true
case "$compiler" in
  clang)
    export CC=clang CXX=clang++
    flags='-fno-sanitize-recover=all -fno-omit-frame-pointer -Wno-pass-failed'
    fuzz=true
    if ! printf '#include <omp.h>\nint main(void){return omp_get_max_threads()<1;}\n' |
        clang -fopenmp -x c - -o /dev/null 2>/dev/null; then
      # clang's OpenMP runtime is libomp (libomp-dev), not GCC's libgomp; without it the CPU
      # backend still builds, single-threaded, and the tests run one thread each anyway.
      openmp=disabled
    fi
    ;;
  gcc)
    export CC=gcc CXX=g++
    fuzz=false
    tests=false
    ;;
  *)
    echo "usage: $0 [BUILD_DIR] [clang|gcc]" >&2
    exit 2
    ;;
esac
meson setup "$builddir" \
  -Db_sanitize=address,undefined -Db_lundef=false \
  -Dc_args="$flags" -Dcpp_args="$flags" \
  -Dcuda=disabled -Dbench=false -Dtests="$tests" -Dfuzz="$fuzz" -Dopenmp="$openmp"
