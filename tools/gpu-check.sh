#!/usr/bin/env bash
# The first-contact check for a lent GPU (docs/design.md §5.6): the `gpu` suite, bench_ops on
# the CUDA backend, and timed `zotune train --device cuda` runs on random opt-125m- and
# opt-1.3b-shaped models (f16, batch 16 x 256) beside the roofline's prediction. Writes
# bench/results/gpu-<date>.json (and a copy plus the logs under $OUT when that is set) and prints
# a summary. Aims at 8 minutes on an H100; every stage has its own time limit and a failing
# stage does not stop the others.
#
#   tools/gpu-check.sh [--build DIR]       configure (CUDA on, gpu_arch from nvidia-smi) and
#                                          build DIR (default build-gpu), then check
#   tools/gpu-check.sh --kit FILE          check with the binaries of a kit (below)
#   tools/gpu-check.sh --make-kit FILE     build here for --arch (default 90) and pack the
#                                          binaries with the shared libraries they need that a
#                                          CUDA machine may lack (OpenBLAS, cJSON, ...), for a
#                                          GPU machine that cannot install them
#   options: --arch LIST, --steps N (train steps per model, default 40), --quick (125m only,
#            short bench)
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
builddir=build-gpu
kit=""
make_kit=""
arch=""
steps=40
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) builddir=$2; shift 2 ;;
    --kit) kit=$2; shift 2 ;;
    --make-kit) make_kit=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-check: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
targets=(src/cli/zotune tests/gpu/test_gpu_ops tests/gpu/test_gpu_attention
         tests/gpu/test_gpu_half_activations bench/bench_ops bench/roofline)
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="/usr/local/cuda/bin:$PATH"

build() { # DIR ARCH
  if [ ! -f "$1/build.ninja" ]; then
    meson setup "$1" -Dcuda=enabled -Dgpu_arch="$2" -Dbuildtype=release -Dmpi=disabled \
      >"$1.setup.log" 2>&1 || { cat "$1.setup.log"; return 1; }
  fi
  # the NCCL test where the toolkit has NCCL (meson found it)
  grep -q '^build tests/gpu/test_gpu_nccl:' "$1/build.ninja" && targets+=(tests/gpu/test_gpu_nccl)
  ninja -C "$1" "${targets[@]}"
}

if [ -n "$make_kit" ]; then
  dir=$(mktemp -d)
  build "$builddir" "${arch:-90}" || exit 1
  mkdir -p "$dir/gpukit/bin" "$dir/gpukit/lib"
  for t in "${targets[@]}"; do strip -o "$dir/gpukit/bin/$(basename "$t")" "$builddir/$t"; done
  # every resolved library outside libc's own set and the CUDA libraries the machine has
  ldd "$builddir/src/cli/zotune" "$builddir/tests/gpu/test_gpu_ops" | awk '/=> \// {print $3}' |
    sort -u | grep -Ev '/(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|libgomp|libcublas|libcublasLt|libcudnn)\.so' |
    while read -r lib; do cp -L "$lib" "$dir/gpukit/lib/"; done
  tar -C "$dir" -cf - gpukit | xz -T0 -6 >"$make_kit" && rm -rf "$dir"
  echo "gpu-check: kit $make_kit ($(du -h "$make_kit" | cut -f1)): $(ls "$builddir"/src/cli/zotune)"
  exit 0
fi

date_tag=$(date -u +%Y-%m-%d)
work=$(mktemp -d /tmp/zt-gpu-check.XXXXXX)
logs=$work/logs
mkdir -p "$logs" bench/results
export ZT_FIXTURES="$repo/tests/fixtures"
say() { echo "== gpu-check $(date -u +%H:%M:%S) $*"; }
# STAGE NAME LIMIT_S CMD...: runs CMD under a limit, its output to the log and the terminal,
# and records the exit status for the summary
stage() {
  local name=$1 limit=$2; shift 2
  say "$name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$logs/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "$name $rc $((SECONDS - t0))" >>"$work/stages"
  say "$name: exit $rc after $((SECONDS - t0)) s"
  # what a lent machine sends back is a few files: the logs so far, in one, after every stage
  [ -n "${OUT:-}" ] && tar -C "$work" -czf "$OUT/gpu-check-logs.tgz" logs stages
  return "$rc"
}

say "machine"
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version,clocks.max.sm \
  --format=csv,noheader 2>/dev/null | tee "$work/gpu.csv"
gpu_name=$(head -1 "$work/gpu.csv" | cut -d, -f1)
cc=$(head -1 "$work/gpu.csv" | cut -d, -f2 | tr -d ' .')
command -v nvcc >/dev/null && nvcc --version | tail -1

if [ -n "$kit" ]; then
  mkdir -p "$work/kit" && tar -C "$work/kit" -xJf "$kit" || exit 1
  bin=$work/kit/gpukit/bin
  export LD_LIBRARY_PATH="$work/kit/gpukit/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  zotune=$bin/zotune test_gpu=$bin/test_gpu_ops bench_ops=$bin/bench_ops roofline=$bin/roofline
