#!/usr/bin/env python3
"""Steps per second against ranks on the CPU (docs/distributed.md), run by hand, never by CI.

    python3 bench/dp_scaling.py --zotune build/src/cli/zotune [--shape 125m] [--steps 6]
                                [--batch-size 16] [--seq-len 64] [--targets-per-seq 1]

Writes an OPT-shaped random model and task (tools/make_random_opt.py, needs numpy), then trains
`--steps` MeZO steps in each configuration, back to back on the same cores:
  one process, 1 thread             (OpenBLAS's fastest path)
  one process, 1 thread, --batch-invariant (what data-parallel runs compute)
  2 MPI ranks x 1 thread           (data parallel, the batch split in two)
  one process, 2 threads
and prints seconds per step (the time after loading, from metrics.jsonl's elapsed times) and
the bytes each rank sends per step. Results hold for this machine and moment only.
"""
import argparse
import json
import os
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zotune", required=True)
    ap.add_argument("--shape", default="125m")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--targets-per-seq", type=int, default=1)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="zt_dp_bench_")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_random_opt.py"), "--shape",
                    args.shape, "--dtype", "f32", "--out", tmp, "--records",
                    str(4 * args.batch_size), "--seq-len", str(args.seq_len),
                    "--targets-per-seq", str(args.targets_per_seq)], check=True)
    base = [args.zotune, "train", "--model", os.path.join(tmp, "model"), "--train",
            os.path.join(tmp, "train.jsonl"), "--steps", str(args.steps), "--batch-size",
            str(args.batch_size), "--eval-every", "0", "--save-every", "0", "--log-every", "0",
            "--lr", "1e-6", "--quiet"]
    mpirun = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", "2"]
    runs = [("1 process, 1 thread", [], ["--threads", "1"]),
            ("1 process, 1 thread, batch-invariant", [], ["--threads", "1", "--batch-invariant"]),
            ("2 ranks x 1 thread (data parallel)", mpirun, ["--threads", "1"]),
            ("1 process, 2 threads", [], ["--threads", "2"])]
    print(f"opt-{args.shape}-shaped, f32, MeZO, batch {args.batch_size} x {args.seq_len} tokens, "
          f"{args.targets_per_seq or 'every'} target(s) per sequence, {args.steps} steps")
    first = None
    for name, launcher, extra in runs:
        out = os.path.join(tmp, "out-" + str(len(name)) + str(len(extra)) + str(len(launcher)))
        subprocess.run(launcher + base + ["--output", out] + extra, env=ENV, check=True,
                       stdout=subprocess.DEVNULL)
        s = seconds_per_step(out)
        first = first or s
        print(f"  {name:40s} {s:7.3f} s/step   {first / s:5.2f}x")
    k, ranks = 2, 2
    share = -(-args.batch_size // ranks)
    print(f"bytes each rank sends per step over {ranks} ranks: {16 * k * share + 4} "
          f"(16 * K * ceil(B/P) + 4, K = {k})")


if __name__ == "__main__":
    main()
