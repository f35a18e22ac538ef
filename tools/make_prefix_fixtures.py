#!/usr/bin/env python3
"""Generate the prefix-tuning fixture tests/fixtures/opt-pre-prefix/ with HF transformers.

Usage:  python3 tools/make_prefix_fixtures.py --out tests/fixtures

MeZO's prefix tuning (large_models/prefix.py, --no_reparam) reproduced with HF's own OPT on
tests/fixtures/opt-pre: each layer's prefix keys and values, (N, C) in the k_proj / v_proj
output space (head h = columns h*D .. h*D+D-1), handed to the model as past_key_values (a
DynamicCache built from them, prefix first), the attention mask prefixed with N ones, and
explicit position_ids computed from the ORIGINAL mask (cumsum(mask) * mask - 1), so positions do
not shift by N (MeZO injects the prefix inside the attention module; OPTDecoder never sees it).

The adapter (N = 5 seeded random prefixes) is written in zotune's format:
  adapter_config.json         {"peft_type": "MEZO_PREFIX", "num_prefix": 5, ...}
  adapter_model.safetensors   model.decoder.layers.{l}.self_attn.prefix_keys / prefix_values

reference.safetensors:
  input_ids       I32 (3, 8)    full, left-padded by 3, right-padded by 2
  attention_mask  I32 (3, 8)
  logits          F32 (3, 8, V) with the prefixes, f32, eval mode, eager attention
  labels          I32 (3, 8)    input_ids, -100 on padding
  loss            F32 (1)       the token-mean LM loss with those labels
  grad/<name>     F32 (N, C)    d loss / d prefix (autograd through HF's OPT)
  init/ids        I32 (N)       token ids for the init-by-real-activations rule
  init/<name>     F32 (N, C)    HF's past_key_values of the base model on init/ids, as prefixes

Needs torch and transformers (developer machine only; CI reads the committed files).
"""

import argparse
import json
import os

import torch
from safetensors.torch import save_file
from transformers import DynamicCache, OPTForCausalLM

N = 5
SEED = 1357
B, T = 3, 8
PAD_LEFT, PAD_RIGHT = 3, 2


def name(layer, which):
    return f"model.decoder.layers.{layer}.self_attn.prefix_{which}"


def as_heads(x, heads, batch):
    """(N, C) -> (B, heads, N, D), the layout of a cache entry."""
    n, c = x.shape
    return x.reshape(n, heads, c // heads).transpose(0, 1).unsqueeze(0).expand(batch, -1, -1, -1)


def from_heads(x):
    """(1, heads, N, D) -> (N, C)."""
    _, heads, n, d = x.shape
    return x[0].transpose(0, 1).reshape(n, heads * d)


def prefixed_forward(model, prefixes, ids, mask):
    cfg = model.config
    cache = DynamicCache(config=cfg)
    for layer in range(cfg.num_hidden_layers):
        k = as_heads(prefixes[name(layer, "keys")], cfg.num_attention_heads, ids.shape[0])
        v = as_heads(prefixes[name(layer, "values")], cfg.num_attention_heads, ids.shape[0])
        cache.update(k, v, layer)
    full_mask = torch.cat([torch.ones(ids.shape[0], N, dtype=mask.dtype), mask], dim=1)
    position_ids = torch.cumsum(mask, dim=1) * mask - 1
    return model(input_ids=ids, attention_mask=full_mask, position_ids=position_ids,
                 past_key_values=cache, use_cache=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    base_dir = os.path.join(args.out, "opt-pre")
    out = os.path.join(args.out, "opt-pre-prefix")
    os.makedirs(out, exist_ok=True)
    model = OPTForCausalLM.from_pretrained(base_dir, dtype=torch.float32,
                                           attn_implementation="eager").eval()
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = model.config
    vocab, hidden = cfg.vocab_size, cfg.hidden_size

    # the init rule: the base model's own keys and values on N token ids, positions 0 .. N-1
    g = torch.Generator().manual_seed(SEED + 2)
    init_ids = torch.randint(0, vocab, (N,), generator=g)
    with torch.no_grad():
        cache = model(input_ids=init_ids[None], use_cache=True).past_key_values
    init = {}
    for layer in range(cfg.num_hidden_layers):
        init["init/" + name(layer, "keys")] = from_heads(cache.layers[layer].keys).contiguous()
        init["init/" + name(layer, "values")] = from_heads(cache.layers[layer].values).contiguous()

    # the adapter: the init values plus seeded noise, so that every prefix row matters
    prefixes = {}
    for layer in range(cfg.num_hidden_layers):
        for which in ("keys", "values"):
            start = init["init/" + name(layer, which)]
            prefixes[name(layer, which)] = (start + 0.5 * torch.randn(N, hidden)).contiguous()
    save_file(prefixes, os.path.join(out, "adapter_model.safetensors"), {"format": "pt"})
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump({"base_model_name_or_path": "", "num_prefix": N, "peft_type": "MEZO_PREFIX",
                   "position_ids": "unshifted", "task_type": "CAUSAL_LM"}, f, indent=2,
                  sort_keys=True)
        f.write("\n")

    g = torch.Generator().manual_seed(SEED + 1)
    ids = torch.randint(3, vocab, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.int64)
    ids[1, :PAD_LEFT] = cfg.pad_token_id
    mask[1, :PAD_LEFT] = 0
    ids[2, T - PAD_RIGHT:] = cfg.pad_token_id
    mask[2, T - PAD_RIGHT:] = 0
    ids[0, 0] = ids[1, PAD_LEFT] = ids[2, 0] = cfg.bos_token_id
    with torch.no_grad():
        logits = prefixed_forward(model, prefixes, ids, mask).logits.float()

    leaves = {k: v.clone().requires_grad_(True) for k, v in prefixes.items()}
    labels = torch.where(mask == 1, ids, torch.tensor(-100))
    loss = prefixed_forward(model, leaves, ids, mask).logits.float()
    # HF's LM loss: shift by one, token mean over the labelled rows
    shift_logits, shift_labels = loss[:, :-1].reshape(-1, vocab), labels[:, 1:].reshape(-1)
    loss = torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100)
    loss.backward()
    grads = {"grad/" + k: v.grad.detach().float().contiguous() for k, v in leaves.items()}

    import transformers
    save_file({"input_ids": ids.int().contiguous(), "attention_mask": mask.int().contiguous(),
               "labels": labels.int().contiguous(), "logits": logits.contiguous(),
               "loss": loss.detach().float().reshape(1), "init/ids": init_ids.int().contiguous(),
               **grads, **init},
              os.path.join(out, "reference.safetensors"),
              {"transformers": transformers.__version__})
    print(f"wrote {out}: logits {tuple(logits.shape)}, loss {loss.item():.6f}")


if __name__ == "__main__":
    main()
