#!/usr/bin/env python3
"""Checks that prompt tables written by `zotune train --peft prompt` load in HF peft with the
logits zotune computes. Needs torch + transformers + peft (not needed by CI; run by hand):

    python3 tools/check_prompt_export.py --zotune build/src/cli/zotune

For each fixture model (F32, F16, BF16 storage) it trains a few MeZO steps of prompt tuning with
4 virtual tokens into a temporary directory, loads the base with OPTForCausalLM.from_pretrained
(upcast to float32, as the fixtures' references are) and the table with
peft.PeftModel.from_pretrained, and compares peft's logits at every target row of score.jsonl
(peft's row N + position) with `zotune score --adapter --logits` (relative difference
max |diff| / max(1, |logit|) <= 1e-4). Also checks the written model.safetensors equals the
base. Exits non-zero on any mismatch.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

N_VIRTUAL = 4


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zotune", default="build/src/cli/zotune")
    parser.add_argument("--fixtures", default="tests/fixtures")
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import OPTForCausalLM

    data = os.path.join(args.fixtures, "opt-pre", "score.jsonl")
    records = [json.loads(line) for line in open(data, encoding="utf-8") if line.strip()]
    lines = {i + 1: r for i, r in enumerate(records)}
    worst = 0.0
    failures = 0
    for fixture in ("opt-pre", "opt-post", "opt-pre-f16", "opt-pre-bf16"):
        base_dir = os.path.join(args.fixtures, fixture)
        with tempfile.TemporaryDirectory() as out:
            subprocess.run([args.zotune, "train", "--model", base_dir, "--train", data,
                            "--output", out, "--steps", str(args.steps), "--batch-size", "4",
                            "--lr", "1e-2", "--eps", "1e-2", "--peft", "prompt",
                            "--num-virtual-tokens", str(N_VIRTUAL), "--quiet"], check=True)
            dump = os.path.join(out, "logits.safetensors")
            subprocess.run([args.zotune, "score", base_dir, data, "--adapter", out, "--json",
                            "--logits", dump], check=True, capture_output=True)
            our_logits = load_file(dump)
            base = load_file(os.path.join(base_dir, "model.safetensors"))
            written = load_file(os.path.join(out, "model.safetensors"))
            moved = sum(int((base[k] != written[k]).sum()) for k in base)
            if moved:
                failures += 1
            model = OPTForCausalLM.from_pretrained(base_dir, dtype=torch.float32,
                                                   attn_implementation="eager").eval()
            model = PeftModel.from_pretrained(model, out).eval()
            max_logit = 0.0
            for row, (line, position) in enumerate(our_logits["line_position"].tolist()):
                ids = torch.tensor([lines[line]["input_ids"]])
                with torch.no_grad():
                    hf_logits = model(input_ids=ids).logits[0, N_VIRTUAL + position]
                diff = (hf_logits - our_logits["logits"][row]).abs()
                max_logit = max(max_logit, float((diff / hf_logits.abs().clamp(min=1.0)).max()))
            if max_logit > 1e-4:
                failures += 1
            worst = max(worst, max_logit)
            print(f"{fixture:13s}: {args.steps} MeZO steps; base unchanged ({moved} moved); "
                  f"peft loads the table; {len(our_logits['logits'])} rows, logits max relative "
                  f"diff {max_logit:.3g}")
    print(f"worst relative logit difference {worst:.3g}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
