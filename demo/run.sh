#!/usr/bin/env bash
# The embedded default: MeZO fine-tuning of demo/model on demo/task (see demo/README.md).
# Usage: demo/run.sh [ZOTUNE_BINARY] [OUTPUT_DIR]   (about 100 s on 2 idle cores)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
zotune=${1:-build/src/cli/zotune}
out=${2:-$(mktemp -d)}
"$zotune" train --model "$here/model" \
    --train "$here/task/train.jsonl" --eval "$here/task/dev.jsonl" --output "$out" \
    --optimizer mezo --steps 2000 --batch-size 16 --lr 3e-4 --lr-schedule linear --eps 1e-3 \
    --eval-every 500 --seed 42
