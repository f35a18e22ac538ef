#!/usr/bin/env python3
"""MeZO's training loop in PyTorch + transformers on the CPU: the peer zotune is timed against.

Runs MeZO-SGD steps (Malladi et al. 2023, the loop of princeton-nlp/MeZO's large_models trainer,
re-implemented here from its description) on an HF OPT directory and a pre-tokenized JSONL task,
and prints one JSON document with the seconds per step.

One step, as MeZO publishes it:
  seed = a fresh random integer
  torch.manual_seed(seed); for every trainable p: z = N(0, 1) of p's shape and dtype; p += eps z
  loss1 = forward (eval mode, no autograd)
  torch.manual_seed(seed); for every p: p -= 2 eps z           (z regenerated, never stored)
  loss2 = forward
  torch.manual_seed(seed); for every p: p += eps z             (back to the start)
  g = (loss1 - loss2) / (2 eps)
  torch.manual_seed(seed); for every p: p -= lr (g z + wd p)   (wd only off bias/layer norm)

The loss is HF OPTForCausalLM's: cross-entropy of the next token where labels != -100, logits
computed on every row (MeZO's loop does not restrict the LM head to the target rows). The data
are the records of tools/make_random_opt.py: {"input_ids": [...], "labels": [...]} of one length.

    bench/peer/mezo_peer.py --model DIR --data FILE --batch-size 4 --threads 1 --steps 5
"""
import argparse
import json
import os
import platform
import random
import statistics
import sys
import time

DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}


def parse_args():
    ap = argparse.ArgumentParser(
        description="MeZO-SGD steps in PyTorch + transformers on the CPU; prints seconds/step "
                    "as JSON (the peer of bench/peer/compare.py).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--model", required=True, help="HF OPT directory (config.json + safetensors)")
    ap.add_argument("--data", required=True,
                    help="JSONL of {input_ids, labels}, all records of one length")
    ap.add_argument("--batch-size", type=int, default=16, help="sequences per step (16)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1)")
    ap.add_argument("--steps", type=int, default=5, help="steps run in all (5)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="first steps left out of the median (1)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                    help="storage and compute dtype (default: config.json's torch_dtype)")
    ap.add_argument("--lr", type=float, default=1e-6, help="learning rate (1e-6, MeZO's)")
    ap.add_argument("--eps", type=float, default=1e-3, help="perturbation scale (1e-3)")
    ap.add_argument("--weight-decay", type=float, default=0.0, help="weight decay (0)")
    ap.add_argument("--seed", type=int, default=42, help="data order and step seeds (42)")
    ap.add_argument("--update", choices=["published", "fused"], default="published",
                    help="published: p.data = p.data + c * z, as MeZO writes it (temporaries "
                         "for c * z and the sum); fused: p.add_(z, alpha=c), in place")
    ap.add_argument("--out", help="also write the JSON document to this file")
    a = ap.parse_args()
    if a.batch_size < 1 or a.threads < 1 or a.steps < 1:
        ap.error("--batch-size, --threads and --steps must be at least 1")
    if not 0 <= a.warmup < a.steps:
        ap.error(f"--warmup {a.warmup} must be in [0, --steps {a.steps})")
    return a


def read_records(path):
    records = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            if "input_ids" not in r or "labels" not in r or len(r["input_ids"]) != len(r["labels"]):
                sys.exit(f"mezo_peer: {path}:{lineno}: need input_ids and labels of equal length")
            records.append(r)
    if not records or len({len(r["input_ids"]) for r in records}) != 1:
        sys.exit(f"mezo_peer: {path}: need records, all of one length (no padding here)")
    return records


