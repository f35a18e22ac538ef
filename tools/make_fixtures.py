#!/usr/bin/env python3
"""Generate the OPT reference fixtures under tests/fixtures/opt-*/.

Usage:  python3 tools/make_fixtures.py --out tests/fixtures

Needs torch, transformers, safetensors and numpy (developer machine only; the
generated files are committed, CI never runs this).  Everything is seeded and
single-threaded, so re-running with the same library versions rewrites
byte-identical files.  See tools/README.md for the layout of every file.
"""

import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import OPTConfig, OPTForCausalLM

# ---------------------------------------------------------------------------
# Fixed choices (documented in tools/README.md)
# ---------------------------------------------------------------------------
VOCAB = 504          # reduced from the 1000 first asked for, to keep fixtures ~1.2 MB
MAX_POS = 32
PAD, BOS, EOS = 1, 2, 2
TOK_LO = 3           # random token ids are drawn from [TOK_LO, VOCAB)
WEIGHT_SEED = 1234
DATA_SEED = 5678

LM_T = 12
LM_LENGTHS = [12, 9, 5, 1]
LM_PROMPT_MASK = {1: 3}          # example -> number of leading real tokens with label -100

CLS_NUM_CAND = [2, 3, 2]
CLS_LABEL = [1, 2, 0]

SCORE_LENGTHS = [2, 7, 13, 20, 4, 10]
SCORE_MASKED = [1, 2, 5, 0, 3, 9]  # leading labels set to -100 (line 3: labels == input_ids)

IGNORE = -100


def opt_config(kind, dtype="float32"):
    common = dict(
        vocab_size=VOCAB,
        max_position_embeddings=MAX_POS,
        num_attention_heads=4,
        ffn_dim=64,
        num_hidden_layers=2,
        hidden_size=32,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        activation_function="relu",
        dropout=0.1,
        attention_dropout=0.0,
        layerdrop=0.0,
        enable_bias=True,
        layer_norm_elementwise_affine=True,
        tie_word_embeddings=True,
        use_cache=True,
    )
    if kind == "pre":
        cfg = OPTConfig(do_layer_norm_before=True, word_embed_proj_dim=32, **common)
    elif kind == "post":
        cfg = OPTConfig(do_layer_norm_before=False, word_embed_proj_dim=16, **common)
    else:
        raise ValueError(kind)
    return cfg


def build_model(cfg, seed):
    """OPTForCausalLM with every parameter overwritten by seeded random normals."""
    torch.manual_seed(seed)
    model = OPTForCausalLM(cfg)  # cfg._attn_implementation is set to "eager" by the caller
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = tuple(p.shape)
            if "layer_norm" in name and name.endswith(".weight"):
                val = 1.0 + 0.15 * torch.randn(shape, generator=gen)
            elif name.endswith(".bias"):
                val = 0.1 * torch.randn(shape, generator=gen)
            elif "embed_tokens" in name or "embed_positions" in name:
                val = 0.3 * torch.randn(shape, generator=gen)
            else:  # nn.Linear weight [out, in]: std ~ 1.1/sqrt(fan_in)
                val = (1.1 / math.sqrt(shape[1])) * torch.randn(shape, generator=gen)
            p.copy_(val.to(p.dtype))
    assert model.lm_head.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    model.eval()
    return model


def load_model(path, dtype=torch.float32):
    model = OPTForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=dtype)
    model.eval()
    return model


# ---------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------
def make_lm_sequences(rng):
    seqs = [rng.integers(TOK_LO, VOCAB, size=n).tolist() for n in LM_LENGTHS]
    labs = []
    for b, s in enumerate(seqs):
        lab = list(s)
        # the first real token has no predecessor: with left padding HF's shifted
        # loss would otherwise predict it from a pad row, so it is always -100
        lab[0] = IGNORE
        for i in range(LM_PROMPT_MASK.get(b, 0)):
            lab[i] = IGNORE
        labs.append(lab)
    return seqs, labs


