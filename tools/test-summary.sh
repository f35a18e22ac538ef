#!/usr/bin/env bash
# Turns meson test's summary (from its log on stdin) into one closing line
# "N passed, N failed, N skipped" and exits non-zero if anything failed.
awk '
  /^Ok:/              { ok = $2 }
  /^Expected Fail:/   { xfail = $3 }
  /^Fail:/            { fail = $2 }
  /^Unexpected Pass:/ { xpass = $3 }
  /^Skipped:/         { skip = $2 }
  /^Timeout:/         { timeout = $2 }
  END {
    passed = ok + xfail; failed = fail + xpass + timeout
    if (passed + failed + skip == 0) { print "0 passed, 1 failed (no test summary found)"; exit 1 }
    printf "%d passed, %d failed, %d skipped\n", passed, failed, skip
    exit failed > 0
  }'
