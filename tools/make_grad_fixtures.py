#!/usr/bin/env python3
"""Gradients of the fixtures' LM loss, written by transformers' autograd, for zotune's backprop tests.

Usage:  python3 tools/make_grad_fixtures.py --fixtures tests/fixtures

For each fixture model (opt-pre, opt-post, opt-pre-f16, opt-pre-bf16) it loads the committed
weights in float32 (half weights widen exactly, so the math is f32 on the stored values), takes
the "lm" batch of its reference.safetensors (left-padded ids, mask and labels with -100), and
writes grads.safetensors: d loss / d parameter for HF's loss (the mean next-token NLL over every
label that is not -100, labels shifted inside the model), one f32 tensor per parameter under
its HF name (the tied head folded into embed_tokens), the loss in the metadata. It also writes
lm.jsonl beside the fixtures: the same batch as pre-tokenized records ({"input_ids", "labels"},
padding stripped), which `zotune grad` takes as one batch.

Needs torch, transformers and safetensors (developer machine only; the outputs are committed, CI
never runs this). Deterministic: single thread, eval mode (no dropout), and make_fixtures.py's
byte-stable safetensors writer.
"""

import argparse
import json
import os
import sys

import torch
import transformers
from safetensors.numpy import load_file
from transformers import OPTForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import meta, write_safetensors  # noqa: E402

MODELS = ["opt-pre", "opt-post", "opt-pre-f16", "opt-pre-bf16"]


def lm_batch(fixture_dir):
    ref = load_file(os.path.join(fixture_dir, "reference.safetensors"))
    return ref["lm_input_ids"], ref["lm_attention_mask"], ref["lm_labels"]


def gradients(model_dir, ids, mask, labels):
    model = OPTForCausalLM.from_pretrained(model_dir, attn_implementation="eager",
                                           dtype=torch.float32)
    model.eval()
    model.zero_grad()
    out = model(input_ids=torch.tensor(ids, dtype=torch.long),
                attention_mask=torch.tensor(mask, dtype=torch.long),
                labels=torch.tensor(labels, dtype=torch.long))
    out.loss.backward()
    grads = {n: p.grad.detach().float().contiguous() for n, p in model.named_parameters()}
    return model, out.loss.item(), grads


def write_records(path, ids, mask, labels):
    with open(path, "w") as f:
        for row_ids, row_mask, row_labels in zip(ids, mask, labels):
            keep = [i for i, m in enumerate(row_mask) if m]
            record = {"input_ids": [int(row_ids[i]) for i in keep],
                      "labels": [int(row_labels[i]) for i in keep]}
            f.write(json.dumps(record, separators=(",", ":")) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixtures", required=True, help="fixtures root, e.g. tests/fixtures")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()

    ids, mask, labels = lm_batch(os.path.join(args.fixtures, "opt-pre"))
    write_records(os.path.join(args.fixtures, "lm.jsonl"), ids, mask, labels)
    for name in MODELS:
        d = os.path.join(args.fixtures, name)
        ids_d, mask_d, labels_d = lm_batch(d) if os.path.exists(
            os.path.join(d, "reference.safetensors")) else (ids, mask, labels)
        assert (ids_d == ids).all() and (mask_d == mask).all() and (labels_d == labels).all()
        model, loss, grads = gradients(d, ids, mask, labels)
        metadata = dict(meta(model))
        metadata["loss"] = repr(loss)
        write_safetensors(os.path.join(d, "grads.safetensors"), grads, metadata)
        print(f"{name}: loss {loss:.9g}, {len(grads)} gradients")


if __name__ == "__main__":
    main()
