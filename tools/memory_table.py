#!/usr/bin/env python3
"""The README's memory report: `zotune bench memory` in MeZO's Table 22 setting, beside MeZO's numbers.

Usage:  python3 tools/memory_table.py --zotune build/src/cli/zotune [--out DIR] [--plot FILE.png]

Writes config.json files for OPT 1.3b ... 66b (facebook/opt-*'s published shapes) into DIR (a
temporary directory by default), runs `zotune bench memory DIR/opt-X --dtype f16 --batch-size 1
--seq-len 400 --json` on each (MultiRC's ~400 tokens, batch 1, fp16 weights) and prints a
markdown table: zotune's planned peaks per method and MeZO's published figures (Table 22:
nvidia-smi peaks of HF eager runs, "GB"). Plans only: no weights, no GPU needed. --plot also
draws every method's peak against the parameter count, log-log (needs matplotlib; `zotune bench
memory DIR --plot FILE.png` draws the same curves without it).
"""
import argparse
import json
import os
import subprocess
import tempfile

# name: hidden, layers, heads, ffn (word_embed_proj_dim = hidden, pre-LN)
SIZES = {
    "1.3b": (2048, 24, 32, 8192),
    "2.7b": (2560, 32, 32, 10240),
    "6.7b": (4096, 32, 32, 16384),
    "13b": (5120, 40, 40, 20480),
    "30b": (7168, 48, 56, 28672),
    "66b": (9216, 64, 72, 36864),
}
# MeZO Table 22 (App. E.7): zero-shot / MeZO, full fine-tuning
MEZO = {"1.3b": ("4", "27"), "2.7b": ("7", "55"), "6.7b": ("14", "156"), "13b": ("26", "316"),
        "30b": ("58", "633"), "66b": ("128", "16 A100s")}
METHODS = ["inference", "zo-inplace", "zo-shadow", "fo-sgd-ckpt", "fo-adamw-ckpt", "fo-adamw"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zotune", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--plot", default=None, help="FILE.png: memory against model size")
    args = ap.parse_args()
    curves = {}
    root = args.out or tempfile.mkdtemp(prefix="zotune_configs_")
    print("| OPT | MeZO (published) | full FT (published) | " +
          " | ".join(f"zotune {m}" for m in METHODS) + " |")
    print("|---" * (3 + len(METHODS)) + "|")
    for name, (h, layers, heads, ffn) in SIZES.items():
        d = os.path.join(root, f"opt-{name}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"model_type": "opt", "activation_function": "relu", "vocab_size": 50272,
                       "hidden_size": h, "num_hidden_layers": layers,
                       "num_attention_heads": heads, "ffn_dim": ffn,
                       "max_position_embeddings": 2048, "word_embed_proj_dim": h,
                       "do_layer_norm_before": True, "torch_dtype": "float16",
                       "bos_token_id": 2, "eos_token_id": 2, "pad_token_id": 1}, f)
        out = subprocess.run([args.zotune, "bench", "memory", d, "--dtype", "f16",
                              "--batch-size", "1", "--seq-len", "400", "--json"],
                             check=True, capture_output=True, text=True).stdout
        rows = {r["method"]: r["peak_bytes"] for r in json.loads(out)["rows"]}
        params = json.loads(out)["rows"][0]["parts"]["weights"] / 2
        for m, v in rows.items():
            curves.setdefault(m, []).append((params, v / 2**30))
        mezo, ft = MEZO[name]
        cells = " | ".join(f"{rows[m] / 2**30:.1f}" for m in METHODS)
        print(f"| {name} | {mezo} GB | {ft}{' GB' if ft.isdigit() else ''} | {cells} |")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 5))
        for m, points in curves.items():
            ax.plot([p for p, _ in points], [g for _, g in points], marker="o", label=m)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters (OPT 1.3b ... 66b, fp16)")
        ax.set_ylabel("planned peak (GiB), batch 1 x 400 tokens")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
