#!/usr/bin/env python3
"""Checks that checkpoints written by `zotune train` load in HuggingFace transformers with the
logits zotune computes. Needs torch + transformers (not needed by CI; run by hand):

    python3 tools/check_export.py --zotune build/src/cli/zotune

For each fixture model (F32, F16, BF16 storage) it fine-tunes a few MeZO steps into a temporary
directory, loads the output with OPTForCausalLM.from_pretrained (upcast to float32, as the
fixtures' references are), and compares transformers' per-example losses on score.jsonl with
`zotune score --json` on the same checkpoint, and transformers' logits at every target row with
`zotune score --logits` (max |difference| <= 1e-4). Exits non-zero on any mismatch.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zotune", default="build/src/cli/zotune")
    parser.add_argument("--fixtures", default="tests/fixtures")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    import torch
    from safetensors.torch import load_file
    from transformers import OPTForCausalLM

    data = os.path.join(args.fixtures, "opt-pre", "score.jsonl")
    records = [json.loads(line) for line in open(data, encoding="utf-8") if line.strip()]
    worst = worst_logit = 0.0
    failures = 0
    for fixture in ("opt-pre", "opt-post", "opt-pre-f16", "opt-pre-bf16"):
        with tempfile.TemporaryDirectory() as out:
            subprocess.run([args.zotune, "train", "--model", os.path.join(args.fixtures, fixture),
                            "--train", data, "--output", out, "--steps", str(args.steps),
                            "--batch-size", "4", "--lr", "1e-3", "--quiet"], check=True)
            dump = os.path.join(out, "logits.safetensors")
            ours = json.loads(subprocess.run([args.zotune, "score", out, data, "--json",
                                              "--logits", dump],
                                             check=True, capture_output=True,
                                             text=True).stdout)["examples"]
            our_logits = load_file(dump)
            model = OPTForCausalLM.from_pretrained(out, dtype=torch.float32,
                                                   attn_implementation="eager").eval()
            base = load_file(os.path.join(args.fixtures, fixture, "model.safetensors"))
            moved = load_file(os.path.join(out, "model.safetensors"))
            changed = sum(int((base[k] != moved[k]).sum()) for k in base)
            for record, mine in zip(records, ours):
                ids = torch.tensor([record["input_ids"]])
                labels = torch.tensor([record["labels"]])
                with torch.no_grad():
                    hf = model(input_ids=ids, labels=labels).loss.item()
                rel = abs(hf - mine["loss"]) / abs(hf)
                worst = max(worst, rel)
                if rel > 1e-5:
                    failures += 1
                    print(f"{fixture}: HF loss {hf:.9g}, zotune {mine['loss']:.9g} (rel {rel:.3g})")
            max_logit = 0.0
            lines = {i + 1: r for i, r in enumerate(records)}
            for row, (line, position) in enumerate(our_logits["line_position"].tolist()):
                ids = torch.tensor([lines[line]["input_ids"]])
                with torch.no_grad():
                    hf_logits = model(input_ids=ids).logits[0, position]
                max_logit = max(max_logit, float((hf_logits - our_logits["logits"][row]).abs().max()))
            if max_logit > 1e-4:
                failures += 1
            worst_logit = max(worst_logit, max_logit)
            print(f"{fixture}: trained {args.steps} steps ({changed} weights moved); transformers "
                  f"loads the checkpoint; {len(our_logits['logits'])} target rows, logits max "
                  f"|diff| {max_logit:.3g}")
    print(f"worst relative loss difference {worst:.3g}, worst logit difference {worst_logit:.3g}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
