"""Pipeline stages with the optimizers that keep per-weight state (docs/distributed.md): with
zo-sgd-mmt (1 state copy) and zo-adamm (3), each stage keeps its own tensors' state, and rank 0
gathers the whole state into every snapshot. 2 and 3 stages equal one process byte for byte: the
step log, the weights and the snapshot (optimizer.safetensors, trainer.json, its weights), its
mid-run gathers included; so do 2 stages x 2 replicas against one --batch-invariant process.
A run resumes across layouts (2 stages -> one process, one process -> 2 stages, 2 stages -> 4)
to the uninterrupted result, the optimizer state included, and the snapshot of a stage killed
mid-run resumes in one process to it. Needs python3, mpirun and a
zotune built with MPI.
argv: ZOTUNE MPIRUN DEMO_DIR"""
import math
import os
import signal
import struct
import sys
import tempfile

import dist_util
from dist_util import QUICK, check

ZOTUNE, MPIRUN, DEMO = sys.argv[1:4]
RUN = dist_util.Runner(ZOTUNE, MPIRUN)
# a run's own files and its last snapshot, which holds the gathered optimizer state
STATE_FILES = dist_util.RUN_FILES + ("snapshot/optimizer.safetensors", "snapshot/trainer.json",
                                     "snapshot/model.safetensors")
OPTIMIZERS = {
    "zo-sgd-mmt": ["--optimizer", "zo-sgd-mmt", "--momentum", "0.9"],
    "zo-adamm": ["--optimizer", "zo-adamm"],
}
COPIES = {"zo-sgd-mmt": 1, "zo-adamm": 3}


def check_state_file(out, model, copies, what):
    """The snapshot's optimizer.safetensors holds every tensor of the model (all are trainable
    here) as copies x n_elems f32, and the state of the last layer (held by the last stage)
    moved off zero: the gather carried real values, not a placeholder."""
    path = os.path.join(out, "snapshot", "optimizer.safetensors")
    try:
        header = dist_util.safetensors_header(path)
    except OSError as e:
        check(False, f"{what}: {e}")
        return
    weights = dist_util.safetensors_header(os.path.join(model, "model.safetensors"))
    want = {k: [copies, math.prod(v["shape"])]
            for k, v in weights.items() if k != "__metadata__"}
    got = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
    check(got == want and all(v["dtype"] == "F32" for k, v in header.items()
                              if k != "__metadata__"),
          f"{what}: optimizer.safetensors holds every tensor as [{copies}, n] f32 "
          f"({len(got)} of {len(want)} tensors)")
    name = "model.decoder.layers.3.fc1.weight"
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        f.seek(8 + n + header[name]["data_offsets"][0])
        blob = f.read(header[name]["data_offsets"][1] - header[name]["data_offsets"][0])
    values = struct.unpack(f"<{len(blob) // 4}f", blob)
    nonzero = sum(1 for v in values if v != 0.0)
    check(nonzero > len(values) // (2 * copies),
          f"{what}: the last stage's {name} state is set ({nonzero} of {len(values)} non-zero)")


