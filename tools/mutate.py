#!/usr/bin/env python3
"""Mutation check: plants each mutant of tools/mutants.py in turn, rebuilds incrementally, runs
the tests it names, and prints which mutants the suite killed.

Usage:  python3 tools/mutate.py [--build build] [--only ID[,ID...]] [--list] [--timeout S]

A mutant is killed when a named test fails (or times out); it survives when they all pass. A
mutant that does not compile is reported as stillborn: fix its entry rather than count it. The
source file is restored after every mutant, also on Ctrl-C. Runs by hand (minutes); CI does
not run it. Exit status 0 when every mutant is killed or marked equivalent.
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_mutants():
    spec = importlib.util.spec_from_file_location("mutants", os.path.join(ROOT, "tools", "mutants.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MUTANTS


def run(cmd, timeout):
    try:
        done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
        return done.returncode, done.stdout
    except subprocess.TimeoutExpired as e:
        return 124, (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")


def validate(mutants):
    """Every find string occurs exactly once; ids are unique."""
    problems, seen = [], set()
    for m in mutants:
        if m["id"] in seen:
            problems.append(f"{m['id']}: duplicate id")
        seen.add(m["id"])
        path = os.path.join(ROOT, m["file"])
        if not os.path.exists(path):
            problems.append(f"{m['id']}: {m['file']} does not exist")
            continue
        count = open(path, encoding="utf-8").read().count(m["find"])
        if count != 1:
            problems.append(f"{m['id']}: the text to replace occurs {count} times in {m['file']}")
    return problems


def try_mutant(m, build, timeout):
    path = os.path.join(ROOT, m["file"])
    original = open(path, encoding="utf-8").read()
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(original.replace(m["find"], m["replace"], 1))
        rc, out = run(["ninja", "-C", build], timeout=1800)
        if rc != 0:
            return "stillborn", out[-2000:]
        rc, out = run(["meson", "test", "-C", build, "--no-rebuild", "--num-processes", "2",
                       "--print-errorlogs"] + m["tests"], timeout=timeout)
        return ("killed" if rc != 0 else "survived"), out[-1500:]
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write(original)
        os.utime(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--only", default="")
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    parser.add_argument("--timeout", type=int, default=900, help="seconds for a mutant's tests")
    args = parser.parse_args()
    mutants = load_mutants()
    problems = validate(mutants)
    if problems:
        print("\n".join(problems))
        return 2
    if args.list:
        for m in mutants:
            print(f"{m['id']:28} {m['file']:32} {m['why']}")
        print(f"{len(mutants)} mutants in {len({os.path.dirname(m['file']) for m in mutants})} folders")
        return 0
    if args.only:
        wanted = set(args.only.split(","))
        mutants = [m for m in mutants if m["id"] in wanted]
    build = os.path.join(ROOT, args.build)
    if not os.path.isdir(build):
        print(f"{build}: configure and build first (make build)")
        return 2
    rc, out = run(["ninja", "-C", build], timeout=3600)
    if rc != 0:
        print("the unmutated tree does not build:\n" + out[-2000:])
        return 2

    # an unknown test name makes meson fail, which would read as a kill
    rc, listing = run(["meson", "test", "-C", build, "--list"], timeout=120)
    known = {line.split(" / ")[-1].strip() for line in listing.splitlines() if " / " in line}
    unknown = sorted({t for m in mutants for t in m["tests"]} - known)
    if unknown:
        print("tests named by mutants but not in the build: " + ", ".join(unknown))
        return 2

    results = []
    for i, m in enumerate(mutants, 1):
        start = time.time()
        if m.get("equivalent"):
            outcome, detail = "equivalent", m["equivalent"]
        else:
            outcome, detail = try_mutant(m, build, args.timeout)
        results.append((m, outcome))
        print(f"[{i:2}/{len(mutants)}] {outcome:10} {m['id']:28} {m['file']:32} "
              f"({time.time() - start:.0f} s)", flush=True)
        if outcome in ("survived", "stillborn"):
            print("    " + detail.strip().replace("\n", "\n    ")[-800:])
    run(["ninja", "-C", build], timeout=3600)  # back to the unmutated binaries

    killed = sum(o == "killed" for _, o in results)
    equivalent = sum(o == "equivalent" for _, o in results)
    counted = len(results) - equivalent
    print(f"\n{killed} of {counted} mutants killed ({100.0 * killed / max(counted, 1):.0f}%), "
          f"{equivalent} equivalent")
    for m, o in results:
        if o in ("survived", "stillborn"):
            print(f"  {o}: {m['id']} ({m['file']}): {m['why']}")
    return 0 if killed == counted else 1


if __name__ == "__main__":
    sys.exit(main())