def pad_batch(seqs, labs, T, left):
    B = len(seqs)
    ids = np.full((B, T), PAD, dtype=np.int64)
    mask = np.zeros((B, T), dtype=np.int64)
    lab = np.full((B, T), IGNORE, dtype=np.int64)
    for b, s in enumerate(seqs):
        n = len(s)
        sl = slice(T - n, T) if left else slice(0, n)
        ids[b, sl] = s
        mask[b, sl] = 1
        if labs is not None:
            lab[b, sl] = labs[b]
    return ids, mask, lab


def make_cls_batch(rng):
    seqs, opt_len, example = [], [], []
    for e, nc in enumerate(CLS_NUM_CAND):
        prompt = rng.integers(TOK_LO, VOCAB, size=int(rng.integers(3, 9))).tolist()
        for c in range(nc):
            opt = rng.integers(TOK_LO, VOCAB, size=int(rng.integers(1, 4))).tolist()
            seqs.append(prompt + opt)
            opt_len.append(len(opt))
            example.append(e)
    Tc = max(len(s) for s in seqs)
    ids, mask, _ = pad_batch(seqs, None, Tc, left=True)
    return ids, mask, np.array(opt_len), np.array(example)


def make_score_lines(rng):
    lines = []
    for n, m in zip(SCORE_LENGTHS, SCORE_MASKED):
        ids = rng.integers(TOK_LO, VOCAB, size=n).tolist()
        labels = [IGNORE] * m + ids[m:]
        lines.append({"input_ids": ids, "labels": labels})
    return lines


# ---------------------------------------------------------------------------
# Reference computations
# ---------------------------------------------------------------------------
def t64(a):
    return torch.from_numpy(np.ascontiguousarray(a)).long()


