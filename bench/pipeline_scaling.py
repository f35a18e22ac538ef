#!/usr/bin/env python3
"""Steps per second of pipeline stages on the CPU (docs/distributed.md), run by hand, never by CI.

    python3 bench/pipeline_scaling.py --zotune build/src/cli/zotune [--shape 125m] [--steps 4]
                                      [--batch-size 16] [--seq-len 64] [--targets-per-seq 1]

Writes an OPT-shaped random model and task (tools/make_random_opt.py, needs numpy), then trains
`--steps` MeZO steps in each configuration, back to back on the same cores:
  one process, 1 thread                 (the reference a pure pipeline equals bit for bit)
  2 pipeline stages x 1 thread          (mpirun -np 2 --pipeline-stages 2: one replica)
  2 data-parallel ranks x 1 thread      (for comparison: bench/dp_scaling.py's layout)
A 2-core machine holds no more (2 stages x 2 replicas would put 4 ranks on 2 cores).

Prints seconds per step (the time after loading, from metrics.jsonl's elapsed times), the weight
bytes each rank holds (from the ranks' own "holding X of the model's Y weight bytes" lines), and
the bytes each rank sends per step: measured (the communicators' counts, from metrics.jsonl and
each rank's traffic line) and computed from the layout with the formulas of docs/distributed.md
("Bytes per step"). Results hold for this machine and moment only.
"""
import json
import os
import filecmp
import re
import shutil
import subprocess

from scaling_common import ENV, make_workload, parse_args, print_measured, seconds_per_step

MPIRUN = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", "2"]


def held_bytes(stderr):
    """{rank: (bytes held, the model's bytes)} from the stages' own lines."""
    held = {}
    for m in re.finditer(r"rank (\d+) of \d+: pipeline stage .* holding (\d+) of the model's "
                         r"(\d+) weight bytes", stderr):
        held[int(m.group(1))] = (int(m.group(2)), int(m.group(3)))
    return held


def main():
    args = parse_args(__doc__.splitlines()[0], default_steps=4)
    tmp = make_workload(args, "zt_pipe_bench_")
    model = os.path.join(tmp, "model")
    with open(os.path.join(model, "config.json")) as f:
        hidden = json.load(f)["hidden_size"]
    base = [args.zotune, "train", "--model", model, "--train", os.path.join(tmp, "train.jsonl"),
            "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--eval-every", "0",
            "--save-every", "0", "--log-every", "0", "--lr", "1e-6", "--quiet", "--threads", "1"]
    runs = [("1 process, 1 thread", [], []),
            ("2 pipeline stages x 1 thread", MPIRUN, ["--pipeline-stages", "2"]),
            ("2 data-parallel ranks x 1 thread", MPIRUN, [])]
    print(f"opt-{args.shape}-shaped, f32, MeZO (K = 2), batch {args.batch_size} x {args.seq_len} "
          f"tokens, {args.targets_per_seq or 'every'} target(s) per sequence, {args.steps} steps")
    first, held, ranked = None, {}, []
    for i, (name, launcher, extra) in enumerate(runs):
        out = os.path.join(tmp, f"out-{i}")
        p = subprocess.run(launcher + base + ["--output", out] + extra, env=ENV, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        s = seconds_per_step(out)
        first = first or s
        print(f"  {name:36s} {s:7.3f} s/step  {1 / s:6.3f} steps/s  {first / s:5.2f}x")
        if extra:
            held = held_bytes(p.stderr)
        if launcher:
            ranked.append((name, out, p.stderr))
    same = filecmp.cmp(os.path.join(tmp, "out-0", "steplog.jsonl"),
                       os.path.join(tmp, "out-1", "steplog.jsonl"), shallow=False)
    print(f"2 stages' step log equals one process's byte for byte: {'yes' if same else 'NO'}")
    print("weight bytes each rank holds (the ranks' own report):")
    whole = next(iter(held.values()))[1] if held else float("nan")
    print(f"  1 process: {whole} (all)")
    for rank, (mine, whole) in sorted(held.items()):
        print(f"  2 stages, rank {rank}: {mine} of {whole} ({mine / whole:.2f})")
    k = 2
    rows = args.batch_size * args.seq_len
    targets = args.batch_size * (args.targets_per_seq or args.seq_len)
    boundary = k * rows * hidden * 4
    back = k * targets * 4
    share = -(-args.batch_size // 2)
    print("bytes per step and rank, measured (the communicators' counts; the stop flag between "
          "steps counts in the loop's, not in a step's):")
    for name, out, stderr in ranked:
        print_measured(name, out, stderr)
    print("bytes each rank sends per step, computed from the layout, docs/distributed.md:")
    print(f"  2 stages, rank 0: {boundary} (residual streams: K x rows x C x 4 = {k} x {rows} x "
          f"{hidden} x 4)")
    print(f"  2 stages, rank 1: {back} (log-probabilities: K x targets x 4 = {k} x {targets} x 4)")
    print("  2 stages, each rank also: 8 (the update's non-finite count) and 4 (stop flag), in "
          "all-gathers")
    print(f"  2 data-parallel ranks, each: {16 * k * share + 4} (16 x K x ceil(B/P) + 4)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
