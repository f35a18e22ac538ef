"""--grad-accum A (docs/distributed.md): each variant over the step's examples in A micro-batches
in turn is bit-identical (step log, weights) to the plain batch-invariant run, in shadow and in
place, with an evaluation set, for A that do and do not divide the batch; the tracked peak
shrinks with A; bad values are refused. argv: ZOTUNE DEMO_DIR"""
import os
import re
import sys
import tempfile

import dist_util
from dist_util import check, same_run

ZOTUNE, DEMO = sys.argv[1:3]
RUN = dist_util.Runner(ZOTUNE)


def train(out, args):
    """Without --quiet unless args give it: the peak is read from the summary."""
    return RUN.train(out, args, quiet=False)


def peak(err):
    m = re.search(r"peak (\d+) bytes", err)
    return int(m.group(1)) if m else -1


def main():
    tmp = tempfile.mkdtemp(prefix="zt_accum_")
    model = os.path.join(DEMO, "model")
    base = ["--model", model, "--train", os.path.join(DEMO, "task", "train.jsonl"), "--steps", "4",
            "--batch-size", "8", "--lr", "1e-3", "--eval-every", "2"]
    with_eval = base + ["--eval", os.path.join(DEMO, "task", "dev.jsonl")]
    for mode in ("shadow", "inplace"):
        ref = os.path.join(tmp, f"{mode}-plain")
        rc, err = train(ref, with_eval + ["--mode", mode, "--batch-invariant", "--quiet"])
        check(rc == 0, f"{mode}: plain batch-invariant run (rc {rc}) {err[-300:]}")
        # the sanitizer build (ZT_DIST_QUICK=1) checks one uneven split only
        for accum in (3,) if os.environ.get("ZT_DIST_QUICK") == "1" else (2, 3, 8):
            out = os.path.join(tmp, f"{mode}-{accum}")
            rc, err = train(out, with_eval + ["--mode", mode, "--grad-accum", str(accum), "--quiet"])
            check(rc == 0 and same_run(ref, out),
                  f"{mode}: --grad-accum {accum} equals the plain run (rc {rc}) {err[-300:]}")
    # the peak: training forwards only (no evaluation set, which keeps its own batch size)
    peaks = {}
    for accum in (1, 4):
        rc, err = train(os.path.join(tmp, f"peak-{accum}"), base + ["--grad-accum", str(accum)])
        peaks[accum] = peak(err)
    check(0 < peaks[4] < peaks[1], f"tracked peak with --grad-accum 4 ({peaks[4]}) below 1's "
                                   f"({peaks[1]})")
    for bad, words in (("9", "must be in 1 .. 8"), ("-1", "must be in 1 .. 8")):
        rc, err = train(os.path.join(tmp, "bad" + bad), base + ["--grad-accum", bad, "--quiet"])
        check(rc == 2 and words in err, f"--grad-accum {bad} refused: {err.strip()[-200:]}")
    rc, err = train(os.path.join(tmp, "bad-fo"), base + ["--grad-accum", "2", "--optimizer",
                                                         "adamw", "--quiet"])
    check(rc == 2 and "--micro-batches" in err, f"first-order refused: {err.strip()[-200:]}")
    return dist_util.finish(tmp)


if __name__ == "__main__":
    sys.exit(main())
