#!/usr/bin/env python3
"""Sums an Nsight Compute CSV (`ncu --metrics gpu__time_duration.sum --csv ...`) by kernel:
calls, total and mean time, share of the window. Used on what tools/gpu-check.sh's profiling
runs bring back (bench/results/)."""
import collections
import csv
import io
import sys

SCALE_TO_US = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: ncu_summary.py NCU.csv")
    lines = open(sys.argv[1], errors="replace").read().splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if header is None:
        sys.exit(f"ncu_summary: {sys.argv[1]}: no CSV header (\"ID\",...) found")
    per_kernel = collections.defaultdict(lambda: [0, 0.0])
    for row in csv.DictReader(io.StringIO("\n".join(lines[header:]))):
        if row["Metric Name"] != "gpu__time_duration.sum":
            continue
        name = row["Kernel Name"].split("(")[0]
        per_kernel[name][0] += 1
        per_kernel[name][1] += float(row["Metric Value"].replace(",", "")) * SCALE_TO_US[row["Metric Unit"]]
    total = sum(t for _, t in per_kernel.values())
    print(f"{sum(n for n, _ in per_kernel.values())} kernels, {total / 1e3:.3f} ms in all")
    print(f"{'ms':>9} {'share':>6} {'calls':>6} {'us/call':>9}  kernel")
    for name, (calls, us) in sorted(per_kernel.items(), key=lambda kv: -kv[1][1]):
        print(f"{us / 1e3:9.3f} {100 * us / total:5.1f}% {calls:6d} {us / calls:9.2f}  {name}")


if __name__ == "__main__":
    main()
