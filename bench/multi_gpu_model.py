#!/usr/bin/env python3
"""A model of zotune's ZO step on 8 GPUs (docs/distributed.md), run by hand, never by CI.

    python3 bench/multi_gpu_model.py --roofline build/bench/roofline [--gpus 8] [--gpu h100]
                                     [--batch 16] [--seq-len 256] [--link nvlink|ib]

It takes one GPU's step from `roofline --json` ("zotune shadow (design)": its phases' times at
the roofs), then composes what several GPUs change:
  data parallel (D ranks): every rank holds all the weights, so staging and the update do not
      shrink; the forward phases (GEMMs, attention, norms, head) shrink with the examples per
      rank (B / D); the ranks exchange 16 * K * ceil(B / D) + 4 bytes per step, one all-gather,
      charged at the link's latency (it is far below any bandwidth term).
  pipeline (S stages): a stage holds 1/S of the weights (so staging and the update shrink by S)
      and runs 1/S of the layers; the K variants x A micro-batches flow through the stages, so
      the forward takes (A*K + S - 1) / (A*K) of its ideal share (the fill and drain bubble), and
      each stage boundary sends every unit's activations, (B/A) * T * hidden * 4 bytes (f32
      activations, backend.h), at the link's bandwidth.
  2D: S stages x D data-parallel replicas.
The 175b figures scale 66b's phases: the weight-proportional ones (staging, GEMMs, norms,
update) by the parameter ratio, attention by layers * hidden. Nothing here has run on a GPU;
every number is an estimate at the roofline's efficiencies.
DistZO2 (arXiv 2507.03211) publishes only a ratio, "3x over ZO2" on OPT-175B; ZO2 streams the
weights from host memory once per step (ZO2's README: OPT-175B in 18 GB of GPU memory), so
the script estimates ZO2's step as that transfer over PCIe (or its single-GPU compute, if
slower) and applies the 3x.
"""
import argparse
import json
import math
import subprocess

# GB/s per direction and seconds per collective (NVLink 4 on H100 SXM: 900 GB/s both directions;
# InfiniBand NDR: 400 Gb/s = 50 GB/s per port)
LINKS = {"nvlink": (450.0, 10e-6), "ib": (50.0, 20e-6)}
PCIE_GBS = 55.0  # PCIe 5 x16, achievable host -> device
SIZES = {"13b": (5120, 40), "30b": (7168, 48), "66b": (9216, 64)}
OPT_175B = (12288, 96, 174.6e9)  # hidden, layers, parameters (OPT paper)


def roofline(path, size, args):
    out = subprocess.run([path, "--size", size, "--json", "--batch", str(args.batch),
                          "--seq-len", str(args.seq_len), "--gpu", args.gpu],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    doc = json.loads(out)
    s = doc["sizes"][0]
    scheme = next(x for x in s["schemes"] if x["scheme"] == "zotune shadow (design)")
    phases = {p["name"]: p["ms"] / 1e3 for p in scheme["phases"]}
    return {"params": s["params"], "phases": phases, "weights": scheme["memory"]["weights"],
            "memory_gb": doc["memory_bytes"] / 1e9, "variants": doc["variants"]}


def scale_175b(m66):
    hidden, layers, params = OPT_175B
    r = params / m66["params"]
    a = (layers * hidden) / (64 * 9216)
    ph = {k: v * (a if k == "attention" else r) for k, v in m66["phases"].items()}
    return {"params": params, "phases": ph, "weights": m66["weights"] * r,
            "memory_gb": m66["memory_gb"], "variants": m66["variants"]}


def step_time(m, hidden, args, stages, replicas):
    link_gbs, latency = LINKS[args.link]
    ph = m["phases"]
    per_weight = (ph.get("staging", 0) + ph.get("update", 0)) / stages
    forward = sum(v for k, v in ph.items() if k not in ("staging", "update"))
    forward /= replicas * stages
    units = args.micro * m["variants"]
    bubble = (units + stages - 1) / units
    per_rank_batch = math.ceil(args.batch / replicas)
    act_bytes = (per_rank_batch / args.micro) * args.seq_len * hidden * 4
    transfer = (stages - 1) * units * act_bytes / (link_gbs * 1e9) if stages > 1 else 0.0
    allgather = latency if replicas > 1 else 0.0
    sent = 16 * m["variants"] * per_rank_batch + 4 if replicas > 1 else 0
    fits = m["weights"] / stages * 1.1 < m["memory_gb"] * 1e9
    return per_weight + forward * bubble + transfer + allgather, sent, fits


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--roofline", required=True)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--gpu", default="h100")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--micro", type=int, default=4, help="micro-batches per variant (pipeline)")
    ap.add_argument("--link", default="nvlink", choices=sorted(LINKS))
    args = ap.parse_args()
    models = {k: roofline(args.roofline, k, args) for k in SIZES}
    models["175b"] = scale_175b(models["66b"])
    dims = dict(SIZES)
    dims["175b"] = OPT_175B[:2]
    g = args.gpus
    layouts = [(1, 1)] + [(s, g // s) for s in (1, 2, 4, 8) if g % s == 0]
    print(f"MeZO step (K = 2), batch {args.batch} x {args.seq_len}, bf16 weights, "
          f"{g} x {args.gpu}, {args.link}; seconds per step (* = does not fit)")
    header = "  size   " + "".join(f"{'1 GPU' if (s, d) == (1, 1) else f'S{s} x D{d}':>12}"
                                  for s, d in layouts)
    print(header)
    for name, m in models.items():
        hidden = dims[name][0]
        row = f"  {name:6s} "
        for s, d in layouts:
            t, _, fits = step_time(m, hidden, args, s, d)
            row += f"{t:11.3f}{' ' if fits else '*'}"
        print(row)
    m = models["175b"]
    best = min((step_time(m, dims["175b"][0], args, s, d)[0], s, d) for s, d in layouts[1:]
               if step_time(m, dims["175b"][0], args, s, d)[2])
    single_compute, _, _ = step_time(m, dims["175b"][0], args, 1, 1)
    zo2 = max(m["weights"] / (PCIE_GBS * 1e9), single_compute)
    print(f"OPT-175B: ZO2-style offload on 1 GPU ~{zo2:.2f} s/step (weights over PCIe at "
          f"{PCIE_GBS:.0f} GB/s, or its compute); DistZO2's published 3x -> ~{zo2 / 3:.2f} s; "
          f"zotune's best layout here S{best[1]} x D{best[2]} ~{best[0]:.2f} s "
          f"({zo2 / 3 / best[0]:.1f}x DistZO2's, both estimates)")
    _, sent, _ = step_time(models["13b"], dims["13b"][0], args, 1, g)
    print(f"bytes each rank sends per step, data parallel over {g}: {sent}")


if __name__ == "__main__":
    main()
