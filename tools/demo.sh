#!/usr/bin/env bash
# The main job: fine-tune the bundled OPT model (demo/model, made by tools/make_demo.py) on the
# bundled sentiment task (demo/task, MeZO's SST-2 template) with MeZO on the CPU, printing
# progress and the dev accuracy before and after. About a minute of training on 2 cores.
set -euo pipefail
builddir=${1:-build}
out=${ZT_DEMO_OUTPUT:-out/demo}
zotune="$builddir/src/cli/zotune"
# the plan at the run's own shape (train's rule on the same data), so its total is the peak
# the progress lines show
"$zotune" info demo/model --train demo/task/train.jsonl --eval demo/task/dev.jsonl \
    --batch-size 16 --optimizer mezo
echo
rm -rf "$out"
exec "$zotune" train --model demo/model --train demo/task/train.jsonl --eval demo/task/dev.jsonl \
    --output "$out" --optimizer mezo --steps 2000 --batch-size 16 --lr 3e-4 --lr-schedule linear \
    --eps 1e-3 --eval-every 500 --log-every 100 --seed 42
