#!/usr/bin/env python3
"""Generate the prompt-tuning fixture tests/fixtures/opt-pre-prompt/ with HF peft.

Usage:  python3 tools/make_prompt_fixtures.py --out tests/fixtures

A peft PROMPT_TUNING adapter on tests/fixtures/opt-pre with N = 3 virtual tokens, initialised
with PromptTuningInit.SAMPLE_VOCAB (token-table rows of random ids) and then moved by seeded
noise (so the test sees a trained-looking table, not rows of the token table), saved with
PeftModel.save_pretrained, then loaded back with PeftModel.from_pretrained;
reference.safetensors holds the batch and peft's outputs:

  input_ids       I32 (2, 8)    token ids, the second sequence left-padded by 3
  attention_mask  I32 (2, 8)
  logits          F32 (2, 8, V) PeftModel(base).logits at the real slots (peft returns N + 8
                                rows per sequence: the virtual slots' rows are dropped), eval
  labels          I32 (2, 8)    input_ids, -100 on padding and on column 0
  loss            F32 (1)       the token-mean LM loss with those labels (peft puts -100 on the
                                virtual slots)
  grad/prompt_embeddings  F32 (N, E)  d loss / d the prompt table (autograd)

Needs torch, transformers, peft (developer machine only; CI reads the committed files).
"""

import argparse
import json
import os

import torch
from peft import PeftModel, PromptTuningConfig, PromptTuningInit, get_peft_model
from safetensors.torch import save_file
from transformers import OPTForCausalLM

N_VIRTUAL = 3
SEED = 1357
T = 8
PAD_LEFT = 3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    base_dir = os.path.join(args.out, "opt-pre")
    out = os.path.join(args.out, "opt-pre-prompt")
    base = OPTForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32).eval()
    cfg = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=N_VIRTUAL,
                             prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB,
                             token_dim=base.config.word_embed_proj_dim)
    model = get_peft_model(base, cfg)
    table = model.prompt_encoder["default"].embedding.weight
    with torch.no_grad():
        table.add_(torch.randn_like(table) * 0.5)
    model.save_pretrained(out)  # base_model_name_or_path: the base's path as given
    del model, base
    cfg_path = os.path.join(out, "adapter_config.json")
    with open(cfg_path) as f:
        saved = json.load(f)
    with open(cfg_path, "w") as f:
        json.dump(saved, f, indent=2, sort_keys=True)
        f.write("\n")

    base = OPTForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32).eval()
    # peft loads a prompt adapter frozen (is_trainable refuses it): the gradient is asked for after
    peft_model = PeftModel.from_pretrained(base, out).eval()
    peft_model.prompt_encoder["default"].embedding.weight.requires_grad_(True)
    vocab = base.config.vocab_size
    g = torch.Generator().manual_seed(SEED + 1)
    ids = torch.randint(3, vocab, (2, T), generator=g)
    mask = torch.ones(2, T, dtype=torch.int64)
    ids[1, :PAD_LEFT] = base.config.pad_token_id
    mask[1, :PAD_LEFT] = 0
    ids[0, 0] = ids[1, PAD_LEFT] = base.config.bos_token_id
    with torch.no_grad():
        logits = peft_model(input_ids=ids, attention_mask=mask).logits.float()[:, N_VIRTUAL:]
    labels = torch.where(mask == 1, ids, torch.tensor(-100))
    # Column 0 is no target: peft would predict it from the last virtual token, a row zotune
    # never gives a target (virtual slots carry none, as a batch's first column has no row
    # before it without a prompt).
    labels[:, 0] = -100
    loss = peft_model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    grad = peft_model.prompt_encoder["default"].embedding.weight.grad.detach().float()
    save_file({"input_ids": ids.int().contiguous(), "attention_mask": mask.int().contiguous(),
               "labels": labels.int().contiguous(), "logits": logits.contiguous(),
               "loss": loss.detach().float().reshape(1),
               "grad/prompt_embeddings": grad.contiguous()},
              os.path.join(out, "reference.safetensors"), {"peft": __import__("peft").__version__})
    readme = os.path.join(out, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    print(f"wrote {out}: logits {tuple(logits.shape)}, loss {loss.item():.4f}, "
          f"|grad| {grad.norm():.4g}")


if __name__ == "__main__":
    main()