def main():
    tmp = tempfile.mkdtemp(prefix="zt_pipe_state_")
    demo_train = os.path.join(DEMO, "task", "train.jsonl")
    deep = os.path.join(tmp, "model-4-layers")
    dist_util.deepen(os.path.join(DEMO, "model"), deep)
    # --save-every 2 of 4 steps: a mid-run snapshot (the stages serve their state inside the
    # loop) and the final one; a missing message would time out after 60 s, not hang
    short = ["--model", deep, "--train", demo_train, "--steps", "4", "--batch-size", "4", "--lr",
             "1e-3", "--eval-every", "0", "--save-every", "2", "--comm-timeout", "60"]
    for name, extra in OPTIMIZERS.items():
        ref = os.path.join(tmp, f"{name}-1")
        rc, err = RUN.train(ref, short + extra)
        check(rc == 0, f"{name}: one process, rc {rc} {err.strip()[-300:]}")
        check_state_file(ref, deep, COPIES[name], f"{name}: one process")
        for stages in (3,) if QUICK else (2, 3):
            out = os.path.join(tmp, f"{name}-S{stages}")
            rc, err = RUN.train(out, short + extra + ["--pipeline-stages", str(stages)], stages)
            check(rc == 0 and dist_util.same_files(ref, out, STATE_FILES),
                  f"{name}: {stages} stages equal one process, the snapshot's optimizer state "
                  f"included (rc {rc}) {err.strip()[-300:]}")
            check_state_file(out, deep, COPIES[name], f"{name}: {stages} stages")

    # 2 stages x 2 replicas: only replica 0's stages send rank 0 their state; equal to one
    # --batch-invariant process (the replicas verified equal every step)
    if not QUICK:
        ref = os.path.join(tmp, "px-1")
        rc, err = RUN.train(ref, short + OPTIMIZERS["zo-adamm"] + ["--batch-invariant"])
        check(rc == 0, f"zo-adamm batch-invariant: one process, rc {rc} {err.strip()[-300:]}")
        out = os.path.join(tmp, "px-2x2")
        rc, err = RUN.train(out, short + OPTIMIZERS["zo-adamm"] + ["--pipeline-stages", "2",
                                                                    "--verify-replicas", "1"], 4)
        check(rc == 0 and dist_util.same_files(ref, out, STATE_FILES),
              f"zo-adamm: 2 stages x 2 replicas equal one batch-invariant process, the "
              f"snapshot's optimizer state included (rc {rc}) {err.strip()[-300:]}")

    # Resume across layouts: stopped by SIGTERM (every rank stops after the same step, rank 0
    # saves the gathered state), then on with another layout, to the uninterrupted run.
    long = ["--model", deep, "--train", demo_train, "--steps", "20", "--batch-size", "4", "--lr",
            "1e-3", "--eval-every", "0", "--save-every", "5", "--comm-timeout", "60"]
    layouts = ((2, None), (None, 2), (2, 4))  # stages before and after; None: one process
    for name, extra in OPTIMIZERS.items():
        if QUICK and name != "zo-adamm":  # the sanitizer build: one optimizer, one layout
            continue
        ref = os.path.join(tmp, f"long-{name}-1")
        rc, err = RUN.train(ref, long + extra)
        check(rc == 0, f"resume {name}: uninterrupted one-process run, rc {rc} {err[-300:]}")
        for before, after in layouts[:1] if QUICK else layouts:
            out = os.path.join(tmp, f"resume-{name}-{before}-{after}")
            stages = ["--pipeline-stages", str(before)] if before else []
            rc, took, err, _ = RUN.stop_midway(out, long + extra + stages, before, 10,
                                               signal.SIGTERM)
            check(rc == 130 and dist_util.log_lines(out) < 21,
                  f"resume {name}: {before or 1} stages stopped by SIGTERM (rc {rc}) {err[-300:]}")
            stages = ["--pipeline-stages", str(after)] if after else []
            rc, err = RUN.train(out, long + extra + stages + ["--resume"], after)
            check(rc == 0 and dist_util.same_files(ref, out, STATE_FILES),
                  f"resume {name}: {before or 1} stages went on as {after or 1} to the "
                  f"uninterrupted run, optimizer state included (rc {rc}) {err.strip()[-300:]}")

    # A stage killed mid-run: the last snapshot (gathered inside the loop) resumes in one
    # process, replaying the logged steps past it on its state, to the uninterrupted run.
    name = "zo-adamm"
    out = os.path.join(tmp, "kill")
    rc, took, err, _ = RUN.stop_midway(out, long + OPTIMIZERS[name] + ["--pipeline-stages", "2"],
                                       2, 13, signal.SIGKILL)
    check(rc not in (None, 0) and took < 60,
          f"kill: the job ended within 60 s of a stage's SIGKILL (rc {rc}, {took:.1f} s)")
    rc, err = RUN.train(out, long + OPTIMIZERS[name] + ["--resume"])
    check(rc == 0 and dist_util.same_files(os.path.join(tmp, f"long-{name}-1"), out, STATE_FILES),
          f"kill: {name} resumed in one process from the mid-run snapshot, equal to the "
          f"uninterrupted run (rc {rc}) {err.strip()[-300:]}")
    return dist_util.finish(tmp)


if __name__ == "__main__":
    sys.exit(main())
