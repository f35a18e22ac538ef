#!/usr/bin/env python3
"""Plot training curves from one or more zotune metrics.jsonl files.

    python3 tools/plot.py RUN_DIR_OR_METRICS [...] -o curves.png [--labels mezo,as2p]

Draws the training loss (smoothed with a running mean) and, when present, the dev metric
(accuracy, F1 or loss) against the step, one line per run. Needs matplotlib (pip install
matplotlib); zotune itself does not.
"""
import argparse
import json
import os
import sys


def read_metrics(path):
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    train, dev = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{number}: not JSON ({e.msg})")
            if "loss" in record:
                train.append((record["step"], record["loss"]))
            for key in ("eval_accuracy", "eval_f1", "eval_loss"):
                if key in record:
                    dev.append((record["step"], key, record[key]))
                    break
    if not train and not dev:
        sys.exit(f"{path}: no training or evaluation records")
    return train, dev


def running_mean(values, window):
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories or metrics.jsonl files")
    parser.add_argument("-o", "--output", default="curves.png", help="PNG to write")
    parser.add_argument("--labels", help="comma-separated legend labels (default: paths)")
    parser.add_argument("--smooth", type=int, default=20, help="running-mean window (steps)")
    args = parser.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("tools/plot.py needs matplotlib: pip install matplotlib")
    labels = args.labels.split(",") if args.labels else args.runs
    if len(labels) != len(args.runs):
        sys.exit(f"--labels has {len(labels)} entries for {len(args.runs)} runs")

    runs = [read_metrics(path) for path in args.runs]
    has_dev = any(dev for _, dev in runs)
    fig, axes = plt.subplots(1, 2 if has_dev else 1, figsize=(12 if has_dev else 6.5, 4.2),
                             squeeze=False)
    for (train, dev), label in zip(runs, labels):
        if train:
            steps = [s for s, _ in train]
            axes[0][0].plot(steps, running_mean([v for _, v in train], args.smooth), label=label)
        if dev:
            key = dev[0][1]
            scale = 100.0 if key == "eval_accuracy" else 1.0  # F1 is written in percent
            axes[0][1].plot([s for s, _, _ in dev], [v * scale for _, _, v in dev], marker="o",
                            label=label)
            axes[0][1].set_ylabel({"eval_accuracy": "dev accuracy (%)", "eval_f1": "dev F1 (%)",
                                   "eval_loss": "dev loss"}[key])
    axes[0][0].set_xlabel("step")
    axes[0][0].set_ylabel(f"training loss (running mean of {args.smooth})")
    axes[0][0].legend()
    if has_dev:
        axes[0][1].set_xlabel("step")
        axes[0][1].legend()
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
