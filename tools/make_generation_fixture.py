#!/usr/bin/env python3
"""Greedy-generation references from transformers' `generate` for zotune's decoding tests.

Usage:  python3 tools/make_generation_fixture.py [--out tests/fixtures]

For each model (the opt-pre and opt-post fixtures, and the demo model) it draws prompts of
token ids with a fixed seed, runs HF `generate(do_sample=False, num_beams=1)` on each prompt
alone (no padding) with EOS as the stop token, and writes <out>/generation/<name>.json:
{"model": dir, "max_new_tokens": n, "eos_token_id": id, "cases": [{"prompt": [...],
"generated": [...], "min_margin": m}]}. `generated` holds the new tokens, EOS included when HF
stopped on it. Only prompts whose every decoding step has a gap of at least MIN_MARGIN between
the two largest logits are kept: zotune's f32 logits agree with HF's to a few 1e-6, so a gap this
size cannot flip the argmax. Needs torch + transformers (developer machine only; CI reads the
committed JSON).
"""

import argparse
import json
import os

import torch
import transformers
from transformers import OPTForCausalLM

MODELS = {
    "opt-pre": "tests/fixtures/opt-pre",
    "opt-post": "tests/fixtures/opt-post",
    "demo": "demo/model",
}
SEED = 20261206
N_CASES = 6
MAX_NEW = 12
MIN_MARGIN = 1e-4
TOKEN_LO = 3  # ids below are the special tokens


def min_margin(scores):
    """Smallest top-1 minus top-2 logit gap over the decoding steps."""
    gaps = []
    for step_scores in scores:
        top = torch.topk(step_scores[0].double(), 2).values
        gaps.append(float(top[0] - top[1]))
    return min(gaps)


def cases_for(model_dir, generator):
    model = OPTForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    model.eval()
    config = model.config
    cases, tries = [], 0
    while len(cases) < N_CASES and tries < 200:
        tries += 1
        length = int(torch.randint(1, 9, (1,), generator=generator))
        ids = torch.randint(TOKEN_LO, config.vocab_size, (1, length), generator=generator)
        ids[0, 0] = config.bos_token_id  # as zotune's tokenizer starts every sequence
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 num_beams=1, max_new_tokens=MAX_NEW,
                                 eos_token_id=config.eos_token_id,
                                 pad_token_id=config.pad_token_id, output_scores=True,
                                 output_logits=True, return_dict_in_generate=True)
        margin = min_margin(out.logits)
        if margin < MIN_MARGIN:
            continue
        cases.append({"prompt": ids[0].tolist(), "generated": out.sequences[0, length:].tolist(),
                      "min_margin": margin})
    return {"model": model_dir, "max_new_tokens": MAX_NEW, "eos_token_id": config.eos_token_id,
            "transformers": transformers.__version__, "cases": cases}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="tests/fixtures")
    args = parser.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    os.makedirs(os.path.join(args.out, "generation"), exist_ok=True)
    for name, model_dir in MODELS.items():
        generator = torch.Generator().manual_seed(SEED)
        fixture = cases_for(model_dir, generator)
        path = os.path.join(args.out, "generation", name + ".json")
        with open(path, "w") as f:
            json.dump(fixture, f, indent=1)
            f.write("\n")
        print(f"{path}: {len(fixture['cases'])} cases")


if __name__ == "__main__":
    main()
