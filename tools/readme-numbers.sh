#!/usr/bin/env bash
# Reruns what the README's "What is measured" rests on and prints its table (tools/readme_numbers.py).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 tools/readme_numbers.py "$@"
