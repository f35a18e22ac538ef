#!/usr/bin/env bash
# The main job until training lands: inspect the bundled tiny OPT model and score text with it.
set -euo pipefail
builddir=${1:-build}
"$builddir/src/cli/zotune" info tests/fixtures/opt-pre --batch-size 16 --seq-len 32
echo
"$builddir/src/cli/zotune" score tests/fixtures/opt-pre tests/fixtures/opt-pre/score.jsonl
