#!/usr/bin/env python3
"""Generate the PyTorch-checkpoint fixtures: tests/fixtures/opt-bin*/ and tests/fixtures/torch-bin/.

Usage:  python3 tools/make_bin_fixtures.py --out tests/fixtures

Needs torch, transformers, safetensors and numpy (developer machine only; the generated files are
committed, CI never runs this).  Tiny OPT models saved ONLY as pytorch_model.bin (torch.save of
the state dict, as transformers' save_pretrained(safe_serialization=False) wrote them):

  opt-bin          f32, model.state_dict() (an OrderedDict with _metadata, tied lm_head sharing
                   embed_tokens' storage)
  opt-bin-f16      the same weights in f16
  opt-bin-bf16     the same weights in bf16
  opt-bin-sharded  the f32 weights as plain dicts in 3 shards + pytorch_model.bin.index.json
  opt-bin-legacy   the f32 weights under fairseq-era keys ('decoder.*', no lm_head,
                   decoder.version), every tensor a view into ONE flat storage (offsets)

Each has config.json and reference.safetensors: input_ids, attention_mask (I32 [B,T]) and the
logits transformers computes after loading the directory itself (F32 [B,T,V]; f16/bf16 upcast to
f32 first, which is exact, as tests/fixtures/opt-pre-f16 does).

torch-bin/ holds files a reader must refuse, built as bytes (the malicious pickles are assembled
opcode by opcode and never unpickled), plus zip64-entries.bin, a valid checkpoint whose central
directory uses zip64 extra fields (checked here with torch.load(weights_only=True)).
"""

import argparse
import copy
import io
import json
import os
import shutil
import struct
import sys
import zipfile
import zlib
from collections import OrderedDict

import torch
import transformers
from transformers import OPTConfig, OPTForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_fixtures as mf  # noqa: E402  (build_model, write_safetensors)

VOCAB = 96
SEED = 4321
IDS = [[2, 17, 45, 9, 88, 31, 5, 60], [1, 1, 1, 2, 70, 12, 93, 40]]  # row 2 left-padded (pad 1)
MASK = [[1] * 8, [0, 0, 0, 1, 1, 1, 1, 1]]


def tiny_config():
    cfg = OPTConfig(vocab_size=VOCAB, max_position_embeddings=16, num_attention_heads=2,
                    ffn_dim=32, num_hidden_layers=2, hidden_size=16, word_embed_proj_dim=16,
                    pad_token_id=1, bos_token_id=2, eos_token_id=2, activation_function="relu",
                    do_layer_norm_before=True, dropout=0.0, attention_dropout=0.0, layerdrop=0.0,
                    enable_bias=True, layer_norm_elementwise_affine=True,
                    tie_word_embeddings=True)
    cfg._attn_implementation = "eager"
    return cfg


def fresh(d):
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)