else
  say "build $builddir (gpu_arch ${arch:-${cc:-90}})"
  t0=$SECONDS
  build "$builddir" "${arch:-${cc:-90}}" 2>&1 | tee "$logs/build.log"
  rc=${PIPESTATUS[0]}
  echo "build $rc $((SECONDS - t0))" >>"$work/stages"
  [ "$rc" = 0 ] || { say "build failed"; exit 1; }
  zotune=$builddir/src/cli/zotune test_gpu=$builddir/tests/gpu/test_gpu_ops
  bench_ops=$builddir/bench/bench_ops roofline=$builddir/bench/roofline
fi

case "$gpu_name" in
  *H200*) roof_gpu=h200 ;; *H100*PCIe*) roof_gpu=h100-pcie ;; *A100*) roof_gpu=a100 ;; *) roof_gpu=h100 ;;
esac
sizes="125m 1.3b"
[ "$quick" = 1 ] && sizes="125m"

OPENBLAS_NUM_THREADS=1 stage gpu_suite 180 "$test_gpu"
# attention on cuDNN (--gemm half) against the CPU and the f32 kernel: the path each shape took
OPENBLAS_NUM_THREADS=1 stage gpu_attention 60 "$(dirname "$test_gpu")/test_gpu_attention"
# round_half / layernorm_half / linear_half_in / linear_half_out against the plain ops, and the
# half-mode forward with and without them: bit for bit on the real cuBLASLt, linear_half_out's
# half-D epilogue within one half ulp (it prints how many elements moved)
OPENBLAS_NUM_THREADS=1 stage gpu_half_activations 60 \
  "$(dirname "$test_gpu")/test_gpu_half_activations"
test_gpu_nccl=$(dirname "$test_gpu")/test_gpu_nccl
[ -x "$test_gpu_nccl" ] && stage gpu_nccl 120 "$test_gpu_nccl" $(command -v mpirun)
for s in $sizes; do
  stage "bench_ops_$s" 120 "$bench_ops" --backend cuda --shape "$s" --dtype f16 --json \
    $([ "$quick" = 1 ] && echo --quick) >/dev/null
  cp "$logs/bench_ops_$s.log" "$work/bench_ops_$s.json"
done
for s in $sizes; do
  stage "make_model_$s" 120 python3 tools/make_random_opt.py --shape "$s" --dtype f16 \
    --out "$work/opt-$s" --records 256 --seq-len 256 --targets-per-seq 1
  # train_S: MeZO's shape (one target row per sequence, as the roofline charges it);
  # train_lm_S: the loss on every token (the LM head and log-probs over all 4096 rows)
  for task in train train_lm; do
    stage "${task}_$s" 240 "$zotune" train --device cuda --model "$work/opt-$s/model" \
      --train "$work/opt-$s/$task.jsonl" --output "$work/opt-$s/out" --optimizer mezo \
      --steps "$steps" --batch-size 16 --lr 1e-7 --eps 1e-3 --log-every 10 --save-every 100000
    cp "$work/opt-$s/out/metrics.jsonl" "$logs/metrics_${task}_$s.jsonl" 2>/dev/null
    rm -rf "$work/opt-$s/out"
    [ -n "${OUT:-}" ] && tar -C "$work" -czf "$OUT/gpu-check-logs.tgz" logs stages
  done
  # where one step's GPU time goes, kernel by kernel: ncu serialises kernels and flushes caches
  # between them, so small kernels read slower than they run in the step. The window skips the
  # first steps and spans about one step (opt-125m: ~1500 kernels, opt-1.3b: ~2800).
  if command -v ncu >/dev/null; then
    case "$s" in 125m) skip=3000 count=1500 task=train_lm ;; *) skip=6000 count=2900 task=train ;; esac
    stage "profile_$s" 240 ncu --metrics gpu__time_duration.sum --csv --launch-skip "$skip" \
      --launch-count "$count" "$zotune" train --device cuda --model "$work/opt-$s/model" \
      --train "$work/opt-$s/$task.jsonl" --output "$work/opt-$s/out" --steps "$steps" \
      --batch-size 16 --save-every 100000 --quiet >/dev/null
    { echo "# $task opt-$s: ncu --launch-skip $skip --launch-count $count"
      python3 tools/ncu_summary.py "$logs/profile_$s.log"; } | tee "$logs/profile_summary_$s.txt"
    rm -rf "$work/opt-$s/out"
  fi
  rm -rf "$work/opt-$s/model"
done
# the ideal step, and today's at the rates bench_ops just measured, for both training shapes
measured=()
for s in $sizes; do
  grep -q '^{' "$logs/bench_ops_$s.log" 2>/dev/null && measured+=(--measured "$logs/bench_ops_$s.log")
done
stage roofline 60 "$roofline" --size "$(echo $sizes | tr ' ' ,)" --dtype f16 --gpu "$roof_gpu" \
  --json "${measured[@]}" >/dev/null
stage roofline_lm 60 "$roofline" --size "$(echo $sizes | tr ' ' ,)" --dtype f16 \
  --gpu "$roof_gpu" --targets-per-seq 255 --json "${measured[@]}" >/dev/null

result=bench/results/gpu-$date_tag.json
n=2
while [ -e "$result" ]; do result=bench/results/gpu-$date_tag-$n.json; n=$((n + 1)); done
python3 tools/gpu_check_report.py --work "$work" --logs "$logs" --gpu-csv "$work/gpu.csv" \
  --sizes "$sizes" --out "$result"
[ -n "${OUT:-}" ] && cp "$result" "$OUT/"
say "wrote $result"
