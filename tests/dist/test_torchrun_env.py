"""Ranks started by a torchrun-style environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT),
no MPI: they join over TCP and train bit-identically to one --batch-invariant process; a rank
killed with SIGKILL ends every rank within 60 s and the snapshot resumes to the uninterrupted
result; a rank that hangs (SIGSTOP) is caught by --comm-timeout, naming it. The TCP
communicator counts what docs/distributed.md's table says each rank sends and receives, though
rank 0 relays every collective.
argv: ZOTUNE DEMO_DIR"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import dist_util
from dist_util import ENV, check, log_lines, same_run

ZOTUNE, DEMO = sys.argv[1:3]
RUN = dist_util.Runner(ZOTUNE)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(out, args, ranks):
    port = str(free_port())
    procs = []
    for rank in range(ranks):
        env = dict(ENV, RANK=str(rank), WORLD_SIZE=str(ranks), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen(RUN.command(out, args), env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def wait_all(procs, timeout=300):
    codes, errs = [], []
    deadline = time.time() + timeout
    for p in procs:
        try:
            _, err = p.communicate(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        codes.append(p.returncode)
        errs.append(err)
    return codes, errs


def check_traffic(out, errs, ranks, steps=5, batch=7, variants=2):
    """Each step's contributions: 16 K ceil(B / P) bytes sent, P - 1 times that received (the
    evaluations run whole on every rank and send nothing); the loop adds a 4-byte stop flag a
    step. Rank 0's metrics lines and every rank's traffic line."""
    gather = 16 * variants * -(-batch // ranks)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f if '"loss"' in line]
    got = [(r.get("sent_bytes"), r.get("received_bytes")) for r in lines]
    check(got == [(gather, (ranks - 1) * gather)] * steps,
          f"{ranks} TCP ranks: rank 0's step lines carry {gather} bytes sent: {got}")
    for rank, err in enumerate(errs):
        m = re.search(r"traffic: (\d+) steps sent (\d+) bytes and received (\d+) bytes .*loop "
                      r"with its stop flags sent (\d+) and received (\d+)", err)
        got = [int(x) for x in m.groups()] if m else None
        want = [steps, steps * gather, steps * (ranks - 1) * gather, steps * (gather + 4),
                steps * (ranks - 1) * (gather + 4)]
        check(got == want, f"{ranks} TCP ranks: rank {rank} counted {got}, want {want}")


def single(out, args):
    return RUN.train(out, args)[0]


def main():
    tmp = tempfile.mkdtemp(prefix="zt_tcp_")
    args = ["--model", os.path.join(DEMO, "model"), "--train",
            os.path.join(DEMO, "task", "train.jsonl"), "--eval",
            os.path.join(DEMO, "task", "dev.jsonl"), "--steps", "5", "--batch-size", "7",
            "--lr", "1e-3", "--eval-every", "2"]
    ref = os.path.join(tmp, "ref")
    check(single(ref, args + ["--batch-invariant"]) == 0, "one process")
    for ranks in (2, 3):
        out = os.path.join(tmp, f"tcp-{ranks}")
        codes, errs = wait_all(start(out, args, ranks))
        check(codes == [0] * ranks and same_run(ref, out),
              f"{ranks} TCP ranks equal one process ({codes}) {errs[0][-300:]}")
        check_traffic(out, errs, ranks)

    long_args = ["--model", os.path.join(DEMO, "model"), "--train",
                 os.path.join(DEMO, "task", "train.jsonl"), "--steps", "60", "--batch-size", "4",
                 "--lr", "1e-3", "--eval-every", "0", "--save-every", "5"]
    long_ref = os.path.join(tmp, "long-ref")
    check(single(long_ref, long_args + ["--batch-invariant"]) == 0, "long run, one process")
    out = os.path.join(tmp, "killed")
    procs = start(out, long_args, 3)
    while log_lines(out) < 14 and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    procs[1].kill()
    killed_at = time.time()
    codes, errs = wait_all(procs, timeout=90)
    took = time.time() - killed_at
    check(all(c != 0 for c in codes) and took < 60,
          f"SIGKILL of rank 1 ends every rank within 60 s ({codes}, {took:.1f} s)")
    check("rank 1" in errs[0], f"rank 0 names rank 1: {errs[0].strip()[-200:]}")
    check(single(out, long_args + ["--resume"]) == 0 and same_run(long_ref, out),
          "the snapshot resumes in one process to the uninterrupted result")

    out = os.path.join(tmp, "hung")
    procs = start(out, long_args + ["--comm-timeout", "3"], 3)
    while log_lines(out) < 8 and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    procs[2].send_signal(signal.SIGSTOP)
    stopped_at = time.time()
    codes, errs = wait_all(procs[:2], timeout=60)
    took = time.time() - stopped_at
    procs[2].kill()
    procs[2].wait()
    check(all(c != 0 for c in codes) and took < 30,
          f"a hung rank ends the others after --comm-timeout 3 ({codes}, {took:.1f} s)")
    check("rank 2" in errs[0] and "--comm-timeout" in errs[0],
          f"rank 0 names the hung rank: {errs[0].strip()[-200:]}")
    return dist_util.finish(tmp)


if __name__ == "__main__":
    sys.exit(main())
