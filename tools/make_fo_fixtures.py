#!/usr/bin/env python3
"""torch.optim's SGD, Adam and AdamW on a small tensor, step by step, for zotune's fo_update test.

Usage:  python3 tools/make_fo_fixtures.py --out tests/fixtures/fo_update.safetensors

Writes theta0 (37,), grads (6, 37) and, per configuration, the weights after each step (6, 37),
all f32, with each configuration's hyperparameters in the metadata (JSON). Single thread,
deterministic. Developer machine only (needs torch); CI reads the committed file.
"""
import argparse
import json

import torch
from safetensors.torch import save_file

CONFIGS = {
    "sgd": ("SGD", dict(lr=0.1)),
    "sgd_decay": ("SGD", dict(lr=0.05, weight_decay=0.1)),
    "sgd_momentum": ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    "sgd_nesterov": ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "adam": ("Adam", dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)),
    "adamw": ("AdamW", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(20261206)
    theta0 = torch.randn(37, generator=gen, dtype=torch.float32)
    grads = torch.randn(6, 37, generator=gen, dtype=torch.float32) * 0.5
    grads[:, 3] = 0.0  # a coordinate whose gradient stays zero
    tensors = {"theta0": theta0, "grads": grads}
    meta = {}
    for name, (cls, hp) in CONFIGS.items():
        p = torch.nn.Parameter(theta0.clone())
        opt = getattr(torch.optim, cls)([p], foreach=False, **hp)
        steps = []
        for g in grads:
            p.grad = g.clone()
            opt.step()
            steps.append(p.detach().clone())
        tensors[name] = torch.stack(steps)
        meta[name] = json.dumps({"class": cls, **{k: list(v) if isinstance(v, tuple) else v
                                                  for k, v in hp.items()}}, sort_keys=True)
    meta["torch_version"] = torch.__version__
    save_file({k: v.contiguous() for k, v in tensors.items()}, args.out, metadata=meta)


if __name__ == "__main__":
    main()