def lm_reference(model, prefix, ids, mask, lab):
    """Reference tensors for one LM batch (HF f32 model)."""
    B, T = ids.shape
    with torch.no_grad():
        out = model(input_ids=t64(ids), attention_mask=t64(mask), labels=t64(lab))
    logits = out.logits.float()
    rows, tgt = [], []
    for b in range(B):
        for t in range(T - 1):
            if lab[b, t + 1] != IGNORE:
                assert mask[b, t] == 1, "target row would read a pad-row logit"
                rows.append(b * T + t)
                tgt.append(int(lab[b, t + 1]))
    flat = logits.reshape(B * T, -1)
    rows_t = torch.tensor(rows, dtype=torch.long)
    tgt_logits = flat[rows_t].contiguous()
    lp = torch.log_softmax(tgt_logits.double(), dim=-1)
    nll = -lp[torch.arange(len(rows)), torch.tensor(tgt)]
    per_ex = torch.zeros(B, dtype=torch.float64)
    has = torch.zeros(B, dtype=torch.int32)
    for b in range(B):
        sel = [i for i, r in enumerate(rows) if r // T == b]
        if sel:
            per_ex[b] = nll[sel].mean()
            has[b] = 1
    # cross-check HF's loss against our own token mean
    own = nll.mean().item()
    assert abs(own - out.loss.item()) < 1e-5, (own, out.loss.item())
    return {
        f"{prefix}_input_ids": torch.from_numpy(ids).int(),
        f"{prefix}_attention_mask": torch.from_numpy(mask).int(),
        f"{prefix}_labels": torch.from_numpy(lab).int(),
        f"{prefix}_target_rows": rows_t.int(),
        f"{prefix}_target_ids": torch.tensor(tgt, dtype=torch.int32),
        f"{prefix}_target_logits": tgt_logits,
        f"{prefix}_loss_per_example": per_ex.float(),
        f"{prefix}_example_has_targets": has,
        f"{prefix}_loss": out.loss.detach().float().reshape(1),
    }, logits


def cls_reference(model, ids, mask, opt_len, example):
    N, T = ids.shape
    with torch.no_grad():
        logits = model(input_ids=t64(ids), attention_mask=t64(mask)).logits.float()
    lp = torch.log_softmax(logits.double(), dim=-1)
    scores = torch.zeros(N, dtype=torch.float64)
    for i in range(N):
        k = int(opt_len[i])
        acc = 0.0
        for t in range(T - k, T):
            assert mask[i, t - 1] == 1
            acc += lp[i, t - 1, int(ids[i, t])].item()
        scores[i] = acc / k
    per_ex = torch.zeros(len(CLS_NUM_CAND), dtype=torch.float64)
    for e in range(len(CLS_NUM_CAND)):
        s = scores[torch.from_numpy(example == e)]
        per_ex[e] = -torch.log_softmax(s, dim=0)[CLS_LABEL[e]]
    return {
        "cls_input_ids": torch.from_numpy(ids).int(),
        "cls_attention_mask": torch.from_numpy(mask).int(),
        "cls_option_len": torch.from_numpy(opt_len).int(),
        "cls_example": torch.from_numpy(example).int(),
        "cls_label": torch.tensor(CLS_LABEL, dtype=torch.int32),
        "cls_scores": scores.float(),
        "cls_loss_per_example": per_ex.float(),
        "cls_loss": per_ex.mean().float().reshape(1),
    }


def reference_tensors(model, data):
    ref = {}
    lm, lm_logits = lm_reference(model, "lm", *data["lm"])
    lmr, lmr_logits = lm_reference(model, "lmr", *data["lmr"])
    ref.update(lm)
    ref.update(lmr)
    ref.update(cls_reference(model, *data["cls"]))
    # left- and right-padded runs must agree on every real token
    ids_l, mask_l, _ = data["lm"]
    ids_r, mask_r, _ = data["lmr"]
    worst = 0.0
    for b in range(ids_l.shape[0]):
        a = lm_logits[b][torch.from_numpy(mask_l[b] == 1)]
        c = lmr_logits[b][torch.from_numpy(mask_r[b] == 1)]
        worst = max(worst, (a - c).abs().max().item())
    assert worst < 1e-4, worst
    return ref, worst


def meta(model):
    return {
        "num_parameters": str(model.num_parameters()),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }


def contig(d):
    return {k: v.detach().contiguous() for k, v in d.items()}


_ST_DTYPE = {torch.float32: "F32", torch.int32: "I32", torch.float16: "F16", torch.bfloat16: "BF16"}


def write_safetensors(path, tensors, metadata):
    """Deterministic safetensors writer.

    safetensors.torch.save_file serializes __metadata__ from a Rust HashMap, so
    with more than one metadata key the header order changes from run to run.
    This writer emits the same layout (compact JSON header, __metadata__ first,
    header space-padded to a multiple of 8, tensors ordered by descending
    element size then name, packed with no gaps) with sorted metadata keys.
    """
    items = sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, off = [], 0
    for name, t in items:
        t = t.detach().contiguous().cpu()
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _ST_DTYPE[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(len(hb).to_bytes(8, "little"))
        f.write(hb)
        for raw in blobs:
            f.write(raw)
    back = load_file(path)  # round-trip check through the official reader
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert torch.equal(back[k], v.detach().cpu()), k


def write_score(model, dirpath, lines):
    with open(os.path.join(dirpath, "score.jsonl"), "w") as f:
        for ln in lines:
            f.write(json.dumps(ln) + "\n")
    with open(os.path.join(dirpath, "score_reference.jsonl"), "w") as f:
        for ln in lines:
            ids = torch.tensor(ln["input_ids"])[None]
            lab = torch.tensor(ln["labels"])[None]
            with torch.no_grad():
                loss = model(input_ids=ids, labels=lab).loss.item()
            n = sum(1 for x in ln["labels"][1:] if x != IGNORE)
            assert n > 0 and math.isfinite(loss)
            f.write(json.dumps({"loss": loss, "n_tokens": n}) + "\n")


def save_hf(model, dirpath):
    if os.path.isdir(dirpath):
        shutil.rmtree(dirpath)
    model.save_pretrained(dirpath)
    keys = set(load_file(os.path.join(dirpath, "model.safetensors")).keys())
    assert "lm_head.weight" not in keys, "HF unexpectedly saved the tied lm_head"
    return keys


def write_variant(f32_dir, out_dir, n_layers):
    """opt-pre weights with 'decoder.*' keys, explicit lm_head, decoder.version, 2 shards."""
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    sd = load_file(os.path.join(f32_dir, "model.safetensors"))
    plain = {}
    for k, v in sd.items():
        assert k.startswith("model.")
        plain[k[len("model."):]] = v
    plain["lm_head.weight"] = plain["decoder.embed_tokens.weight"].clone()
    plain["decoder.version"] = torch.tensor([3.0], dtype=torch.float32)
    half = n_layers // 2
    shard1, shard2 = {}, {}
    for k, v in plain.items():
        late = k.startswith("lm_head") or k == "decoder.version"
        if k.startswith("decoder.layers."):
            late = int(k.split(".")[2]) >= half
        (shard2 if late else shard1)[k] = v
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    weight_map = {}
    total = 0
    for name, shard in zip(names, [shard1, shard2]):
        save_file(contig(shard), os.path.join(out_dir, name), metadata={"format": "pt"})
        for k, v in shard.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()
    index = {"metadata": {"total_size": total},
             "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    shutil.copyfile(os.path.join(f32_dir, "config.json"), os.path.join(out_dir, "config.json"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="fixtures root, e.g. tests/fixtures")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    rng = np.random.default_rng(DATA_SEED)
    seqs, labs = make_lm_sequences(rng)
    cls = make_cls_batch(rng)
    score_lines = make_score_lines(rng)
    data = {
        "lm": pad_batch(seqs, labs, LM_T, left=True),
        "lmr": pad_batch(seqs, labs, LM_T, left=False),
        "cls": cls,
    }
    report = {}

    for kind, seed_off in (("pre", 0), ("post", 1)):
        cfg = opt_config(kind)
        cfg._attn_implementation = "eager"
        model = build_model(cfg, WEIGHT_SEED + seed_off)
        d = os.path.join(args.out, f"opt-{kind}")
        save_hf(model, d)
        model = load_model(d)  # reference from the files as written
        ref, worst = reference_tensors(model, data)
        write_safetensors(os.path.join(d, "reference.safetensors"), ref, meta(model))
        write_score(model, d, score_lines)
        report[kind] = (model.num_parameters(), worst)

        if kind == "pre":
            # gradient of lm_loss w.r.t. every parameter (tied head counted once)
            gm = load_model(d)
            ids, mask, lab = data["lm"]
            gm.zero_grad()
            loss = gm(input_ids=t64(ids), attention_mask=t64(mask), labels=t64(lab)).loss
            loss.backward()
            grads = {n: p.grad.detach().float() for n, p in gm.named_parameters()}
            assert abs(loss.item() - ref["lm_loss"].item()) < 1e-6
            gmeta = dict(meta(gm))
            gmeta["loss"] = repr(loss.item())
            write_safetensors(os.path.join(d, "grads.safetensors"), grads, gmeta)

            for dt_name, dt in (("f16", torch.float16), ("bf16", torch.bfloat16)):
                hd = os.path.join(args.out, f"opt-pre-{dt_name}")
                half = load_model(d).to(dt)
                save_hf(half, hd)
                up = load_model(hd, dtype=torch.float32)  # exact math on the stored weights
                ref_h, worst_h = reference_tensors(up, data)
                native = load_model(hd, dtype=dt)
                ids, mask, lab = data["lm"]
                with torch.no_grad():
                    nl = native(input_ids=t64(ids), attention_mask=t64(mask)).logits.float()
                rows = ref_h["lm_target_rows"].long()
                ref_h["lm_target_logits_native"] = nl.reshape(-1, VOCAB)[rows]
                dev = (ref_h["lm_target_logits_native"] - ref_h["lm_target_logits"]).abs().max().item()
                write_safetensors(os.path.join(hd, "reference.safetensors"), ref_h, meta(up))
                report[f"pre-{dt_name}"] = (up.num_parameters(), worst_h, dev)

            write_variant(d, os.path.join(args.out, "opt-pre-variant"), cfg.num_hidden_layers)

    for k, v in report.items():
        extra = f", native-vs-upcast max |dlogit| {v[2]:.3g}" if len(v) > 2 else ""
        print(f"opt-{k}: {v[0]} parameters, lm-vs-lmr max |dlogit| {v[1]:.3g}{extra}")


if __name__ == "__main__":
    sys.exit(main())
