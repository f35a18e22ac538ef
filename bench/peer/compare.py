#!/usr/bin/env python3
"""Times zotune's MeZO step against the PyTorch peer (bench/peer/mezo_peer.py), back to back.

Builds nothing: give it a zotune build directory (with src/cli/zotune and, for the phase split,
bench/bench_step). For each configuration (shape, dtype, threads) it runs `zotune train` on a
random opt-125m written by tools/make_random_opt.py, then the peer on the same model and data with
the same threads, and repeats the pair --repeats times. Each run's seconds per step is the median
of its steps after --warmup (zotune: the differences of metrics.jsonl's elapsed_s, so loading and
saving are left out; the peer: its own step timer, loading left out). The table gives, per
configuration, the median over the repeats of each side and the ratio peer / zotune of the
medians.

Before each run it waits until the machine is quiet: the cores busy over a --probe-s window
(from /proc/stat, nothing of ours running) below --max-busy and the 1-minute load average below
--max-load, polling for at most --max-wait-s (then it measures anyway and marks the row). During
each run it measures how many cores the other processes kept busy (/proc/stat's busy time less
the run's own CPU time), reported as "others".

Shapes: lm = every token a target (train_lm.jsonl), sst2 = one target per sequence (train.jsonl,
MeZO's SST-2 classification-as-LM shape; zotune computes the LM head on the target rows only,
the peer on all rows as MeZO's loop does).

    bench/peer/compare.py --build build                      # the default set (see --configs)
    bench/peer/compare.py --build build --configs lm:4:f32:1,sst2:16:f32:2 --repeats 1
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SEQ_LEN = 64
DEFAULT_CONFIGS = ",".join([
    "lm:4:f32:1", "lm:4:f32:2", "sst2:16:f32:1", "sst2:16:f32:2",
    "lm:4:f16:1", "lm:4:bf16:1", "sst2:16:f16:1", "sst2:16:bf16:1",
])


def parse_args():
    ap = argparse.ArgumentParser(
        description="zotune vs the PyTorch MeZO peer, back to back; prints seconds/step and "
                    "the ratio peer/zotune.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--build", required=True, help="zotune build directory (nothing is built)")
    ap.add_argument("--work", default="/tmp/zotune-peer",
                    help="models, data and run outputs (/tmp/zotune-peer)")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS,
                    help="comma-separated SHAPE:BATCH:DTYPE:THREADS, SHAPE lm or sst2 "
                         f"(default {DEFAULT_CONFIGS})")
    ap.add_argument("--repeats", type=int, default=2, help="zotune+peer pairs per config (2)")
    ap.add_argument("--steps", type=int, default=4, help="steps per run (4)")
    ap.add_argument("--warmup", type=int, default=1, help="first steps left out (1)")
    ap.add_argument("--zotune-mode", choices=["shadow", "inplace"], default="shadow",
                    help="zotune train --mode (shadow, its default)")
    ap.add_argument("--peer-update", choices=["published", "fused"], default="published",
                    help="mezo_peer.py --update (published)")
    ap.add_argument("--no-bench-step", action="store_true",
                    help="skip bench_step's phase split of the lm configurations")
    ap.add_argument("--python", default=sys.executable, help="python for the peer")
    ap.add_argument("--max-load", type=float, default=1.5, help="1-minute load to wait below")
    ap.add_argument("--max-busy", type=float, default=0.5,
                    help="cores busy (others) over the probe window to wait below (0.5)")
    ap.add_argument("--probe-s", type=float, default=5.0, help="quiet probe window, s (5)")
    ap.add_argument("--max-wait-s", type=float, default=600.0,
                    help="longest wait for quiet before one run (600)")
    ap.add_argument("--json-out", help="write every run's numbers to this JSON file")
    a = ap.parse_args()
    configs = []
    for item in a.configs.split(","):
        parts = item.split(":")
        if (len(parts) != 4 or parts[0] not in ("lm", "sst2") or parts[2] not in
                ("f32", "f16", "bf16") or not parts[1].isdigit() or not parts[3].isdigit()):
            ap.error(f"--configs: bad item {item!r} (SHAPE:BATCH:DTYPE:THREADS, e.g. lm:4:f32:1)")
        configs.append({"shape": parts[0], "batch": int(parts[1]), "dtype": parts[2],
                        "threads": int(parts[3])})
    a.configs = configs
    if a.repeats < 1 or not 0 <= a.warmup < a.steps:
        ap.error("need --repeats >= 1 and 0 <= --warmup < --steps")
    for exe in ("src/cli/zotune",) + (() if a.no_bench_step else ("bench/bench_step",)):
        if not os.access(os.path.join(a.build, exe), os.X_OK):
            ap.error(f"{os.path.join(a.build, exe)} not found (build it: ninja -C BUILD {exe})")
    return a


def log(msg):
    print(f"compare: {msg}", file=sys.stderr, flush=True)


def cpu_busy_ticks():
    """Busy and total jiffies of all CPUs from /proc/stat (steal left out of both)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq = v[:7]
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def busy_cores(window):
    tick = os.sysconf("SC_CLK_TCK")
    b0, _ = cpu_busy_ticks()
    time.sleep(window)
    b1, _ = cpu_busy_ticks()
    return (b1 - b0) / tick / window


