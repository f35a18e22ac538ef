#!/usr/bin/env python3
"""Reruns the tests and runs behind the README's "What is measured" and prints that table, so a
stale number is one command away from being caught (tools/readme-numbers.sh calls this).

Usage:  python3 tools/readme_numbers.py [--build build] [--no-demo]

Every figure comes from a line a test prints (the tests assert the bounds; this only collects
the values). --no-demo skips the four demo fine-tunes (one core each, as many at once as there
are cores; about 4 minutes each here).
"""

import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_test(build, name, *args):
    env = dict(os.environ, ZT_FIXTURES=os.path.join(ROOT, "tests", "fixtures"), OMP_NUM_THREADS="1",
               OMP_WAIT_POLICY="passive", OPENBLAS_NUM_THREADS="1")
    path = os.path.join(build, "tests", name)
    done = subprocess.run([path, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{done.stdout[-3000:]}")
    return done.stdout


def find(text, pattern, what):
    m = re.search(pattern, text, re.M)
    if not m:
        sys.exit(f"no line for {what} (pattern {pattern!r})")
    return m.groups()


def worst(text, pattern):
    return max(float(x) for x in re.findall(pattern, text))


def demo_run(zotune, seed, gemm):
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            [zotune, "train", "--model", "demo/model", "--train", "demo/task/train.jsonl", "--eval",
             "demo/task/dev.jsonl", "--output", out, "--optimizer", "mezo", "--steps", "2000",
             "--batch-size", "16", "--lr", "3e-4", "--lr-schedule", "linear", "--eps", "1e-3",
             "--eval-every", "500", "--log-every", "500", "--seed", str(seed), "--threads", "1",
             "--gemm", gemm], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        sys.exit(f"demo run (seed {seed}, gemm {gemm}) failed:\n{done.stdout[-2000:]}")
    before, after = find(done.stdout, r"dev accuracy: ([\d.]+)% before, ([\d.]+)% after", "demo")
    return float(before), float(after)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--no-demo", action="store_true")
    args = parser.parse_args()
    build = os.path.join(ROOT, args.build)
    rows = []

    out = run_test(build, "model/test_opt_parity")
    logit, loss = find(out, r"max \|logit error\| (\S+), max relative loss error (\S+)", "HF parity")
    rows.append(("Forward vs HF transformers (4 fixtures, padding both sides, F32/F16/BF16)",
                 f"max |logit error| {logit} (bound 1e-4), max relative loss error {loss} "
                 "(bound 1e-5)", "tests/model/test_opt_parity.c"))
    out = run_test(build, "rng/test_curand_host")
    (gauss,) = find(out, r"curandGenerateNormal vs zt_box_muller: .* max \|diff\| (\S+)", "normals")
    rows.append(("Philox vs cuRAND's host generator", "32-bit words bit-identical; Gaussians "
                 "(zotune's own transform, the same bits on CPU and GPU) "
                 f"within {gauss} of curandGenerateNormal", "tests/rng/test_curand_host.c"))
    out = run_test(build, "text/test_bpe")
    same, total = find(out, r"text cases: (\d+)/(\d+) ids identical", "tokenizer")
    rows.append(("Tokenizer vs HF tokenizers", f"{same}/{total} strings give identical ids",
                 "tests/text/test_bpe.c"))
    out = run_test(build, "train/test_shadow_inplace")
    drifts = re.findall(r"(opt-pre\S*)\s+lr=0, 200 steps: shadow changed (\d+) of \d+ weights; "
                        r"inplace changed \d+ \((\S+)%\), max \|drift\| (\S+)", out)
    (ratio,) = find(out, r"in-place drift: worst (\S+) of the derived", "in-place bound")
    (loss_diff,) = find(out, r"worst relative difference (\S+)", "in-place losses")
    rows.append(("Shadow mode, lr 0, 200 steps", "weights bit-identical in " +
                 ", ".join(f"{d[0]}" for d in drifts if d[1] == "0"), "tests/train/test_shadow_inplace.c"))
    rows.append(("In-place mode, lr 0, 200 steps", "; ".join(
        f"{d[0]}: {d[2]}% of weights drift, max {d[3]}" for d in drifts) +
        f"; F32 drift at most {ratio} of its derived bound, losses within {loss_diff} of shadow's",
        "tests/train/test_shadow_inplace.c"))
    out = run_test(build, "train/test_directional")
    (smooth,) = find(out, r"worst relative error at eps = 1e-3: (\S+) after the last ReLU", "directional")
    (step_rel,) = find(out, r"one MeZO engine step: .*\(relative (\S+)\)", "engine step")
    rows.append(("Central difference vs autograd z.grad L (eps 1e-3, after the last ReLU)",
                 f"relative error {smooth}; one MeZO engine step's projected gradient within "
                 f"{step_rel}", "tests/train/test_directional.c"))
    out = run_test(build, "train/test_replay_resume")
    n_long = len(re.findall(r"400 steps, cosine lr: replay bit-identical", out))
    rows.append(("Replay and resume (stop, lost snapshot; 400-step cosine replays)",
                 f"bit-identical for 4 optimizers; {n_long} long replays bit-identical",
                 "tests/train/test_replay_resume.c"))
    out = run_test(build, "train/test_kill_resume", os.path.join(build, "src", "cli", "zotune"))
    term, kill = find(out, r"SIGTERM after (\d+) steps .*SIGKILL after (\d+) steps", "kill")
    rows.append(("SIGTERM / SIGKILL + --resume", f"exit 130 with step {term} saved; killed at "
                 f"step {kill}; both end bit-identical", "tests/train/test_kill_resume.c"))
    out = run_test(build, "train/test_run_integrity", os.path.join(build, "src", "cli", "zotune"))
    kills, attempts = find(out, r"(\d+) SIGKILLs over (\d+) attempts", "random kills")
    rows.append(("Random SIGKILLs (zo-adamm, plateau lr, eval + best/, snapshot every 2 steps)",
                 f"{kills} kills over {attempts} attempts: weights, step log, best/, metrics.jsonl "
                 "identical; diverging runs save the last finite state; --resume with another "
                 "option or input exits 2", "tests/train/test_run_integrity.c"))
    out = run_test(build, "train/test_faults")
    allocs, writes = find(out, r"(\d+) allocation sites .* (\d+) write sites", "fault injection")
    rows.append(("Fault injection over load, step, evaluation, snapshot",
                 f"{allocs} allocation failures x {writes} write failures (ENOSPC and EIO): each "
                 "reported, each resumed bit-identical", "tests/train/test_faults.c"))
    out = run_test(build, "train/test_sr_bf16")
    g = find(out, r"BF16\+SR (\S+) \((\d+)% of F32; (\d+)-(\d+)% over seeds\), BF16 "
             r"round-to-nearest (\S+) \((\d+)%; (\d+)-(\d+)%\)", "stochastic rounding")
    rows.append(("BF16 with stochastic rounding vs round-to-nearest (5 seeds)",
                 f"SR keeps {g[1]}% of F32's dev-loss improvement (by seed {g[2]}-{g[3]}%), "
                 f"round-to-nearest {g[5]}% ({g[6]}-{g[7]}%)", "tests/train/test_sr_bf16.c"))
    out = run_test(build, "train/test_gemm_half_train")
    half = re.findall(r"(opt-pre-\S+)\s+dev-loss .*--gemm half \S+ \((\d+)%; (\d+)-(\d+)% over", out)
    rows.append(("MeZO under --gemm half (5 seeds)", "; ".join(
        f"{h[0]} keeps {h[1]}% of the f32 run's improvement ({h[2]}-{h[3]}%)" for h in half),
        "tests/train/test_gemm_half_train.c"))
    out = run_test(build, "train/test_generate")
    gens = re.findall(r"(\S+)\s+(\d+) prompts, (\d+) tokens: identical", out)
    rows.append(("Greedy decoding vs HF generate", ", ".join(f"{g[0]} {g[2]} tokens" for g in gens)
                 + ": identical", "tests/train/test_generate.c"))
    out = run_test(build, "cudaemu/test_cuda_ops_emu")
    forward = worst(out, r"nmse (\S+) \(bound 1e-10\)")
    h = find(out, r"summary: half \d+ cases, worst \|err\|/bound ([0-9.e+-]+), least nmse vs f32 "
             r"([0-9.e+-]+); tf32 \d+ cases, worst ([0-9.e+-]+)", "gemm")
    rows.append(("CUDA kernels under the host executor vs the CPU ops",
                 f"NMSE <= {forward:.3g} (bound 1e-10; perturbation and update bit-identical); "
                 f"--gemm half at worst {h[0]} of its derived bound, tf32 {h[2]}",
                 "tests/cudaemu/op_parity.h, gemm_parity.h"))
    out = run_test(build, "cudaemu/test_cuda_model_emu")
    f32_nmse = worst(out, r"gemm f32  nmse logprobs \S+ logits (\S+)")
    shares = [float(a) / float(b) for a, b in re.findall(
        r"gemm half nmse logprobs \S+ logits (\S+) \(bound \S+; half's effect ([1-9]\S*)\)", out)]
    rows.append(("Whole OPT forward on the CUDA kernels (4 models, K = 3)",
                 f"logit NMSE <= {f32_nmse:.3g} under f32; under half the backends differ by at "
                 f"most {100 * max(shares):.1f}% of half mode's own effect (bound 10%)",
                 "tests/cudaemu/model_parity.h"))

    if not args.no_demo:
        zotune = os.path.join(build, "src", "cli", "zotune")
        keys = [(42, "f32"), (42, "half"), (1, "f32"), (2, "f32")]
        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            runs = dict(zip(keys, pool.map(lambda key: demo_run(zotune, *key), keys)))
        rows.append(("make demo's fine-tune (seed 42)",
                     f"{runs[(42, 'f32')][0]:.1f}% -> {runs[(42, 'f32')][1]:.1f}% dev accuracy; "
                     f"--gemm half {runs[(42, 'half')][1]:.1f}%; seeds 1 and 2 "
                     f"{runs[(1, 'f32')][1]:.1f}% and {runs[(2, 'f32')][1]:.1f}%",
                     "tools/demo.sh"))

    print("| what | measured | by |")
    print("|---|---|---|")
    for what, value, source in rows:
        print(f"| {what} | {value} | `{source}` |")


if __name__ == "__main__":
    main()