def main():
    a = parse_args()
    # Threads are fixed before torch starts its pools.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(a.threads)
    import numpy as np
    import torch
    import transformers
    from transformers import OPTForCausalLM

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    records = read_records(a.data)

    t0 = time.perf_counter()
    kwargs = {}
    if a.dtype:
        kwargs["dtype"] = getattr(torch, DTYPES[a.dtype])
    else:
        kwargs["dtype"] = "auto"
    model = OPTForCausalLM.from_pretrained(a.model, **kwargs)
    model.eval()  # no dropout, as MeZO's zo_forward
    load_s = time.perf_counter() - t0
    dtype = next(model.parameters()).dtype

    # MeZO perturbs every parameter that requires grad; named_parameters() lists the tied
    # embedding / LM head once.
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    n_params = sum(p.numel() for _, p in params)
    no_decay = ("bias", "layer_norm", "layernorm")

    def perturb(seed, scale):
        torch.manual_seed(seed)
        for _, p in params:
            z = torch.normal(mean=0, std=1, size=p.size(), device=p.device, dtype=p.dtype)
            if a.update == "published":
                p.data = p.data + scale * z * a.eps
            else:
                p.add_(z, alpha=scale * a.eps)

    def update(seed, grad):
        torch.manual_seed(seed)
        for name, p in params:
            z = torch.normal(mean=0, std=1, size=p.size(), device=p.device, dtype=p.dtype)
            decay = a.weight_decay if not any(k in name for k in no_decay) else 0.0
            if a.update == "published":
                if decay:
                    p.data = p.data - a.lr * (grad * z + decay * p.data)
                else:
                    p.data = p.data - a.lr * grad * z
            else:
                if decay:
                    p.mul_(1 - a.lr * decay)
                p.add_(z, alpha=-a.lr * grad)

    def forward(batch):
        return model(**batch).loss.item()

    order = random.Random(a.seed)
    seeds = np.random.RandomState(a.seed)
    steps, cpus, phases, losses = [], [], [], []
    with torch.inference_mode():
        for _ in range(a.steps):
            rows = [records[order.randrange(len(records))] for _ in range(a.batch_size)]
            ids = torch.tensor([r["input_ids"] for r in rows], dtype=torch.long)
            batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                     "labels": torch.tensor([r["labels"] for r in rows], dtype=torch.long)}
            seed = int(seeds.randint(1000000000))
            c0 = time.process_time()
            t = [time.perf_counter()]
            perturb(seed, 1.0)
            t.append(time.perf_counter())
            loss1 = forward(batch)
            t.append(time.perf_counter())
            perturb(seed, -2.0)
            t.append(time.perf_counter())
            loss2 = forward(batch)
            t.append(time.perf_counter())
            perturb(seed, 1.0)
            t.append(time.perf_counter())
            grad = (loss1 - loss2) / (2 * a.eps)
            update(seed, grad)
            t.append(time.perf_counter())
            steps.append(t[-1] - t[0])
            cpus.append(time.process_time() - c0)
            phases.append({"perturb_s": (t[1] - t[0]) + (t[3] - t[2]) + (t[5] - t[4]),
                           "forward_s": (t[2] - t[1]) + (t[4] - t[3]),
                           "update_s": t[6] - t[5]})
            losses.append([loss1, loss2, grad])
            print(f"mezo_peer: step {len(steps)}/{a.steps} {steps[-1]:.3f} s "
                  f"loss {loss1:.5f} / {loss2:.5f}", file=sys.stderr, flush=True)

    timed = steps[a.warmup:]
    doc = {
        "tool": "mezo_peer", "model": a.model, "data": a.data, "dtype": str(dtype),
        "batch_size": a.batch_size, "seq_len": len(records[0]["input_ids"]),
        "target_rows_per_step": sum(sum(1 for x in r[1:] if x != -100)
                                    for r in (rw["labels"] for rw in rows)),
        "threads": a.threads, "update": a.update, "trainable_params": n_params,
        "steps": a.steps, "warmup": a.warmup, "load_s": round(load_s, 3),
        "step_s": [round(s, 4) for s in steps],
        "s_per_step_median": statistics.median(timed),
        "cpu_s": [round(c, 4) for c in cpus],
        "cpu_s_per_step_median": statistics.median(cpus[a.warmup:]),
        "phases_median": {k: statistics.median(p[k] for p in phases[a.warmup:])
                          for k in phases[0]},
        "losses": losses,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    text = json.dumps(doc)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