def write_reference(d, dtype_note):
    """Logits of transformers after loading d itself (its pytorch_model.bin)."""
    model = OPTForCausalLM.from_pretrained(d, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    ids = torch.tensor(IDS)
    mask = torch.tensor(MASK)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float().contiguous()
    mf.write_safetensors(os.path.join(d, "reference.safetensors"),
                         {"input_ids": ids.int(), "attention_mask": mask.int(), "logits": logits},
                         {"num_parameters": str(model.num_parameters()), "stored": dtype_note,
                          "torch_version": torch.__version__,
                          "transformers_version": transformers.__version__})
    return model


def save_config(model, d):
    model.config.save_pretrained(d)


def save_single(model, d, dtype):
    fresh(d)
    m = copy.deepcopy(model).to(dtype)
    sd = m.state_dict()
    assert sd["lm_head.weight"].data_ptr() == sd["model.decoder.embed_tokens.weight"].data_ptr()
    torch.save(sd, os.path.join(d, "pytorch_model.bin"))
    m.config.dtype = dtype
    save_config(m, d)


def save_sharded(model, d, n_shards=3):
    """Plain dicts, as transformers' shard_checkpoint made them, tied head in the first shard."""
    fresh(d)
    sd = model.state_dict()
    names = list(sd)
    per = -(-len(names) // n_shards)
    weight_map, total = {}, 0
    for s in range(n_shards):
        shard_name = f"pytorch_model-{s + 1:05d}-of-{n_shards:05d}.bin"
        shard = {k: sd[k] for k in names[s * per:(s + 1) * per]}
        torch.save(shard, os.path.join(d, shard_name))
        for k, v in shard.items():
            weight_map[k] = shard_name
            total += v.numel() * v.element_size()
    with open(os.path.join(d, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    save_config(model, d)


def save_legacy(model, d):
    """fairseq-era keys, every tensor a view at its own offset into one flat storage."""
    fresh(d)
    sd = {k[len("model."):]: v for k, v in model.state_dict().items() if k.startswith("model.")}
    sd["decoder.version"] = torch.tensor([3.0])
    flat = torch.cat([v.reshape(-1) for v in sd.values()])
    views, at = OrderedDict(), 0
    for k, v in sd.items():
        views[k] = flat[at:at + v.numel()].view(v.shape)
        at += v.numel()
    torch.save(views, os.path.join(d, "pytorch_model.bin"))
    save_config(model, d)


# ---- hand-built archives -----------------------------------------------------------------------

def write_zip(path, entries, zip64_entries=False, align=64):
    """A torch-like stored archive: data aligned by padding the local extra field, zip64 end
    records; with zip64_entries the central directory defers sizes and offsets to zip64 extras."""
    out = io.BytesIO()
    central = []
    for name, data in entries:
        nb = name.encode()
        offset = out.tell()
        pad = -(offset + 30 + len(nb) + 4) % align
        extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
        crc = zlib.crc32(data)
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034b50, 20, 0, 0, 0, 0x21, crc, len(data),
                              len(data), len(nb), len(extra)) + nb + extra + data)
        central.append((nb, crc, len(data), offset))
    cd_start = out.tell()
    for nb, crc, size, offset in central:
        if zip64_entries:
            extra = struct.pack("<HHQQQ", 1, 24, size, size, offset)
            s32 = o32 = 0xFFFFFFFF
        else:
            extra, s32, o32 = b"", size, offset
        out.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 45, 45, 0, 0, 0, 0x21, crc, s32,
                              s32, len(nb), len(extra), 0, 0, 0, 0, o32) + nb + extra)
    cd_size = out.tell() - cd_start
    eocd64 = out.tell()
    n = len(entries)
    out.write(struct.pack("<IQHHIIQQQQ", 0x06064b50, 44, 45, 45, 0, 0, n, n, cd_size, cd_start))
    out.write(struct.pack("<IIQI", 0x07064b50, 0, eocd64, 1))
    out.write(struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, n, n, cd_size, cd_start, 0))
    with open(path, "wb") as f:
        f.write(out.getvalue())


def ustr(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def tensor_pickle(key, numel, shape):
    """_rebuild_tensor_v2(('storage', torch.FloatStorage, key, 'cpu', numel), 0, shape, stride,
    False, OrderedDict()) as torch writes it (no memo)."""
    stride, acc = [], 1
    for e in reversed(shape):
        stride.insert(0, acc)
        acc *= e
    tup = lambda xs: b"(" + b"".join(b"K" + bytes([x]) for x in xs) + b"t"  # noqa: E731
    return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + b"(" + ustr("storage") +
            b"ctorch\nFloatStorage\n" + ustr(key) + ustr("cpu") + b"K" + bytes([numel]) + b"tQ" +
            b"K\x00" + tup(shape) + tup(stride) + b"\x89" + b"ccollections\nOrderedDict\n)R" +
            b"tR")


