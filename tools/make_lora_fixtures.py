#!/usr/bin/env python3
"""Generate the LoRA fixture tests/fixtures/opt-pre-lora/ with HF peft.

Usage:  python3 tools/make_lora_fixtures.py --out tests/fixtures

A peft LoRA adapter on tests/fixtures/opt-pre (rank 4, alpha 7, so scale 1.75; targets
q_proj, k_proj, v_proj and out_proj: every module zotune adapts) whose B matrices are set to
seeded random values (peft initialises B to 0, which would make the adapter a no-op and the
test meaningless), saved with PeftModel.save_pretrained, then loaded back with
PeftModel.from_pretrained; reference.safetensors holds the batch and peft's logits:

  input_ids       I32 (2, 8)    token ids, the second sequence left-padded by 3
  attention_mask  I32 (2, 8)
  logits          F32 (2, 8, V) PeftModel(base).logits, f32, eval mode
  labels          I32 (2, 8)    input_ids, -100 on padding
  loss            F32 (1)       the token-mean LM loss with those labels
  grad/<name>     F32           d loss / d adapter for every lora_A / lora_B (zotune's names)

Needs torch, transformers, peft (developer machine only; CI reads the committed files).
"""

import argparse
import json
import os

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import OPTForCausalLM

RANK, ALPHA = 4, 7
TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
SEED = 2468
T = 8
PAD_LEFT = 3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    base_dir = os.path.join(args.out, "opt-pre")
    out = os.path.join(args.out, "opt-pre-lora")
    base = OPTForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32).eval()
    cfg = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS, lora_dropout=0.0,
                     bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(base, cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.2)
    model.save_pretrained(out)  # base_model_name_or_path: the base's path as given
    del model, base
    # peft keeps target_modules as a set: sorted, the file is the same on every run
    cfg_path = os.path.join(out, "adapter_config.json")
    with open(cfg_path) as f:
        saved = json.load(f)
    saved["target_modules"] = sorted(saved["target_modules"])
    with open(cfg_path, "w") as f:
        json.dump(saved, f, indent=2, sort_keys=True)
        f.write("\n")

    base = OPTForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32).eval()
    peft_model = PeftModel.from_pretrained(base, out, is_trainable=True).eval()
    vocab = base.config.vocab_size
    g = torch.Generator().manual_seed(SEED + 1)
    ids = torch.randint(3, vocab, (2, T), generator=g)
    mask = torch.ones(2, T, dtype=torch.int64)
    ids[1, :PAD_LEFT] = base.config.pad_token_id
    mask[1, :PAD_LEFT] = 0
    ids[0, 0] = ids[1, PAD_LEFT] = base.config.bos_token_id
    with torch.no_grad():
        logits = peft_model(input_ids=ids, attention_mask=mask).logits.float()
    # the token-mean LM loss over the real tokens and its gradient for every adapter tensor
    labels = torch.where(mask == 1, ids, torch.tensor(-100))
    loss = peft_model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    grads = {}
    for name, p in peft_model.named_parameters():
        if "lora_" in name:
            key = name.replace("base_model.model.", "", 1).replace(".default", "")
            grads["grad/" + key] = p.grad.detach().float().contiguous()
    save_file({"input_ids": ids.int().contiguous(), "attention_mask": mask.int().contiguous(),
               "labels": labels.int().contiguous(), "logits": logits.contiguous(),
               "loss": loss.detach().float().reshape(1), **grads},
              os.path.join(out, "reference.safetensors"), {"peft": __import__("peft").__version__})
    readme = os.path.join(out, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    print(f"wrote {out}: logits {tuple(logits.shape)}, |logits| max {logits.abs().max():.3f}")


if __name__ == "__main__":
    main()
