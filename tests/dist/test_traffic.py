"""The bytes each rank sends and receives per step (docs/distributed.md, "What a rank sends,
counted"), counted by the communicators and reported by `zotune train`, against the page's
formulas worked out here from the layout alone: data parallel (16 over 3 ranks), direction groups, pipeline
stages (the residual streams across each boundary, the targets' log-probabilities back),
pipeline x data, and --grad-accum. Each step's metrics.jsonl line (rank 0's) and every rank's
summary line are checked exactly; a run stopped by SIGTERM and resumed keeps every line's bytes;
a one-process run's lines carry none. The training data are next-token records of one length L
with a target at every position but the first, so a replica's forward of n records carries
n x L rows and n x (L - 1) targets. argv: ZOTUNE MPIRUN DEMO_DIR"""
import json
import os
import random
import re
import signal
import sys
import tempfile

import dist_util
from dist_util import QUICK, check

ZOTUNE, MPIRUN, DEMO = sys.argv[1:4]
RUN = dist_util.Runner(ZOTUNE, MPIRUN)
L = 8        # tokens per record
HIDDEN = 128  # the demo model's hidden size (C)
STEPS = 3
STOP_FLAG = 4  # bytes of the stop flag every rank all-gathers after each step
COUNT = 8      # bytes of the non-finite count the stages all-gather after each update


def share(n, parts, i):
    """Item i's share of n over `parts`, the first ones taking the remainder (16 over 3:
    6/5/5)."""
    return n // parts + (1 if i < n % parts else 0)


