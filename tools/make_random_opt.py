#!/usr/bin/env python3
"""Writes an OPT-shaped model with random weights and a pre-tokenized LM task, for timing runs
where no checkpoint can be fetched (tools/gpu-check.sh on a lent GPU). Needs numpy only.

    tools/make_random_opt.py --shape 1.3b --dtype f16 --out DIR [--records N --seq-len T]
                             [--targets-per-seq R]

DIR/model gets config.json and model.safetensors (HF tensor names, tied LM head); DIR/train.jsonl
gets N records {"input_ids": [...], "labels": [...]} of T tokens each, the loss on the last R
tokens (default 1: MeZO's classification shape, one target row per sequence, the roofline's
default) or on every token (R = 0: language modelling); DIR/train_lm.jsonl is the same records
with the loss on every token. The weights are N(0, 0.02)
(layer-norm scales 1) drawn from one pool of values reused across tensors: the values only have
to keep the forward finite, and filling gigabytes from a pool takes seconds instead of minutes.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

# hidden, layers, heads, ffn (docs/spec.md §1.1: the public OPT configurations)
SHAPES = {
    "125m": (768, 12, 12, 3072),
    "350m": (1024, 24, 16, 4096),
    "1.3b": (2048, 24, 32, 8192),
    "2.7b": (2560, 32, 32, 10240),
    "6.7b": (4096, 32, 32, 16384),
    "13b": (5120, 40, 40, 20480),
}
VOCAB = 50272
MAX_POSITIONS = 2048
POSITION_OFFSET = 2  # OPT's learned positions start at row 2
POOL_SIZE = 1 << 22


def config_of(shape, dtype):
    hidden, layers, heads, ffn = SHAPES[shape]
    if shape == "350m":
        sys.exit("make_random_opt: 350m projects its embeddings (word_embed_proj_dim 512); "
                 "not generated here")
    return {
        "_remove_final_layer_norm": False, "activation_function": "relu",
        "architectures": ["OPTForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 2,
        "do_layer_norm_before": True, "dropout": 0.0, "enable_bias": True, "eos_token_id": 2,
        "ffn_dim": ffn, "hidden_size": hidden, "init_std": 0.02,
        "layer_norm_elementwise_affine": True, "layerdrop": 0.0,
        "max_position_embeddings": MAX_POSITIONS, "model_type": "opt",
        "num_attention_heads": heads, "num_hidden_layers": layers, "pad_token_id": 1,
        "tie_word_embeddings": True, "torch_dtype": {"f16": "float16", "bf16": "bfloat16",
                                                    "f32": "float32"}[dtype],
        "vocab_size": VOCAB, "word_embed_proj_dim": hidden,
    }


def tensor_shapes(cfg):
    h, f = cfg["hidden_size"], cfg["ffn_dim"]
    d = "model.decoder."
    out = [(d + "embed_tokens.weight", (cfg["vocab_size"], h), "w"),
           (d + "embed_positions.weight", (MAX_POSITIONS + POSITION_OFFSET, h), "w"),
           (d + "final_layer_norm.weight", (h,), "one"),
           (d + "final_layer_norm.bias", (h,), "zero")]
    for i in range(cfg["num_hidden_layers"]):
        p = f"{d}layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out.append((p + f"self_attn.{proj}.weight", (h, h), "w"))
            out.append((p + f"self_attn.{proj}.bias", (h,), "zero"))
        out += [(p + "fc1.weight", (f, h), "w"), (p + "fc1.bias", (f,), "zero"),
                (p + "fc2.weight", (h, f), "w"), (p + "fc2.bias", (h,), "zero"),
                (p + "self_attn_layer_norm.weight", (h,), "one"),
                (p + "self_attn_layer_norm.bias", (h,), "zero"),
                (p + "final_layer_norm.weight", (h,), "one"),
                (p + "final_layer_norm.bias", (h,), "zero")]
    return out


def encode(values, dtype):
    """float32 array -> little-endian bytes of the storage dtype (bf16 rounds to nearest even)."""
    if dtype == "f32":
        return values.astype("<f4").tobytes()
    if dtype == "f16":
        return values.astype("<f2").tobytes()
    bits = values.astype("<f4").view("<u4").astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def write_model(directory, cfg, dtype, seed):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    rng = np.random.default_rng(seed)
    width = {"f32": 4, "f16": 2, "bf16": 2}[dtype]
    pool = encode(rng.standard_normal(POOL_SIZE, dtype=np.float32) * 0.02, dtype)
    st_dtype = {"f32": "F32", "f16": "F16", "bf16": "BF16"}[dtype]
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    tensors = tensor_shapes(cfg)
    for name, shape, _ in tensors:
        size = int(np.prod(shape)) * width
        header[name] = {"dtype": st_dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(os.path.join(directory, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        cursor = 0
        for _, shape, kind in tensors:
            count = int(np.prod(shape))
            if kind != "w":
                f.write(encode(np.full(count, 1.0 if kind == "one" else 0.0, np.float32), dtype))
                continue
            left = count * width
            while left > 0:
                take = min(left, len(pool) - cursor)
                f.write(pool[cursor:cursor + take])
                cursor = (cursor + take) % len(pool)
                left -= take
    return offset


def write_task(path, records, seq_len, targets, seed):
    rng = np.random.default_rng(seed + 1)
    with open(path, "w") as f:
        for _ in range(records):
            ids = [2] + rng.integers(4, VOCAB, seq_len - 1).tolist()
            labels = ids if targets == 0 else [-100] * (seq_len - targets) + ids[-targets:]
            f.write(json.dumps({"input_ids": ids, "labels": labels}) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", required=True, choices=sorted(SHAPES))
    ap.add_argument("--dtype", default="f16", choices=["f16", "bf16", "f32"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--records", type=int, default=256)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--targets-per-seq", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if not 0 <= a.targets_per_seq < a.seq_len:
        ap.error(f"--targets-per-seq {a.targets_per_seq} outside [0, --seq-len)")
    cfg = config_of(a.shape, a.dtype)
    size = write_model(os.path.join(a.out, "model"), cfg, a.dtype, a.seed)
    write_task(os.path.join(a.out, "train.jsonl"), a.records, a.seq_len, a.targets_per_seq,
               a.seed)
    write_task(os.path.join(a.out, "train_lm.jsonl"), a.records, a.seq_len, 0, a.seed)
    print(f"make_random_opt: opt-{a.shape} {a.dtype}, {size / 2**20:.0f} MiB of weights, "
          f"{a.records} records of {a.seq_len} tokens ({a.targets_per_seq or 'all'} targets "
          f"each; train_lm.jsonl: all) in {a.out}")


if __name__ == "__main__":
    main()
