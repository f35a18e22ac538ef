"""Pipeline stages under mpirun (docs/distributed.md): S ranks, each holding and running a
contiguous range of the layers (and reporting the weight bytes it holds, about 1/S), train
bit-identically to one process (weights and step log), the sphere's norm summed over the
stages included (stateful optimizers: tests/dist/test_pipeline_state.py); S x D ranks (a
pipeline per data-parallel replica) equal one --batch-invariant process, in direction groups
too; a pipelined run resumes
under another layout and in one process; a stage killed with SIGKILL, or stopped with SIGSTOP
(a hang, caught by --comm-timeout), ends the job within 60 s and its snapshot resumes. Needs python3, mpirun and a zotune built with MPI.
argv: ZOTUNE MPIRUN FIXTURES_DIR DEMO_DIR"""
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile

import dist_util
from dist_util import ENV, QUICK, check, same_run, log_lines

ZOTUNE, MPIRUN, FIXTURES, DEMO = sys.argv[1:5]
RUN = dist_util.Runner(ZOTUNE, MPIRUN)
train = RUN.train


def stage_tensors(model, stages, stage, n_layers):
    """The tensors a stage holds, named from the rule in docs/distributed.md: its layers, the
    embeddings on the first stage, the final norm and the tied token table on the last."""
    with open(os.path.join(model, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    per, extra = divmod(n_layers, stages)
    first = stage * per + min(stage, extra)
    end = first + per + (1 if stage < extra else 0)
    held = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        nbytes = v["data_offsets"][1] - v["data_offsets"][0]
        short = k.split("decoder.", 1)[1]
        if short.startswith("layers."):
            keep = first <= int(short.split(".")[1]) < end
        elif short.startswith("embed_tokens"):
            keep = stage in (0, stages - 1)
        elif short.startswith(("embed_positions", "project_in")):
            keep = stage == 0
        else:  # final_layer_norm, project_out
            keep = stage == stages - 1
        if keep:
            held[k] = nbytes
    total = sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items()
                if k != "__metadata__")
    return held, total


def check_held_bytes(model, stages, err):
    """Each stage reports the weight bytes it holds: its own tensors' bytes (plus at most 63
    bytes of alignment per tensor), about 1/S of the model, against the whole model's."""
    reported = {}
    for line in err.splitlines():
        if "pipeline stage" in line and "holding" in line:
            stage = int(line.split("pipeline stage ")[1].split()[0])
            words = line.split("holding ")[1].split()
            reported[stage] = (int(words[0]), int(words[4]))
    check(sorted(reported) == list(range(stages)), f"{stages} stages reported held bytes "
          f"({sorted(reported)})")
    info = subprocess.run([ZOTUNE, "info", model, "--json", "--seq-len", "128",
                           "--pipeline-stages", str(stages)],
                          env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    planned = json.loads(info.stdout)["pipeline_stages"] if info.returncode == 0 else []
    check(len(planned) == stages, f"zotune info plans {stages} stages: {info.stderr[-200:]}")
    for stage, (held, whole) in sorted(reported.items()):
        want, total = stage_tensors(model, stages, stage, 4)
        low, high = sum(want.values()), sum(want.values()) + 63 * len(want)
        check(whole == total and low <= held <= high,
              f"{stages} stages: stage {stage} holds {held} bytes of {whole} "
              f"(want {low}..{high} of {total}, {held / whole:.2f} of the model)")
        if stage < len(planned):  # the plan counts the tensors' bytes, no alignment
            check(planned[stage]["weights_bytes"] == low,
                  f"{stages} stages: zotune info plans stage {stage} at "
                  f"{planned[stage]['weights_bytes']} weight bytes (want {low})")


def main():
    tmp = tempfile.mkdtemp(prefix="zt_pipe_")
    demo_model, demo_train = os.path.join(DEMO, "model"), os.path.join(DEMO, "task", "train.jsonl")
    demo_dev = os.path.join(DEMO, "task", "dev.jsonl")
    deep = os.path.join(tmp, "model-4-layers")
    dist_util.deepen(demo_model, deep)

    # Pure pipelines: every stage runs the whole batch, so no batch invariance is needed and
    # the reference is the plain one-process run.
    cases = {
        # classification, 2 directions (4 variants cross each boundary), an evaluation set
        "deep": (["--model", deep, "--train", demo_train, "--eval", demo_dev, "--steps", "4",
                  "--batch-size", "6", "--lr", "1e-3", "--directions", "2", "--eval-every", "2"],
                 (2, 3, 4)),
        # next-token LM records of different lengths, in place (MeZO's +e, -2e, +e)
        "lm-inplace": (["--model", os.path.join(FIXTURES, "opt-pre"), "--train",
                        os.path.join(FIXTURES, "opt-pre", "score.jsonl"), "--steps", "4",
                        "--batch-size", "5", "--lr", "1e-2", "--mode", "inplace",
                        "--eval-every", "0"], (2,)),
    }
    for name, (args, layouts) in cases.items():
        ref = os.path.join(tmp, name + "-1")
        rc, err = train(ref, args)
        check(rc == 0, f"{name}: one process, rc {rc} {err.strip()[-300:]}")
        for stages in layouts[-1:] if QUICK else layouts:
            out = os.path.join(tmp, f"{name}-S{stages}")
            rc, err = train(out, args + ["--pipeline-stages", str(stages)], stages)
            check(rc == 0 and same_run(ref, out),
                  f"{name}: {stages} stages equal one process (rc {rc}) {err.strip()[-300:]}")
            # the layers split as documented: the first stages take the remainder
            want = {"2": ["0..1", "2..3"], "3": ["0..1", "2..2", "3..3"],
                    "4": ["0..0", "1..1", "2..2", "3..3"]}.get(str(stages)) if name == "deep" \
                else ["0..0", "1..1"]
            got = sorted(line.split("(layers ")[1].split(")")[0] for line in err.splitlines()
                         if "pipeline stage" in line)
            check(got == want, f"{name}: {stages} stages hold layers {got}, want {want}")
            if name == "deep":
                check_held_bytes(deep, stages, err)

    # Pipeline x data: 2 stages x 2 replicas, each replica a pipeline over its share of the
    # batch, equal to one batch-invariant process (7 examples split 4/3).
    px = ["--model", deep, "--train", demo_train, "--steps", "4", "--batch-size", "7", "--lr",
          "1e-3", "--directions", "2", "--eval-every", "0"]
    ref_px = os.path.join(tmp, "px-1")
    rc, err = train(ref_px, px + ["--batch-invariant"])
    check(rc == 0, f"pipeline x data: one process, rc {rc} {err.strip()[-300:]}")
    out = os.path.join(tmp, "px-2x2")
    rc, err = train(out, px + ["--pipeline-stages", "2", "--verify-replicas", "2"], 4)
    check(rc == 0 and same_run(ref_px, out),
          f"pipeline x data: 2 stages x 2 replicas equal one process (rc {rc}) {err[-300:]}")
    shares = sorted(int(line.split("evaluated ")[1].split()[0]) for line in err.splitlines()
                    if "training examples (its share)" in line)
    check(shares == [12, 12, 16, 16], f"pipeline x data: each replica's stages evaluated its "
          f"share ({shares}, want [12, 12, 16, 16])")

    # Direction groups of pipelines: the replicas (each an S-stage pipeline) in G groups of
    # consecutive replicas; each group's pipelines pass only its share of the step's variants
    # through their stages, data-parallel over the group's replicas. Equal to one
    # --batch-invariant process.
    group_cases = {
        # MeZO, 2 directions (4 variants), an evaluation set: 2 stages x 2 replicas in 2 groups
        # (one pipeline per group), and 2 stages x 4 replicas in 2 groups (2 pipelines per
        # group splitting the batch 3/3)
        "mezo-q2": (["--model", deep, "--train", demo_train, "--eval", demo_dev, "--steps", "3",
                     "--batch-size", "6", "--lr", "1e-3", "--directions", "2", "--eval-every",
                     "2"], ((4, 2), (8, 2))),
        # STP's 3 points over 3 groups of one 2-stage pipeline each
        "stp": (["--model", deep, "--train", demo_train, "--steps", "3", "--batch-size", "5",
                 "--optimizer", "stp", "--lr", "1e-3", "--eval-every", "0"], ((6, 3),)),
    }
    for name, (args, layouts) in group_cases.items():
        if QUICK and name != "mezo-q2":
            continue
        ref = os.path.join(tmp, f"groups-{name}-1")
        rc, err = train(ref, args + ["--batch-invariant"])
        check(rc == 0, f"groups {name}: one process, rc {rc} {err.strip()[-300:]}")
        for ranks, groups in layouts[:1] if QUICK else layouts:
            out = os.path.join(tmp, f"groups-{name}-{ranks}-{groups}")
            rc, err = train(out, args + ["--pipeline-stages", "2", "--direction-groups",
                                         str(groups)], ranks)
            check(rc == 0 and same_run(ref, out),
                  f"groups {name}: 2 stages x {ranks // 2} replicas in {groups} direction groups "
                  f"equal one process (rc {rc}) {err.strip()[-300:]}")
            if (ranks, groups) == (8, 2):  # 2 pipelines per group: 3 of the 6 examples each
                shares = [int(line.split("evaluated ")[1].split()[0]) for line in err.splitlines()
                          if "training examples (its share)" in line]
                check(shares == [9] * 8, f"groups {name}: each of the 8 ranks evaluated its "
                      f"pipeline's 3 examples a step ({shares}, want [9] * 8)")
    rc, err = train(os.path.join(tmp, "groups-bad"), group_cases["mezo-q2"][0] +
                    ["--pipeline-stages", "2", "--direction-groups", "2"], 6)
    check(rc != 0 and "must divide the 3 pipeline replicas" in err,
          f"2 stages x 3 replicas in 2 groups refused: {err.strip()[-200:]}")

    # The sphere's ||z|| over every parameter: each stage's partials, summed over the stages in
    # tensor order, give one process's double; the weights and log are equal.
    sphere = ["--model", deep, "--train", demo_train, "--steps", "3", "--batch-size", "4",
              "--lr", "1e-3", "--dist", "sphere", "--eval-every", "0"]
    ref_sphere = os.path.join(tmp, "sphere-1")
    rc, err = train(ref_sphere, sphere)
    check(rc == 0, f"sphere: one process, rc {rc} {err.strip()[-300:]}")
    out = os.path.join(tmp, "sphere-S2")
    rc, err = train(out, sphere + ["--pipeline-stages", "2"], 2)
    check(rc == 0 and same_run(ref_sphere, out),
          f"sphere: 2 stages holding their own tensors equal one process (rc {rc}) {err[-300:]}")

    # An evaluation set of generation records is refused: greedy decoding runs every layer.
    gen = os.path.join(tmp, "gen.jsonl")
    with open(gen, "w") as f:
        f.write(json.dumps({"prompt": "Q: 2+2?\nA:", "answers": ["4"], "completion": " 4\n"})
                + "\n")
    rc, err = train(os.path.join(tmp, "bad-gen"),
                    ["--model", deep, "--train", gen, "--eval", gen, "--steps", "1",
                     "--batch-size", "1", "--pipeline-stages", "2"], 2)
    check(rc != 0 and "evaluated by greedy decoding" in err,
          f"generation evaluation with 2 stages refused: {err[-300:]}")

    # An update that leaves weights non-finite (f16 weights overflow at --lr 1e3) ends a
    # pipelined run; the stages cannot gather a save after a failure, so the message says the
    # last snapshot stands, not that the weights were saved.
    # The count is one process's: the tied token table, held by both ends, counts once.
    diverge = ["--model", os.path.join(FIXTURES, "opt-pre-f16"), "--train",
               os.path.join(FIXTURES, "opt-pre", "score.jsonl"), "--steps", "12",
               "--batch-size", "2", "--lr", "1e3", "--eval-every", "0"]
    rc1, err1 = train(os.path.join(tmp, "diverge-1"), diverge)
    rc, err = train(os.path.join(tmp, "diverge-S2"), diverge + ["--pipeline-stages", "2"], 2)

    def left(text):
        found = [line.split("the update left ")[1].split(" weights")[0]
                 for line in text.splitlines() if "the update left " in line]
        return found[0] if found else None

    check(rc != 0 and "the last snapshot stands" in err and "are saved" not in err
          and rc1 != 0 and left(err) is not None and left(err) == left(err1),
          f"non-finite update over 2 stages: the last snapshot stands, and the update left "
          f"{left(err)} weights non-finite as in one process ({left(err1)}) (rc {rc}) "
          f"{err[-400:]}")

    # Layouts that cannot be: refused with the reason.
    rc, err = train(os.path.join(tmp, "bad-divide"), px + ["--pipeline-stages", "2"], 3)
    check(rc != 0 and "must divide the 3 ranks" in err, f"2 stages over 3 ranks refused: {err[-200:]}")
    if not QUICK:
        rc, err = train(os.path.join(tmp, "bad-layers"),
                        ["--model", demo_model, "--train", demo_train, "--steps", "1",
                         "--pipeline-stages", "3"], 3)
        check(rc != 0 and "the model has 2 layers" in err,
              f"3 stages of a 2-layer model refused: {err[-200:]}")

    # A pipelined run stopped by SIGTERM (to its last stage: every rank stops after the same
    # step) goes on with another layout, and in one process, to the uninterrupted result.
    long = ["--model", deep, "--train", demo_train, "--steps", "30", "--batch-size", "4",
            "--lr", "1e-3", "--eval-every", "0", "--save-every", "5"]
    ref_long = os.path.join(tmp, "long-1")
    rc, err = train(ref_long, long)
    check(rc == 0, f"resume: uninterrupted one-process run, rc {rc} {err.strip()[-300:]}")
    for first, then in (((2, 2), (4, 4)), ((3, 3), (None, None))):
        if QUICK and first[0] == 3:
            continue
        out = os.path.join(tmp, f"resume-{first[0]}")
        rc, took, err, _ = RUN.stop_midway(out, long + ["--pipeline-stages", str(first[1])],
                                           first[0], 12, signal.SIGTERM)
        check(rc == 130 and log_lines(out) < 31,
              f"resume: {first[0]} stages stopped by SIGTERM (rc {rc}) {err[-300:]}")
        extra = ["--pipeline-stages", str(then[1])] if then[0] else []
        rc, err = train(out, long + extra + ["--resume"], then[0])
        check(rc == 0 and same_run(ref_long, out),
              f"resume: {first[0]} stages went on over {then[0] or 1} (rc {rc}) {err[-300:]}")

    # A stage killed with SIGKILL ends the job; the snapshot resumes in one process.
    out = os.path.join(tmp, "kill")
    rc, took, err, _ = RUN.stop_midway(out, long + ["--pipeline-stages", "2"], 2, 12,
                                       signal.SIGKILL)
    check(rc not in (None, 0) and took < 60,
          f"kill: the job ended within 60 s of a stage's SIGKILL (rc {rc}, {took:.1f} s)")
    rc, err = train(out, long + ["--resume"])
    check(rc == 0 and same_run(ref_long, out),
          f"kill: resumed in one process, equal to the uninterrupted run (rc {rc}) "
          f"{err.strip()[-300:]}")
    # A stage that hangs (SIGSTOP: alive, silent) while the others wait for its messages ends
    # the job after --comm-timeout; rank 0 names it, and the snapshot resumes in one process.
    out = os.path.join(tmp, "hang")
    rc, took, err, _ = RUN.stop_midway(out, long + ["--pipeline-stages", "3", "--comm-timeout",
                                              "5"], 3, 12, signal.SIGSTOP)
    named = "no word from rank 2 within 5 s (--comm-timeout)"
    check(rc not in (None, 0) and 5 < took < 60 and named in err,
          f"hang: the job ended within 60 s of a stage's SIGSTOP, after --comm-timeout 5, naming "
          f"rank 2 (rc {rc}, {took:.1f} s) {err.strip()[-400:]}")
    rc, err = train(out, long + ["--resume"])
    check(rc == 0 and same_run(ref_long, out),
          f"hang: resumed in one process, equal to the uninterrupted run (rc {rc}) "
          f"{err.strip()[-300:]}")
    return dist_util.finish(tmp)


if __name__ == "__main__":
    sys.exit(main())
