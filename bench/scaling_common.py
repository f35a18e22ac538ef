"""What bench/dp_scaling.py and bench/pipeline_scaling.py share: the environment their ranks run
in, the options and random workload they take, seconds per step from a run's metrics, and the
bytes each rank measured (docs/distributed.md, "What a rank sends, counted")."""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def seconds_per_step(out):
    """Mean time of the steps after the first (which includes warm-up), from metrics.jsonl."""
    elapsed = []
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if "elapsed_s" in rec and "loss" in rec:
                elapsed.append(rec["elapsed_s"])
    if len(elapsed) < 2:
        return float("nan")
    return (elapsed[-1] - elapsed[0]) / (len(elapsed) - 1)


def rank0_step_bytes(out):
    """[(sent, received)] of each step line of metrics.jsonl (rank 0's bytes of that step)."""
    steps = []
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if "sent_bytes" in rec:
                steps.append((rec["sent_bytes"], rec["received_bytes"]))
    return steps


TRAFFIC = re.compile(r"rank (\d+) of \d+: traffic: (\d+) steps sent (\d+) bytes and received "
                     r"(\d+) bytes .*; the loop with its stop flags sent (\d+) and received (\d+)")


def measured_bytes(stderr):
    """{rank: (sent, received, sent with stop flags, received with stop flags)} per step, from
    every rank's traffic line at the end of a run."""
    per_rank = {}
    for m in TRAFFIC.finditer(stderr):
        rank, steps = int(m.group(1)), max(int(m.group(2)), 1)
        per_rank[rank] = tuple(int(m.group(i)) / steps for i in range(3, 7))
    return per_rank


def print_measured(label, out, stderr):
    """The measured bytes per step of a run over several ranks, each rank's, and whether rank
    0's step lines all agree."""
    lines = rank0_step_bytes(out)
    steady = "the same every step" if len(set(lines)) == 1 else f"varying: {lines}"
    print(f"  {label}: rank 0's metrics.jsonl lines: {lines[0] if lines else None} (sent, "
          f"received), {steady}")
    for rank, (sent, received, loop_sent, loop_received) in sorted(measured_bytes(stderr).items()):
        print(f"  {label}, rank {rank}: sent {sent:.0f}, received {received:.0f} per step "
              f"(with the stop flag: {loop_sent:.0f} and {loop_received:.0f})")


def parse_args(description, default_steps):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--zotune", required=True)
    ap.add_argument("--shape", default="125m")
    ap.add_argument("--steps", type=int, default=default_steps)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--targets-per-seq", type=int, default=1)
    return ap.parse_args()


def make_workload(args, prefix):
    """A random OPT-shaped f32 model and LM task (tools/make_random_opt.py) in a new directory,
    which it returns: model/ and train.jsonl."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_random_opt.py"), "--shape",
                    args.shape, "--dtype", "f32", "--out", tmp, "--records",
                    str(4 * args.batch_size), "--seq-len", str(args.seq_len),
                    "--targets-per-seq", str(args.targets_per_seq)], check=True)
    return tmp