def malicious_files(d):
    calls = {
        # the whole pickle is os.system("echo pwned")
        "malicious-os-system.bin": b"\x80\x02cos\nsystem\n" + ustr("echo pwned") + b"\x85R.",
        # a state dict whose second entry is builtins.eval(...)
        "malicious-nested.bin": (b"\x80\x02ccollections\nOrderedDict\n)R(" + ustr("w") +
                                 tensor_pickle("0", 4, [2, 2]) + ustr("x") +
                                 b"cbuiltins\neval\n" + ustr("__import__('os')") + b"\x85Ru."),
        # protocol 4's STACK_GLOBAL with the names on the stack
        "malicious-stack-global.bin": (b"\x80\x04\x8c\x05posix\x8c\x06system\x93" +
                                       ustr("echo pwned") + b"\x85R."),
        # INST calls its class directly, no GLOBAL at all
        "malicious-inst.bin": b"\x80\x02(" + ustr("echo pwned") + b"ios\nsystem\n.",
    }
    import pickletools
    for name, pkl in calls.items():
        pickletools.dis(pkl, out=io.StringIO())  # well-formed; disassembly never executes
        entries = [("archive/data.pkl", pkl), ("archive/byteorder", b"little")]
        if name == "malicious-nested.bin":
            entries.append(("archive/data/0", struct.pack("<4f", 1, 2, 3, 4)))
        write_zip(os.path.join(d, name), entries)


def refusal_files(d):
    fresh(d)
    malicious_files(d)
    torch.save({"w": torch.arange(6.0).reshape(2, 3).t()}, os.path.join(d, "noncontiguous.bin"))
    # a real module's state dict (OrderedDict + BUILD of _metadata), one entry an alias
    torch.manual_seed(0)
    linear = torch.nn.Linear(2, 2)
    sd = linear.state_dict()
    sd["alias.weight"] = sd["weight"]
    torch.save(sd, os.path.join(d, "linear-state-dict.bin"))
    # (its storage keys are object ids: re-running rewrites this file with other bytes)
    torch.save({"w": torch.arange(4.0)}, os.path.join(d, "legacy-format.bin"),
               _use_new_zipfile_serialization=False)
    good = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, good)
    with zipfile.ZipFile(io.BytesIO(good.getvalue())) as src, \
            zipfile.ZipFile(os.path.join(d, "deflated.bin"), "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(2020, 1, 1, 0, 0, 0))
            dst.writestr(fixed, src.read(info.filename), zipfile.ZIP_DEFLATED)
    # a valid checkpoint with zip64 extras in the central directory: w = [[1, 2, 3], [4, 5, 6]]
    pkl = b"\x80\x02}(" + ustr("w") + tensor_pickle("0", 6, [2, 3]) + b"u."
    z64 = os.path.join(d, "zip64-entries.bin")
    write_zip(z64, [("model/data.pkl", pkl), ("model/byteorder", b"little"), ("model/version", b"3\n"),
                    ("model/data/0", struct.pack("<6f", 1, 2, 3, 4, 5, 6))], zip64_entries=True)
    back = torch.load(z64, weights_only=True)
    assert torch.equal(back["w"], torch.tensor([[1.0, 2, 3], [4, 5, 6]])), back


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="fixtures root, e.g. tests/fixtures")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    model = mf.build_model(tiny_config(), SEED)
    out = lambda name: os.path.join(args.out, name)  # noqa: E731
    save_single(model, out("opt-bin"), torch.float32)
    save_single(model, out("opt-bin-f16"), torch.float16)
    save_single(model, out("opt-bin-bf16"), torch.bfloat16)
    save_sharded(model, out("opt-bin-sharded"))
    save_legacy(model, out("opt-bin-legacy"))
    f32_logits = None
    for name, note in (("opt-bin", "F32"), ("opt-bin-f16", "F16"), ("opt-bin-bf16", "BF16"),
                       ("opt-bin-sharded", "F32"), ("opt-bin-legacy", "F32")):
        m = write_reference(out(name), note)
        with torch.no_grad():
            lg = m(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK)).logits
        if f32_logits is None:
            f32_logits = lg
        elif note == "F32":
            assert torch.equal(lg, f32_logits), f"{name}: HF loads other weights than opt-bin"
        sizes = {f: os.path.getsize(os.path.join(out(name), f)) for f in os.listdir(out(name))}
        print(name, m.num_parameters(), "parameters", sizes)
    refusal_files(out("torch-bin"))
    print("torch-bin:", sorted(os.listdir(out("torch-bin"))))


if __name__ == "__main__":
    sys.exit(main())
