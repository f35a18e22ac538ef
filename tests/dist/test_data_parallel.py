"""Data parallel under mpirun (docs/distributed.md): N CPU ranks train bit-identically to one
process with the same global batch (--batch-invariant), whatever N and however the batch splits;
a run resumes under another rank count; a rank killed with SIGKILL, or stopped with SIGSTOP (a
hang, caught by --comm-timeout), ends the whole job within 60 s and the snapshot resumes. Needs python3, mpirun and a zotune built with MPI.
argv: ZOTUNE MPIRUN FIXTURES_DIR DEMO_DIR"""
import filecmp
import os
import signal
import subprocess
import sys
import tempfile

import dist_util
from dist_util import MPI_ARGS, MPI_ENV, QUICK, check, same_run

ZOTUNE, MPIRUN, FIXTURES, DEMO = sys.argv[1:5]
RUN = dist_util.Runner(ZOTUNE, MPIRUN)
train = RUN.train


def main():
    tmp = tempfile.mkdtemp(prefix="zt_dp_")
    demo_model, demo_train = os.path.join(DEMO, "model"), os.path.join(DEMO, "task", "train.jsonl")
    demo_dev = os.path.join(DEMO, "task", "dev.jsonl")
    cases = {
        # classification with candidates; 7 examples split 4/3, 3/2/2, 2/2/2/1
        "classification": ["--model", demo_model, "--train", demo_train, "--steps", "5",
                           "--batch-size", "7", "--lr", "1e-3", "--eval-every", "0"],
        # next-token LM records of different lengths, in-place perturbation, MeZO's +e,-2e,+e
        "lm-inplace": ["--model", os.path.join(FIXTURES, "opt-pre"), "--train",
                       os.path.join(FIXTURES, "opt-pre", "score.jsonl"), "--steps", "4", "--batch-size", "5",
                       "--lr", "1e-2", "--mode", "inplace", "--eval-every", "0"],
        # several directions and an evaluation set (every rank evaluates; rank 0 writes)
        "directions-eval": ["--model", demo_model, "--train", demo_train, "--eval", demo_dev,
                            "--steps", "4", "--batch-size", "6", "--lr", "1e-3", "--directions",
                            "2", "--eval-every", "2"],
    }
    for name, args in cases.items():
        ref = os.path.join(tmp, name + "-1")
        rc, err = train(ref, args + ["--batch-invariant"])
        check(rc == 0, f"{name}: one process, rc {rc} {err.strip()[-300:]}")
        counts = (2, 3, 4) if name == "classification" else (2, 3)
        for ranks in (3,) if QUICK and name == "classification" else (2,) if QUICK else counts:
            out = os.path.join(tmp, f"{name}-{ranks}")
            rc, err = train(out, args, ranks)
            check(rc == 0 and same_run(ref, out),
                  f"{name}: {ranks} ranks equal one process (rc {rc}) {err.strip()[-300:]}")
            # each rank evaluated its share only: batch 7 over 3 ranks is 3/2/2 per step
            steps, batch = int(args[args.index("--steps") + 1]), int(args[args.index("--batch-size") + 1])
            shares = sorted(int(line.split("evaluated ")[1].split()[0]) for line in err.splitlines()
                            if "training examples (its share)" in line)
            want = sorted(steps * (batch // ranks + (q < batch % ranks)) for q in range(ranks))
            check(shares == want, f"{name}: {ranks} ranks evaluated {shares} examples, want {want}")

    # Direction groups: the ranks in groups, each evaluating its share of the step's variants
    # (MeZO with 2 directions: 4 variants; STP: 3 points; S2P option 2's probes), data-parallel
    # inside the group.
    groups_cases = {
        "mezo-q2": ["--model", demo_model, "--train", demo_train, "--steps", "4", "--batch-size",
                    "6", "--lr", "1e-3", "--directions", "2", "--eval-every", "0"],
        "stp": ["--model", demo_model, "--train", demo_train, "--steps", "4", "--batch-size", "5",
                "--optimizer", "stp", "--lr", "1e-3", "--eval-every", "0"],
        "s2p-option2": ["--model", demo_model, "--train", demo_train, "--steps", "4",
                        "--batch-size", "4", "--optimizer", "s2p", "--s2p-option", "2", "--lr",
                        "1e-3", "--eval-every", "0"],
    }
    for name, args in groups_cases.items():
        if QUICK and name != "mezo-q2":
            continue
        ref = os.path.join(tmp, name + "-1")
        rc, err = train(ref, args + ["--batch-invariant"])
        check(rc == 0, f"{name}: one process, rc {rc} {err.strip()[-300:]}")
        layouts = ((4, 2), (3, 3)) if name == "mezo-q2" else ((2, 2),)
        for ranks, groups in layouts[:1] if QUICK else layouts:
            out = os.path.join(tmp, f"{name}-{ranks}-{groups}")
            rc, err = train(out, args + ["--direction-groups", str(groups)], ranks)
            check(rc == 0 and same_run(ref, out),
                  f"{name}: {ranks} ranks in {groups} direction groups equal one process (rc {rc}) "
                  f"{err.strip()[-300:]}")
    # --grad-accum inside each rank's share, with direction groups and in place
    ref = os.path.join(tmp, "directions-eval-1")
    for ranks, extra in ((2, ["--grad-accum", "2"]), (4, ["--grad-accum", "2", "--direction-groups",
                                                          "2"])):
        out = os.path.join(tmp, f"accum-{ranks}")
        rc, err = train(out, cases["directions-eval"] + extra, ranks)
        check(rc == 0 and same_run(ref, out),
              f"{ranks} ranks with {' '.join(extra)} equal one process (rc {rc}) {err[-300:]}")
    # LoRA adapters train data-parallel like any tensor (only they are perturbed and updated)
    lora = ["--model", demo_model, "--train", demo_train, "--steps", "4", "--batch-size", "6",
            "--lr", "1e-2", "--eval-every", "0", "--peft", "lora", "--lora-rank", "4"]
    ref = os.path.join(tmp, "lora-1")
    rc, err = train(ref, lora + ["--batch-invariant"])
    out = os.path.join(tmp, "lora-2")
    rc2, err2 = train(out, lora, 2)
    check(rc == 0 and rc2 == 0 and same_run(ref, out) and
          filecmp.cmp(os.path.join(ref, "adapter_model.safetensors"),
                      os.path.join(out, "adapter_model.safetensors"), shallow=False),
          f"LoRA over 2 ranks equals one process (rc {rc}, {rc2}) {err[-200:]} {err2[-200:]}")
    # prefix tuning's prefixes likewise; every rank draws the same initial prefixes
    prefix = ["--model", demo_model, "--train", demo_train, "--steps", "4", "--batch-size", "6",
              "--lr", "1e-2", "--eps", "1e-1", "--eval-every", "0", "--peft", "prefix"]
    ref = os.path.join(tmp, "prefix-1")
    rc, err = train(ref, prefix + ["--batch-invariant"])
    out = os.path.join(tmp, "prefix-2")
    rc2, err2 = train(out, prefix, 2)
    check(rc == 0 and rc2 == 0 and same_run(ref, out) and
          filecmp.cmp(os.path.join(ref, "adapter_model.safetensors"),
                      os.path.join(out, "adapter_model.safetensors"), shallow=False),
          f"prefix tuning over 2 ranks equals one process (rc {rc}, {rc2}) {err[-200:]} "
          f"{err2[-200:]}")
    rc, err = train(os.path.join(tmp, "groups-bad"), groups_cases["mezo-q2"] +
                    ["--direction-groups", "2"], 3)
    check(rc != 0 and "must divide the 3 ranks" in err, f"3 ranks in 2 groups refused: {err[-200:]}")

    # Replicas that drift apart (here: a rank started with another --lr) are caught by
    # --verify-replicas, which names the rank, and the job ends non-zero.
    args = cases["classification"]
    lr = args.index("--lr") + 1
    other = list(args)
    other[lr] = "2e-3"
    out = os.path.join(tmp, "drift")
    common = ["train", "--output", out, "--threads", "1", "--quiet", "--verify-replicas", "2"]
    cmd = [MPIRUN] + MPI_ARGS + ["-np", "1", ZOTUNE] + common + args + [":", "-np", "1",
                                                                        ZOTUNE] + common + other
    p = subprocess.run(cmd, env=MPI_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=300)
    check(p.returncode != 0 and "after step 2 the weights of rank 1 differ" in p.stderr,
          f"drift: --verify-replicas names rank 1 (rc {p.returncode}) {p.stderr.strip()[-400:]}")
    rc, err = train(os.path.join(tmp, "verified"), args + ["--verify-replicas", "1"], 3)
    check(rc == 0, f"verified: 3 identical replicas pass every check (rc {rc}) {err[-300:]}")

    # A rank killed with SIGKILL ends the job; the snapshot resumes in one process, and the run
    # ends equal to an uninterrupted one.
    args = ["--model", demo_model, "--train", demo_train, "--steps", "40", "--batch-size", "4",
            "--lr", "1e-3", "--eval-every", "0", "--save-every", "5"]
    ref = os.path.join(tmp, "kill-ref")
    rc, err = train(ref, args + ["--batch-invariant"])
    check(rc == 0, f"kill: uninterrupted reference, rc {rc} {err.strip()[-300:]}")
    out = os.path.join(tmp, "kill")
    rc, took, _, _ = RUN.stop_midway(out, args, 3, 14, signal.SIGKILL, label="kill: ")
    check(rc not in (None, 0) and took < 60,
          f"kill: the job ended within 60 s of a rank's SIGKILL (rc {rc}, {took:.1f} s)")
    rc, err = train(out, args + ["--resume"])
    check(rc == 0 and same_run(ref, out),
          f"kill: resumed in one process, equal to the uninterrupted run (rc {rc}) "
          f"{err.strip()[-300:]}")
    # A rank that hangs (SIGSTOP: alive, silent) ends the job after --comm-timeout: rank 0 names
    # it, every rank exits non-zero within 60 s, and the snapshot resumes in one process.
    out = os.path.join(tmp, "hang")
    rc, took, err, victim_rank = RUN.stop_midway(out, ["--comm-timeout", "5"] + args, 3, 14,
                                                 signal.SIGSTOP, label="hang: ")
    check(rc not in (None, 0) and 5 < took < 60,
          f"hang: the job ended within 60 s of a rank's SIGSTOP, after --comm-timeout 5 "
          f"(rc {rc}, {took:.1f} s)")
    named = f"no word from rank {victim_rank} within 5 s (--comm-timeout)"
    check(victim_rank not in (None, 0) and named in err,
          f"hang: rank 0 names the hung rank {victim_rank} ({named!r}) {err.strip()[-400:]}")
    rc, err = train(out, args + ["--resume"])
    check(rc == 0 and same_run(ref, out),
          f"hang: resumed in one process, equal to the uninterrupted run (rc {rc}) "
          f"{err.strip()[-300:]}")
    # A one-process run stopped by SIGTERM (it saves and exits 130) goes on over 2 ranks.
    out2 = os.path.join(tmp, "grow")
    rc, _, _, _ = RUN.stop_midway(out2, ["--batch-invariant"] + args, None, 20, signal.SIGTERM)
    check(rc == 130 and dist_util.log_lines(out2) < 41,
          f"grow: one process stopped by SIGTERM (rc {rc})")
    rc, err = train(out2, args + ["--resume"], 2)
    check(rc == 0 and same_run(ref, out2),
          f"grow: resumed over 2 ranks, equal to the uninterrupted run (rc {rc}) {err[-300:]}")
    return dist_util.finish(tmp)


if __name__ == "__main__":
    sys.exit(main())
