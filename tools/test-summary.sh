#!/usr/bin/env bash
# Turns meson test's summaries into one closing line "N passed, N failed, N skipped" and exits
# non-zero if anything failed. Usage: tools/test-summary.sh [LOG...] (stdin without a LOG).
# Several logs are summed (`make check`: the normal build's and the sanitizer build's). A log
# without a summary (missing, or meson test never got to the end) counts as one failure:
# silence must not pass.
set -uo pipefail
[ $# -gt 0 ] || set -- /dev/stdin
passed=0 failed=0 skipped=0 missing=""
for log in "$@"; do
  # "passed failed skipped", or nothing when the log has no summary
  counts=$(awk '
    /^Ok:/              { ok = $2; seen = 1 }
    /^Expected Fail:/   { xfail = $3 }
    /^Fail:/            { fail = $2 }
    /^Unexpected Pass:/ { xpass = $3 }
    /^Skipped:/         { skip = $2 }
    /^Timeout:/         { timeout = $2 }
    END { if (seen) printf "%d %d %d\n", ok + xfail, fail + xpass + timeout, skip }
  ' "$log" 2>/dev/null)
  if [ -z "$counts" ]; then
    failed=$((failed + 1))
    missing="$missing $log"
    continue
  fi
  read -r p f s <<<"$counts"
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
done
note=""
[ -z "$missing" ] || note=" (no test summary in$missing)"
echo "$passed passed, $failed failed, $skipped skipped$note"
[ "$failed" -eq 0 ]
