#!/usr/bin/env python3
"""Gathers what tools/gpu-check.sh measured into one JSON document and prints its summary.
Standard library only (the GPU machine may have nothing else)."""
import argparse
import datetime
import json
import os
import re

WARMUP_STEPS = 10  # steps left out of the steady-state rate: allocation, GEMM algorithm search


def first_json(path):
    """The first JSON document in a log that may hold other output before or after it."""
    try:
        text = open(path, errors="replace").read()
    except OSError:
        return None
    decoder = json.JSONDecoder()
    for match in re.finditer(r"^\{", text, re.M):
        try:
            return decoder.raw_decode(text[match.start():])[0]
        except ValueError:
            continue
    return None


def train_result(logs, name):
    out = {}
    try:
        rows = [json.loads(line) for line in open(os.path.join(logs, f"metrics_{name}.jsonl"))]
    except (OSError, ValueError):
        rows = []
    steps = [r for r in rows if "elapsed_s" in r and "loss" in r]
    if steps:
        out["steps"] = steps[-1]["step"]
        out["elapsed_s"] = steps[-1]["elapsed_s"]
        out["first_loss"], out["last_loss"] = steps[0]["loss"], steps[-1]["loss"]
        warm = [r for r in steps if r["step"] >= WARMUP_STEPS]
        if len(warm) >= 2 and warm[-1]["step"] > warm[0]["step"]:
            out["ms_per_step"] = round(1e3 * (warm[-1]["elapsed_s"] - warm[0]["elapsed_s"])
                                       / (warm[-1]["step"] - warm[0]["step"]), 3)
            out["ms_per_step_from_step"] = warm[0]["step"]
    try:
        log = open(os.path.join(logs, f"{name}.log"), errors="replace").read()
        peak = re.search(r"peak (\d+) bytes", log)
        if peak:
            out["peak_tracked_bytes"] = int(peak.group(1))
        out["log_tail"] = log.splitlines()[-4:]
    except OSError:
        pass
    return out


def main():
    ap = argparse.ArgumentParser()
    for name in ("--work", "--logs", "--gpu-csv", "--sizes", "--out"):
        ap.add_argument(name, required=True)
    a = ap.parse_args()
    stages = {}
    for line in open(os.path.join(a.work, "stages")):
        name, rc, seconds = line.split()
        stages[name] = {"exit": int(rc), "seconds": int(seconds)}
    gpu = open(a.gpu_csv).read().strip().splitlines()
    fields = [f.strip() for f in gpu[0].split(",")] if gpu else []
    doc = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": dict(zip(["name", "compute_cap", "memory", "driver", "max_sm_clock"], fields)),
        "stages": stages,
        "gpu_suite_tail": open(os.path.join(a.logs, "gpu_suite.log"), errors="replace")
        .read().splitlines()[-25:] if os.path.exists(os.path.join(a.logs, "gpu_suite.log")) else [],
        "bench_ops": {}, "train": {}, "roofline": {},
    }
    for task, log in (("train", "roofline.log"), ("train_lm", "roofline_lm.log")):
        roof = first_json(os.path.join(a.logs, log)) or {}
        for entry in roof.get("sizes", []):
            ms = {s["scheme"]: s["ms"] for s in entry["schemes"]}
            if "measured" in entry:
                ms[entry["measured"]["scheme"]] = entry["measured"]["ms"]
            doc["roofline"][f"{task}_{entry['size']}"] = ms
    for size in a.sizes.split():
        doc["bench_ops"][size] = first_json(os.path.join(a.logs, f"bench_ops_{size}.log"))
        for task in ("train", "train_lm"):
            doc["train"][f"{task}_{size}"] = train_result(a.logs, f"{task}_{size}")
        summary = os.path.join(a.logs, f"profile_summary_{size}.txt")
        if os.path.exists(summary):
            doc.setdefault("profile", {})[size] = open(summary).read().splitlines()
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")

    print(f"gpu-check summary: {doc['gpu'].get('name', '?')} (cc {doc['gpu'].get('compute_cap')},"
          f" driver {doc['gpu'].get('driver')})")
    for name, s in stages.items():
        print(f"  {name:<18} exit {s['exit']:>3}  {s['seconds']:>4} s")
    for size in a.sizes.split():
        ops = doc["bench_ops"][size] or {}
        for r in ops.get("results", []):
            print(f"  ops {size:<5} {r['op']:<10} {r['case']:<14} {r['shape']:<22} "
                  f"{r['ms']:9.3f} ms  {r.get('gb_per_s', 0):8.1f} GB/s  "
                  f"{r.get('gflop_per_s', 0) / 1e3:7.1f} TFLOP/s")
        for task, what in (("train", "1 target/seq"), ("train_lm", "every token")):
            t = doc["train"][f"{task}_{size}"]
            print(f"  train opt-{size} ({what}): {t.get('ms_per_step', '?')} ms/step over steps "
                  f"{t.get('ms_per_step_from_step', '?')}..{t.get('steps', '?')}, loss "
                  f"{t.get('first_loss', '?')} -> {t.get('last_loss', '?')}, peak "
                  f"{t.get('peak_tracked_bytes', '?')} B")
            roof_ms = doc["roofline"].get(f"{task}_opt-{size}", {})
            print(f"    roofline: " + ", ".join(f"{k}: {v:.2f} ms" for k, v in roof_ms.items()))


if __name__ == "__main__":
    main()
