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
the bytes each rank sends per step, measured (the communicators' counts, from metrics.jsonl and
each rank's traffic line) and computed from the layout. Results hold for this machine and moment
only.
"""
import os
import subprocess

from scaling_common import ENV, make_workload, parse_args, print_measured, seconds_per_step


def main():
    args = parse_args(__doc__.splitlines()[0], default_steps=6)
    tmp = make_workload(args, "zt_dp_bench_")
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
    first, ranked = None, []
    for name, launcher, extra in runs:
        out = os.path.join(tmp, "out-" + str(len(name)) + str(len(extra)) + str(len(launcher)))
        p = subprocess.run(launcher + base + ["--output", out] + extra, env=ENV, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        s = seconds_per_step(out)
        first = first or s
        print(f"  {name:40s} {s:7.3f} s/step   {first / s:5.2f}x")
        if launcher:
            ranked.append((name, out, p.stderr))
    k, ranks = 2, 2
    share = -(-args.batch_size // ranks)
    print("bytes per step and rank, measured (the communicators' counts; the stop flag between "
          "steps counts in the loop's, not in a step's):")
    for name, out, stderr in ranked:
        print_measured(name, out, stderr)
    print(f"bytes each rank sends per step over {ranks} ranks, computed: {16 * k * share + 4} "
          f"(16 * K * ceil(B/P) + 4, K = {k})")


if __name__ == "__main__":
    main()
