#!/usr/bin/env python3
"""Checks that LoRA adapters written by `zotune train --peft lora` load in HF peft with the logits
zotune computes. Needs torch + transformers + peft (not needed by CI; run by hand):

    python3 tools/check_lora_export.py --zotune build/src/cli/zotune

For each fixture model (F32, F16, BF16 storage) and two target sets it trains a few MeZO steps
of LoRA into a temporary directory (a non-zero B after training, so the adapter matters), loads
the base with OPTForCausalLM.from_pretrained (upcast to float32, as the fixtures' references
are) and the adapter with peft.PeftModel.from_pretrained, and compares peft's per-example losses
on score.jsonl with `zotune score --adapter --json`, and peft's logits at every target row with
`zotune score --adapter --logits` (relative difference max |diff| / max(1, |logit|) <= 1e-4).
Also checks the written model.safetensors equals the base. Exits non-zero on any mismatch.
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
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import OPTForCausalLM

    data = os.path.join(args.fixtures, "opt-pre", "score.jsonl")
    records = [json.loads(line) for line in open(data, encoding="utf-8") if line.strip()]
    lines = {i + 1: r for i, r in enumerate(records)}
    worst = worst_logit = 0.0
    failures = 0
    for fixture in ("opt-pre", "opt-post", "opt-pre-f16", "opt-pre-bf16"):
        for targets in ("q_proj,v_proj", "q_proj,k_proj,v_proj,out_proj"):
            base_dir = os.path.join(args.fixtures, fixture)
            with tempfile.TemporaryDirectory() as out:
                subprocess.run([args.zotune, "train", "--model", base_dir, "--train", data,
                                "--output", out, "--steps", str(args.steps), "--batch-size", "4",
                                "--lr", "1e-2", "--eps", "1e-2", "--peft", "lora",
                                "--lora-rank", "4", "--lora-alpha", "8", "--lora-targets",
                                targets, "--quiet"], check=True)
                dump = os.path.join(out, "logits.safetensors")
                ours = json.loads(subprocess.run(
                    [args.zotune, "score", base_dir, data, "--adapter", out, "--json",
                     "--logits", dump], check=True, capture_output=True,
                    text=True).stdout)["examples"]
                our_logits = load_file(dump)
                base = load_file(os.path.join(base_dir, "model.safetensors"))
                written = load_file(os.path.join(out, "model.safetensors"))
                moved = sum(int((base[k] != written[k]).sum()) for k in base)
                if moved:
                    failures += 1
                adapter = load_file(os.path.join(out, "adapter_model.safetensors"))
                b_norm = sum(float(v.abs().sum()) for k, v in adapter.items() if "lora_B" in k)
                model = OPTForCausalLM.from_pretrained(base_dir, dtype=torch.float32,
                                                       attn_implementation="eager").eval()
                model = PeftModel.from_pretrained(model, out).eval()
                for record, mine in zip(records, ours):
                    ids = torch.tensor([record["input_ids"]])
                    labels = torch.tensor([record["labels"]])
                    with torch.no_grad():
                        hf = model(input_ids=ids, labels=labels).loss.item()
                    rel = abs(hf - mine["loss"]) / abs(hf)
                    worst = max(worst, rel)
                    if rel > 1e-5:
                        failures += 1
                        print(f"{fixture} {targets}: peft loss {hf:.9g}, zotune "
                              f"{mine['loss']:.9g} (rel {rel:.3g})")
                max_logit = 0.0
                for row, (line, position) in enumerate(our_logits["line_position"].tolist()):
                    ids = torch.tensor([lines[line]["input_ids"]])
                    with torch.no_grad():
                        hf_logits = model(input_ids=ids).logits[0, position]
                    diff = (hf_logits - our_logits["logits"][row]).abs()
                    rel = float((diff / hf_logits.abs().clamp(min=1.0)).max())
                    max_logit = max(max_logit, rel)
                if max_logit > 1e-4:
                    failures += 1
                worst_logit = max(worst_logit, max_logit)
                print(f"{fixture:13s} {targets:30s}: {args.steps} MeZO steps, sum |B| {b_norm:.3g}; "
                      f"base unchanged ({moved} moved); peft loads the adapter; "
                      f"{len(our_logits['logits'])} rows, logits max relative diff {max_logit:.3g}")
    print(f"worst relative loss difference {worst:.3g}, worst relative logit difference "
          f"{worst_logit:.3g}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