def ceil_div(a, b):
    return -(-a // b)


def step_bytes(ranks, rank, stages=1, groups=1, batch=16, variants=2):
    """(sent, received) by world rank `rank` in one step, from the table of
    docs/distributed.md: the contributions' all-gather (over the D replicas of each stage, when
    D > 1), and with stages the streams, the log-probabilities and the update's count."""
    replicas = ranks // stages
    stage, replica = rank % stages, rank // stages
    sent = received = 0
    if replicas > 1:  # 2 doubles per variant and example of the largest shares
        gather = 16 * ceil_div(variants, groups) * ceil_div(batch, replicas // groups)
        sent += gather
        received += (ranks - 1) * gather
    if stages > 1:
        per_group = replicas // groups
        group, in_group = replica // per_group, replica % per_group
        k = share(variants, groups, group)     # the variants this pipeline passes through
        n = share(batch, per_group, in_group)  # the records this pipeline evaluates
        stream = k * n * L * HIDDEN * 4        # K x rows x C x 4 across a boundary
        logprobs = k * n * (L - 1) * 4          # K x targets x 4, last stage to each other
        if stage < stages - 1:
            sent += stream
            received += logprobs
        if stage > 0:
            received += stream
        if stage == stages - 1:
            sent += (stages - 1) * logprobs
        sent += COUNT
        received += (ranks - 1) * COUNT
    return sent, received


def write_records(path, n, seed=5):
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            ids = [rng.randrange(3, 1600) for _ in range(L)]
            f.write(json.dumps({"input_ids": ids, "labels": [-100] + ids[1:]}) + "\n")


SUMMARY = re.compile(r"rank (\d+) of (\d+): traffic: (\d+) steps sent (\d+) bytes and received "
                     r"(\d+) bytes .*; the loop with its stop flags sent (\d+) and received (\d+)")


def check_run(name, out, err, ranks, **layout):
    """Rank 0's metrics lines and every rank's summary against step_bytes."""
    want0 = step_bytes(ranks, 0, **layout)
    try:
        with open(os.path.join(out, "metrics.jsonl")) as f:
            lines = [json.loads(line) for line in f if '"loss"' in line]
    except OSError:
        lines = []
    got0 = [(r.get("sent_bytes"), r.get("received_bytes")) for r in lines]
    check(len(got0) == STEPS and all(g == want0 for g in got0),
          f"{name}: rank 0's metrics lines carry {want0} (sent, received) a step: {got0}")
    found = {}
    for m in SUMMARY.finditer(err):
        found[int(m.group(1))] = [int(x) for x in m.groups()[2:]]
    check(sorted(found) == list(range(ranks)), f"{name}: every rank's traffic line "
          f"({sorted(found)})")
    for rank, (steps, sent, received, loop_sent, loop_received) in sorted(found.items()):
        s, r = step_bytes(ranks, rank, **layout)
        want = [STEPS, STEPS * s, STEPS * r, STEPS * (s + STOP_FLAG),
                STEPS * (r + (ranks - 1) * STOP_FLAG)]
        check([steps, sent, received, loop_sent, loop_received] == want,
              f"{name}: rank {rank}: steps, sent, received, with the stop flags "
              f"{[steps, sent, received, loop_sent, loop_received]}, want {want}")


def main():
    tmp = tempfile.mkdtemp(prefix="zt_traffic_")
    deep = os.path.join(tmp, "model-4-layers")
    dist_util.deepen(os.path.join(DEMO, "model"), deep)
    data = os.path.join(tmp, "records.jsonl")
    write_records(data, 24)
    base = ["--model", deep, "--train", data, "--steps", str(STEPS), "--lr", "1e-3",
            "--eval-every", "0"]
    cases = [
        # name, ranks, extra options, layout (step_bytes' keywords)
        ("data parallel, 16 over 3 ranks", 3, ["--batch-size", "16"], {}),
        ("2 direction groups of 2 ranks, 2 directions", 4,
         ["--batch-size", "6", "--directions", "2", "--direction-groups", "2"],
         {"groups": 2, "batch": 6, "variants": 4}),
        ("3 stages", 3, ["--batch-size", "5", "--pipeline-stages", "3"],
         {"stages": 3, "batch": 5}),
        ("2 stages in place", 2, ["--batch-size", "5", "--pipeline-stages", "2", "--mode",
                                  "inplace"], {"stages": 2, "batch": 5}),
        ("2 stages x 2 replicas, 7 records split 4/3", 4,
         ["--batch-size", "7", "--pipeline-stages", "2"], {"stages": 2, "batch": 7}),
        ("2 stages x 2 replicas in 2 direction groups", 4,
         ["--batch-size", "6", "--pipeline-stages", "2", "--directions", "2",
          "--direction-groups", "2"], {"stages": 2, "batch": 6, "groups": 2, "variants": 4}),
        ("--grad-accum 2 over 2 ranks", 2, ["--batch-size", "8", "--grad-accum", "2"],
         {"batch": 8}),
        ("--grad-accum 2 over 2 stages, 5 records as 3 + 2", 2,
         ["--batch-size", "5", "--grad-accum", "2", "--pipeline-stages", "2"],
         {"stages": 2, "batch": 5}),
    ]
    if QUICK:  # the sanitizer build: one data-parallel and one pipelined layout
        cases = [cases[0], cases[4]]
    for i, (name, ranks, extra, layout) in enumerate(cases):
        out = os.path.join(tmp, f"case-{i}")
        rc, err = RUN.train(out, base + extra, ranks)
        check(rc == 0, f"{name}: rc {rc}" + (f" {err.strip()[-300:]}" if rc else ""))
        if rc == 0:
            check_run(name, out, err, ranks, **layout)
    # Stopped by SIGTERM and resumed: the lines before the stop keep their bytes (rewritten
    # from the old file), the lines after carry their own.
    long_args = base[:] + ["--batch-size", "6"]
    long_args[long_args.index("--steps") + 1] = "100"
    out = os.path.join(tmp, "resumed")
    rc, _, err, _ = RUN.stop_midway(out, long_args, 2, 10, signal.SIGTERM, label="resume: ")
    check(rc == 130, f"resume: the stopped run ends saved (rc {rc}) {err.strip()[-200:]}")
    rc, err = RUN.train(out, long_args + ["--resume"], 2)
    want = step_bytes(2, 0, batch=6)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        got = [(r.get("sent_bytes"), r.get("received_bytes")) for r in map(json.loads, f)
               if "loss" in r]
    check(rc == 0 and len(got) == 100 and set(got) == {want},
          f"resume: all 100 step lines carry {want} (rc {rc}, {len(got)} lines, "
          f"{sorted(set(got))[:4]})")

    out = os.path.join(tmp, "one-process")
    rc, err = RUN.train(out, base + ["--batch-size", "6"])
    with open(os.path.join(out, "metrics.jsonl")) as f:
        keys = set().union(*(json.loads(line).keys() for line in f))
    check(rc == 0 and "loss" in keys and not keys & {"sent_bytes", "received_bytes"},
          f"one process: no bytes in its lines ({sorted(keys)})")
    return dist_util.finish(tmp)


if __name__ == "__main__":
    sys.exit(main())