def wait_quiet(a):
    """Waits until the machine is quiet; returns (waited_s, load1, busy, quiet)."""
    start = time.monotonic()
    while True:
        busy = busy_cores(a.probe_s)
        load = load1()
        waited = time.monotonic() - start
        if busy < a.max_busy and load < a.max_load:
            return waited, load, busy, True
        if waited > a.max_wait_s:
            log(f"not quiet after {waited:.0f} s (load {load:.2f}, busy {busy:.2f}): "
                "measuring anyway")
            return waited, load, busy, False
        log(f"waiting for quiet: load {load:.2f}, busy {busy:.2f} cores")
        time.sleep(10)


def proc_cpu_s(pid):
    """User + system CPU seconds of a running process, all its threads (/proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def count_lines(path):
    try:
        with open(path) as f:
            return sum(1 for line in f if line.endswith("\n"))
    except OSError:
        return 0


def timed_run(cmd, env=None, watch=None):
    """Runs cmd; returns (stdout, wall_s, own_cpu_s, others_cores, marks). With watch (a file
    the process appends one line to per step), marks holds the process's CPU seconds read as
    each line appears (polled every 20 ms)."""
    tick = os.sysconf("SC_CLK_TCK")
    b0, _ = cpu_busy_ticks()
    r0 = os.times()
    t0 = time.monotonic()
    marks = []
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        if watch:
            seen = 0
            while proc.poll() is None:
                n = count_lines(watch)
                if n > seen:
                    cpu = proc_cpu_s(proc.pid)
                    marks += [cpu] * (n - seen)
                    seen = n
                time.sleep(0.02)
        stdout, stderr = proc.communicate()
    wall = time.monotonic() - t0
    r1 = os.times()
    b1, _ = cpu_busy_ticks()
    if proc.returncode != 0:
        sys.stderr.write(stderr[-4000:])
        sys.exit(f"compare: {cmd[0]} exited {proc.returncode}: {' '.join(cmd)}")
    own = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    others = max(0.0, ((b1 - b0) / tick - own) / wall)
    return stdout, wall, own, others, marks


def make_models(a, dtypes):
    for d in dtypes:
        out = os.path.join(a.work, d)
        if os.path.exists(os.path.join(out, "train_lm.jsonl")):
            continue
        log(f"writing the random opt-125m {d} to {out}")
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_random_opt.py"),
                        "--shape", "125m", "--dtype", d, "--seq-len", str(SEQ_LEN),
                        "--targets-per-seq", "1", "--records", "256", "--out", out], check=True)


def data_of(a, c):
    name = "train_lm.jsonl" if c["shape"] == "lm" else "train.jsonl"
    return os.path.join(a.work, c["dtype"], "model"), os.path.join(a.work, c["dtype"], name)


def run_zotune(a, c, tag):
    model, data = data_of(a, c)
    out = os.path.join(a.work, "runs", tag)
    shutil.rmtree(out, ignore_errors=True)
    cmd = [os.path.join(a.build, "src", "cli", "zotune"), "train", "--model", model,
           "--train", data, "--output", out, "--optimizer", "mezo", "--mode", a.zotune_mode,
           "--steps", str(a.steps), "--batch-size", str(c["batch"]),
           "--threads", str(c["threads"]), "--lr", "1e-6", "--eps", "1e-3", "--seed", "42",
           "--log-every", "1", "--eval-every", "1000000", "--save-every", "1000000", "--quiet"]
    metrics = os.path.join(out, "metrics.jsonl")
    _, wall, own, others, marks = timed_run(cmd, watch=metrics)
    with open(metrics) as f:
        elapsed = [json.loads(line)["elapsed_s"] for line in f if '"elapsed_s"' in line]
    shutil.rmtree(out, ignore_errors=True)
    steps = [e - p for e, p in zip(elapsed, [0.0] + elapsed[:-1])]
    if len(steps) != a.steps:
        sys.exit(f"compare: zotune logged {len(steps)} steps, expected {a.steps}")
    # CPU per step from the marks; step 1 has no mark before it (it is a warm-up step anyway).
    cpus = [None] + [None if m is None or p is None else m - p
                     for m, p in zip(marks[1:], marks[:-1])]
    timed_cpu = [c for c in cpus[max(1, a.warmup):] if c is not None]
    return {"step_s": steps, "s_per_step": statistics.median(steps[a.warmup:]),
            "cpu_step_s": cpus,
            "cpu_s_per_step": statistics.median(timed_cpu) if timed_cpu else float("nan"),
            "wall_s": wall, "cpu_s": own, "others": others}


def run_peer(a, c):
    model, data = data_of(a, c)
    cmd = [a.python, os.path.join(HERE, "mezo_peer.py"), "--model", model, "--data", data,
           "--batch-size", str(c["batch"]), "--threads", str(c["threads"]),
           "--steps", str(a.steps), "--warmup", str(a.warmup), "--update", a.peer_update,
           "--seed", "42"]
    env = dict(os.environ, TRANSFORMERS_VERBOSITY="error", HF_HUB_OFFLINE="1")
    stdout, wall, own, others, _ = timed_run(cmd, env)
    doc = json.loads(stdout.strip().splitlines()[-1])
    return {"step_s": doc["step_s"], "s_per_step": doc["s_per_step_median"],
            "cpu_step_s": doc["cpu_s"], "cpu_s_per_step": doc["cpu_s_per_step_median"],
            "phases": doc["phases_median"], "wall_s": wall, "cpu_s": own, "others": others,
            "torch": doc["torch"], "transformers": doc["transformers"]}


def run_bench_step(a, c):
    cmd = [os.path.join(a.build, "bench", "bench_step"), "--model-size", "125m",
           "--dtype", c["dtype"], "--batch-size", str(c["batch"]), "--seq-len", str(SEQ_LEN),
           "--threads", str(c["threads"]), "--steps", str(max(2, a.steps - a.warmup)),
           "--mode", a.zotune_mode, "--json"]
    stdout, wall, own, others, _ = timed_run(cmd)
    m = json.loads(stdout)["models"][0]
    return {k: m[k] for k in ("step_ms_mean", "step_ms_min", "staging_ms", "forward_ms",
                              "update_ms", "split_fraction", "cores_busy")} | {"others": others}


def label(c):
    shape = f"{c['batch']}x{SEQ_LEN} " + ("LM, all tokens" if c["shape"] == "lm"
                                          else "SST-2, 1 target/seq")
    return shape


def main():
    a = parse_args()
    os.makedirs(os.path.join(a.work, "runs"), exist_ok=True)
    make_models(a, sorted({c["dtype"] for c in a.configs}))
    results = []
    for c in a.configs:
        tag = f"{c['shape']}-{c['batch']}x{SEQ_LEN}-{c['dtype']}-t{c['threads']}"
        row = {"config": c, "tag": tag, "pairs": []}
        for rep in range(a.repeats):
            pair = {}
            for side in ("zotune", "peer"):
                waited, load, busy, quiet = wait_quiet(a)
                log(f"{tag} #{rep + 1} {side} (load {load:.2f}, busy {busy:.2f})")
                r = run_zotune(a, c, tag) if side == "zotune" else run_peer(a, c)
                r.update({"load_before": load, "busy_before": busy, "quiet": quiet,
                          "waited_s": waited})
                log(f"{tag} #{rep + 1} {side}: {r['s_per_step']:.3f} s/step, "
                    f"CPU {r['cpu_s_per_step']:.3f} s/step "
                    f"(steps {', '.join(f'{s:.2f}' for s in r['step_s'])}; "
                    f"others {r['others']:.2f} cores)")
                pair[side] = r
            row["pairs"].append(pair)
        z = statistics.median(p["zotune"]["s_per_step"] for p in row["pairs"])
        q = statistics.median(p["peer"]["s_per_step"] for p in row["pairs"])
        zc = statistics.median(p["zotune"]["cpu_s_per_step"] for p in row["pairs"])
        qc = statistics.median(p["peer"]["cpu_s_per_step"] for p in row["pairs"])
        row.update({"zotune_s": z, "peer_s": q, "ratio": q / z,
                    "zotune_cpu_s": zc, "peer_cpu_s": qc, "cpu_ratio": qc / zc})
        if c["shape"] == "lm" and not a.no_bench_step:
            waited, load, busy, quiet = wait_quiet(a)
            log(f"{tag} bench_step (load {load:.2f})")
            row["bench_step"] = run_bench_step(a, c)
        results.append(row)
        if a.json_out:
            with open(a.json_out, "w") as f:
                json.dump({"rows": results, "argv": sys.argv}, f, indent=1)
        print_table(a, results, partial=True)
    print_table(a, results, partial=False)


def print_table(a, results, partial):
    out = sys.stderr if partial else sys.stdout
    print("", file=out)
    print("| shape | dtype | threads | zotune s/step | peer s/step | peer/zotune | "
          "CPU s/step zotune / peer | CPU peer/zotune | others' cores (max) | "
          "peer: perturb+update / forward s |", file=out)
    print("|---|---|---|---|---|---|---|---|---|---|", file=out)
    for r in results:
        c = r["config"]
        others = max(max(p["zotune"]["others"], p["peer"]["others"]) for p in r["pairs"])
        unquiet = any(not p[s]["quiet"] for p in r["pairs"] for s in ("zotune", "peer"))
        ph = [p["peer"]["phases"] for p in r["pairs"]]
        rng = statistics.median(x["perturb_s"] + x["update_s"] for x in ph)
        fwd = statistics.median(x["forward_s"] for x in ph)
        print(f"| {label(c)} | {c['dtype']} | {c['threads']} | {r['zotune_s']:.2f} | "
              f"{r['peer_s']:.2f} | **{r['ratio']:.2f}** | "
              f"{r['zotune_cpu_s']:.2f} / {r['peer_cpu_s']:.2f} | {r['cpu_ratio']:.2f} | "
              f"{others:.2f}"
              f"{' (not quiet)' if unquiet else ''} | {rng:.2f} / {fwd:.2f} |", file=out)
    bs = [r for r in results if "bench_step" in r]
    if bs:
        print("", file=out)
        print("| bench_step (zotune, " + a.zotune_mode + ") | dtype | threads | step s | "
              "staging s | forward s | update s | phases/step | cores busy in step | "
              "others' cores |", file=out)
        print("|---|---|---|---|---|---|---|---|---|---|", file=out)
        for r in bs:
            c, b = r["config"], r["bench_step"]
            print(f"| {label(c)} | {c['dtype']} | {c['threads']} | "
                  f"{b['step_ms_mean'] / 1e3:.2f} | {b['staging_ms'] / 1e3:.2f} | "
                  f"{b['forward_ms'] / 1e3:.2f} | {b['update_ms'] / 1e3:.2f} | "
                  f"{b['split_fraction']:.2f} | {b['cores_busy']['step']:.2f} | "
                  f"{b['others']:.2f} |", file=out)
    if not partial and results:
        p = results[0]["pairs"][0]["peer"]
        print(f"\npeer: torch {p['torch']}, transformers {p['transformers']}; "
              f"{a.steps} steps per run, first {a.warmup} left out; {a.repeats} pairs per row; "
              f"zotune --mode {a.zotune_mode}, peer --update {a.peer_update}", file=out)


if __name__ == "__main__":
    main()
